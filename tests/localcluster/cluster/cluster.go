// Package cluster composes a local Kubernetes cluster that runs the OpenBao
// operator as a user would: a real control plane (etcd, kube-apiserver,
// kube-controller-manager), one node whose pods run as namespaced processes
// (nodeagent), and the operator installed from config/default with kubectl.
//
// Images resolve to binaries on this machine: OpenBao images to the `bao`
// binaries of `make openbao-bins`, the operator's image to the manager binary
// of `make build`. Everything else a pod does (its service account token, its
// volumes, its network, DNS, persistent volumes) goes through the real API.
//
// Layout of Options.Dir:
//
//	kubeconfig        admin kubeconfig (a copy of controlplane/admin.kubeconfig)
//	cluster.json      what Cleanup needs after a crash
//	controlplane/     etcd data, certificates, component logs
//	node/             the node agent's state: pod folders, volumes, container logs
//	logs/             the node agent's own log and the install output
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/controlplane"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/nodeagent"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/openshift"
)

// Names of the operator's objects as config/default installs them.
const (
	OperatorNamespace      = "openbao-operator-system"
	OperatorDeployment     = "openbao-operator-controller-manager"
	OperatorServiceAccount = "openbao-operator-controller-manager"

	// OperatorImageRepository is the image config/manager deploys; every tag
	// of it (and kubebuilder's placeholder controller:latest) runs the
	// manager binary built from this tree.
	OperatorImageRepository = "quay.io/openbao-operator/openbao-operator"

	// SeaweedFSImage is the S3-compatible object store the backup tests run as a pod; the
	// node runs Options.SeaweedFSBinary for it (any tag).
	SeaweedFSImage = "docker.io/chrislusf/seaweedfs:latest"

	// operatorUser is the numeric USER of the operator image (distroless
	// nonroot), needed because the Deployment only says runAsNonRoot.
	operatorUser int64 = 65532

	defaultNodeName = "node-1"
	// defaultWait bounds each wait of Up (the operator's rollout); it is a
	// deadline, not an expectation.
	defaultWait = 5 * time.Minute
)

// Options configure a local cluster.
type Options struct {
	// Dir holds all state of the cluster; Up empties it first.
	Dir string
	// KubeAssets holds etcd, kube-apiserver, kube-controller-manager and
	// kubectl (`make kube-assets`).
	KubeAssets string
	// OpenBaoDir holds <version>/bao (`make openbao-bins`).
	OpenBaoDir string
	// ManagerBinary is the operator built from this tree (`make build`).
	ManagerBinary string
	// SeaweedFSBinary, when set, is the `weed` the node runs for SeaweedFSImage (`make
	// seaweedfs`); without it that image fails to pull.
	SeaweedFSBinary string
	// RepoRoot is the repository whose config/default is installed; by
	// default the nearest parent of the working directory holding go.mod.
	RepoRoot string
	// Bridge and CIDR are the pod network: a bridge of at most 11 characters
	// and an IPv4 /24 that exists nowhere else. The API server listens on
	// the CIDR's first address so that pods reach it.
	Bridge string
	CIDR   string
	// APIPort is the API server's port; 0 picks a free one.
	APIPort int
	// NodeName defaults to "node-1".
	NodeName string
	// SkipOperator leaves the operator out (the cluster alone).
	SkipOperator bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// ExtraAPIServerFlags are appended to kube-apiserver's flags, e.g. an
	// audit policy and log for counting a client's requests.
	ExtraAPIServerFlags []string
	// ExtraImages are more images the node knows (OLM's and a catalog's,
	// the scorecard's), tried before the operator's and OpenBao's.
	ExtraImages nodeagent.ImageResolver
}

// Cluster is a running local cluster. Call Down when done.
type Cluster struct {
	opts Options
	cp   *controlplane.ControlPlane
	cs   kubernetes.Interface

	agentCancel context.CancelFunc
	agentDone   chan error
	agentLog    *os.File
	lock        *os.File
	bridge      *bridgeClaim

	downOnce sync.Once
	downErr  error
}

// state is written to Dir/cluster.json for Cleanup.
type state struct {
	Bridge string `json:"bridge"`
	CIDR   string `json:"cidr"`
	// BridgeIndex is the interface index of the bridge this cluster
	// created: a bridge of the same name with another index belongs to
	// another cluster, and Cleanup leaves it alone.
	BridgeIndex int `json:"bridgeIndex,omitempty"`
}

// Up starts the control plane and the node, installs the operator with
// `kubectl apply -k config/default` and waits until its Deployment is
// Available. On failure everything started is stopped again; the folders are
// kept so that the logs can be read (Cleanup removes them).
func Up(ctx context.Context, o Options) (*Cluster, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	// Cleanup would kill the processes of a cluster that still runs from
	// Dir: one cluster per Dir at a time, held until Down (or the process
	// ends).
	lock, err := lockDir(o.Dir)
	if err != nil {
		return nil, err
	}
	// One bridge serves one cluster at a time, machine-wide; what a killed
	// run left on it is removed.
	claim, err := claimBridge(o.Bridge, o.Dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	if err := Cleanup(o.Dir); err != nil {
		claim.release()
		lock.Close()
		return nil, fmt.Errorf("clean up an earlier cluster in %s: %w", o.Dir, err)
	}
	for _, sub := range []string{"logs", "node"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, sub), 0o755); err != nil {
			claim.release()
			lock.Close()
			return nil, err
		}
	}
	if err := writeState(o.Dir, state{Bridge: o.Bridge, CIDR: o.CIDR}); err != nil {
		claim.release()
		lock.Close()
		return nil, err
	}
	c := &Cluster{opts: o, lock: lock, bridge: claim}
	if err := c.up(ctx); err != nil {
		err = errors.Join(err, c.stop())
		claim.release()
		lock.Close()
		return nil, err
	}
	return c, nil
}

// lockDir takes an exclusive lock on dir's lock file, next to dir.
func lockDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: another local cluster runs from %s (%s is locked): stop it first", ErrInUse, dir, f.Name())
	}
	return f, nil
}

func (o Options) withDefaults() (Options, error) {
	if os.Geteuid() != 0 {
		return o, errors.New("the local cluster must run as root (network namespaces, a bridge, mounts)")
	}
	if o.Dir == "" {
		return o, errors.New("cluster: Options.Dir is required")
	}
	var err error
	if o.Dir, err = filepath.Abs(o.Dir); err != nil {
		return o, err
	}
	if o.NodeName == "" {
		o.NodeName = defaultNodeName
	}
	if o.Bridge == "" || o.CIDR == "" {
		return o, errors.New("cluster: Options.Bridge and Options.CIDR are required")
	}
	if o.RepoRoot == "" {
		if o.RepoRoot, err = FindRepoRoot(); err != nil {
			return o, err
		}
	}
	var missing []string
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kubectl"} {
		if !isExecutable(filepath.Join(o.KubeAssets, b)) {
			missing = append(missing, fmt.Sprintf("%s in %q (run `make kube-assets`)", b, o.KubeAssets))
		}
	}
	if o.OpenBaoDir == "" || len(openBaoVersions(o.OpenBaoDir)) == 0 {
		missing = append(missing, fmt.Sprintf("OpenBao binaries <version>/bao in %q (run `make openbao-bins`)", o.OpenBaoDir))
	}
	if !o.SkipOperator && !isExecutable(o.ManagerBinary) {
		missing = append(missing, fmt.Sprintf("the operator binary %q (run `make build`)", o.ManagerBinary))
	}
	if len(missing) > 0 {
		return o, fmt.Errorf("the local cluster needs: %s", strings.Join(missing, "; "))
	}
	if o.SeaweedFSBinary != "" && !isExecutable(o.SeaweedFSBinary) {
		return o, fmt.Errorf("the local cluster needs SeaweedFS's weed at %q (run `make seaweedfs`)", o.SeaweedFSBinary)
	}
	for _, p := range []*string{&o.KubeAssets, &o.OpenBaoDir, &o.ManagerBinary, &o.SeaweedFSBinary} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return o, err
			}
		}
	}
	return o, nil
}

func (c *Cluster) progress(format string, args ...any) {
	if c.opts.Progress != nil {
		fmt.Fprintf(c.opts.Progress, format+"\n", args...)
	}
}

func (c *Cluster) up(ctx context.Context) error {
	o := c.opts
	start := time.Now()
	gateway, err := nodeagent.Gateway(o.CIDR)
	if err != nil {
		return err
	}
	// The API server binds the gateway address, so the bridge comes first.
	if err := nodeagent.EnsureBridge(o.Bridge, o.CIDR); err != nil {
		return fmt.Errorf("create bridge %s: %w", o.Bridge, err)
	}
	if err := writeState(o.Dir, state{Bridge: o.Bridge, CIDR: o.CIDR, BridgeIndex: interfaceIndex(o.Bridge)}); err != nil {
		return err
	}
	c.progress("starting etcd, kube-apiserver and kube-controller-manager on %s", gateway)
	c.cp, err = controlplane.Start(ctx, controlplane.Options{
		Dir:       filepath.Join(o.Dir, "controlplane"),
		AssetsDir: o.KubeAssets,
		BindIP:    gateway,
		Port:      o.APIPort,

		// MutatingAdmissionPolicy is served for the OpenShift SCC emulation; it changes
		// nothing until EnableOpenShiftSCC creates a policy.
		ExtraAPIServerFlags: append(slices.Clone(openshift.APIServerFlags), o.ExtraAPIServerFlags...),
	})
	if err != nil {
		return err
	}
	kubeconfig, err := os.ReadFile(c.cp.Kubeconfig())
	if err != nil {
		return err
	}
	if err := os.WriteFile(c.Kubeconfig(), kubeconfig, 0o600); err != nil {
		return err
	}
	if c.cs, err = kubernetes.NewForConfig(c.RESTConfig()); err != nil {
		return err
	}

	c.progress("starting the node agent (node %s, pod network %s on %s)", o.NodeName, o.CIDR, o.Bridge)
	if err := c.startAgent(gateway); err != nil {
		return err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return err
	}
	if !o.SkipOperator {
		c.progress("installing the operator: kubectl apply -k config/default")
		if err := c.installOperator(ctx); err != nil {
			return err
		}
	}
	c.progress("cluster up in %s", time.Since(start).Round(100*time.Millisecond))
	return nil
}

func (c *Cluster) startAgent(gateway string) error {
	o := c.opts
	u, err := url.Parse(c.cp.Server())
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return fmt.Errorf("API server URL %s has no port", c.cp.Server())
	}
	// The agent logs through klog; its lines go to a file of their own.
	c.agentLog, err = os.OpenFile(filepath.Join(o.Dir, "logs", "nodeagent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	redirectKlog(c.agentLog)
	ctx, cancel := context.WithCancel(context.Background())
	c.agentCancel, c.agentDone = cancel, make(chan error, 1)
	cfg := nodeagent.Config{
		RESTConfig:    c.RESTConfig(),
		NodeName:      o.NodeName,
		StateDir:      filepath.Join(o.Dir, "node"),
		BridgeName:    o.Bridge,
		CIDR:          o.CIDR,
		APIServerHost: gateway,
		APIServerPort: port,
		Images:        Images(o.OpenBaoDir, o.ManagerBinary),
	}
	if o.SeaweedFSBinary != "" {
		cfg.Images = nodeagent.Resolvers{seaweedFSImage(o.SeaweedFSBinary), cfg.Images}
	}
	if o.ExtraImages != nil {
		cfg.Images = nodeagent.Resolvers{o.ExtraImages, cfg.Images}
	}
	go func() { c.agentDone <- nodeagent.Run(ctx, cfg) }()
	return nil
}

var klogOnce sync.Once

// redirectKlog sends klog's output (the node agent's) to w instead of the
// process's stderr.
func redirectKlog(w io.Writer) {
	klogOnce.Do(func() {
		fs := flag.NewFlagSet("klog", flag.ContinueOnError)
		klog.InitFlags(fs)
		_ = fs.Set("logtostderr", "false")
		_ = fs.Set("alsologtostderr", "false")
		_ = fs.Set("stderrthreshold", "FATAL")
	})
	klog.SetOutput(w)
}

// Images resolves the images a cluster of this project runs: OpenBao's to the
// bao binaries under openBaoDir, the operator's to managerBinary.
func Images(openBaoDir, managerBinary string) nodeagent.ImageResolver {
	// The server pods start `bao` through a shell (see resources.ServerCommand), which finds
	// it on PATH as in the official image: the node agent shows the image's directory at
	// nodeagent.ImageDir, first on the default PATH.
	openbao := nodeagent.OpenBaoRule(openBaoDir)
	operator := nodeagent.PatternRule{
		Pattern: regexp.MustCompile(`^(?:` + regexp.QuoteMeta(OperatorImageRepository) + `|controller)(?::[^@/]+)?(?:@sha256:[0-9a-f]+)?$`),
		Build: func([]string) nodeagent.Image {
			return nodeagent.Image{
				Entrypoint: []string{managerBinary},
				User:       ptr.To(operatorUser),
				Group:      ptr.To(operatorUser),
			}
		},
	}
	return nodeagent.PatternResolver{operator, openbao}
}

// seaweedFSImage resolves SeaweedFSImage, whatever its tag, to the weed binary.
func seaweedFSImage(binary string) nodeagent.ImageResolver {
	name := SeaweedFSImage[:strings.LastIndex(SeaweedFSImage, ":")]
	return nodeagent.PatternResolver{{
		Pattern: regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(?::[^@/]+)?(?:@sha256:[0-9a-f]+)?$`),
		Build:   func([]string) nodeagent.Image { return nodeagent.Image{Entrypoint: []string{binary}} },
	}}
}

func (c *Cluster) waitNodeReady(ctx context.Context) error {
	return c.poll(ctx, "node "+c.opts.NodeName+" Ready", defaultWait, func(ctx context.Context) (bool, string, error) {
		select {
		case err := <-c.agentDone:
			c.agentDone <- err
			return false, "", fmt.Errorf("the node agent stopped: %v (see %s)", err, filepath.Join(c.opts.Dir, "logs", "nodeagent.log"))
		default:
		}
		n, err := c.cs.CoreV1().Nodes().Get(ctx, c.opts.NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, "", nil
			}
		}
		return false, "not Ready yet", nil
	})
}

// installOperator applies config/default as it is, as a user would, and
// waits for the Deployment's rollout.
func (c *Cluster) installOperator(ctx context.Context) error {
	out, err := c.Kubectl(ctx, "apply", "--server-side", "-k", filepath.Join(c.opts.RepoRoot, "config", "default"))
	_ = os.WriteFile(filepath.Join(c.opts.Dir, "logs", "install.log"), out, 0o644)
	if err != nil {
		return fmt.Errorf("kubectl apply -k config/default: %w\n%s", err, out)
	}
	return c.poll(ctx, "operator Deployment "+OperatorNamespace+"/"+OperatorDeployment+" Available", defaultWait, func(ctx context.Context) (bool, string, error) {
		d, err := c.cs.AppsV1().Deployments(OperatorNamespace).Get(ctx, OperatorDeployment, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && d.Status.AvailableReplicas >= 1 {
				return true, "", nil
			}
		}
		return false, c.describeOperatorPods(ctx), nil
	})
}

func (c *Cluster) describeOperatorPods(ctx context.Context) string {
	pods, err := c.cs.CoreV1().Pods(OperatorNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	if len(pods.Items) == 0 {
		return "no operator pod yet"
	}
	var parts []string
	for _, p := range pods.Items {
		parts = append(parts, DescribePod(&p))
	}
	return strings.Join(parts, "; ")
}

// DescribePod summarizes a pod's phase and containers in one line.
func DescribePod(p *corev1.Pod) string {
	s := fmt.Sprintf("%s %s", p.Name, p.Status.Phase)
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			s += fmt.Sprintf(" [%s waiting %s: %s]", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
		case cs.State.Running != nil:
			s += fmt.Sprintf(" [%s running ready=%v restarts=%d]", cs.Name, cs.Ready, cs.RestartCount)
		case cs.State.Terminated != nil:
			s += fmt.Sprintf(" [%s exited %d %s: %s]", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason, cs.State.Terminated.Message)
		}
		if last := cs.LastTerminationState.Terminated; last != nil && cs.State.Terminated == nil {
			s += fmt.Sprintf(" (last exit %d %s: %s)", last.ExitCode, last.Reason, strings.TrimSpace(last.Message))
		}
	}
	return s
}

// poll calls cond every 500 ms until it reports done, returns an error, or
// timeout passes; the timeout error carries the last detail.
func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, cond func(context.Context) (bool, string, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := ""
	for {
		done, detail, err := cond(ctx)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if done {
			return nil
		}
		last = detail
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %s)", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Kubectl runs the kubectl of KubeAssets against the cluster and returns its
// combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.opts.KubeAssets, "kubectl"), append([]string{"--kubeconfig", c.Kubeconfig()}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// Kubeconfig is the path of the admin kubeconfig.
func (c *Cluster) Kubeconfig() string { return filepath.Join(c.opts.Dir, "kubeconfig") }

// RESTConfig returns a new admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return c.cp.RESTConfig() }

// Clientset is an admin client.
func (c *Cluster) Clientset() kubernetes.Interface { return c.cs }

// ControlPlane is the running control plane.
func (c *Cluster) ControlPlane() *controlplane.ControlPlane { return c.cp }

// Dir is the cluster's state folder.
func (c *Cluster) Dir() string { return c.opts.Dir }

// ContainerLogDir is where the node keeps container logs:
// <namespace>_<pod>_<uid>/<container>/<restart>.log.
func (c *Cluster) ContainerLogDir() string { return filepath.Join(c.opts.Dir, "node", "logs") }

// Check returns an error when a component has stopped.
func (c *Cluster) Check() error {
	var errs []error
	if err := c.cp.Check(); err != nil {
		errs = append(errs, err)
	}
	select {
	case err := <-c.agentDone:
		c.agentDone <- err
		errs = append(errs, fmt.Errorf("the node agent stopped: %v", err))
	default:
	}
	return errors.Join(errs...)
}

// Down stops the node (every pod process) and the control plane and removes
// the network namespaces, the bridge and Dir. Calling it again returns the
// first result.
func (c *Cluster) Down() error {
	c.downOnce.Do(func() {
		err := c.stop()
		c.downErr = errors.Join(err, Cleanup(c.opts.Dir))
		c.bridge.release()
		if c.lock != nil {
			_ = c.lock.Close()
		}
	})
	return c.downErr
}

// CollectLogs copies the logs of the cluster (components, node agent,
// containers) into dst, for a look after a failure.
func (c *Cluster) CollectLogs(dst string) error { return CollectLogs(c.opts.Dir, dst) }

// CollectLogs copies the logs of the cluster in dir into dst; it also works
// for a cluster that failed to come up.
func CollectLogs(dir, dst string) error {
	var errs []error
	for _, sub := range []string{"logs", filepath.Join("controlplane", "logs"), filepath.Join("node", "logs")} {
		if err := copyTree(filepath.Join(dir, sub), filepath.Join(dst, sub)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stop ends the node agent (and so every pod) and the control plane; it
// keeps Dir.
func (c *Cluster) stop() error {
	// The node stops its pods on its own (no API call needed) while the API
	// server drains, which takes a while too.
	var agentErr, cpErr error
	var wg sync.WaitGroup
	if c.agentCancel != nil {
		c.agentCancel()
		wg.Go(func() {
			if err := <-c.agentDone; err != nil {
				agentErr = fmt.Errorf("node agent: %w", err)
			}
		})
	}
	if c.cp != nil {
		wg.Go(func() {
			if err := c.cp.Stop(); err != nil {
				cpErr = fmt.Errorf("control plane: %w", err)
			}
		})
	}
	wg.Wait()
	c.agentCancel = nil
	if c.agentLog != nil {
		_ = c.agentLog.Close()
		c.agentLog = nil
	}
	return errors.Join(agentErr, cpErr)
}

// Cleanup removes what a cluster in dir left behind, also after a crash:
// processes of the control plane and of the pods, network namespaces, veths,
// the bridge, and finally dir itself.
func Cleanup(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	var st state
	if data, err := os.ReadFile(filepath.Join(dir, "cluster.json")); err == nil {
		_ = json.Unmarshal(data, &st)
	}
	// The pods' processes, network namespaces and the bridge, unless the
	// bridge now belongs to another cluster. An unknown index (a crash right
	// after creating the bridge) still means ours: Up never reuses a bridge.
	if idx := interfaceIndex(st.Bridge); st.Bridge != "" && (idx == 0 || st.BridgeIndex == 0 || idx == st.BridgeIndex) {
		if err := nodeagent.Cleanup(filepath.Join(dir, "node")); err != nil {
			errs = append(errs, err)
		}
		if interfaceIndex(st.Bridge) != 0 {
			if out, err := exec.Command("ip", "link", "del", st.Bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("delete bridge %s: %v: %s", st.Bridge, err, out))
			}
		}
	}
	if err := controlplane.Cleanup(filepath.Join(dir, "controlplane")); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return os.RemoveAll(dir)
}

// FindRepoRoot returns the nearest parent of the working directory that
// holds this module's go.mod.
func FindRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/openbao-operator/openbao-operator\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the repository root (go.mod of github.com/openbao-operator/openbao-operator) above the working directory")
		}
		dir = parent
	}
}

func writeState(dir string, st state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "cluster.json"), data, 0o644)
}

// interfaceIndex returns the index of a network interface, 0 when it does
// not exist.
func interfaceIndex(name string) int {
	if name == "" {
		return 0
	}
	data, err := os.ReadFile(filepath.Join("/sys/class/net", name, "ifindex"))
	if err != nil {
		return 0
	}
	idx, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return idx
}

func openBaoVersions(dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		if isExecutable(filepath.Join(dir, e.Name(), "bao")) {
			out = append(out, e.Name())
		}
	}
	return out
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
}
