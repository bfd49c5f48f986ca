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
	o := parseFlags(root)
	if o.render != "" {
		return renderPictures(o.render)
	}
	br, err := o.plan()
	if err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, o.maxDuration)
	defer cancelTimeout()

	if err := br.prepareAudit(); err != nil {
		return err
	}
	if err := br.up(ctx, root); err != nil {
		return err
	}
	defer br.keepLogsAndTearDown()
	if err := br.newBench(); err != nil {
		return err
	}
	defer br.b.Close()

	res, err := br.measure(ctx)
	if err != nil {
		return err
	}
	if err := br.report(res); err != nil {
		return err
	}
	return ctx.Err()
}

// options is the command line.
type options struct {
	quick       bool
	replicas    string
	modes       string
	from, to    string
	rate        float64
	steady      time.Duration
	settle      time.Duration
	bgVerify    time.Duration
	dir, out    string
	kubeAssets  string
	openBaoDir  string
	manager     string
	bridge      string
	cidr        string
	upTimeout   time.Duration
	failover    string
	leaderMoved bool
	maxDuration time.Duration
	render      string
}

// parseFlags reads the command line; the defaults are under the repository root.
func parseFlags(root string) *options {
	o := &options{}
	flag.BoolVar(&o.quick, "quick", false, "3 replicas only and a 1-minute steady state: a faster check")
	flag.StringVar(&o.replicas, "replicas", "3,5", "replica counts to run, comma-separated")
	flag.StringVar(&o.modes, "modes", "Rolling,BlueGreen,naive", "modes to run, comma-separated: Rolling, BlueGreen, naive")
	flag.StringVar(&o.from, "from", "2.6.2", "OpenBao release the clusters start on")
	flag.StringVar(&o.to, "to", "2.7.2", "OpenBao release they are upgraded to")
	flag.Float64Var(&o.rate, "rate", 62.5, "load requests per second (four writes for every read: 62.5 is 50 writes/s)")
	flag.DurationVar(&o.steady, "steady", 5*time.Minute, "steady-state window after each operator upgrade")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "time between the operator reporting the upgrade done and the steady-state window")
	flag.DurationVar(&o.bgVerify, "bluegreen-verification", 30*time.Second, "spec.upgrade.blueGreen.verificationPeriod of the BlueGreen runs")
	flag.StringVar(&o.dir, "dir", filepath.Join(root, ".cache", "bench-cluster"), "state folder of the benchmark's local cluster (emptied first)")
	flag.StringVar(&o.out, "out", filepath.Join(root, ".cache", "bench"), "folder for the JSON results and the audit log")
	flag.StringVar(&o.kubeAssets, "kube-assets", filepath.Join(root, ".cache", "kube", "1.35.4"), "etcd, kube-apiserver, kube-controller-manager, kubectl")
	flag.StringVar(&o.openBaoDir, "openbao-dir", filepath.Join(root, ".cache", "openbao"), "OpenBao binaries, <version>/bao")
	flag.StringVar(&o.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	flag.StringVar(&o.bridge, "bridge", "obbench0", "bridge of the benchmark's pod network")
	flag.StringVar(&o.cidr, "cidr", "10.81.0.0/24", "the benchmark's pod network; must exist nowhere else")
	flag.DurationVar(&o.upTimeout, "up-timeout", 10*time.Minute, "deadline for the local cluster to come up")
	flag.StringVar(&o.failover, "failover", "", "failover runs after the upgrades, comma-separated faults of the active server: kill, delete, netcut (each on a cluster of every --replicas count, on --to)")
	flag.BoolVar(&o.leaderMoved, "leader-moved", false, "before each upgrade, move leadership away from ordinal 0 (the server a StatefulSet replaces last)")
	flag.DurationVar(&o.maxDuration, "timeout", 3*time.Hour, "deadline for the whole benchmark")
	flag.StringVar(&o.render, "render", "", "only draw the pictures (SVG) of the runs of an earlier result, <out>/upgrade-<time>.json, beside it, and exit")
	flag.Parse()
	return o
}

// benchRun is one run of the benchmark: what it runs, and what it brought up.
type benchRun struct {
	*options
	replicaCounts []int
	modeList      []string
	faults        []string

	started      time.Time
	stamp        string // the run's start, in the names of its files
	operatorUser string
	policy       string // the kube-apiserver's audit policy
	auditLog     string

	env *cluster.Cluster
	b   *upgradebench.Bench
}

// plan checks the command line and the OpenBao binaries, creates the results folder,
// and returns the run it describes.
func (o *options) plan() (*benchRun, error) {
	if o.quick {
		o.replicas = "3"
		o.steady = time.Minute
	}
	br := &benchRun{options: o}
	for f := range strings.SplitSeq(o.replicas, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--replicas: %q is not a replica count", f)
		}
		br.replicaCounts = append(br.replicaCounts, n)
	}
	for m := range strings.SplitSeq(o.modes, ",") {
		m = strings.TrimSpace(m)
		switch m {
		case "":
		case upgradebench.ModeRolling, upgradebench.ModeBlueGreen, upgradebench.ModeNaive:
			br.modeList = append(br.modeList, m)
		default:
			return nil, fmt.Errorf("--modes: unknown mode %q", m)
		}
	}
	for f := range strings.SplitSeq(o.failover, ",") {
		f = strings.TrimSpace(f)
		switch f {
		case "":
		case upgradebench.FaultKill, upgradebench.FaultDelete, upgradebench.FaultNetCut:
			br.faults = append(br.faults, f)
		default:
			return nil, fmt.Errorf("--failover: unknown fault %q", f)
		}
	}
	for _, v := range []string{o.from, o.to} {
		if _, err := os.Stat(filepath.Join(o.openBaoDir, v, "bao")); err != nil {
			return nil, fmt.Errorf("OpenBao %s is missing from %s: run `make openbao-bins`", v, o.openBaoDir)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return nil, err
	}
	return br, nil
}

// prepareAudit stamps the run and writes the audit policy that records the operator's
// requests to the kube-apiserver.
func (br *benchRun) prepareAudit() error {
	br.started = time.Now().UTC()
	br.stamp = br.started.Format("20060102T150405Z")
	br.operatorUser = "system:serviceaccount:" + cluster.OperatorNamespace + ":" + cluster.OperatorServiceAccount
	policy := filepath.Join(br.out, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(upgradebench.AuditPolicy(br.operatorUser)), 0o644); err != nil {
		return err
	}
	auditLog, err := filepath.Abs(filepath.Join(br.out, "audit-"+br.stamp+".log"))
	if err != nil {
		return err
	}
	br.auditLog = auditLog
	if br.policy, err = filepath.Abs(policy); err != nil {
		return err
	}
	return nil
}

// up brings up the local cluster with the operator, its kube-apiserver writing the audit
// log; a cluster that did not come up is cleaned up.
func (br *benchRun) up(ctx context.Context, root string) error {
	fmt.Printf("bringing up the local cluster in %s (bridge %s, %s)\n", br.dir, br.bridge, br.cidr)
	upCtx, upCancel := context.WithTimeout(ctx, br.upTimeout)
	env, err := cluster.Up(upCtx, cluster.Options{
		Dir: br.dir, KubeAssets: br.kubeAssets, OpenBaoDir: br.openBaoDir, ManagerBinary: br.manager, RepoRoot: root,
		Bridge: br.bridge, CIDR: br.cidr, Progress: os.Stdout,
		ExtraAPIServerFlags: upgradebench.AuditFlags(br.policy, br.auditLog),
	})
	upCancel()
	if err != nil {
		_ = cluster.Cleanup(br.dir)
		return fmt.Errorf("the local cluster did not come up: %w (prerequisites: root; `make kube-assets openbao-bins build`)", err)
	}
	br.env = env
	return nil
}

// keepLogsAndTearDown keeps the logs of the local cluster with the results, then tears
// it down.
func (br *benchRun) keepLogsAndTearDown() {
	// The servers' own logs explain a slow hand-over; they go with the results.
	logs := filepath.Join(br.out, "logs-"+br.stamp)
	if err := br.env.CollectLogs(logs); err != nil {
		fmt.Fprintln(os.Stderr, "keeping the cluster's logs:", err)
	} else {
		fmt.Println("container and component logs kept in", logs)
	}
	fmt.Println("tearing the local cluster down")
	if err := br.env.Down(); err != nil {
		fmt.Fprintln(os.Stderr, "tearing the local cluster down:", err)
	}
}

// newBench connects to the local cluster and sets the benchmark up.
func (br *benchRun) newBench() error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := openbaov1alpha1.AddToScheme(scheme); err != nil {
		return err
	}
	k8s, err := client.New(br.env.RESTConfig(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	managerAbs, _ := filepath.Abs(br.manager)
	br.b = upgradebench.New(upgradebench.Config{
		Kube: br.env.Clientset(), Client: k8s, Manager: managerAbs,
		AuditLog: br.auditLog, OperatorUser: br.operatorUser, OperatorNamespace: cluster.OperatorNamespace,
		From: br.from, To: br.to, Rate: br.rate, Settle: br.settle, Steady: br.steady,
		BlueGreenVerification: br.bgVerify, LeaderNotLast: br.leaderMoved, Bridge: br.bridge, Progress: os.Stdout,
	})
	return nil
}

// measure runs every mode for every replica count, then the failover runs, and waits for
// the steady-state windows to end. A run interrupted by ctx ends the sequence early.
func (br *benchRun) measure(ctx context.Context) (*upgradebench.Result, error) {
	res := &upgradebench.Result{
		Started: br.started, Machine: upgradebench.ThisMachine(), From: br.from, To: br.to, Rate: br.rate,
		Settle: br.settle.String(), Steady: br.steady.String(), LoadAvgStart: upgradebench.LoadAvg(), LeaderNotLast: br.leaderMoved,
	}
	for _, m := range br.modeList {
		if m == upgradebench.ModeBlueGreen {
			res.BlueGrnV = br.bgVerify.String()
		}
	}
	for _, n := range br.replicaCounts {
		for _, m := range br.modeList {
			if ctx.Err() != nil {
				break
			}
			if err := br.env.Check(); err != nil {
				return nil, fmt.Errorf("the local cluster broke: %w", err)
			}
			res.Runs = append(res.Runs, br.b.Run(ctx, m, n))
		}
	}
	for _, n := range br.replicaCounts {
		if len(br.faults) > 0 && ctx.Err() == nil {
			res.Failovers = append(res.Failovers, br.b.Failover(ctx, br.faults, n)...)
		}
	}
	fmt.Println("waiting for the steady-state windows to end")
	br.b.Wait()
	res.LoadAvgEnd = upgradebench.LoadAvg()
	return res, nil
}

// report evaluates the figures, prints the table, writes the JSON result and the
// pictures beside it, and prints the summary line.
func (br *benchRun) report(res *upgradebench.Result) error {
	res.Evaluate()
	res.WriteTable(os.Stdout)
	path := filepath.Join(br.out, "upgrade-"+br.stamp+".json")
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
	return nil
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
