package e2eolm

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// application is an application of an OpenBao cluster: a service account
// that logs in to a JWT role and writes under a key prefix its policy
// allows.
type application struct {
	cluster               baoCluster
	saNamespace, sa, role string
	keyPrefix             string
}

// load is the load client writing and reading as an application.
type load struct {
	app    application
	client *loadclient.Client
	obj    *openbaov1alpha1.OpenBaoCluster
	ca     []byte
}

// getCluster reads the OpenBaoCluster as the API serves it.
func getCluster(t *testing.T, c baoCluster) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	obj := &openbaov1alpha1.OpenBaoCluster{}
	if err := json.Unmarshal(kubectl(t, "-n", c.Namespace, "get", "openbaocluster/"+c.Name, "-o", "json"), obj); err != nil {
		t.Fatalf("OpenBaoCluster %s: %v", c, err)
	}
	return obj
}

// startLoad writes (and every fifth request reads back) secrets through the
// cluster's client Service as app, 10 writes a second, until stop.
func startLoad(t *testing.T, app application) *load {
	t.Helper()
	ctx := context.Background()
	_, err := cs.CoreV1().ServiceAccounts(app.saNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: app.sa}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("service account %s/%s: %v", app.saNamespace, app.sa, err)
	}
	obj := getCluster(t, app.cluster)
	s, err := cs.CoreV1().Secrets(obj.Namespace).Get(ctx, resources.TLSSecretName(obj), metav1.GetOptions{})
	if err != nil || len(s.Data["ca.crt"]) == 0 {
		t.Fatalf("the CA of %s: %v (secret without ca.crt?)", app.cluster, err)
	}
	l := &load{app: app, obj: obj, ca: s.Data["ca.crt"]}
	l.client = loadclient.Start(ctx, loadclient.Config{
		Kube: cs, Namespace: obj.Namespace, Service: resources.NamesFor(obj).ClientService, CAPEM: l.ca,
		Login: l.token, Role: app.role, KeyPrefix: app.keyPrefix, Rate: 10,
	})
	t.Cleanup(l.client.Stop)
	return l
}

// token is a service-account token for OpenBao's JWT auth, as a projected
// volume would hold.
func (l *load) token(ctx context.Context) (string, error) {
	tr, err := cs.CoreV1().ServiceAccounts(l.app.saNamespace).CreateToken(ctx, l.app.sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{loadclient.AppAudience}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return tr.Status.Token, nil
}

// stop ends the load, logs its figures and reads every acknowledged write
// back through every ready server: none may be missing or differ.
func (l *load) stop(t *testing.T) loadclient.Report {
	t.Helper()
	l.client.Stop()
	r := l.client.Report()
	t.Logf("load on %s over %s: %d requests, %d writes acknowledged, %d failed requests, %d stale reads, longest write gap %s; first errors: %v",
		l.app.cluster, r.Duration.Round(time.Second), r.Requests, r.Acknowledged, r.FailedRequests, r.StaleReads, r.LongestWriteGap.Round(time.Millisecond), r.FirstErrors)
	if r.Acknowledged == 0 {
		t.Fatalf("the load client got no write acknowledged by %s", l.app.cluster)
	}
	ctx := context.Background()
	verified := 0
	for _, p := range serverPods(t, l.app.cluster) {
		if !podReady(&p) {
			continue
		}
		cl, err := loadclient.NewAPIClient("https://"+p.Status.PodIP+":8200", l.ca, resources.PodDNSName(l.obj, p.Name), 15*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		jwt, err := l.token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		login, err := cl.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{"role": l.app.role, "jwt": jwt})
		if err != nil || login == nil || login.Auth == nil {
			t.Fatalf("log in as %s/%s through %s: %v", l.app.saNamespace, l.app.sa, p.Name, err)
		}
		cl.SetToken(login.Auth.ClientToken)
		lost, err := l.client.Verify(ctx, cl)
		if err != nil {
			t.Fatalf("read back the acknowledged writes through %s: %v", p.Name, err)
		}
		if len(lost) > 0 {
			t.Errorf("%d of %d acknowledged writes lost, read through %s: %v", len(lost), r.Acknowledged, p.Name, lost[:min(len(lost), 10)])
		}
		verified++
	}
	if verified == 0 {
		t.Fatalf("no ready server of %s to read the writes back from", l.app.cluster)
	}
	t.Logf("all %d acknowledged writes read back through %d servers of %s", r.Acknowledged, verified, l.app.cluster)
	return r
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue && p.DeletionTimestamp == nil
		}
	}
	return false
}
