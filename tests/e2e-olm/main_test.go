// Package e2eolm installs the operator through Operator Lifecycle Manager on
// a local cluster, as OpenShift and OperatorHub users install it: OLM's own
// operators from its manifests, a file-based catalog of this tree's bundle
// served by `opm serve`, an OperatorGroup and a Subscription. It must run as
// root; `make test-olm` builds what it needs and runs it.
package e2eolm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/olm"
)

// The suite takes the first free network slot of cluster.SuiteSlots, as tests/e2e does.

const (
	packageName = olm.PackageName
	channel     = "stable"
	catalogName = olm.CatalogName

	bundleRepository  = cluster.OperatorImageRepository + "-bundle"
	catalogRepository = cluster.OperatorImageRepository + "-catalog"
	firstVersion      = "0.1.0"
)

var (
	env    *cluster.Cluster
	cs     kubernetes.Interface
	assets olm.Assets
	root   string
	// files are the images of files the node knows; tests add theirs
	// before they reference them.
	files = &olm.FileImages{}
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	var err error
	if root, err = cluster.FindRepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	assets = olm.Assets(envOr("OLM_ASSETS", filepath.Join(root, ".cache", "olm", "v0.38.0")))
	if err := assets.Check(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		return 1
	}
	opts := cluster.Options{
		KubeAssets:    envOr("KUBE_ASSETS", filepath.Join(root, ".cache", "kube", "1.35.4")),
		OpenBaoDir:    envOr("OPENBAO_DIR", filepath.Join(root, ".cache", "openbao")),
		ManagerBinary: envOr("MANAGER_BINARY", filepath.Join(root, "bin", "manager")),
		RepoRoot:      root,
		Progress:      os.Stdout,
		SkipOperator:  true,
		ExtraImages:   olm.Images(assets, files),
	}
	for _, f := range []string{opts.ManagerBinary, filepath.Join(opts.OpenBaoDir, "2.7.2", "bao")} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: %v: run `make test-olm` (it builds the manager and fetches OpenBao)\n", err)
			return 1
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	env, opts, err = cluster.UpInFreeSlot(ctx, opts, "_artifacts")
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: the local cluster did not come up: %v\n", err)
		return 1
	}
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
	fmt.Printf("local cluster up in %s; installing OLM\n", time.Since(start).Round(time.Second))
	step := time.Now()
	if err := olm.Install(ctx, env, assets); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: installing OLM: %v\n", err)
		return 1
	}
	fmt.Printf("OLM installed in %s\n", time.Since(step).Round(time.Second))
	step = time.Now()
	cat := olm.Catalog{Package: packageName, Channel: channel, Bundles: []olm.Bundle{
		{Image: bundleRepository + ":v" + firstVersion, Dir: filepath.Join(root, "bundle")},
	}}
	if err := cat.Publish(ctx, env, assets, files, catalogName, catalogRepository+":v"+firstVersion); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: publishing the catalog: %v\n", err)
		return 1
	}
	fmt.Printf("catalog served in %s\n", time.Since(step).Round(time.Second))
	code = m.Run()
	return code
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
