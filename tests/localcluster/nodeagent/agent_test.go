package nodeagent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/controlplane"
)

const (
	testNode   = "node-a"
	probeImage = "registry.local/probeapp:1"
	// openBaoVersion is one of the versions `make openbao-bins` fetches.
	openBaoVersion = "2.7.2"
	// waitLong bounds every wait for the cluster to converge; it is a
	// deadline, never an expectation of speed.
	waitLong = 2 * time.Minute
)

// cluster is a real control plane with the node agent running pods.
type cluster struct {
	cp       *controlplane.ControlPlane
	cs       kubernetes.Interface
	stateDir string
	gateway  string
	cfg      Config
	cancel   context.CancelFunc
	done     chan error
}

func kubeAssets(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("KUBE_ASSETS")
	if dir == "" {
		if abs, err := filepath.Abs("../../../.cache/kube/1.35.4"); err == nil {
			dir = abs
		}
	}
	for _, bin := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			t.Fatalf("%s not found in KUBE_ASSETS=%q: run `make kube-assets` and set KUBE_ASSETS=.cache/kube/1.35.4", bin, dir)
		}
	}
	return dir
}

// openBaoDir is where `make openbao-bins` puts the bao binaries.
func openBaoDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OPENBAO_DIR")
	if dir == "" {
		dir, _ = filepath.Abs("../../../.cache/openbao")
	}
	if _, err := os.Stat(filepath.Join(dir, openBaoVersion, "bao")); err != nil {
		t.Fatalf("OpenBao %s not found in OPENBAO_DIR=%q: run `make openbao-bins`", openBaoVersion, dir)
	}
	return dir
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	requireRoot(t)
	assets := kubeAssets(t)
	c := &cluster{stateDir: filepath.Join(t.TempDir(), "node")}
	cleanupNetwork(testBridge, true)
	// Registered first, so it runs last: after the control plane stopped.
	t.Cleanup(func() {
		assertNoLeftovers(t)
		if err := DeleteBridge(testBridge); err != nil {
			t.Error(err)
		}
	})
	var err error
	if c.gateway, err = Gateway(testCIDR); err != nil {
		t.Fatal(err)
	}
	if err := EnsureBridge(testBridge, testCIDR); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	c.cp, err = controlplane.Start(ctx, controlplane.Options{Dir: filepath.Join(t.TempDir(), "cp"), AssetsDir: assets, BindIP: c.gateway})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.cp.Stop(); err != nil {
			t.Errorf("stop control plane: %v", err)
		}
	})
	c.cs = kubernetes.NewForConfigOrDie(c.cp.RESTConfig())
	port := 443
	if u, err := url.Parse(c.cp.Server()); err == nil {
		fmt.Sscanf(u.Port(), "%d", &port)
	}
	c.cfg = Config{
		RESTConfig:    c.cp.RESTConfig(),
		NodeName:      testNode,
		StateDir:      c.stateDir,
		BridgeName:    testBridge,
		CIDR:          testCIDR,
		APIServerHost: c.gateway,
		APIServerPort: port,
		Images: Resolvers{
			MapResolver{
				"registry.local/probeapp": {Entrypoint: []string{probeApp(t)}},
				toolsImage:                {Root: toolsImageRoot(t)},
				bundleImage:               {Root: bundleImageRoot(t), Scratch: true},
			},
			PatternResolver{OpenBaoRule(openBaoDir(t))},
		},
	}
	c.startAgent(t)
	t.Cleanup(c.stopAgent)
	return c
}

func (c *cluster) startAgent(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan error, 1)
	go func() { c.done <- Run(ctx, c.cfg) }()
}

func (c *cluster) stopAgent() {
	if c.cancel == nil {
		return
	}
	c.cancel()
	<-c.done
	c.cancel = nil
}

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(waitLong)
	var last error
	for {
		ok, err := cond()
		if ok {
			if d := time.Since(start); d > 5*time.Second {
				t.Logf("waited %s for %s", d.Round(100*time.Millisecond), what)
			}
			return
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) namespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	_, err := c.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "default service account in "+name, func() (bool, error) {
		_, err := c.cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, err
	})
	return name
}

func (c *cluster) pod(t *testing.T, ns, name string) *corev1.Pod {
	t.Helper()
	p, err := c.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *cluster) waitPod(t *testing.T, ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var got *corev1.Pod
	ok := false
	defer func() {
		if !ok && got != nil {
			// Show the containers' output when the wait failed.
			logs, _ := filepath.Glob(filepath.Join(c.stateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, name, got.UID), "*", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				t.Logf("%s:\n%s", l, data)
			}
		}
	}()
	waitFor(t, fmt.Sprintf("pod %s/%s %s", ns, name, what), func() (bool, error) {
		p, err := c.cs.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = p
		return cond(p), fmt.Errorf("phase %s, containers %s", p.Status.Phase, describeContainers(p))
	})
	ok = true
	return got
}

func describeContainers(p *corev1.Pod) string {
	var parts []string
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		switch {
		case cs.State.Waiting != nil:
			parts = append(parts, fmt.Sprintf("%s waiting %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Running != nil:
			parts = append(parts, fmt.Sprintf("%s running ready=%v", cs.Name, cs.Ready))
		case cs.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s terminated %d %s %s", cs.Name, cs.State.Terminated.ExitCode, cs.State.Terminated.Reason, cs.State.Terminated.Message))
		}
	}
	return strings.Join(parts, "; ") + " " + p.Status.Message
}

func isReady(p *corev1.Pod) bool { return podReady(p) }

func serveContainer(name string, args ...string) corev1.Container {
	return corev1.Container{
		Name:  name,
		Image: probeImage,
		Args:  append([]string{"serve"}, args...),
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
	}
}

func httpGet(t *testing.T, podIP, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + podIP + ":8080" + path)
	if err != nil {
		t.Fatalf("GET %s%s: %v", podIP, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAgent(t *testing.T) {
	c := startCluster(t)
	t.Run("Node", c.testNode)
	t.Run("VolumesAndEnv", c.testVolumesAndEnv)
	t.Run("Probes", c.testProbes)
	t.Run("UnknownImage", c.testUnknownImage)
	t.Run("GracefulDeletion", c.testGracefulDeletion)
	t.Run("Jobs", c.testJobs)
	t.Run("StatefulSetStorageAndDNS", c.testStatefulSet)
	t.Run("OpenBaoImage", c.testOpenBao)
	t.Run("Logs", c.testLogs)
	t.Run("ImageFiles", c.testImageFiles)
	t.Run("RestartReconcile", c.testRestartReconcile)
	t.Run("StopLeavesNothing", c.testStop)
}

func (c *cluster) testNode(t *testing.T) {
	ctx := context.Background()
	waitFor(t, "node Ready", func() (bool, error) {
		n, err := c.cs.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return len(n.Status.Addresses) > 0 && !n.Status.Capacity.Cpu().IsZero(), nil
			}
		}
		return false, nil
	})
	// The lease is created at registration, or at the next heartbeat when the API server had
	// not created the kube-node-lease namespace yet.
	var lease *coordinationv1.Lease
	waitFor(t, "node lease", func() (bool, error) {
		l, err := c.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		lease = l
		return true, nil
	})
	first := lease.Spec.RenewTime.Time
	waitFor(t, "lease renewal", func() (bool, error) {
		l, err := c.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return l.Spec.RenewTime.After(first), nil
	})
	sc, err := c.cs.StorageV1().StorageClasses().Get(ctx, StorageClassName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Annotations["storageclass.kubernetes.io/is-default-class"] != "true" {
		t.Errorf("StorageClass %s is not the default", sc.Name)
	}
}

func (c *cluster) testVolumesAndEnv(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "volumes")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"a.conf": "alpha", "b": "beta"}}
	if _, err := c.cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sec"}, Data: map[string][]byte{"password": []byte("s3cret")}}
	if _, err := c.cs.CoreV1().Secrets(ns).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	linked := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "my-db"}, Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{Name: "sql", Port: 5432}}}}
	linked, err := c.cs.CoreV1().Services(ns).Create(ctx, linked, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctr := serveContainer("app")
	ctr.WorkingDir = "/work-dir"
	ctr.Env = []corev1.EnvVar{
		{Name: "PLAIN", Value: "value"},
		{Name: "EXPANDED", Value: "$(PLAIN)-x-$$(PLAIN)-$(MISSING)"},
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "TIER", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['tier']"}}},
		{Name: "SA", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.serviceAccountName"}}},
		{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "sec"}, Key: "password"}}},
		{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "b"}}},
	}
	ctr.EnvFrom = []corev1.EnvFromSource{{Prefix: "CM_", ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}
	ctr.VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/openbao/config", ReadOnly: true},
		{Name: "config", MountPath: "/etc/app/a.conf", SubPath: "a.conf"},
		{Name: "secret", MountPath: "/openbao/tls", ReadOnly: true},
		{Name: "scratch", MountPath: "/openbao/data"},
		{Name: "podinfo", MountPath: "/etc/podinfo"},
		{Name: "projected", MountPath: "/var/run/secrets/tokens"},
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{"tier": "backend"}},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000), FSGroup: ptr.To[int64](2000)},
			Containers:      []corev1.Container{ctr},
			Volumes: []corev1.Volume{
				{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}},
				{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "sec", DefaultMode: ptr.To[int32](0o440),
					Items: []corev1.KeyToPath{{Key: "password", Path: "dir/pw"}}}}},
				{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "podinfo", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
					{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
					{Path: "name", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
				}}}},
				{Name: "projected", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Audience: "openbao", ExpirationSeconds: ptr.To[int64](600), Path: "openbao-token"}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Items: []corev1.KeyToPath{{Key: "b", Path: "b.txt"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "ns", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
				}}}},
			},
		},
	}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "app", "Ready", isReady)
	if p.Spec.NodeName != testNode || p.Status.PodIP == "" || p.Status.HostIP != c.gateway || p.Status.Phase != corev1.PodRunning {
		t.Fatalf("pod placement/status: node %q ip %q host %q phase %s", p.Spec.NodeName, p.Status.PodIP, p.Status.HostIP, p.Status.Phase)
	}
	cs := p.Status.ContainerStatuses[0]
	if cs.Image != probeImage || !strings.HasPrefix(cs.ImageID, "sha256:") || cs.Started == nil || !*cs.Started || cs.ContainerID == "" {
		t.Errorf("container status: %+v", cs)
	}
	ip := p.Status.PodIP

	var env map[string]string
	_, body := httpGet(t, ip, "/env")
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatal(err)
	}
	wantEnv := map[string]string{
		"PLAIN": "value", "EXPANDED": "value-x-$(PLAIN)-$(MISSING)", "POD_NAME": "app", "POD_NS": ns, "POD_IP": ip,
		"TIER": "backend", "SA": "default", "PASSWORD": "s3cret", "B": "beta", "CM_b": "beta", "CM_a.conf": "alpha",
		"KUBERNETES_SERVICE_HOST": c.gateway, "KUBERNETES_SERVICE_PORT": fmt.Sprint(c.cfg.APIServerPort), "HOSTNAME": "app",
		"MY_DB_SERVICE_HOST": linked.Spec.ClusterIP, "MY_DB_SERVICE_PORT_SQL": "5432", "MY_DB_PORT_5432_TCP": "tcp://" + linked.Spec.ClusterIP + ":5432",
	}
	for k, v := range wantEnv {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}

	var id struct {
		UID, GID int
		Groups   []int
		Hostname string
		Cwd      string
	}
	_, body = httpGet(t, ip, "/id")
	if err := json.Unmarshal([]byte(body), &id); err != nil {
		t.Fatal(err)
	}
	if id.UID != 1000 || id.GID != 1000 || id.Hostname != "app" || id.Cwd != "/work-dir" || !containsInt(id.Groups, 2000) {
		t.Errorf("identity = %+v", id)
	}

	files := map[string]string{
		"/openbao/config/a.conf":        "alpha",
		"/openbao/config/b":             "beta",
		"/etc/app/a.conf":               "alpha",
		"/openbao/tls/dir/pw":           "s3cret",
		"/etc/podinfo/name":             "app",
		"/etc/podinfo/labels":           `tier="backend"`,
		"/var/run/secrets/tokens/b.txt": "beta",
		"/var/run/secrets/tokens/ns":    ns,
		"/var/run/secrets/kubernetes.io/serviceaccount/namespace": ns,
	}
	for path, want := range files {
		if code, got := httpGet(t, ip, "/file?path="+path); code != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", path, code, got, want)
		}
	}
	if code, got := httpGet(t, ip, "/file?path=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"); code != 200 || !strings.Contains(got, "BEGIN CERTIFICATE") {
		t.Errorf("default token ca.crt: %d %q", code, got)
	}
	for path, aud := range map[string]string{"/var/run/secrets/tokens/openbao-token": "openbao", "/var/run/secrets/kubernetes.io/serviceaccount/token": ""} {
		code, tok := httpGet(t, ip, "/file?path="+path)
		if code != 200 {
			t.Errorf("%s: %d %s", path, code, tok)
			continue
		}
		claims := jwtClaims(t, tok)
		if aud != "" && !strings.Contains(fmt.Sprint(claims["aud"]), aud) {
			t.Errorf("%s: audience %v, want %s", path, claims["aud"], aud)
		}
		if sub := fmt.Sprint(claims["sub"]); sub != "system:serviceaccount:"+ns+":default" {
			t.Errorf("%s: subject %s", path, sub)
		}
	}
	// The in-cluster client path: service env, mounted token and CA, the
	// API server's certificate valid for the gateway address.
	if code, got := httpGet(t, ip, "/apicall?path=/api"); code != 200 || !strings.Contains(got, "APIVersions") {
		t.Errorf("in-cluster API call: %d %s", code, got)
	}
	if code, got := httpGet(t, ip, "/file?path=/etc/resolv.conf"); code != 200 ||
		!strings.Contains(got, "nameserver "+c.gateway) || !strings.Contains(got, "search "+ns+".svc.cluster.local svc.cluster.local cluster.local") || !strings.Contains(got, "ndots:5") {
		t.Errorf("resolv.conf: %q", got)
	}
	if code, got := httpGet(t, ip, "/file?path=/etc/hosts"); code != 200 || !strings.Contains(got, ip+"\tapp") {
		t.Errorf("hosts: %q", got)
	}
	if code, _ := httpGet(t, ip, "/write?path=/openbao/config/new&data=x"); code == 200 {
		t.Errorf("write into a readOnly mount succeeded")
	}
	if code, got := httpGet(t, ip, "/write?path=/openbao/data/new&data=x"); code != 200 {
		t.Errorf("write into an emptyDir failed: %s", got)
	}

	// A ConfigMap change reaches the volume (not the subPath mount, as in Kubernetes).
	cm.Data["a.conf"] = "alpha-2"
	if _, err := c.cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "configMap volume refresh", func() (bool, error) {
		_, got := httpGet(t, ip, "/file?path=/openbao/config/a.conf")
		return got == "alpha-2", fmt.Errorf("content %q", got)
	})
	logPath := filepath.Join(c.stateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, "app", p.UID), "app", "0.log")
	if data, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(data), "listening on") {
		t.Errorf("container log %s: %v %q", logPath, err, data)
	}
}

func containsInt(list []int, v int) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

func jwtClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(data, &claims); err != nil {
		t.Fatal(err)
	}
	return claims
}

func (c *cluster) testProbes(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "probes")
	web := serveContainer("web")
	web.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}},
		PeriodSeconds: 1, FailureThreshold: 1}
	web.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
		PeriodSeconds: 1, FailureThreshold: 2}
	side := corev1.Container{Name: "side", Image: probeImage, Args: []string{"sleep"},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"probeapp", "exists", "/tmp/side-ready"}}},
			PeriodSeconds: 1, FailureThreshold: 1},
		LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
			InitialDelaySeconds: 2, PeriodSeconds: 1, FailureThreshold: 30},
	}
	secure := corev1.Container{Name: "secure", Image: probeImage, Args: []string{"serve", "-port", "8443", "-tls"},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS}},
			PeriodSeconds: 1, FailureThreshold: 1},
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probed"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](2),
		Containers:                    []corev1.Container{web, side, secure},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "probed", "running with web and secure (HTTPS probe) ready", func(p *corev1.Pod) bool {
		return p.Status.PodIP != "" && len(p.Status.ContainerStatuses) == 3 && p.Status.ContainerStatuses[0].Ready && p.Status.ContainerStatuses[2].Ready
	})
	if isReady(p) || p.Status.ContainerStatuses[1].Ready {
		t.Fatalf("pod Ready before the exec readiness probe could pass: %s", describeContainers(p))
	}
	ip := p.Status.PodIP
	// Containers of a pod share /tmp (as they share the network): the web
	// container creates the file the side container's exec probe checks.
	httpGet(t, ip, "/write?path=/tmp/side-ready&data=1")
	c.waitPod(t, ns, "probed", "Ready after the exec probe passed", isReady)
	httpGet(t, ip, "/setready?ok=0")
	c.waitPod(t, ns, "probed", "not Ready after the readiness probe failed", func(p *corev1.Pod) bool { return !isReady(p) })
	httpGet(t, ip, "/setready?ok=1")
	c.waitPod(t, ns, "probed", "Ready again", isReady)
	httpGet(t, ip, "/sethealth?ok=0")
	p = c.waitPod(t, ns, "probed", "web restarted after its liveness probe failed", func(p *corev1.Pod) bool {
		return p.Status.ContainerStatuses[0].RestartCount >= 1 && isReady(p)
	})
	last := p.Status.ContainerStatuses[0].LastTerminationState.Terminated
	if last == nil {
		t.Errorf("web lastState = %+v", p.Status.ContainerStatuses[0].LastTerminationState)
	}
	if p.Status.ContainerStatuses[1].RestartCount != 0 {
		t.Errorf("side restarted although its tcpSocket liveness probe should pass: %s", describeContainers(p))
	}
}

func (c *cluster) testUnknownImage(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "images")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "missing"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "main", Image: "registry.local/does-not-exist:9"}},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "missing", "waiting on its image", func(p *corev1.Pod) bool {
		if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false
		}
		r := p.Status.ContainerStatuses[0].State.Waiting.Reason
		return r == "ErrImagePull" || r == "ImagePullBackOff"
	})
	w := p.Status.ContainerStatuses[0].State.Waiting
	if !strings.Contains(w.Message, "registry.local/does-not-exist:9") || p.Status.Phase != corev1.PodPending {
		t.Errorf("waiting %+v, phase %s", w, p.Status.Phase)
	}
	c.waitPod(t, ns, "missing", "in ImagePullBackOff", func(p *corev1.Pod) bool {
		w := p.Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "ImagePullBackOff"
	})
	waitFor(t, "Scheduled and Failed events of the pod", func() (bool, error) {
		events, err := c.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=missing"})
		if err != nil {
			return false, err
		}
		seen := map[string]bool{}
		for _, e := range events.Items {
			seen[e.Reason] = true
		}
		return seen["Scheduled"] && seen["Failed"], fmt.Errorf("events %v", seen)
	})
}

func (c *cluster) testGracefulDeletion(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "graceful")
	hostDir := t.TempDir()
	_ = os.Chmod(hostDir, 0o777)
	mk := func(name, delay string, grace int64) {
		ctr := serveContainer("main", "-term-delay", delay)
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "marks", MountPath: "/marks"}}
		ctr.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"probeapp", "touch", "/marks/" + name}}}}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(grace),
			Containers:                    []corev1.Container{ctr},
			Volumes:                       []corev1.Volume{{Name: "marks", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir}}}},
		}}
		if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mk("slow", "1h", 3)
	mk("quick", "1s", 60)
	mk("forced", "1h", 600)
	slow := c.waitPod(t, ns, "slow", "Ready", isReady)
	quick := c.waitPod(t, ns, "quick", "Ready", isReady)
	forced := c.waitPod(t, ns, "forced", "Ready", isReady)
	deleted := func(name string) func() (bool, error) {
		return func() (bool, error) {
			_, err := c.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), err
		}
	}
	start := time.Now()
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "slow", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "quick", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "slow pod removed", deleted("slow"))
	if elapsed := time.Since(start); elapsed < 3*time.Second {
		t.Errorf("pod ignoring SIGTERM was removed after %s, before its 3s grace period", elapsed)
	}
	waitFor(t, "quick pod removed", deleted("quick"))

	// A force delete during a long grace period stops the pod at once.
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "forced", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	c.waitPod(t, ns, "forced", "got SIGTERM", func(*corev1.Pod) bool {
		log, _ := os.ReadFile(filepath.Join(c.stateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, "forced", forced.UID), "main", "0.log"))
		return strings.Contains(string(log), "got terminated")
	})
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "forced", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "force-deleted pod's folder removed (long before its 600s grace period)", func() (bool, error) {
		_, err := os.Stat(filepath.Join(c.stateDir, "pods", string(forced.UID)))
		return os.IsNotExist(err), err
	})
	for name, uid := range map[string]string{"slow": string(slow.UID), "quick": string(quick.UID)} {
		if _, err := os.Stat(filepath.Join(hostDir, name)); err != nil {
			t.Errorf("preStop hook of %s did not run: %v", name, err)
		}
		log, _ := os.ReadFile(filepath.Join(c.stateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, name, uid), "main", "0.log"))
		if !strings.Contains(string(log), "got terminated") {
			t.Errorf("%s did not get SIGTERM: %q", name, log)
		}
		if clean := strings.Contains(string(log), "clean exit"); clean != (name == "quick") {
			t.Errorf("%s: clean exit = %v, log %q", name, clean, log)
		}
		if _, err := os.Stat(filepath.Join(c.stateDir, "pods", uid)); !os.IsNotExist(err) {
			t.Errorf("folder of deleted pod %s still exists (%v)", name, err)
		}
	}
}

func (c *cluster) testJobs(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "jobs")
	job := func(name string, code int) *batchv1.Job {
		return &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: batchv1.JobSpec{
			BackoffLimit: ptr.To[int32](0),
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy:  corev1.RestartPolicyNever,
				InitContainers: []corev1.Container{{Name: "init", Image: probeImage, Args: []string{"exit", "0"}}},
				Containers:     []corev1.Container{{Name: "main", Image: probeImage, Args: []string{"exit", fmt.Sprint(code)}}},
			}},
		}}
	}
	for name, code := range map[string]int{"succeeds": 0, "fails": 3} {
		if _, err := c.cs.BatchV1().Jobs(ns).Create(ctx, job(name, code), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	jobDone := func(name string, want batchv1.JobConditionType) {
		waitFor(t, "job "+name+" "+string(want), func() (bool, error) {
			j, err := c.cs.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			for _, cond := range j.Status.Conditions {
				if cond.Type == want && cond.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, fmt.Errorf("conditions %+v", j.Status.Conditions)
		})
	}
	jobDone("succeeds", batchv1.JobComplete)
	jobDone("fails", batchv1.JobFailed)
	pods, err := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=fails"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("pods of job fails: %v %d", err, len(pods.Items))
	}
	p := pods.Items[0]
	if p.Status.Phase != corev1.PodFailed || p.Status.ContainerStatuses[0].State.Terminated == nil || p.Status.ContainerStatuses[0].State.Terminated.ExitCode != 3 {
		t.Errorf("failed job pod: phase %s, %s", p.Status.Phase, describeContainers(&p))
	}

	if m := p.Status.ContainerStatuses[0].State.Terminated; m != nil && m.Message != "" {
		t.Errorf("a container that wrote no termination message (policy File) got %q", m.Message)
	}

	// Termination messages, as the kubelet makes them: a file any user may write at the
	// container's terminationMessagePath, also under a read-only root, and the end of the log
	// of a failed container that asks for FallbackToLogsOnError.
	messages := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "messages"}, Spec: corev1.PodSpec{
		RestartPolicy:   corev1.RestartPolicyNever,
		Hostname:        "message-host",
		SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000), RunAsGroup: ptr.To[int64](1000)},
		Containers: []corev1.Container{
			{Name: "writes", Image: probeImage, Args: []string{"cp", "/etc/hostname", "/dev/termination-log"},
				SecurityContext: &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)}},
			{Name: "falls-back", Image: probeImage, Args: []string{"exit", "5"},
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError},
		},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, messages, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := c.waitPod(t, ns, "messages", "finished", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	want := map[string]string{"writes": "message-host", "falls-back": "exiting with 5"}
	for _, st := range done.Status.ContainerStatuses {
		term := st.State.Terminated
		if term == nil || strings.TrimSpace(term.Message) != want[st.Name] {
			t.Errorf("container %s: termination message %v, want %q (%s)", st.Name, term, want[st.Name], describeContainers(done))
		}
	}

	// A sidecar (init container with restartPolicy Always) runs before and
	// next to the main container, and does not keep the pod from finishing.
	sidecar := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "with-sidecar"}, Spec: corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{{Name: "proxy", Image: probeImage, Args: []string{"serve", "-port", "8081"},
			RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8081)}},
				PeriodSeconds: 1, FailureThreshold: 30}}},
		Containers: []corev1.Container{{Name: "main", Image: probeImage, Args: []string{"get", "http://127.0.0.1:8081/ready"}}},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, sidecar, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done = c.waitPod(t, ns, "with-sidecar", "finished", func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	if done.Status.Phase != corev1.PodSucceeded {
		t.Errorf("pod with a sidecar: phase %s, %s", done.Status.Phase, describeContainers(done))
	}

	// An init container failing in a restartPolicy=Never pod fails the pod.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "init-fails"}, Spec: corev1.PodSpec{
		RestartPolicy:  corev1.RestartPolicyNever,
		InitContainers: []corev1.Container{{Name: "init", Image: probeImage, Args: []string{"exit", "7"}}},
		Containers:     []corev1.Container{{Name: "main", Image: probeImage, Args: []string{"sleep"}}},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := c.waitPod(t, ns, "init-fails", "Failed", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if st := got.Status.ContainerStatuses[0].State; st.Running != nil || st.Terminated != nil {
		t.Errorf("main container ran although its init container failed: %s", describeContainers(got))
	}
}

func (c *cluster) testStatefulSet(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "sts")
	labels := map[string]string{"app": "web"}
	headless := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{
		ClusterIP: corev1.ClusterIPNone, Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
	clusterIP := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web-cip"}, Spec: corev1.ServiceSpec{
		Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 8080}}}}
	for _, svc := range []*corev1.Service{headless, clusterIP} {
		if _, err := c.cs.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctr := serveContainer("web")
	ctr.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1}
	ctr.VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/openbao/data"}}
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.StatefulSetSpec{
		Replicas:    ptr.To[int32](2),
		ServiceName: "web",
		Selector:    &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			SecurityContext:               &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](1000), FSGroup: ptr.To[int64](1000)},
			Containers:                    []corev1.Container{ctr},
		}},
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		}}},
	}}
	if _, err := c.cs.AppsV1().StatefulSets(ns).Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web0 := c.waitPod(t, ns, "web-0", "Ready", isReady)
	web1 := c.waitPod(t, ns, "web-1", "Ready", isReady)
	pvc, err := c.cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data-web-0", metav1.GetOptions{})
	if err != nil || pvc.Status.Phase != corev1.ClaimBound {
		t.Fatalf("claim data-web-0: %v %+v", err, pvc.Status)
	}
	pvName := pvc.Spec.VolumeName
	if code, body := httpGet(t, web0.Status.PodIP, "/write?path=/openbao/data/kept&data=survives"); code != 200 {
		t.Fatalf("write to the claim: %s", body)
	}

	// DNS, resolved by the pods themselves through their resolv.conf.
	svcIP := func() string {
		s, err := c.cs.CoreV1().Services(ns).Get(ctx, "web-cip", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s.Spec.ClusterIP
	}()
	resolve := func(from, name string) (int, []string) {
		code, body := httpGet(t, from, "/resolve?name="+name)
		var addrs []string
		_ = json.Unmarshal([]byte(body), &addrs)
		return code, addrs
	}
	cases := map[string][]string{
		"web-0.web":                              {web0.Status.PodIP},
		"web-1.web." + ns + ".svc.cluster.local": {web1.Status.PodIP},
		"web":                                    {web0.Status.PodIP, web1.Status.PodIP},
		"web-cip." + ns:                          {svcIP},
		"kubernetes.default.svc":                 {c.gateway},
	}
	// DNS follows the API objects through the agent's cache: eventually
	// consistent, as in any cluster.
	for name, want := range cases {
		waitFor(t, "DNS answer for "+name, func() (bool, error) {
			code, got := resolve(web1.Status.PodIP, name)
			return code == 200 && strings.Join(sorted(got), ",") == strings.Join(sorted(want), ","), fmt.Errorf("%d %v, want %v", code, got, want)
		})
	}
	for _, name := range []string{"nope", "web-2.web", "example.com"} {
		if code, got := resolve(web1.Status.PodIP, name); code != 404 {
			t.Errorf("resolve %s: %d %v, want not found", name, code, got)
		}
	}
	// A pod that is not ready leaves the headless service's answer.
	httpGet(t, web1.Status.PodIP, "/setready?ok=0")
	c.waitPod(t, ns, "web-1", "not Ready", func(p *corev1.Pod) bool { return !isReady(p) })
	waitFor(t, "headless service answer without the unready pod", func() (bool, error) {
		_, got := resolve(web0.Status.PodIP, "web")
		return strings.Join(got, ",") == web0.Status.PodIP, fmt.Errorf("got %v", got)
	})
	httpGet(t, web1.Status.PodIP, "/setready?ok=1")

	// The claim's folder survives the pod.
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	newWeb0 := c.waitPod(t, ns, "web-0", "recreated and Ready", func(p *corev1.Pod) bool { return p.UID != web0.UID && isReady(p) })
	if code, body := httpGet(t, newWeb0.Status.PodIP, "/file?path=/openbao/data/kept"); code != 200 || body != "survives" {
		t.Errorf("claim content after pod re-creation: %d %q", code, body)
	}
	folder := filepath.Join(c.stateDir, "pv", pvName)
	if _, err := os.Stat(filepath.Join(folder, "kept")); err != nil {
		t.Errorf("claim folder: %v", err)
	}

	// Deleting the StatefulSet and the claim releases and removes the volume.
	// Scaling to zero lets the StatefulSet controller remove the pods
	// (deleting the StatefulSet leaves that to the garbage collector,
	// which can take a while to get to it).
	scale, err := c.cs.AppsV1().StatefulSets(ns).GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 0
	if _, err := c.cs.AppsV1().StatefulSets(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "StatefulSet pods gone", func() (bool, error) {
		pods, err := c.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(pods.Items) == 0, err
	})
	if err := c.cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "volume "+pvName+" deleted", func() (bool, error) {
		_, err := c.cs.CoreV1().PersistentVolumes().Get(ctx, pvName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	if _, err := os.Stat(folder); !os.IsNotExist(err) {
		t.Errorf("claim folder %s still exists (%v)", folder, err)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// testRestartReconcile stops the agent, deletes a pod while it is down and
// starts it again: the deleted pod is finished off, the other runs again
// with the same address.
func (c *cluster) testRestartReconcile(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "restart")
	for _, name := range []string{"keep", "drop", "forced"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1), Containers: []corev1.Container{serveContainer("main")}}}
		if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	keep := c.waitPod(t, ns, "keep", "Ready", isReady)
	drop := c.waitPod(t, ns, "drop", "Ready", isReady)
	forced := c.waitPod(t, ns, "forced", "Ready", isReady)
	c.stopAgent()
	assertNoLeftovers(t)
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "drop", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Force deletion removes the object at once: only the node's folder is left.
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "forced", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(c.stateDir, "pods", string(drop.UID))); err != nil {
		t.Fatalf("folder of pod drop missing before restart: %v", err)
	}
	c.startAgent(t)
	waitFor(t, "pod deleted while the agent was down removed", func() (bool, error) {
		_, err := c.cs.CoreV1().Pods(ns).Get(ctx, "drop", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	again := c.waitPod(t, ns, "keep", "Ready again after the agent restarted", func(p *corev1.Pod) bool {
		return isReady(p) && p.Status.ContainerStatuses[0].RestartCount > 0
	})
	if rc := again.Status.ContainerStatuses[0].RestartCount; rc != 1 {
		t.Errorf("restartCount after an agent restart = %d, want 1", rc)
	}
	if again.Status.PodIP != keep.Status.PodIP {
		t.Errorf("pod address changed across an agent restart: %s -> %s", keep.Status.PodIP, again.Status.PodIP)
	}
	for _, uid := range []string{string(drop.UID), string(forced.UID)} {
		waitFor(t, "folder of a pod deleted while the agent was down removed", func() (bool, error) {
			_, err := os.Stat(filepath.Join(c.stateDir, "pods", uid))
			return os.IsNotExist(err), err
		})
	}
}

func (c *cluster) testStop(t *testing.T) {
	c.stopAgent()
	assertNoLeftovers(t)
	if _, err := os.Stat(filepath.Join("/sys/class/net", testBridge)); err != nil {
		t.Errorf("bridge %s made before Run was removed by Run: the API server's address went with it", testBridge)
	}
}

// assertNoLeftovers checks that no pod network namespace, veth or
// container process of this test binary is left.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	if ns := ownedNetns(testBridge); len(ns) > 0 {
		t.Errorf("network namespaces left: %v", ns)
	}
	if v := ownedVeths(testBridge); len(v) > 0 {
		t.Errorf("veths left: %v", v)
	}
	if pids := processesOf(probeAppPath); len(pids) > 0 {
		t.Errorf("container processes left: %v", pids)
	}
}

// processesOf lists the processes running the executable at path.
func processesOf(path string) []string {
	entries, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range entries {
		if exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && strings.TrimSuffix(exe, " (deleted)") == path {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// testOpenBao runs the real OpenBao server from its image reference, as a
// non-root user, with a readiness probe on its health endpoint.
func (c *cluster) testOpenBao(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "openbao")
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "bao"}, Spec: corev1.PodSpec{
		SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](100), RunAsGroup: ptr.To[int64](1000), RunAsNonRoot: ptr.To(true)},
		Containers: []corev1.Container{{
			Name:         "openbao",
			Image:        "quay.io/openbao/openbao:" + openBaoVersion,
			Args:         []string{"server", "-dev", "-dev-listen-address=0.0.0.0:8200", "-dev-root-token-id=root"},
			Env:          []corev1.EnvVar{{Name: "HOME", Value: "/home/openbao"}},
			VolumeMounts: []corev1.VolumeMount{{Name: "home", MountPath: "/home/openbao"}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/v1/sys/health", Port: intstr.FromInt32(8200)}},
				PeriodSeconds: 1},
		}},
		Volumes: []corev1.Volume{{Name: "home", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "bao", "Ready", isReady)
	resp, err := http.Get("http://" + p.Status.PodIP + ":8200/v1/sys/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var health struct {
		Initialized, Sealed bool
		Version             string
	}
	if err := json.NewDecoder(resp.Body).Decode(&health); err != nil {
		t.Fatal(err)
	}
	if !health.Initialized || health.Sealed || health.Version != openBaoVersion {
		t.Errorf("health = %+v", health)
	}
}
