// Command bench-scale measures the operator's memory and start-up time against a real
// kube-apiserver and etcd (envtest's control plane) that hold objects which are not the
// operator's: 0, then 10,000 Secrets and 5,000 ConfigMaps of 4 KiB and 1,000 Pods (Pending:
// there is no node). For each, it starts the manager binary, waits until its caches have
// synced and its workers run, and reads its resident memory after a settling time. It prints
// a table and writes the figures as JSON. `make bench-scale` runs it (foreign-objects mode).
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
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

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
	Time    time.Time `json:"time"`
	Machine string    `json:"machine"`
	Manager string    `json:"manager"`
	Runs    []Run     `json:"runs"`
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
	)
	flag.Parse()
	for _, f := range []string{filepath.Join(*kubeAssets, "kube-apiserver"), filepath.Join(*kubeAssets, "etcd"), *manager} {
		if _, err := os.Stat(f); err != nil {
			return fmt.Errorf("%s is missing: run `make kube-assets build`", f)
		}
	}
	scheme := kruntime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: *kubeAssets,
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("start kube-apiserver and etcd: %w", err)
	}
	defer func() { _ = env.Stop() }()
	work, err := os.MkdirTemp("", "bench-scale-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(work) }()
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 500, 1000
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	ctx := context.Background()

	report := Report{Time: time.Now().UTC(), Machine: machine(), Manager: *manager}
	empty, err := startManager(ctx, *manager, kubeconfig, work, *settle)
	if err != nil {
		return err
	}
	empty.Label = "no foreign objects"
	report.Runs = append(report.Runs, empty)

	fmt.Printf("Creating %d Secrets, %d ConfigMaps (%d bytes each) and %d Pods...\n", *secrets, *configMaps, *size, *pods)
	started := time.Now()
	if err := createForeign(ctx, c, *secrets, *configMaps, *pods, *size); err != nil {
		return err
	}
	fmt.Printf("  created in %s\n", time.Since(started).Round(time.Second))
	full, err := startManager(ctx, *manager, kubeconfig, work, *settle)
	if err != nil {
		return err
	}
	full.Label = "foreign objects"
	full.Secrets, full.ConfigMaps, full.Pods = *secrets, *configMaps, *pods
	report.Runs = append(report.Runs, full)

	fmt.Printf("\n%-20s %8s %11s %7s %13s %9s %13s\n", "run", "Secrets", "ConfigMaps", "Pods", "start-up (s)", "RSS (MiB)", "peak RSS (MiB)")
	for _, r := range report.Runs {
		fmt.Printf("%-20s %8d %11d %7d %13.1f %9.1f %13.1f\n", r.Label, r.Secrets, r.ConfigMaps, r.Pods, r.StartupS, r.RSSMiB, r.PeakRSSMiB)
	}
	fmt.Printf("RSS with foreign objects / without: %.2f\n", report.Runs[1].RSSMiB/report.Runs[0].RSSMiB)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	path := filepath.Join(*out, "scale-foreign-"+report.Time.Format("20060102-150405")+".json")
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
