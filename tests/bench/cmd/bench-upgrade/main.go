// Command bench-upgrade measures what the users of an OpenBao cluster feel during an
// upgrade from one release to the next: with this operator's strategies, and with a naive
// roll of the same StatefulSet as a baseline. It brings up its own local cluster (root
// needed), runs every mode for every replica count under a steady load, prints a table and
// a one-line summary, and writes the figures as JSON and a timeline of each run as SVG
// beside it. `make bench-upgrade` runs it; `--render <json>` draws the timelines of an
// earlier result again.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/bench/upgradebench"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-upgrade:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := cluster.FindRepoRoot()
	if err != nil {
		return err
	}
	var (
		quick       = flag.Bool("quick", false, "3 replicas only and a 1-minute steady state: a faster check")
		replicasF   = flag.String("replicas", "3,5", "replica counts to run, comma-separated")
		modesF      = flag.String("modes", "Rolling,BlueGreen,naive", "modes to run, comma-separated: Rolling, BlueGreen, naive")
		from        = flag.String("from", "2.6.2", "OpenBao release the clusters start on")
		to          = flag.String("to", "2.7.2", "OpenBao release they are upgraded to")
		rate        = flag.Float64("rate", 62.5, "load requests per second (four writes for every read: 62.5 is 50 writes/s)")
		steady      = flag.Duration("steady", 5*time.Minute, "steady-state window after each operator upgrade")
		settle      = flag.Duration("settle", 30*time.Second, "time between the operator reporting the upgrade done and the steady-state window")
		bgVerify    = flag.Duration("bluegreen-verification", 30*time.Second, "spec.upgrade.blueGreen.verificationPeriod of the BlueGreen runs")
		dir         = flag.String("dir", filepath.Join(root, ".cache", "bench-cluster"), "state folder of the benchmark's local cluster (emptied first)")
		out         = flag.String("out", filepath.Join(root, ".cache", "bench"), "folder for the JSON results and the audit log")
		kubeAssets  = flag.String("kube-assets", filepath.Join(root, ".cache", "kube", "1.35.4"), "etcd, kube-apiserver, kube-controller-manager, kubectl")
		openBaoDir  = flag.String("openbao-dir", filepath.Join(root, ".cache", "openbao"), "OpenBao binaries, <version>/bao")
		manager     = flag.String("manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
		bridge      = flag.String("bridge", "obbench0", "bridge of the benchmark's pod network")
		cidr        = flag.String("cidr", "10.81.0.0/24", "the benchmark's pod network; must exist nowhere else")
		upTimeout   = flag.Duration("up-timeout", 10*time.Minute, "deadline for the local cluster to come up")
		failoverF   = flag.String("failover", "", "failover runs after the upgrades, comma-separated faults of the active server: kill, delete, netcut (each on a cluster of every --replicas count, on --to)")
		leaderMoved = flag.Bool("leader-moved", false, "before each upgrade, move leadership away from ordinal 0 (the server a StatefulSet replaces last)")
		maxDuration = flag.Duration("timeout", 3*time.Hour, "deadline for the whole benchmark")
		render      = flag.String("render", "", "only draw the pictures (SVG) of the runs of an earlier result, <out>/upgrade-<time>.json, beside it, and exit")
	)
	flag.Parse()
	if *render != "" {
		return renderPictures(*render)
	}
	if *quick {
		*replicasF = "3"
		*steady = time.Minute
	}
	var replicas []int
	for f := range strings.SplitSeq(*replicasF, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--replicas: %q is not a replica count", f)
		}
		replicas = append(replicas, n)
	}
	var modes []string
	for m := range strings.SplitSeq(*modesF, ",") {
		m = strings.TrimSpace(m)
		switch m {
		case "":
		case upgradebench.ModeRolling, upgradebench.ModeBlueGreen, upgradebench.ModeNaive:
			modes = append(modes, m)
		default:
			return fmt.Errorf("--modes: unknown mode %q", m)
		}
	}
	var faults []string
	for f := range strings.SplitSeq(*failoverF, ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "":
		case upgradebench.FaultKill, upgradebench.FaultDelete, upgradebench.FaultNetCut:
			faults = append(faults, f)
		default:
			return fmt.Errorf("--failover: unknown fault %q", f)
		}
	}
	for _, v := range []string{*from, *to} {
		if _, err := os.Stat(filepath.Join(*openBaoDir, v, "bao")); err != nil {
			return fmt.Errorf("OpenBao %s is missing from %s: run `make openbao-bins`", v, *openBaoDir)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, *maxDuration)
	defer cancelTimeout()

	started := time.Now().UTC()
	stamp := started.Format("20060102T150405Z")
	operatorUser := "system:serviceaccount:" + cluster.OperatorNamespace + ":" + cluster.OperatorServiceAccount
	policy := filepath.Join(*out, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(upgradebench.AuditPolicy(operatorUser)), 0o644); err != nil {
		return err
	}
	auditLog, err := filepath.Abs(filepath.Join(*out, "audit-"+stamp+".log"))
	if err != nil {
		return err
	}
	if policy, err = filepath.Abs(policy); err != nil {
		return err
	}

	fmt.Printf("bringing up the local cluster in %s (bridge %s, %s)\n", *dir, *bridge, *cidr)
	upCtx, upCancel := context.WithTimeout(ctx, *upTimeout)
	env, err := cluster.Up(upCtx, cluster.Options{
		Dir: *dir, KubeAssets: *kubeAssets, OpenBaoDir: *openBaoDir, ManagerBinary: *manager, RepoRoot: root,
		Bridge: *bridge, CIDR: *cidr, Progress: os.Stdout,
		ExtraAPIServerFlags: upgradebench.AuditFlags(policy, auditLog),
	})
	upCancel()
	if err != nil {
		_ = cluster.Cleanup(*dir)
		return fmt.Errorf("the local cluster did not come up: %w (prerequisites: root; `make kube-assets openbao-bins build`)", err)
	}
	defer func() {
		// The servers' own logs explain a slow hand-over; they go with the results.
		logs := filepath.Join(*out, "logs-"+stamp)
		if err := env.CollectLogs(logs); err != nil {
			fmt.Fprintln(os.Stderr, "keeping the cluster's logs:", err)
		} else {
			fmt.Println("container and component logs kept in", logs)
		}
		fmt.Println("tearing the local cluster down")
		if err := env.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "tearing the local cluster down:", err)
		}
	}()

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := openbaov1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	k8s, err := client.New(env.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	managerAbs, _ := filepath.Abs(*manager)
	b := upgradebench.New(upgradebench.Config{
		Kube: env.Clientset(), Client: k8s, Manager: managerAbs,
		AuditLog: auditLog, OperatorUser: operatorUser, OperatorNamespace: cluster.OperatorNamespace,
		From: *from, To: *to, Rate: *rate, Settle: *settle, Steady: *steady,
		BlueGreenVerification: *bgVerify, LeaderNotLast: *leaderMoved, Bridge: *bridge, Progress: os.Stdout,
	})
	defer b.Close()

	res := &upgradebench.Result{
		Started: started, Machine: upgradebench.ThisMachine(), From: *from, To: *to, Rate: *rate,
		Settle: settle.String(), Steady: steady.String(), LoadAvgStart: upgradebench.LoadAvg(), LeaderNotLast: *leaderMoved,
	}
	for _, m := range modes {
		if m == upgradebench.ModeBlueGreen {
			res.BlueGrnV = bgVerify.String()
		}
	}
	for _, n := range replicas {
		for _, m := range modes {
			if ctx.Err() != nil {
				break
			}
			if err := env.Check(); err != nil {
				return fmt.Errorf("the local cluster broke: %w", err)
			}
			res.Runs = append(res.Runs, b.Run(ctx, m, n))
		}
	}
	for _, n := range replicas {
		if len(faults) > 0 && ctx.Err() == nil {
			res.Failovers = append(res.Failovers, b.Failover(ctx, faults, n)...)
		}
	}
	fmt.Println("waiting for the steady-state windows to end")
	b.Wait()
	res.LoadAvgEnd = upgradebench.LoadAvg()

	res.Evaluate()
	res.WriteTable(os.Stdout)
	path := filepath.Join(*out, "upgrade-"+stamp+".json")
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	fmt.Printf("\nresults: %s\n", path)
	if err := writePictures(res, path); err != nil {
		return err
	}
	fmt.Println(res.SummaryLine())
	return ctx.Err()
}

// writePictures writes the SVG timeline of every run beside the JSON file path.
func writePictures(res *upgradebench.Result, path string) error {
	written, err := upgradebench.WriteSVGs(res, path)
	for _, p := range written {
		fmt.Println("picture:", p)
	}
	if err != nil {
		return fmt.Errorf("write the pictures: %w", err)
	}
	return nil
}

// renderPictures draws the pictures of the runs of an earlier result.
func renderPictures(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	res := &upgradebench.Result{}
	if err := json.Unmarshal(data, res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	drawn := 0
	for _, r := range res.Runs {
		if r.Timeline != nil {
			drawn++
		}
	}
	for _, r := range res.Failovers {
		if r.Timeline != nil {
			drawn++
		}
	}
	if drawn == 0 {
		return fmt.Errorf("%s holds no run with a timeline (results written before the benchmark recorded them cannot be drawn)", path)
	}
	return writePictures(res, path)
}
