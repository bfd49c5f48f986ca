package controllers

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

const testIssuer = "https://kubernetes.default.svc.cluster.local"

func newPublicKeyPEM(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	require.NoError(t, err)
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// keysFixture is a three-server cluster of fake OpenBao servers behind ready pods, and a
// reconciler that reaches them with the operator's real Observer.
type keysFixture struct {
	t       *testing.T
	r       *OpenBaoClusterReconciler
	bao     *fake.Cluster
	cluster *openbaov1alpha1.OpenBaoCluster
	pods    []corev1.Pod
	// token is the operator's token file.
	token string
}

func newKeysFixture(t *testing.T) *keysFixture {
	token := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(token, []byte("operator-token"), 0o600))
	f := &keysFixture{t: t, bao: fake.NewCluster(), token: token}
	f.cluster = &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "bao", Generation: 1}}
	f.cluster.Status.Initialized = true
	f.cluster.Status.Leader = "bao-0"
	for i := range 3 {
		ip := fmt.Sprintf("10.0.0.%d", i+1)
		name := fmt.Sprintf("bao-%d", i)
		f.bao.AddNode(fake.Node{ID: name, Address: openbao.PodAddress(ip, resources.APIPort), Version: "2.7.2",
			Initialized: true, Member: true, Voter: true, AppliedIndex: 100})
		f.pods = append(f.pods, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Status: corev1.PodStatus{PodIP: ip, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}})
	}
	f.r = &OpenBaoClusterReconciler{Observer: &upgrade.Observer{NewClient: f.bao.NewClient, TokenFile: token}}
	return f
}

// pass runs the step the way Reconcile does, with the keys the API server publishes, and
// sets the condition as patchStatus does.
func (f *keysFixture) pass(published ...string) *scope {
	s := newScope(f.cluster)
	s.pods = f.pods
	s.configParams = &resources.ConfigParams{JWT: resources.JWTInit{Issuer: testIssuer, ValidationPubKeysPEM: published}}
	res, err := f.r.reconcileServiceAccountKeys(context.Background(), s)
	require.NoError(f.t, err, "the step never stops the pass")
	require.True(f.t, res.IsZero())
	setServiceAccountKeysCondition(f.cluster, s.keys)
	return s
}

func (f *keysFixture) condition() *metav1.Condition {
	return meta.FindStatusCondition(f.cluster.Status.Conditions, openbaov1alpha1.ConditionServiceAccountKeysSynced)
}

func fingerprintsOf(t *testing.T, pems ...string) []string {
	fps, err := keyFingerprints(pems)
	require.NoError(t, err)
	return fps
}

func TestServiceAccountKeysFollowTheAPIServerThroughARotation(t *testing.T) {
	f := newKeysFixture(t)
	oldKey, newKey := newPublicKeyPEM(t), newPublicKeyPEM(t)

	// First pass after initialization: the keys self-initialization gave are recorded by
	// writing them once (the operator cannot read them back, see JWTKeysPolicy).
	s := f.pass(oldKey)
	assert.Equal(t, fingerprintsOf(t, oldKey), f.cluster.Status.ServiceAccountKeys)
	assert.Equal(t, openbao.JWTAuthConfig{BoundIssuer: testIssuer, JWTValidationPubKeys: []string{oldKey}}, f.bao.JWTAuth())
	require.Len(t, f.bao.CallsTo("SetJWTAuthConfig"), 1)
	assert.Equal(t, "https://10.0.0.1:8200", f.bao.CallsTo("SetJWTAuthConfig")[0].Address, "written through the active server")
	require.Len(t, s.events, 1)
	assert.Equal(t, "ServiceAccountKeysUpdated", s.events[0].reason)
	cond := f.condition()
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionTrue, cond.Status)
	assert.Equal(t, openbaov1alpha1.ReasonKeysSynced, cond.Reason)

	// Nothing changed: no login, no write, no event.
	calls := len(f.bao.Calls())
	s = f.pass(oldKey)
	assert.Len(t, f.bao.Calls(), calls, "unchanged keys cost no OpenBao call")
	assert.Empty(t, s.events)

	// The API server signs with a new key and still accepts the old one: OpenBao gets both.
	s = f.pass(oldKey, newKey)
	assert.ElementsMatch(t, []string{oldKey, newKey}, f.bao.JWTAuth().JWTValidationPubKeys)
	assert.Equal(t, fingerprintsOf(t, oldKey, newKey), f.cluster.Status.ServiceAccountKeys)
	require.Len(t, s.events, 1)
	assert.Contains(t, s.events[0].message, "added "+short(fingerprintsOf(t, newKey))[0]+", removed none")

	// The old key is retired: OpenBao drops it.
	s = f.pass(newKey)
	assert.Equal(t, []string{newKey}, f.bao.JWTAuth().JWTValidationPubKeys)
	assert.Equal(t, fingerprintsOf(t, newKey), f.cluster.Status.ServiceAccountKeys)
	require.Len(t, s.events, 1)
	assert.Contains(t, s.events[0].message, "added none, removed "+short(fingerprintsOf(t, oldKey))[0])
	assert.Equal(t, testIssuer, f.bao.JWTAuth().BoundIssuer, "the issuer is always sent along: a write replaces the whole configuration")
}

func TestServiceAccountKeysOnAClusterOfAnOlderRelease(t *testing.T) {
	f := newKeysFixture(t)
	key := newPublicKeyPEM(t)
	f.bao.InjectError("SetJWTAuthConfig", "", &openbao.Error{Op: "write auth/jwt/config", StatusCode: 403, Kind: openbao.ErrPermissionDenied}, 1)
	s := f.pass(key)
	cond := f.condition()
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Equal(t, openbaov1alpha1.ReasonKeysPolicyMissing, cond.Reason)
	assert.Contains(t, cond.Message, "created by an operator release")
	assert.Contains(t, cond.Message, resources.OperatorJWTKeysPolicy)
	assert.Empty(t, f.cluster.Status.ServiceAccountKeys, "nothing was given to OpenBao")
	assert.Empty(t, s.events)

	// Once a person added the policy, the next pass succeeds.
	f.pass(key)
	assert.Equal(t, metav1.ConditionTrue, f.condition().Status)
	assert.Equal(t, fingerprintsOf(t, key), f.cluster.Status.ServiceAccountKeys)
}

func TestServiceAccountKeysFailuresAreReportedAndRetried(t *testing.T) {
	oldKey, newKey := newPublicKeyPEM(t), newPublicKeyPEM(t)

	t.Run("login refused", func(t *testing.T) {
		f := newKeysFixture(t)
		f.pass(oldKey)
		f.bao.RefuseLogins(true)
		// A restarted operator has no OpenBao session yet: it must log in, and is refused.
		f.r.Observer = &upgrade.Observer{NewClient: f.bao.NewClient, TokenFile: f.token}
		f.pass(oldKey, newKey)
		cond := f.condition()
		assert.Equal(t, openbaov1alpha1.ReasonKeysUpdateFailed, cond.Reason)
		assert.Contains(t, cond.Message, "the operator retries")
		assert.Equal(t, fingerprintsOf(t, oldKey), f.cluster.Status.ServiceAccountKeys, "the status keeps what OpenBao really has")
		f.bao.RefuseLogins(false)
		f.pass(oldKey, newKey)
		assert.Equal(t, metav1.ConditionTrue, f.condition().Status)
		assert.Equal(t, fingerprintsOf(t, oldKey, newKey), f.cluster.Status.ServiceAccountKeys)
	})

	t.Run("issuer changed", func(t *testing.T) {
		f := newKeysFixture(t)
		f.pass(oldKey)
		f.bao.InjectError("SetJWTAuthConfig", "", &openbao.Error{Op: "write auth/jwt/config", StatusCode: 403, Kind: openbao.ErrPermissionDenied}, 1)
		f.pass(newKey)
		cond := f.condition()
		assert.Equal(t, openbaov1alpha1.ReasonKeysPolicyMissing, cond.Reason)
		assert.Contains(t, cond.Message, "issuer")
	})

	t.Run("no ready server", func(t *testing.T) {
		f := newKeysFixture(t)
		for i := range f.pods {
			f.pods[i].Status.Conditions = nil
		}
		f.pass(oldKey)
		assert.Equal(t, openbaov1alpha1.ReasonKeysUpdateFailed, f.condition().Reason)
		assert.Empty(t, f.bao.CallsTo("SetJWTAuthConfig"))
	})

	t.Run("active server down, a standby forwards", func(t *testing.T) {
		f := newKeysFixture(t)
		f.pods[0].Status.Conditions = nil
		f.pass(oldKey)
		assert.Equal(t, metav1.ConditionTrue, f.condition().Status)
		assert.Equal(t, "https://10.0.0.2:8200", f.bao.CallsTo("SetJWTAuthConfig")[0].Address)
	})

	t.Run("not initialized", func(t *testing.T) {
		f := newKeysFixture(t)
		f.cluster.Status.Initialized = false
		f.pass(oldKey)
		assert.Nil(t, f.condition(), "self-initialization gives a new cluster its keys")
		assert.Empty(t, f.bao.Calls())
	})
}

func TestKeyFingerprints(t *testing.T) {
	a, b := newPublicKeyPEM(t), newPublicKeyPEM(t)
	fps, err := keyFingerprints([]string{b, a, a})
	require.NoError(t, err)
	require.Len(t, fps, 2, "duplicates collapse")
	assert.True(t, fps[0] < fps[1], "sorted")
	assert.True(t, strings.HasPrefix(fps[0], "sha256:") && len(fps[0]) == len("sha256:")+64)
	_, err = keyFingerprints([]string{"not a key"})
	assert.Error(t, err)
	_, err = keyFingerprints(nil)
	assert.Error(t, err)
}
