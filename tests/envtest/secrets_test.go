package envtest

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/controllers"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// operatorUser is the user the restricted manager impersonates.
const operatorUser = "envtest:openbao-operator"

// generatedClusterRoles reads the roles `make manifests` generates for the operator: the
// namespaced permissions (role.yaml, bound cluster-wide by a kubectl install and for OLM's
// AllNamespaces mode) and the OIDC discovery URLs.
func generatedClusterRoles(t *testing.T) []rbacv1.ClusterRole {
	t.Helper()
	var roles []rbacv1.ClusterRole
	for _, file := range []string{"role.yaml", "oidc_discovery_role.yaml"} {
		raw, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", file))
		require.NoError(t, err)
		for doc := range strings.SplitSeq(string(raw), "\n---\n") {
			var role rbacv1.ClusterRole
			require.NoError(t, yaml.Unmarshal([]byte(doc), &role), file)
			if role.Kind == "ClusterRole" {
				roles = append(roles, role)
			}
		}
	}
	require.Len(t, roles, 2, "manager-role and the OIDC discovery role")
	return roles
}

// secretRequests records the operator's requests on Secrets.
type secretRequests struct {
	mu   sync.Mutex
	seen []string
}

func (s *secretRequests) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if strings.Contains(req.URL.Path, "/secrets") {
			s.mu.Lock()
			s.seen = append(s.seen, req.Method+" "+req.URL.RequestURI())
			s.mu.Unlock()
		}
		return rt.RoundTrip(req)
	})
}

func (s *secretRequests) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// TestOperatorNeedsNoListOrWatchOnSecrets runs the manager as a user that holds exactly the
// generated roles, which allow get, create, update and patch on Secrets but neither list nor
// watch, and records every request it sends on Secrets: its caches sync (no Secret
// informer), a user's TLS Secret and a user's seal key are found by name, the cluster's own
// seal key is read again at each pass (a change of the user's key is reported), a deleted
// certificate Secret of the cluster is created again, and no request ever lists or watches
// Secrets.
func TestOperatorNeedsNoListOrWatchOnSecrets(t *testing.T) {
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	require.NoError(t, err)

	roles := generatedClusterRoles(t)
	for _, role := range roles {
		for _, rule := range role.Rules {
			if !slices.Contains(rule.Resources, "secrets") && !slices.Contains(rule.Resources, "*") {
				continue
			}
			verbs := slices.Sorted(slices.Values(rule.Verbs))
			assert.Equal(t, []string{"create", "get", "patch", "update"}, verbs, "%s: the verbs on Secrets", role.Name)
		}
	}
	// The same roles, bound to the user the manager impersonates.
	for _, role := range roles {
		role.ObjectMeta = metav1.ObjectMeta{GenerateName: "envtest-" + role.Name + "-"}
		require.NoError(t, direct.Create(t.Context(), &role))
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "envtest-" + role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: operatorUser}},
		}
		require.NoError(t, direct.Create(t.Context(), binding))
		t.Cleanup(func() {
			_ = direct.Delete(t.Context(), binding)
			_ = direct.Delete(t.Context(), &role)
		})
	}

	ns := createNamespace(t, direct, "secrets-")
	// A user's certificate for one cluster and a user's seal key (another cluster's, to
	// restore its snapshots) for another: neither carries the operator's labels.
	withTLS := newCluster(ns, "tls")
	withTLS.Spec.TLS = &openbaov1alpha1.TLSSpec{ExistingSecret: "my-tls"}
	require.NoError(t, direct.Create(t.Context(), userTLSSecret(t, withTLS, "my-tls")))
	oldKey := make([]byte, 32)
	_, err = rand.Read(oldKey)
	require.NoError(t, err)
	userKey := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "old-unseal-key"},
		Data:       map[string][]byte{resources.SealKeyFile: oldKey},
	}
	require.NoError(t, direct.Create(t.Context(), userKey))
	withKey := newCluster(ns, "sealed")
	withKey.Spec.Seal = &openbaov1alpha1.SealSpec{ExistingSecret: userKey.Name}

	restricted := rest.CopyConfig(restConfig)
	restricted.Impersonate = rest.ImpersonationConfig{UserName: operatorUser}
	requests := &secretRequests{}
	restricted.Wrap(requests.wrap)
	mgr := newManager(t, restricted, controllers.CacheOptions(nil), nil, 0)
	restores := &controllers.OpenBaoRestoreReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Scheme:    scheme,
		Recorder:  mgr.GetEventRecorder("openbao-operator"),
		Clock:     clock.RealClock{},
	}
	require.NoError(t, restores.SetupWithManager(mgr))
	runManager(t, mgr)

	require.NoError(t, direct.Create(t.Context(), withTLS))
	require.NoError(t, direct.Create(t.Context(), withKey))
	for _, c := range []*openbaov1alpha1.OpenBaoCluster{withTLS, withKey} {
		require.Eventually(t, func() bool {
			return direct.Get(t.Context(), client.ObjectKeyFromObject(c), &appsv1.StatefulSet{}) == nil
		}, time.Minute, 200*time.Millisecond, "the servers of %s are created: its Secrets were read and written", c.Name)
	}
	names := resources.NamesFor(withKey)
	own := &corev1.Secret{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: names.SealSecret}, own))
	assert.Equal(t, oldKey, own.Data[resources.SealKeyFile], "the cluster's seal key is a copy of the user's")
	got := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKeyFromObject(withTLS), got))
	if cond := meta.FindStatusCondition(got.Status.Conditions, openbaov1alpha1.ConditionDegraded); cond != nil {
		assert.NotEqual(t, openbaov1alpha1.ReasonInvalidSpec, cond.Reason, cond.Message)
	}

	// A deleted certificate Secret of the cluster announces nothing (no watch): the next
	// pass finds it missing by name and issues it again.
	tls := &corev1.Secret{}
	require.NoError(t, direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: names.TLSSecret}, tls))
	require.NoError(t, direct.Delete(t.Context(), tls))
	deleted := time.Now()
	require.Eventually(t, func() bool {
		again := &corev1.Secret{}
		return direct.Get(t.Context(), client.ObjectKeyFromObject(tls), again) == nil && again.UID != tls.UID &&
			len(again.Data[corev1.TLSCertKey]) > 0
	}, time.Minute, 100*time.Millisecond, "the deleted server certificate Secret is created again")
	t.Logf("the deleted server certificate Secret was created again %s later", time.Since(deleted).Round(time.Millisecond))

	// The user's key changes: the next pass reads both keys by name again and reports
	// that they differ, without touching the cluster's own.
	newKey := bytes.Repeat([]byte{7}, 32)
	userKey.Data = map[string][]byte{resources.SealKeyFile: newKey}
	require.NoError(t, direct.Update(t.Context(), userKey))
	require.Eventually(t, func() bool {
		c := &openbaov1alpha1.OpenBaoCluster{}
		if direct.Get(t.Context(), client.ObjectKeyFromObject(withKey), c) != nil {
			return false
		}
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
		return cond != nil && cond.Reason == openbaov1alpha1.ReasonInvalidSpec && strings.Contains(cond.Message, "holds another key")
	}, time.Minute, 200*time.Millisecond, "a different key in spec.seal.existingSecret is reported")
	require.NoError(t, direct.Get(t.Context(), client.ObjectKey{Namespace: ns, Name: names.SealSecret}, own))
	assert.Equal(t, oldKey, own.Data[resources.SealKeyFile], "the cluster's seal key is never replaced")

	// Every request on Secrets named one Secret: a request on the collection
	// (.../secrets, without a name) would be a list or a watch.
	seen := requests.all()
	require.NotEmpty(t, seen, "the operator's requests on Secrets were recorded")
	var gets int
	for _, r := range seen {
		method, uri, _ := strings.Cut(r, " ")
		path, _, _ := strings.Cut(uri, "?")
		if method == http.MethodGet {
			gets++
			assert.False(t, strings.HasSuffix(path, "/secrets"), "a list or watch of Secrets: %s", r)
		}
		assert.NotContains(t, uri, "watch=", "a watch of Secrets: %s", r)
	}
	assert.Positive(t, gets, "the operator read Secrets by name")
	t.Logf("%d requests on Secrets, %d reads by name, none on the collection but creations", len(seen), gets)
}
