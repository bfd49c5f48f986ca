// Command bench-scale measures the operator at cluster scale. Modes (--modes):
//
//   - foreign: its memory and start-up time against a real kube-apiserver and etcd
//     (envtest's control plane) that hold objects which are not the operator's: 0, then
//     10,000 Secrets and 5,000 ConfigMaps of 4 KiB and 1,000 Pods (Pending: there is no
//     node). For each, it starts the manager binary, waits until its caches have synced and
//     its workers run, and reads its resident memory after a settling time.
//   - many: on the local cluster (tests/localcluster, root) with the operator installed and
//     real OpenBao servers, one single-server cluster created and upgraded alone, then
//     --clusters of them created at once (time until all Available) and upgraded at once
//     (time until all done), with the longest wait in the operator's work queue.
//   - steady: the operator with those clusters idle for --steady: CPU seconds, RSS, API
//     requests (kube-apiserver's audit log), status writes, OpenBao logins (its metrics).
//   - dead: --clusters new clusters, one of them with its server stopped (SIGSTOP), all
//     upgraded at once: the healthy ones' times against those of many.
//
// It prints a table and writes the figures as JSON. `make bench-scale` runs it.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/bench/upgradebench"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// Run is one start of the manager.
type Run struct {
	Label      string  `json:"label"`
	Secrets    int     `json:"foreignSecrets"`
	ConfigMaps int     `json:"foreignConfigMaps"`
	Pods       int     `json:"foreignPods"`
	StartupS   float64 `json:"startupSeconds"`
	RSSMiB     float64 `json:"rssMiB"`
	PeakRSSMiB float64 `json:"peakRssMiB"`
}

// Report is the JSON file.
type Report struct {
	Time     time.Time    `json:"time"`
	Machine  string       `json:"machine"`
	Manager  string       `json:"manager"`
	Runs     []Run        `json:"runs,omitempty"`
	Clusters *ClusterRuns `json:"clusters,omitempty"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scale:", err)
		os.Exit(1)
	}
}

func run() error {
	root, err := cluster.FindRepoRoot()
	if err != nil {
		return err
	}
	var (
		kubeAssets = flag.String("kube-assets", filepath.Join(root, ".cache", "kube", "1.35.4"), "etcd and kube-apiserver")
		manager    = flag.String("manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
		out        = flag.String("out", filepath.Join(root, ".cache", "bench"), "folder for the JSON results")
		secrets    = flag.Int("secrets", 10000, "foreign Secrets")
		configMaps = flag.Int("configmaps", 5000, "foreign ConfigMaps")
		pods       = flag.Int("pods", 1000, "foreign Pods")
		size       = flag.Int("size", 4096, "bytes of data in each foreign Secret and ConfigMap")
		settle     = flag.Duration("settle", 10*time.Second, "time between the workers starting and reading the manager's memory")
		modesF     = flag.String("modes", "foreign,many,steady,dead", "modes to run, comma-separated: foreign, many, steady, dead")
		clusters   = flag.Int("clusters", 20, "OpenBao clusters of the many, steady and dead modes")
		replicas   = flag.Int("replicas", 1, "servers of each of those clusters")
		steady     = flag.Duration("steady", 5*time.Minute, "length of the steady-state window")
		from       = flag.String("from", "2.6.2", "OpenBao release the clusters start on")
		to         = flag.String("to", "2.7.2", "OpenBao release they are upgraded to")
		openBaoDir = flag.String("openbao-dir", filepath.Join(root, ".cache", "openbao"), "OpenBao binaries, <version>/bao")
		dir        = flag.String("dir", filepath.Join(root, ".cache", "bench-scale-cluster"), "state folder of the local cluster (emptied first)")
		bridge     = flag.String("bridge", "obscale0", "bridge of the local cluster's pod network")
		cidr       = flag.String("cidr", "10.82.0.0/24", "the local cluster's pod network; must exist nowhere else")
	)
	flag.Parse()
	modes, err := parseModes(*modesF)
	if err != nil {
		return err
	}
	for _, f := range []string{filepath.Join(*kubeAssets, "kube-apiserver"), filepath.Join(*kubeAssets, "etcd"), *manager} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing: run `make kube-assets build`", f)
		}
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	report := Report{Time: time.Now().UTC(), Machine: machine(), Manager: *manager}
	var clusterErr error
	if modes["foreign"] {
		runs, err := foreign(root, *kubeAssets, *manager, *secrets, *configMaps, *pods, *size, *settle)
		if err != nil {
			return err
		}
		report.Runs = runs
	}
	if modes["many"] || modes["steady"] || modes["dead"] {
		for _, v := range []string{*from, *to} {
			if _, err := os.Stat(filepath.Join(*openBaoDir, v, "bao")); err != nil {
				return fmt.Errorf("OpenBao %s is missing from %s: run `make openbao-bins`", v, *openBaoDir)
			}
		}
		res, err := clusterModes(root, *kubeAssets, *openBaoDir, *manager, *dir, *bridge, *cidr, *out, *from, *to, *clusters, int32(*replicas), *steady, modes, report.Time)
		if res != nil {
			report.Clusters = res
			writeClusterTable(res)
		}
		clusterErr = err
	}
	if len(report.Runs) > 0 {
		writeForeignTable(report.Runs)
	}
	if err := writeReport(*out, &report); err != nil {
		return err
	}
	return clusterErr
}

// parseModes reads --modes.
func parseModes(list string) (map[string]bool, error) {
	modes := map[string]bool{}
	for m := range strings.SplitSeq(list, ",") {
		switch m = strings.TrimSpace(m); m {
		case "":
		case "foreign", "many", "steady", "dead":
			modes[m] = true
		default:
			return nil, fmt.Errorf("--modes: unknown mode %q (foreign, many, steady, dead)", m)
		}
	}
	return modes, nil
}

// writeForeignTable prints the manager's start-up time and memory without, then with
// foreign objects.
func writeForeignTable(runs []Run) {
	fmt.Printf("\n%-20s %8s %11s %7s %13s %9s %13s\n", "run", "Secrets", "ConfigMaps", "Pods", "start-up (s)", "RSS (MiB)", "peak RSS (MiB)")
	for _, r := range runs {
		fmt.Printf("%-20s %8d %11d %7d %13.1f %9.1f %13.1f\n", r.Label, r.Secrets, r.ConfigMaps, r.Pods, r.StartupS, r.RSSMiB, r.PeakRSSMiB)
	}
	fmt.Printf("RSS with foreign objects / without: %.2f\n", runs[1].RSSMiB/runs[0].RSSMiB)
}

// writeReport writes the JSON file, <out>/scale-<time>.json.
func writeReport(out string, report *Report) error {
	path := filepath.Join(out, "scale-"+report.Time.Format("20060102-150405")+".json")
	raw, err := json.MarshalIndent(report, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		return err
	}
	fmt.Println("JSON:", path)
	return nil
}

// foreign runs the manager on envtest's control plane without, then with foreign objects.
func foreign(root, kubeAssets, manager string, secrets, configMaps, pods, size int, settle time.Duration) ([]Run, error) {
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: kubeAssets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return nil, fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()
	work, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	empty, err := startManager(ctx, manager, kubeconfig, work, settle)
	if err != nil {
		return nil, err
	}
	empty.Label = "no foreign objects"
	fmt.Printf("Creating %d Secrets, %d ConfigMaps (%d bytes each) and %d Pods...\n", secrets, configMaps, size, pods)
	started := time.Now()
	if err := createForeign(ctx, c, secrets, configMaps, pods, size); err != nil {
		return nil, err
	}
	fmt.Printf("  created in %s\n", time.Since(started).Round(time.Second))
	full, err := startManager(ctx, manager, kubeconfig, work, settle)
	if err != nil {
		return nil, err
	}
	full.Label = "foreign objects"
	full.Secrets, full.ConfigMaps, full.Pods = secrets, configMaps, pods
	return []Run{empty, full}, nil
}

// clusterModes brings up the local cluster with the operator and an audit log of its
// requests, runs the cluster modes and tears the cluster down.
func clusterModes(root, kubeAssets, openBaoDir, manager, dir, bridge, cidr, out, from, to string, n int, replicas int32, steady time.Duration, modes map[string]bool, started time.Time) (*ClusterRuns, error) {
	ctrllog.SetLogger(logr.Discard())
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	stamp := started.Format("20060102T150405Z")
	user := "system:serviceaccount:" + cluster.OperatorNamespace + ":" + cluster.OperatorServiceAccount
	policy, err := filepath.Abs(filepath.Join(out, "scale-audit-policy.yaml"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(policy, []byte(upgradebench.AuditPolicy(user)), 0o644); err != nil {
		return nil, err
	}
	auditLog, err := filepath.Abs(filepath.Join(out, "scale-audit-"+stamp+".log"))
	if err != nil {
		return nil, err
	}
	fmt.Printf("bringing up the local cluster in %s (bridge %s, %s)\n", dir, bridge, cidr)
	upCtx, upCancel := context.WithTimeout(ctx, 10*time.Minute)
	env, err := cluster.Up(upCtx, cluster.Options{
		Dir: dir, KubeAssets: kubeAssets, OpenBaoDir: openBaoDir, ManagerBinary: manager, RepoRoot: root,
		Bridge: bridge, CIDR: cidr, Progress: os.Stdout, ExtraAPIServerFlags: upgradebench.AuditFlags(policy, auditLog),
	})
	upCancel()
	if err != nil {
		_ = cluster.Cleanup(dir)
		return nil, fmt.Errorf("the local cluster did not come up: %w (prerequisites: root; `make kube-assets openbao-bins build`)", err)
	}
	defer func() {
		logs := filepath.Join(out, "scale-logs-"+stamp)
		if err := env.CollectLogs(logs); err == nil {
			fmt.Println("container and component logs kept in", logs)
		}
		fmt.Println("tearing the local cluster down")
		if err := env.Down(); err != nil {
			fmt.Fprintln(os.Stderr, "tearing the local cluster down:", err)
		}
	}()
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := openbaov1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	cfg := env.RESTConfig()
	cfg.QPS, cfg.Burst = 100, 200
	k8s, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, err
	}
	managerAbs, err := filepath.Abs(manager)
	if err != nil {
		return nil, err
	}
	b := &clusterBench{env: env, kube: env.Clientset(), k8s: k8s, manager: managerAbs, bridge: bridge,
		auditLog: auditLog, user: user, from: from, to: to, n: n, replicas: replicas}
	res := b.run(ctx, modes, steady)
	return res, errors.Join(ctx.Err(), env.Check())
}

// createForeign creates objects that are not the operator's, in a namespace of their own,
// with a few writers at once.
func createForeign(ctx context.Context, c client.Client, secrets, configMaps, pods, size int) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "foreign"}}
	if err := c.Create(ctx, ns); err != nil {
		return err
	}
	payload := strings.Repeat("x", size)
	jobs := make(chan client.Object)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for obj := range jobs {
				if err := c.Create(ctx, obj); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("create %T %s: %w", obj, obj.GetName(), err)
					}
					mu.Unlock()
				}
			}
		})
	}
	meta := func(kind string, i int) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns.Name, Name: fmt.Sprintf("%s-%05d", kind, i), Labels: map[string]string{"app": "someone-else"}}
	}
	for i := range secrets {
		jobs <- &corev1.Secret{ObjectMeta: meta("secret", i), Data: map[string][]byte{"data": []byte(payload)}}
	}
	for i := range configMaps {
		jobs <- &corev1.ConfigMap{ObjectMeta: meta("configmap", i), Data: map[string]string{"data": payload}}
	}
	for i := range pods {
		jobs <- &corev1.Pod{ObjectMeta: meta("pod", i), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1"}}}}
	}
	close(jobs)
	wg.Wait()
	return firstErr
}

// startManager runs the manager until its workers start, lets it settle, reads its memory
// and stops it.
func startManager(ctx context.Context, manager, kubeconfig, work string, settle time.Duration) (Run, error) {
	cmd := exec.CommandContext(ctx, manager, "--metrics-bind-address=0", "--health-probe-bind-address=0",
		"--openbao-token-file="+filepath.Join(work, "no-token"))
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "POD_NAMESPACE=openbao-operator-system")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return Run{}, err
	}
	cmd.Stdout = cmd.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return Run{}, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			// controller-runtime logs "Starting workers" once the controller's caches synced.
			if strings.Contains(sc.Text(), "Starting workers") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(5 * time.Minute):
		return Run{}, errors.New("the manager's workers did not start within 5 minutes")
	}
	r := Run{StartupS: time.Since(start).Seconds()}
	time.Sleep(settle)
	rss, hwm, err := upgradebench.ProcessMemory(cmd.Process.Pid)
	if err != nil {
		return Run{}, err
	}
	r.RSSMiB, r.PeakRSSMiB = float64(rss)/(1<<20), float64(hwm)/(1<<20)
	return r, nil
}

func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), model, runtime.GOOS+"/"+runtime.GOARCH)
}
