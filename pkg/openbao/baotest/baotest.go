// Package baotest runs real OpenBao servers on loopback for tests: raft storage, the static
// seal, TLS from a private CA, and the configuration the operator renders
// (resources.RenderConfig and RenderSelfInitConfig), started with the same command the pods
// use (resources.ServerCommand). Servers listen on free loopback ports and are always
// stopped when the test ends.
package baotest

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// DefaultVersion is the OpenBao version tested when OPENBAO_BIN is not set.
const DefaultVersion = "2.7.2"

// Identities the test JWT auth trusts.
const (
	Issuer           = "https://kubernetes.default.svc.cluster.local"
	UpgradeAudience  = "openbao-upgrade"
	OperatorAudience = "openbao-operator"
	OperatorSubject  = "system:serviceaccount:openbao-operator-system:openbao-operator-controller-manager"
)

// Binary is the bao executable to test with: $OPENBAO_BIN, else .cache/openbao/<DefaultVersion>/bao
// of the repository. The test fails when it is missing.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("OPENBAO_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("OPENBAO_BIN=%s: %v (run `make openbao-bins`)", p, err)
		}
		return p
	}
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("find the repository root: %v", err)
	}
	p := filepath.Join(root, ".cache", "openbao", DefaultVersion, "bao")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("OpenBao binary %s is missing: run `make openbao-bins` (or set OPENBAO_BIN)", p)
	}
	return p
}

// BinaryOf is the bao executable of one version under .cache/openbao; the test fails when it
// is missing.
func BinaryOf(t testing.TB, version string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("find the repository root: %v", err)
	}
	p := filepath.Join(root, ".cache", "openbao", version, "bao")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("OpenBao %s binary %s is missing: run `make openbao-bins`", version, p)
	}
	return p
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Options shape a test cluster.
type Options struct {
	// ClusterName and Namespace default to "bao" and "ns".
	ClusterName, Namespace string
	// Nodes is the number of servers NewCluster creates (not started); default 1.
	Nodes int
	// SelfInit are user requests added after the operator's own.
	SelfInit []resources.InitRequest
	// Binary is the bao executable of every node; defaults to Binary(t).
	Binary string
	// NoSelfInit leaves the self-initialization file empty: the servers wait, uninitialized,
	// for a peer to join.
	NoSelfInit bool
	// OperatorTokenTTL and OperatorTokenMaxTTL replace the operator role's token lifetimes
	// (resources.DefaultOperatorTokenTTL, DefaultOperatorTokenMaxTTL).
	OperatorTokenTTL, OperatorTokenMaxTTL string
}

// Cluster is a set of servers sharing a CA, a seal key and a JWT signing key.
type Cluster struct {
	t       testing.TB
	bin     string
	dir     string
	ca      pki.KeyPair
	jwtKey  *rsa.PrivateKey
	sealKey string
	opts    Options
	Nodes   []*Node
}

// Node is one server.
type Node struct {
	Index       int
	PodName     string
	DNSName     string
	APIPort     int
	ClusterPort int
	Dir         string
	DataDir     string
	ConfigDir   string
	LogPath     string
	NonVoter    bool
	// Binary, when set, replaces the cluster's bao executable at the next Start: an upgrade
	// is a restart on another binary with the same data.
	Binary string
	// AlwaysLoadSelfInit starts the server with the self-initialization file whatever its
	// ordinal and data, bypassing the pod command's guard, to test OpenBao's own behaviour.
	AlwaysLoadSelfInit bool

	c       *Cluster
	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool
}

// NewCluster prepares opts.Nodes servers whose retry_join lists each other; Start them.
func NewCluster(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.ClusterName == "" {
		opts.ClusterName = "bao"
	}
	if opts.Namespace == "" {
		opts.Namespace = "ns"
	}
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	bin := opts.Binary
	if bin == "" {
		bin = Binary(t)
	}
	c := &Cluster{t: t, bin: bin, dir: t.TempDir(), opts: opts}
	var err error
	c.ca, err = pki.NewCA("baotest", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatalf("create CA: %v", err)
	}
	c.jwtKey, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("create JWT key: %v", err)
	}
	seal := make([]byte, 32)
	if _, err := rand.Read(seal); err != nil {
		t.Fatal(err)
	}
	c.sealKey = filepath.Join(c.dir, "seal.key")
	writeFile(t, c.sealKey, seal)
	for range opts.Nodes {
		c.newNode(false)
	}
	for _, n := range c.Nodes {
		c.writeConfig(n, c.peers())
	}
	t.Cleanup(func() {
		for _, n := range c.Nodes {
			n.kill()
		}
		if t.Failed() {
			for _, n := range c.Nodes {
				t.Logf("--- log of %s (last 40 lines)\n%s", n.PodName, tail(n.LogPath, 40))
			}
		}
	})
	return c
}

// SealKeyPath is the static seal key file every server reads; replace its content to see a
// server that cannot unseal.
func (c *Cluster) SealKeyPath() string { return c.sealKey }

// CACertPEM is the CA of every server's certificate.
func (c *Cluster) CACertPEM() []byte { return c.ca.CertPEM }

// JWTPublicKeyPEM is the key the JWT auth method validates tokens with.
func (c *Cluster) JWTPublicKeyPEM() string {
	der, err := x509.MarshalPKIXPublicKey(&c.jwtKey.PublicKey)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// Namespace is the namespace the cluster's configuration names.
func (c *Cluster) Namespace() string { return c.opts.Namespace }

// UpgradeSubject is the subject of the cluster's own Job service account.
func (c *Cluster) UpgradeSubject() string {
	return "system:serviceaccount:" + c.opts.Namespace + ":" + c.opts.ClusterName + "-upgrade-serviceaccount"
}

// Params are the configuration parameters of node n, as the operator would fill them but
// with loopback addresses.
func (c *Cluster) Params(n *Node, peers []resources.JoinTarget) resources.ConfigParams {
	return resources.ConfigParams{
		ClusterName:     c.opts.ClusterName,
		Namespace:       c.opts.Namespace,
		Replicas:        int32(len(peers)),
		HeadlessService: c.opts.ClusterName + "-internal",
		TLSCertFile:     filepath.Join(n.Dir, "tls", "tls.crt"),
		TLSKeyFile:      filepath.Join(n.Dir, "tls", "tls.key"),
		TLSCAFile:       filepath.Join(n.Dir, "tls", "ca.crt"),
		DataDir:         n.DataDir,
		// The operator's default Raft timing (spec.raft.performanceMultiplier).
		PerformanceMultiplier: 1,
		SealKeyFile:           c.sealKey,
		SealKeyID:             "test-1",
		NonVoter:              n.NonVoter,
		JoinTargets:           peers,
		ListenAddress:         "127.0.0.1:" + strconv.Itoa(n.APIPort),
		ClusterListenAddress:  "127.0.0.1:" + strconv.Itoa(n.ClusterPort),
		JWT: resources.JWTInit{
			Issuer:               Issuer,
			ValidationPubKeysPEM: []string{c.JWTPublicKeyPEM()},
			UpgradeAudience:      UpgradeAudience,
			OperatorSubject:      OperatorSubject,
			OperatorAudience:     OperatorAudience,
			OperatorTokenTTL:     c.opts.OperatorTokenTTL,
			OperatorTokenMaxTTL:  c.opts.OperatorTokenMaxTTL,
		},
		SelfInit: c.opts.SelfInit,
	}
}

func (c *Cluster) peers() []resources.JoinTarget {
	out := make([]resources.JoinTarget, 0, len(c.Nodes))
	for _, n := range c.Nodes {
		out = append(out, resources.JoinTarget{
			APIAddr:       "https://127.0.0.1:" + strconv.Itoa(n.APIPort),
			TLSServerName: n.DNSName,
		})
	}
	return out
}

func (c *Cluster) newNode(nonVoter bool) *Node {
	t := c.t
	i := len(c.Nodes)
	n := &Node{
		Index:       i,
		PodName:     fmt.Sprintf("%s-%d", c.opts.ClusterName, i),
		APIPort:     freePort(t),
		ClusterPort: freePort(t),
		Dir:         filepath.Join(c.dir, fmt.Sprintf("node-%d", i)),
		NonVoter:    nonVoter,
		c:           c,
	}
	n.DNSName = fmt.Sprintf("%s.%s-internal.%s.svc", n.PodName, c.opts.ClusterName, c.opts.Namespace)
	n.DataDir = filepath.Join(n.Dir, "data")
	n.ConfigDir = filepath.Join(n.Dir, "config")
	n.LogPath = filepath.Join(n.Dir, "server.log")
	for _, d := range []string{n.DataDir, n.ConfigDir, filepath.Join(n.Dir, "tls")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	kp, err := pki.IssueServerCert(c.ca, pki.ServerCertRequest{
		CommonName: n.DNSName,
		// As in the pods: one name per pod through the headless Service's wildcard, so that
		// a standby's redirect to the active node passes verification with either name.
		DNSNames:    []string{"*." + c.opts.ClusterName + "-internal." + c.opts.Namespace + ".svc", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		Validity:    24 * time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatalf("issue certificate: %v", err)
	}
	writeFile(t, filepath.Join(n.Dir, "tls", "tls.crt"), kp.CertPEM)
	writeFile(t, filepath.Join(n.Dir, "tls", "tls.key"), kp.KeyPEM)
	writeFile(t, filepath.Join(n.Dir, "tls", "ca.crt"), c.ca.CertPEM)
	c.Nodes = append(c.Nodes, n)
	return n
}

// writeConfig renders both configuration files into the node's config directory. Every
// node gets the self-initialization file, as every pod mounts the same ConfigMap: the
// server command must load it on the first node only.
func (c *Cluster) writeConfig(n *Node, peers []resources.JoinTarget) {
	t := c.t
	p := c.Params(n, peers)
	main, err := resources.RenderConfig(p)
	if err != nil {
		t.Fatalf("render config: %v", err)
	}
	selfInit, err := resources.RenderSelfInitConfig(p)
	if err != nil {
		t.Fatalf("render self-init config: %v", err)
	}
	if c.opts.NoSelfInit {
		selfInit = ""
	}
	writeFile(t, filepath.Join(n.ConfigDir, resources.ConfigFile), []byte(main))
	writeFile(t, filepath.Join(n.ConfigDir, resources.SelfInitConfigFile), []byte(selfInit))
}

// AddNode prepares one more server that joins the existing ones, as a non-voter when asked
// (retry_join_as_non_voter). Start it.
func (c *Cluster) AddNode(nonVoter bool) *Node {
	peers := c.peers()
	n := c.newNode(nonVoter)
	c.writeConfig(n, peers)
	return n
}

// Start starts every node that is not running.
func (c *Cluster) Start() {
	for _, n := range c.Nodes {
		if !n.Running() {
			n.Start()
		}
	}
}

// Start runs the server with the pod's command and environment.
func (n *Node) Start() {
	t := n.c.t
	t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !n.stopped {
		t.Fatalf("%s is already running", n.PodName)
	}
	log, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(log, "==== start %s\n", time.Now().Format(time.RFC3339Nano))
	bin := n.c.bin
	if n.Binary != "" {
		bin = n.Binary
	}
	command := resources.ServerCommand(n.ConfigDir, n.DataDir)
	if n.AlwaysLoadSelfInit {
		command = []string{"/bin/sh", "-c", `exec bao server "$@"`, "bao",
			"-config=" + filepath.Join(n.ConfigDir, resources.ConfigFile),
			"-config=" + filepath.Join(n.ConfigDir, resources.SelfInitConfigFile)}
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"),
		"POD_NAME="+n.PodName,
		"BAO_API_ADDR=https://127.0.0.1:"+strconv.Itoa(n.APIPort),
		"BAO_CLUSTER_ADDR=https://127.0.0.1:"+strconv.Itoa(n.ClusterPort),
		"BAO_RAFT_NODE_ID="+n.PodName,
		"BAO_TOKEN=",
	)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		t.Fatalf("start %s: %v", n.PodName, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = log.Close()
		close(exited)
	}()
	n.cmd, n.exited, n.stopped = cmd, exited, false
}

// Running says whether the server process is alive.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM and waits for the process to end (SIGKILL after 60 s).
func (n *Node) Stop() {
	n.signal(syscall.SIGTERM, 60*time.Second)
}

// Kill ends the process with SIGKILL.
func (n *Node) Kill() { n.kill() }

func (n *Node) kill() { n.signal(syscall.SIGKILL, 30*time.Second) }

func (n *Node) signal(sig syscall.Signal, wait time.Duration) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.stopped = true
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-exited:
	case <-time.After(wait):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// Address is the node's API URL.
func (n *Node) Address() string { return "https://127.0.0.1:" + strconv.Itoa(n.APIPort) }

// Client is a client of this node that checks its certificate against the pod's DNS name.
func (n *Node) Client() openbao.Client {
	t := n.c.t
	t.Helper()
	cl, err := openbao.New(openbao.Config{
		Address:       n.Address(),
		CACertPEM:     n.c.ca.CertPEM,
		TLSServerName: n.DNSName,
		Timeout:       10 * time.Second,
	})
	if err != nil {
		t.Fatalf("client of %s: %v", n.PodName, err)
	}
	return cl
}

// Log is the server's output so far.
func (n *Node) Log() string {
	b, _ := os.ReadFile(n.LogPath)
	return string(b)
}

// SignJWT returns an RS256 token signed by the key the JWT auth method trusts, issued by
// Issuer, valid for ten minutes.
func (c *Cluster) SignJWT(subject, audience string) string {
	return c.SignJWTWithKey(c.jwtKey, subject, audience)
}

// SignJWTWithKey signs with another key, to test that OpenBao refuses it.
func (c *Cluster) SignJWTWithKey(key *rsa.PrivateKey, subject, audience string) string {
	now := time.Now()
	header, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"iss": Issuer, "sub": subject, "aud": []string{audience},
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		c.t.Fatal(err)
	}
	return signing + "." + enc.EncodeToString(sig)
}

// Eventually polls check every 250 ms until it returns nil or timeout passes, then fails
// the test with the last error.
func Eventually(t testing.TB, timeout time.Duration, what string, check func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		last = check(ctx)
		cancel()
		if last == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %v", what, timeout, last)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitActive waits until exactly one node reports active and returns it.
func (c *Cluster) WaitActive(timeout time.Duration) *Node {
	c.t.Helper()
	var active *Node
	Eventually(c.t, timeout, "one active node", func(ctx context.Context) error {
		active = nil
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			h, err := n.Client().Health(ctx)
			if err != nil || !h.Active() {
				continue
			}
			if active != nil {
				return fmt.Errorf("both %s and %s are active", active.PodName, n.PodName)
			}
			active = n
		}
		if active == nil {
			return errors.New("no active node")
		}
		return nil
	})
	return active
}

// WaitServing waits until the node is initialized and unsealed.
func (n *Node) WaitServing(timeout time.Duration) *openbao.HealthStatus {
	n.c.t.Helper()
	var h *openbao.HealthStatus
	Eventually(n.c.t, timeout, n.PodName+" initialized and unsealed", func(ctx context.Context) error {
		if !n.Running() {
			n.c.t.Fatalf("%s exited while starting:\n%s", n.PodName, tail(n.LogPath, 30))
		}
		var err error
		h, err = n.Client().Health(ctx)
		if err != nil {
			return err
		}
		if !h.Serving() {
			return fmt.Errorf("initialized=%v sealed=%v", h.Initialized, h.Sealed)
		}
		return nil
	})
	return h
}

// freePort picks a free loopback port below Linux's ephemeral range (32768-60999), so that
// no outgoing connection and no listener on port 0 takes it between a server's stop and its
// restart.
func freePort(t testing.TB) int {
	for range 200 {
		n, err := rand.Int(rand.Reader, big.NewInt(portRangeEnd-portRangeStart))
		if err != nil {
			t.Fatal(err)
		}
		port := portRangeStart + int(n.Int64())
		portsMu.Lock()
		taken := portsGiven[port]
		portsGiven[port] = true
		portsMu.Unlock()
		if taken {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		_ = l.Close()
		return port
	}
	t.Fatalf("no free loopback port in %d-%d", portRangeStart, portRangeEnd)
	return 0
}

const portRangeStart, portRangeEnd = 20000, 32000

// portsGiven keeps one test process from handing out a port twice: the probe listener is
// closed before the server binds the port.
var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

func writeFile(t testing.TB, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
