package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// Deadlines for waiting. They bound how long the suite waits for the cluster
// to converge; they are never expectations of speed.
const (
	waitFormed = 10 * time.Minute
	waitShort  = 3 * time.Minute
	pollEvery  = time.Second
)

// appRole is the JWT role that the suite's clusters grant, through
// spec.selfInit, to the service account appServiceAccount of their
// namespace: read and write secret/e2e/*.
const (
	appRole           = loadclient.AppRole
	appAudience       = loadclient.AppAudience
	appServiceAccount = loadclient.AppServiceAccount
)

// newNamespace creates a namespace for one test and deletes it afterwards.
func newNamespace(t *testing.T, name string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	eventually(t, waitShort, "service account default in "+name, func() (bool, string) {
		_, err := cs.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, fmt.Sprint(err)
	})
	return name
}

// newCluster builds an OpenBaoCluster whose self-initialization enables a
// kv-v2 engine at secret/ and the app role for appServiceAccount.
func newCluster(ns, name string, replicas int32) *openbaov1alpha1.OpenBaoCluster {
	return loadclient.AppCluster(loadclient.AppClusterOptions{
		Namespace: ns, Name: name, Version: openBaoVersion, Replicas: replicas, Scope: "e2e", TokenTTL: "10m",
	})
}

// missingImage is an OpenBao image that cannot run: its pods never become ready.
const missingImage = "quay.io/openbao/openbao:0.0.0-missing"

// waitUpgradeHalted waits until the operator halts the cluster's upgrade: Degraded=True with
// reason UpgradeFailed.
func waitUpgradeHalted(t *testing.T, ns, name, what string) {
	t.Helper()
	eventually(t, waitUpgrade, what+" (Degraded=True UpgradeFailed)", func() (bool, string) {
		c := getCluster(t, ns, name)
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == openbaov1alpha1.ReasonUpgradeFailed, describeCluster(ns, c)
	})
}

func getCluster(t *testing.T, ns, name string) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	c := &openbaov1alpha1.OpenBaoCluster{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
		t.Fatalf("get OpenBaoCluster %s/%s: %v", ns, name, err)
	}
	return c
}

// waitEvent waits until the namespace holds an event that match accepts; what names it.
func waitEvent(t *testing.T, ns, what string, match func(e *eventsv1.Event) bool) {
	t.Helper()
	eventually(t, waitShort, what, func() (bool, string) {
		events, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		seen := make([]string, 0, len(events.Items))
		for i := range events.Items {
			e := &events.Items[i]
			if match(e) {
				return true, ""
			}
			seen = append(seen, e.Type+" "+e.Reason+": "+e.Note)
		}
		return false, fmt.Sprintf("events: %q", seen)
	})
}

// eventually polls cond until it holds; at the deadline the test fails with
// cond's last description of what it saw.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		if err := env.Check(); err != nil {
			t.Fatalf("waiting for %s: the local cluster broke: %v", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s; last seen: %s", what, timeout, last)
		}
		time.Sleep(pollEvery)
	}
}

// waitFullyFormed waits until the operator reports the cluster Available
// with every server ready, an initialized, unsealed healthy voter, and one
// leader; it returns the cluster as last read.
func waitFullyFormed(t *testing.T, ns, name string, replicas int) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	var c *openbaov1alpha1.OpenBaoCluster
	eventually(t, waitFormed, fmt.Sprintf("OpenBaoCluster %s/%s Available with %d ready voters", ns, name, replicas), func() (bool, string) {
		c = &openbaov1alpha1.OpenBaoCluster{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
			return false, err.Error()
		}
		voters := 0
		for _, m := range c.Status.Members {
			if m.Initialized && !m.Sealed && m.Voter && m.Healthy {
				voters++
			}
		}
		ok := meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionAvailable) &&
			int(c.Status.ReadyReplicas) == replicas && voters == replicas && c.Status.Leader != "" &&
			c.Status.Phase == openbaov1alpha1.PhaseRunning
		return ok, describeCluster(ns, c)
	})
	return c
}

func describeCluster(ns string, c *openbaov1alpha1.OpenBaoCluster) string {
	data, _ := json.Marshal(c.Status)
	pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: resources.LabelInstance + "=" + c.Name})
	var descr []string
	if err == nil {
		for i := range pods.Items {
			descr = append(descr, cluster.DescribePod(&pods.Items[i]))
		}
	}
	return fmt.Sprintf("status %s; pods: %s", data, strings.Join(descr, "; "))
}

// serverPods returns the cluster's server pods by name.
func serverPods(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(c.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: resources.SelectorLabels(c)}),
	})
	if err != nil {
		t.Fatalf("list pods: %v", err)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	return pods.Items
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}

// caPEM is the CA of the cluster's listener certificate.
func caPEM(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) []byte {
	t.Helper()
	s, err := cs.CoreV1().Secrets(c.Namespace).Get(context.Background(), resources.TLSSecretName(c), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the TLS secret: %v", err)
	}
	if len(s.Data["ca.crt"]) == 0 {
		t.Fatalf("secret %s has no ca.crt", s.Name)
	}
	return s.Data["ca.crt"]
}

// podClient talks to one server directly at its pod address, verifying its
// certificate against the pod's DNS name, as the operator does.
func podClient(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod) openbao.Client {
	t.Helper()
	if pod.Status.PodIP == "" {
		t.Fatalf("pod %s has no IP", pod.Name)
	}
	cl, err := openbao.New(openbao.Config{
		Address:       openbao.PodAddress(pod.Status.PodIP, resources.APIPort),
		CACertPEM:     caPEM(t, c),
		TLSServerName: resources.PodDNSName(c, pod.Name),
		Timeout:       10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// apiClient is the plain OpenBao API client for one pod, for what an
// application does (log in, read and write secrets).
func apiClient(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod) *api.Client {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = openbao.PodAddress(pod.Status.PodIP, resources.APIPort)
	cfg.MaxRetries = 0
	cfg.Timeout = 15 * time.Second
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: caPEM(t, c), TLSServerName: resources.PodDNSName(c, pod.Name)}); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.ClearToken()
	return cl
}

// serviceAccountToken issues a token of the service account for audience
// through the TokenRequest API, as a projected volume would.
func serviceAccountToken(t *testing.T, ns, sa, audience string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s (audience %s): %v", ns, sa, audience, err)
	}
	return tr.Status.Token
}

func ensureServiceAccount(t *testing.T, ns, name string) {
	t.Helper()
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("create service account %s/%s: %v", ns, name, err)
	}
}

// appLogin logs in as appServiceAccount through pod and returns a client
// holding the app token.
func appLogin(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod) *api.Client {
	t.Helper()
	ensureServiceAccount(t, c.Namespace, appServiceAccount)
	cl := apiClient(t, c, pod)
	jwt := serviceAccountToken(t, c.Namespace, appServiceAccount, appAudience)
	secret, err := cl.Logical().Write("auth/jwt/login", map[string]any{"role": appRole, "jwt": jwt})
	if err != nil {
		t.Fatalf("JWT login of %s through %s: %v", appServiceAccount, pod.Name, err)
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		t.Fatalf("JWT login of %s through %s returned no token", appServiceAccount, pod.Name)
	}
	cl.SetToken(secret.Auth.ClientToken)
	return cl
}

// activePod returns the one pod that reports itself active, failing when
// there is not exactly one.
func activePod(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) (*corev1.Pod, []string) {
	t.Helper()
	var active []string
	var found *corev1.Pod
	pods := serverPods(t, c)
	for i := range pods {
		h, err := podClient(t, c, &pods[i]).Health(context.Background())
		if err == nil && h.Active() {
			active = append(active, pods[i].Name)
			found = &pods[i]
		}
	}
	return found, active
}
