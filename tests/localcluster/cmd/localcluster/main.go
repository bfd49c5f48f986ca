// Command localcluster runs a local Kubernetes cluster with the OpenBao
// operator installed, for development and demos (see package cluster).
//
//	localcluster up     start a supervisor in the background that runs the cluster
//	                    until `down`; prints the KUBECONFIG to use
//	                    (--olm DIR: OLM and a catalog of bundle/ instead of the operator)
//	localcluster down   stop the supervisor and remove everything the cluster
//	                    left behind, also after a crash
//	localcluster demo   run an OpenBao cluster from config/samples on the running
//	                    local cluster and use it the way an application would
//
// It must run as root (network namespaces, a bridge, mounts). The Makefile
// wraps it: make dev-up, make dev-down, make demo.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/controlplane"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/olm"
)

// The development cluster's default network and port: one /24 that exists
// only on its own bridge, and the conventional API port on the bridge's
// gateway. A second cluster needs its own --dir, --bridge, --cidr and --port.
const (
	devBridge = "obdev0"
	devCIDR   = "10.77.0.0/24"

	pidFile    = "supervisor.pid"
	stateFile  = "state.json"
	logFile    = "supervisor.log"
	clusterSub = "cluster"

	upTimeout   = 10 * time.Minute
	downTimeout = 3 * time.Minute
)

// stateInfo is what a running supervisor publishes once the cluster is up.
type stateInfo struct {
	PID        int    `json:"pid"`
	Kubeconfig string `json:"kubeconfig"`
	Server     string `json:"server"`
	KubeAssets string `json:"kubeAssets"`
	RepoRoot   string `json:"repoRoot"`
}

type flags struct {
	dir, kubeAssets, openBaoDir, manager string
	olmAssets                            string
	bridge, cidr                         string
	port                                 int
	openShiftSCC                         bool
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	f, err := parseFlags(cmd, args)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	switch cmd {
	case "up":
		err = up(f)
	case "down":
		err = down(f)
	case "serve":
		err = serve(f)
	case "demo":
		err = demo(f)
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "localcluster %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: localcluster up|down|demo [--dir DIR] [--kube-assets DIR] [--openbao-dir DIR] [--manager FILE] [--port N] [--bridge NAME] [--cidr CIDR] [--openshift-scc] [--olm DIR]")
}

func parseFlags(cmd string, args []string) (flags, error) {
	root, err := cluster.FindRepoRoot()
	if err != nil {
		return flags{}, err
	}
	var f flags
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.StringVar(&f.dir, "dir", filepath.Join(root, ".cache", "localcluster"), "state folder of the supervisor and the cluster")
	fs.StringVar(&f.kubeAssets, "kube-assets", envOr("KUBE_ASSETS", filepath.Join(root, ".cache", "kube", "1.35.4")), "folder of etcd, kube-apiserver, kube-controller-manager, kubectl (make kube-assets)")
	fs.StringVar(&f.openBaoDir, "openbao-dir", envOr("OPENBAO_DIR", filepath.Join(root, ".cache", "openbao")), "folder of <version>/bao (make openbao-bins)")
	fs.StringVar(&f.manager, "manager", filepath.Join(root, "bin", "manager"), "the operator binary (make build)")
	fs.StringVar(&f.olmAssets, "olm", "", "install OLM from this folder (make olm-bins) and a catalog of bundle/ instead of the operator")
	fs.IntVar(&f.port, "port", controlplane.DefaultPort, "API server port on the pod network's gateway address (0: any free port)")
	fs.StringVar(&f.bridge, "bridge", devBridge, "the pod network's bridge (at most 11 characters)")
	fs.StringVar(&f.cidr, "cidr", devCIDR, "the pod network, an IPv4 /24 used nowhere else")
	fs.BoolVar(&f.openShiftSCC, "openshift-scc", false, "emulate OpenShift's restricted-v2 SCC (security.openshift.io in discovery, pod IDs from the namespace's openshift.io/sa.scc.uid-range) and restart the operator so that it sees it")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	f.dir, err = filepath.Abs(f.dir)
	return f, err
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// up starts `localcluster serve` detached from the terminal and waits until
// it reports the cluster up (or fails).
func up(f flags) error {
	if pid, ok := supervisorRunning(f.dir); ok {
		st, err := readState(f.dir)
		if err == nil {
			fmt.Printf("the local cluster is already running (supervisor PID %d)\nexport KUBECONFIG=%s\n", pid, st.Kubeconfig)
			return nil
		}
		return fmt.Errorf("a supervisor (PID %d) is starting or stuck: run `make dev-down` first", pid)
	}
	// Whatever a crashed run left goes first.
	if err := cleanupAll(f.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(f.dir, 0o755); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(f.dir, logFile)
	log, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(self, "serve", "--dir", f.dir, "--kube-assets", f.kubeAssets,
		"--openbao-dir", f.openBaoDir, "--manager", f.manager, "--port", strconv.Itoa(f.port),
		"--bridge", f.bridge, "--cidr", f.cidr, "--openshift-scc="+strconv.FormatBool(f.openShiftSCC), "--olm", f.olmAssets)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	fmt.Printf("starting the local cluster (supervisor PID %d, log %s)\n", cmd.Process.Pid, logPath)
	start := time.Now()
	deadline := time.After(upTimeout)
	offset := int64(0)
	for {
		offset = echoNew(logPath, offset)
		if st, err := readState(f.dir); err == nil && st.PID == cmd.Process.Pid {
			fmt.Printf("local cluster up in %s\n\n  export KUBECONFIG=%s\n  alias kubectl=%s\n\n", time.Since(start).Round(time.Second),
				st.Kubeconfig, filepath.Join(st.KubeAssets, "kubectl"))
			return nil
		}
		select {
		case err := <-exited:
			echoNew(logPath, offset)
			return fmt.Errorf("the supervisor exited before the cluster was up (%v): see %s", err, logPath)
		case <-deadline:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			return fmt.Errorf("the cluster was not up after %s: see %s; run `make dev-down`", upTimeout, logPath)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// echoNew prints what was appended to path since offset.
func echoNew(path string, offset int64) int64 {
	fh, err := os.Open(path)
	if err != nil {
		return offset
	}
	defer fh.Close()
	if _, err := fh.Seek(offset, 0); err != nil {
		return offset
	}
	buf := make([]byte, 64<<10)
	for {
		n, err := fh.Read(buf)
		if n > 0 {
			os.Stdout.Write(buf[:n])
			offset += int64(n)
		}
		if err != nil || n == 0 {
			return offset
		}
	}
}

// serve runs the cluster until SIGTERM or SIGINT, then takes it down.
func serve(f flags) error {
	if err := os.WriteFile(filepath.Join(f.dir, pidFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(filepath.Join(f.dir, pidFile))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	root, err := cluster.FindRepoRoot()
	if err != nil {
		return err
	}
	files := &olm.FileImages{}
	opts := cluster.Options{
		Dir:           filepath.Join(f.dir, clusterSub),
		KubeAssets:    f.kubeAssets,
		OpenBaoDir:    f.openBaoDir,
		ManagerBinary: f.manager,
		RepoRoot:      root,
		Bridge:        f.bridge,
		CIDR:          f.cidr,
		APIPort:       f.port,
		Progress:      os.Stdout,
	}
	if f.olmAssets != "" {
		opts.SkipOperator = true
		opts.ExtraImages = olm.Images(olm.Assets(f.olmAssets), files)
	}
	c, err := cluster.Up(ctx, opts)
	if err != nil {
		return err
	}
	if f.openShiftSCC {
		fmt.Println("emulating OpenShift's restricted-v2 SCC; annotate a namespace with openshift.io/sa.scc.uid-range (e.g. 1000680000/10000) to apply it there")
		if err := c.EnableOpenShiftSCC(ctx); err != nil {
			return errors.Join(err, c.Down())
		}
		if err := c.RestartOperator(ctx); err != nil {
			return errors.Join(err, c.Down())
		}
	}
	if f.olmAssets != "" {
		if err := setupOLM(ctx, c, olm.Assets(f.olmAssets), files, root); err != nil {
			return errors.Join(err, c.Down())
		}
	}
	st := stateInfo{PID: os.Getpid(), Kubeconfig: c.Kubeconfig(), Server: c.ControlPlane().Server(), KubeAssets: f.kubeAssets, RepoRoot: root}
	data, _ := json.MarshalIndent(st, "", "  ")
	if err := os.WriteFile(filepath.Join(f.dir, stateFile), data, 0o644); err != nil {
		return errors.Join(err, c.Down())
	}
	defer os.Remove(filepath.Join(f.dir, stateFile))

	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fmt.Println("stopping the local cluster")
			return c.Down()
		case <-t.C:
			if err := c.Check(); err != nil {
				fmt.Printf("a component of the cluster stopped, taking the cluster down: %v\n", err)
				return errors.Join(err, c.Down())
			}
		}
	}
}

// setupOLM installs OLM and serves a catalog of the repository's bundle/
// as the CatalogSource openbao-operator-catalog in the olm namespace.
func setupOLM(ctx context.Context, c *cluster.Cluster, a olm.Assets, files *olm.FileImages, root string) error {
	start := time.Now()
	fmt.Println("installing OLM (CRDs, olm-operator, catalog-operator, packageserver)")
	if err := olm.Install(ctx, c, a); err != nil {
		return err
	}
	version, err := olm.BundleVersion(filepath.Join(root, "bundle"))
	if err != nil {
		return err
	}
	fmt.Printf("publishing the catalog of bundle/ (v%s)\n", version)
	cat := olm.Catalog{Package: olm.PackageName, Channel: "stable", Bundles: []olm.Bundle{
		{Image: cluster.OperatorImageRepository + "-bundle:v" + version, Dir: filepath.Join(root, "bundle")},
	}}
	if err := cat.Publish(ctx, c, a, files, olm.CatalogName, cluster.OperatorImageRepository+"-catalog:v"+version); err != nil {
		return err
	}
	fmt.Printf("OLM and the catalog %s/%s ready in %s\n", olm.Namespace, olm.CatalogName, time.Since(start).Round(time.Second))
	return nil
}

// down stops the supervisor and cleans up after it, also after a crash.
func down(f flags) error {
	if pid, ok := supervisorRunning(f.dir); ok {
		fmt.Printf("stopping the local cluster (supervisor PID %d)\n", pid)
		_ = syscall.Kill(pid, syscall.SIGTERM)
		deadline := time.Now().Add(downTimeout)
		for processAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(200 * time.Millisecond)
		}
		if processAlive(pid) {
			fmt.Printf("the supervisor did not stop within %s; killing it\n", downTimeout)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			for processAlive(pid) {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if err := cleanupAll(f.dir); err != nil {
		return err
	}
	fmt.Println("local cluster removed")
	return nil
}

// cleanupAll removes the cluster's processes, network and folders and the
// supervisor's files; the supervisor's log is kept for a look afterwards.
func cleanupAll(dir string) error {
	if err := cluster.Cleanup(filepath.Join(dir, clusterSub)); err != nil {
		return err
	}
	for _, name := range []string{pidFile, stateFile} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func readState(dir string) (stateInfo, error) {
	var st stateInfo
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(data, &st)
	return st, err
}

// supervisorRunning returns the recorded supervisor's PID while that process
// still runs as this command's supervisor for dir.
func supervisorRunning(dir string) (int, bool) {
	data, err := os.ReadFile(filepath.Join(dir, pidFile))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	args := strings.Split(string(cmdline), "\x00")
	if len(args) < 2 || args[1] != "serve" || !strings.Contains(string(cmdline), "\x00"+dir+"\x00") {
		return 0, false
	}
	return pid, true
}

func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited; field 3 is the state.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
