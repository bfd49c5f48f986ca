// Package e2e tests the OpenBao operator end to end on a local cluster: a
// real control plane, pods running the official bao binaries, and the
// operator installed from config/default with kubectl (see
// tests/localcluster/cluster). It must run as root; `make test-localcluster`
// builds what it needs and runs it.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// Versions the suite runs; they must be in OPENBAO_VERSIONS of the Makefile.
const openBaoVersion = "2.6.2"

var (
	env *cluster.Cluster
	cs  kubernetes.Interface
	k8s client.Client
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := cluster.FindRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	opts := cluster.Options{
		KubeAssets:    envOr("KUBE_ASSETS", filepath.Join(root, ".cache", "kube", "1.35.4")),
		OpenBaoDir:    envOr("OPENBAO_DIR", filepath.Join(root, ".cache", "openbao")),
		ManagerBinary: envOr("MANAGER_BINARY", filepath.Join(root, "bin", "manager")),
		// The backup tests' object store; `make seaweedfs` builds it.
		SeaweedFSBinary: envOr("SEAWEEDFS_BIN", newestMatch(filepath.Join(root, ".cache", "seaweedfs", "*", "weed"))),
		RepoRoot:        root,
		Progress:        os.Stdout,
	}
	if _, err := os.Stat(filepath.Join(opts.OpenBaoDir, openBaoVersion, "bao")); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: OpenBao %s is missing from %s: run `make openbao-bins` (or `make test-localcluster`)\n", openBaoVersion, opts.OpenBaoDir)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	env, opts, err = cluster.UpInFreeSlot(ctx, opts, "_artifacts")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the local cluster did not come up: %v\n(prerequisites: run as root; `make kube-assets openbao-bins build`, or `make test-localcluster`)\n", err)
		return 1
	}
	fmt.Printf("local cluster with the operator up in %s\n", time.Since(start).Round(time.Second))
	code := 1
	defer func() {
		if code != 0 {
			cluster.KeepLogs(opts.Dir, "_artifacts")
		}
		if err := env.Down(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: tearing the local cluster down: %v\n", err)
			code = 1
		}
	}()
	cs = env.Clientset()
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if err := openbaov1alpha1.AddToScheme(scheme); err != nil {
		panic(err)
	}
	if k8s, err = client.New(env.RESTConfig(), client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code = m.Run()
	if err := checkOperatorLog(env.ContainerLogDir()); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		code = 1
	}
	return code
}

// operatorLogFaults are messages the operator's log must not hold after the suite: a status
// write that lost a race (the pass' status and events are thrown away), and a reconcile
// that returned a requeue together with an error (controller-runtime drops the requeue).
var operatorLogFaults = []string{
	"the object has been modified",
	"Reconciler returned both",
}

// checkOperatorLog counts operatorLogFaults in the logs of the operator's containers.
func checkOperatorLog(containerLogDir string) error {
	logs, err := filepath.Glob(filepath.Join(containerLogDir, cluster.OperatorNamespace+"_*", "*", "*.log"))
	if err != nil {
		return err
	}
	if len(logs) == 0 {
		return fmt.Errorf("no log of the operator under %s", containerLogDir)
	}
	counts := map[string]int{}
	for _, path := range logs {
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(string(raw), "\n") {
			for _, f := range operatorLogFaults {
				if strings.Contains(line, f) {
					counts[f]++
				}
			}
		}
	}
	var bad []string
	for _, f := range operatorLogFaults {
		fmt.Printf("operator log: %d x %q\n", counts[f], f)
		if counts[f] > 0 {
			bad = append(bad, fmt.Sprintf("%d x %q", counts[f], f))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("the operator's log (%s) holds %s", strings.Join(logs, ", "), strings.Join(bad, ", "))
	}
	return nil
}

// newestMatch is the last file matching pattern, or the pattern itself (named in the error
// when it is missing).
func newestMatch(pattern string) string {
	m, _ := filepath.Glob(pattern)
	if len(m) == 0 {
		return pattern
	}
	return m[len(m)-1]
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
