// Package controlplane runs a real Kubernetes control plane (etcd,
// kube-apiserver and kube-controller-manager) as local processes, for the
// local development cluster and the end-to-end tests.
//
// There is no kubelet: something else has to play the node (register a Node,
// bind and run pods). Everything the API server and the controllers do is
// real, including service-account token issuing, OIDC discovery, RBAC and
// the workload controllers.
//
// The binaries come from `make kube-assets`.
package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

const (
	// DefaultPort is the port a development cluster conventionally serves
	// the Kubernetes API on. Options.Port 0 picks a free port instead, so
	// that tests can run next to a development cluster.
	DefaultPort = 6443
	// DefaultServiceAccountIssuer is the issuer of service-account tokens, as
	// on most clusters.
	DefaultServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	// DefaultServiceClusterIPRange is the range Services get addresses from;
	// its first address is the `kubernetes` Service's.
	DefaultServiceClusterIPRange = "10.96.0.0/24"

	defaultStartTimeout = 2 * time.Minute
	// The API server can take about 20 seconds to end after SIGTERM.
	defaultStopTimeout = 45 * time.Second

	// AdminUser is the user name of the admin kubeconfig, a member of
	// system:masters.
	AdminUser = "kubernetes-admin"

	controllerManagerUser = "system:kube-controller-manager"
	// KubeletClientUser is the API server's identity towards kubelets
	// (--kubelet-client-certificate), as kubeadm names it. It is bound to
	// the system:kubelet-api-admin ClusterRole, which allows nodes/proxy.
	KubeletClientUser = "kube-apiserver-kubelet-client"
	// frontProxyUser is the common name of the API server's client certificate
	// towards aggregated API servers.
	frontProxyUser = "front-proxy-client"
)

// Binaries the assets folder must hold.
const (
	etcdBinary              = "etcd"
	apiServerBinary         = "kube-apiserver"
	controllerManagerBinary = "kube-controller-manager"
)

// ControllersWithoutNode is a Controllers list for a cluster with no Node
// that heartbeats: node lifecycle would taint and evict such a Node, and the
// pod garbage collector would delete pods bound to a missing Node.
var ControllersWithoutNode = []string{"*", "-node-lifecycle-controller", "-pod-garbage-collector-controller"}

// Options configure a control plane.
type Options struct {
	// Dir holds the state of the control plane: etcd data, certificates,
	// kubeconfigs, logs and PIDs. It is created if missing. Start rebuilds
	// the subfolders it owns (etcd, pki, logs, pids), so every start is a
	// new, empty cluster; other files in Dir are left alone.
	Dir string
	// AssetsDir holds the etcd, kube-apiserver and kube-controller-manager
	// binaries.
	AssetsDir string
	// BindIP is the address the API server listens on and advertises.
	// Default 127.0.0.1. Pass an address that pods can reach (for example a
	// bridge's gateway address) when pods must call the API server.
	BindIP string
	// Port is the API server's port; 0 picks a free one.
	Port int
	// Controllers is kube-controller-manager's --controllers list. Default
	// ["*"] (every controller enabled by default). The node lifecycle and
	// pod garbage collector controllers need a Node that heartbeats its
	// Lease; without one, pass ControllersWithoutNode.
	Controllers []string
	// ServiceAccountIssuer defaults to DefaultServiceAccountIssuer. The API
	// audiences default to the issuer.
	ServiceAccountIssuer string
	// ServiceClusterIPRange defaults to DefaultServiceClusterIPRange.
	ServiceClusterIPRange string
	// ExtraAPIServerFlags and ExtraControllerManagerFlags are appended to the
	// generated flags (a repeated flag overrides the generated one).
	ExtraAPIServerFlags         []string
	ExtraControllerManagerFlags []string
	// StartTimeout bounds the wait for each component to become healthy.
	// Default 2 minutes.
	StartTimeout time.Duration
	// StopTimeout is how long Stop waits for each component after SIGTERM
	// before killing it. Default 45 seconds.
	StopTimeout time.Duration
}

// ControlPlane is a running control plane. Stop it when done.
type ControlPlane struct {
	opts       Options
	dir        string
	server     string
	caPEM      []byte
	admin      keyPair
	authority  *authority
	kubeconfig string
	etcdURL    string

	spawner                            *spawner
	etcd, apiServer, controllerManager *process

	// apiArgs and kcmArgs are the components' flags, to restart them with.
	apiArgs, kcmArgs []string
	kcmHealth        string
	// saKeyFile and saPubFile are the service-account signing key and the public keys the
	// API server accepts; saSigningPub is the signing key's public half.
	saKeyFile, saPubFile string
	saSigningPub         []byte
	restartMu            sync.Mutex

	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd, kube-apiserver and kube-controller-manager and returns
// once all three are healthy. ctx bounds the start only; the processes run
// until Stop. On failure, whatever was started is stopped again and the error
// quotes the failing component's log.
func Start(ctx context.Context, o Options) (*ControlPlane, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if running, err := recordedProcesses(o.Dir); err != nil {
		return nil, err
	} else if len(running) > 0 {
		return nil, fmt.Errorf("a control plane is still running from %s (PIDs %v): stop it or call Cleanup", o.Dir, running)
	}
	for _, sub := range []string{"etcd", "pki", logsDir, pidsDir} {
		path := filepath.Join(o.Dir, sub)
		if err := os.RemoveAll(path); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, err
		}
	}

	c := &ControlPlane{opts: o, dir: o.Dir, spawner: newSpawner()}
	if err := c.start(ctx); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, errors.New("controlplane: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return o, err
	}
	o.Dir = dir
	if o.AssetsDir == "" {
		return o, errors.New("controlplane: Options.AssetsDir is required (build the binaries with `make kube-assets`)")
	}
	for _, b := range []string{etcdBinary, apiServerBinary, controllerManagerBinary} {
		if _, err := os.Stat(filepath.Join(o.AssetsDir, b)); err != nil {
			return o, fmt.Errorf("controlplane: %s missing from %s (build it with `make kube-assets`): %w", b, o.AssetsDir, err)
		}
	}
	if o.BindIP == "" {
		o.BindIP = "127.0.0.1"
	}
	if net.ParseIP(o.BindIP) == nil {
		return o, fmt.Errorf("controlplane: BindIP %q is not an IP address", o.BindIP)
	}
	if len(o.Controllers) == 0 {
		o.Controllers = []string{"*"}
	}
	if o.ServiceAccountIssuer == "" {
		o.ServiceAccountIssuer = DefaultServiceAccountIssuer
	}
	if o.ServiceClusterIPRange == "" {
		o.ServiceClusterIPRange = DefaultServiceClusterIPRange
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = defaultStopTimeout
	}
	return o, nil
}

func (c *ControlPlane) start(ctx context.Context) error {
	o := c.opts
	pki := filepath.Join(c.dir, "pki")

	kubernetesServiceIP, err := firstServiceIP(o.ServiceClusterIPRange)
	if err != nil {
		return err
	}
	etcdClientPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	etcdPeerPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	port := o.Port
	if port == 0 {
		if port, err = freePort(o.BindIP); err != nil {
			return err
		}
	}
	controllerManagerPort, err := freePort("127.0.0.1")
	if err != nil {
		return err
	}
	c.server = "https://" + net.JoinHostPort(o.BindIP, strconv.Itoa(port))
	c.etcdURL = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdClientPort))

	// Certificates and keys.
	ca, err := newAuthority("openbao-operator-local-ca")
	if err != nil {
		return err
	}
	c.authority = ca
	c.caPEM = ca.certPEM
	caCert, caKey, err := writeKeyPair(pki, "ca", keyPair{certPEM: ca.certPEM, keyPEM: ca.keyPEM})
	if err != nil {
		return err
	}
	apiServing, err := ca.serving("kube-apiserver",
		uniqueIPs(o.BindIP, "127.0.0.1", kubernetesServiceIP.String()),
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
	if err != nil {
		return err
	}
	apiCert, apiKey, err := writeKeyPair(pki, "apiserver", apiServing)
	if err != nil {
		return err
	}
	kcmServing, err := ca.serving("kube-controller-manager", uniqueIPs("127.0.0.1"), []string{"localhost"})
	if err != nil {
		return err
	}
	kcmCert, kcmKey, err := writeKeyPair(pki, "controller-manager", kcmServing)
	if err != nil {
		return err
	}
	kubeletClient, err := ca.client(KubeletClientUser, nil)
	if err != nil {
		return err
	}
	kubeletClientCert, kubeletClientKey, err := writeKeyPair(pki, "apiserver-kubelet-client", kubeletClient)
	if err != nil {
		return err
	}
	// The aggregation layer (APIService objects such as OLM's packageserver):
	// the API server proxies to an extension API server with a client
	// certificate of its own CA, and passes the user in request headers the
	// extension trusts because of that CA (kube-apiserver's
	// extension-apiserver-authentication ConfigMap publishes it).
	frontProxy, err := newAuthority("openbao-operator-local-front-proxy-ca")
	if err != nil {
		return err
	}
	frontProxyCA, _, err := writeKeyPair(pki, "front-proxy-ca", keyPair{certPEM: frontProxy.certPEM, keyPEM: frontProxy.keyPEM})
	if err != nil {
		return err
	}
	frontProxyClient, err := frontProxy.client(frontProxyUser, nil)
	if err != nil {
		return err
	}
	frontProxyCert, frontProxyKey, err := writeKeyPair(pki, "front-proxy-client", frontProxyClient)
	if err != nil {
		return err
	}
	saPrivate, saPublic, err := newServiceAccountKey()
	if err != nil {
		return err
	}
	saKey := filepath.Join(pki, "sa.key")
	saPub := filepath.Join(pki, "sa.pub")
	if err := os.WriteFile(saKey, saPrivate, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(saPub, saPublic, 0o644); err != nil {
		return err
	}
	c.saKeyFile, c.saPubFile, c.saSigningPub = saKey, saPub, saPublic
	if c.admin, err = ca.client(AdminUser, []string{"system:masters"}); err != nil {
		return err
	}
	c.kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, c.server, c.caPEM, AdminUser, c.admin); err != nil {
		return err
	}
	kcmClient, err := ca.client(controllerManagerUser, nil)
	if err != nil {
		return err
	}
	kcmKubeconfig := filepath.Join(pki, "controller-manager.kubeconfig")
	if err := writeKubeconfig(kcmKubeconfig, c.server, c.caPEM, controllerManagerUser, kcmClient); err != nil {
		return err
	}

	// etcd.
	etcdPeerURL := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(etcdPeerPort))
	c.etcd, err = startProcess(c.spawner, c.dir, "etcd", filepath.Join(o.AssetsDir, etcdBinary), []string{
		"--name=local",
		"--data-dir=" + filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=" + c.etcdURL,
		"--advertise-client-urls=" + c.etcdURL,
		"--listen-peer-urls=" + etcdPeerURL,
		"--initial-advertise-peer-urls=" + etcdPeerURL,
		"--initial-cluster=local=" + etcdPeerURL,
		"--initial-cluster-state=new",
		// The cluster is rebuilt on every start, so durability buys
		// nothing while fsync costs a lot on a busy disk.
		"--unsafe-no-fsync",
		"--log-level=warn",
	})
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, o.StartTimeout, c.etcd, http.DefaultClient, c.etcdURL+"/health"); err != nil {
		return err
	}

	// kube-apiserver.
	apiArgs := []string{
		"--etcd-servers=" + c.etcdURL,
		"--bind-address=" + o.BindIP,
		"--advertise-address=" + o.BindIP,
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + pki,
		"--tls-cert-file=" + apiCert,
		"--tls-private-key-file=" + apiKey,
		"--client-ca-file=" + caCert,
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=" + o.ServiceAccountIssuer,
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=" + o.ServiceClusterIPRange,
		"--allow-privileged=true",
		"--profiling=false",
		// Kubelets (the node agent) serve certificates for their Node's
		// InternalIP, signed by the cluster CA (kubelet-serving CSRs that
		// kube-controller-manager signs), and authorize the API server by
		// its client certificate.
		"--kubelet-certificate-authority=" + caCert,
		"--kubelet-client-certificate=" + kubeletClientCert,
		"--kubelet-client-key=" + kubeletClientKey,
		"--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
		"--requestheader-client-ca-file=" + frontProxyCA,
		"--requestheader-allowed-names=" + frontProxyUser,
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + frontProxyCert,
		"--proxy-client-key-file=" + frontProxyKey,
		// No service proxy runs here (a Service's clusterIP leads nowhere):
		// the API server reaches an APIService's pods at their endpoints.
		"--enable-aggregator-routing=true",
	}
	c.apiArgs = append(apiArgs, o.ExtraAPIServerFlags...)
	c.apiServer, err = startProcess(c.spawner, c.dir, "kube-apiserver", filepath.Join(o.AssetsDir, apiServerBinary), c.apiArgs)
	if err != nil {
		return err
	}
	adminClient, err := c.httpClient()
	if err != nil {
		return err
	}
	if err := waitHealthy(ctx, o.StartTimeout, c.apiServer, adminClient, c.server+"/readyz"); err != nil {
		return err
	}
	if err := c.bindKubeletClient(ctx); err != nil {
		return err
	}

	// kube-controller-manager.
	kcmArgs := []string{
		"--kubeconfig=" + kcmKubeconfig,
		"--authentication-kubeconfig=" + kcmKubeconfig,
		"--authorization-kubeconfig=" + kcmKubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(controllerManagerPort),
		"--tls-cert-file=" + kcmCert,
		"--tls-private-key-file=" + kcmKey,
		"--client-ca-file=" + caCert,
		"--controllers=" + strings.Join(o.Controllers, ","),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + caCert,
		"--cluster-signing-cert-file=" + caCert,
		"--cluster-signing-key-file=" + caKey,
		"--service-cluster-ip-range=" + o.ServiceClusterIPRange,
		"--profiling=false",
	}
	c.kcmArgs = append(kcmArgs, o.ExtraControllerManagerFlags...)
	c.controllerManager, err = startProcess(c.spawner, c.dir, "kube-controller-manager", filepath.Join(o.AssetsDir, controllerManagerBinary), c.kcmArgs)
	if err != nil {
		return err
	}
	c.kcmHealth = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(controllerManagerPort)) + "/healthz"
	return waitHealthy(ctx, o.StartTimeout, c.controllerManager, adminClient, c.kcmHealth)
}

// restartGrace is how long a restart waits for a component to end after SIGTERM.
const restartGrace = 10 * time.Second

// RotateServiceAccountKey is the first half of a rotation of the service-account signing
// key, as a cluster administrator does it: a new key signs from now on, and the public key of
// the previous one stays in --service-account-key-file, so tokens it signed stay valid (and
// the API server publishes both at /openid/v1/jwks). kube-apiserver and
// kube-controller-manager are restarted with the same flags; the API is unavailable for the
// restart (about 10-25 s). It returns the new key's public PEM.
func (c *ControlPlane) RotateServiceAccountKey(ctx context.Context) ([]byte, error) {
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	private, public, err := newServiceAccountKey()
	if err != nil {
		return nil, err
	}
	accepted, err := os.ReadFile(c.saPubFile)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.saKeyFile, private, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.saPubFile, append(accepted, public...), 0o644); err != nil {
		return nil, err
	}
	c.saSigningPub = public
	return public, c.restartAPI(ctx)
}

// RetireOldServiceAccountKeys is the second half: only the current signing key is accepted;
// tokens signed by earlier keys are refused from the restart on.
func (c *ControlPlane) RetireOldServiceAccountKeys(ctx context.Context) error {
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	if err := os.WriteFile(c.saPubFile, c.saSigningPub, 0o644); err != nil {
		return err
	}
	return c.restartAPI(ctx)
}

// restartAPI restarts kube-apiserver, then kube-controller-manager (whose service-account
// credentials may have been signed by a retired key), each waited for until healthy.
func (c *ControlPlane) restartAPI(ctx context.Context) error {
	adminClient, err := c.httpClient()
	if err != nil {
		return err
	}
	// With clients watching, the API server did not end within 45 s of SIGTERM (measured on
	// the local cluster with the operator running); its state is in etcd, so a restart
	// kills it after restartGrace. Neither component needs the other to exit: both are
	// stopped at once, as in Stop.
	var kcmErr error
	var wg sync.WaitGroup
	wg.Go(func() { kcmErr = c.controllerManager.stop(restartGrace) })
	apiErr := c.apiServer.stop(restartGrace)
	wg.Wait()
	if err := errors.Join(kcmErr, apiErr); err != nil {
		return err
	}
	if c.apiServer, err = startProcess(c.spawner, c.dir, "kube-apiserver", filepath.Join(c.opts.AssetsDir, apiServerBinary), c.apiArgs); err != nil {
		return err
	}
	if err := waitHealthy(ctx, c.opts.StartTimeout, c.apiServer, adminClient, c.server+"/readyz"); err != nil {
		return err
	}
	if c.controllerManager, err = startProcess(c.spawner, c.dir, "kube-controller-manager", filepath.Join(c.opts.AssetsDir, controllerManagerBinary), c.kcmArgs); err != nil {
		return err
	}
	return waitHealthy(ctx, c.opts.StartTimeout, c.controllerManager, adminClient, c.kcmHealth)
}

// Kubeconfig returns the path of a kubeconfig for the cluster admin
// (AdminUser, group system:masters), certificates embedded.
func (c *ControlPlane) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a new client configuration for the cluster admin.
func (c *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: c.server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.caPEM,
			CertData: c.admin.certPEM,
			KeyData:  c.admin.keyPEM,
		},
	}
}

// UserRESTConfig returns a client configuration authenticating as user in
// groups with a client certificate signed by the cluster CA. A node agent
// uses it to act as "system:node:<name>" in "system:nodes".
func (c *ControlPlane) UserRESTConfig(user string, groups ...string) (*rest.Config, error) {
	kp, err := c.authority.client(user, groups)
	if err != nil {
		return nil, err
	}
	return &rest.Config{
		Host:            c.server,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.caPEM, CertData: kp.certPEM, KeyData: kp.keyPEM},
	}, nil
}

// Server returns the API server's URL, e.g. https://127.0.0.1:6443.
func (c *ControlPlane) Server() string { return c.server }

// EtcdURL returns the URL of etcd's client endpoint (plain HTTP on loopback).
func (c *ControlPlane) EtcdURL() string { return c.etcdURL }

// CACertPEM returns the cluster CA certificate: it signed the API server's
// serving certificate and every client certificate, and it is what pods find
// in the kube-root-ca.crt ConfigMaps.
func (c *ControlPlane) CACertPEM() []byte { return append([]byte(nil), c.caPEM...) }

// ServiceAccountIssuer returns the issuer of service-account tokens.
func (c *ControlPlane) ServiceAccountIssuer() string { return c.opts.ServiceAccountIssuer }

// Dir returns the absolute state folder.
func (c *ControlPlane) Dir() string { return c.dir }

// LogPath returns the log file of a component: "etcd", "kube-apiserver" or
// "kube-controller-manager".
func (c *ControlPlane) LogPath(component string) string {
	return filepath.Join(c.dir, logsDir, component+".log")
}

// Check returns an error naming every component that has exited, with the
// end of its log; nil while all three run. Programs that keep a control plane
// up for a long time can poll it.
func (c *ControlPlane) Check() error {
	// A restart (RotateServiceAccountKey) is not a failure: wait for it.
	c.restartMu.Lock()
	defer c.restartMu.Unlock()
	var errs []error
	for _, p := range []*process{c.etcd, c.apiServer, c.controllerManager} {
		if p != nil && p.exited() {
			errs = append(errs, p.failure("%s is not running", p.name))
		}
	}
	return errors.Join(errs...)
}

// Stop ends the controller manager and the API server (SIGTERM, then SIGKILL
// after Options.StopTimeout), then etcd. It keeps Dir, so logs can be read
// afterwards; Cleanup removes it. Calling Stop again returns the first result.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		var errs []error
		var wg sync.WaitGroup
		var mu sync.Mutex
		// The API server may take a while to drain; the controller manager
		// does not depend on it to exit, so both are stopped at once.
		for _, p := range []*process{c.controllerManager, c.apiServer} {
			if p == nil {
				continue
			}
			wg.Go(func() {
				if err := p.stop(c.opts.StopTimeout); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if c.etcd != nil {
			if err := c.etcd.stop(c.opts.StopTimeout); err != nil {
				errs = append(errs, err)
			}
		}
		c.spawner.close()
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// httpClient returns an HTTP client that trusts the cluster CA and presents
// the admin certificate.
func (c *ControlPlane) httpClient() (*http.Client, error) {
	cert, err := tls.X509KeyPair(c.admin.certPEM, c.admin.keyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.caPEM)
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			Proxy:           nil,
			TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		},
	}, nil
}

// waitHealthy polls url until it answers 200, the process exits, or the
// timeout passes.
func waitHealthy(ctx context.Context, timeout time.Duration, p *process, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var lastErr error
	for {
		if p.exited() {
			return p.failure("%s did not become healthy", p.name)
		}
		lastErr = probe(ctx, client, url)
		if lastErr == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return p.failure("%s not healthy at %s: %v (last probe: %v)", p.name, url, ctx.Err(), lastErr)
		case <-p.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// freePort asks the kernel for a free TCP port on ip. The port is released
// before the component binds it; a collision in between is possible but rare,
// and shows up as a start error naming the port.
func freePort(ip string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", ip, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// firstServiceIP returns the first address of the Service range, which the
// API server gives to the `kubernetes` Service.
func firstServiceIP(cidr string) (netip.Addr, error) {
	prefix, err := netip.ParsePrefix(cidr)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("service cluster IP range %q: %w", cidr, err)
	}
	return prefix.Masked().Addr().Next(), nil
}

func uniqueIPs(addrs ...string) []net.IP {
	seen := map[string]bool{}
	var ips []net.IP
	for _, a := range addrs {
		ip := net.ParseIP(a)
		if ip == nil || seen[ip.String()] {
			continue
		}
		seen[ip.String()] = true
		ips = append(ips, ip)
	}
	return ips
}
