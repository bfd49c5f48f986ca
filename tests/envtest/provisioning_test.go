package envtest

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/pki"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

func newCluster(ns, name string) *openbaov1alpha1.OpenBaoCluster {
	return &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       openbaov1alpha1.OpenBaoClusterSpec{Version: "2.6.2"},
	}
}

// converge reconciles until a pass writes nothing, and fails after a few passes.
func (h *harness) converge(name string) {
	h.t.Helper()
	for range 5 {
		before := h.writes.n.Load()
		_, err := h.reconcile(name)
		require.NoError(h.t, err)
		if h.writes.n.Load() == before {
			return
		}
	}
	h.t.Fatalf("cluster %s did not converge in 5 reconciles", name)
}

func TestProvisioningCreatesEverything(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "bao")
	require.NoError(t, h.client.Create(t.Context(), c))
	c = h.cluster("bao")
	assert.Equal(t, int32(3), *c.Spec.Replicas, "replicas default")
	assert.Equal(t, openbaov1alpha1.RollingUpgrade, c.Spec.Upgrade.Strategy, "strategy default")
	assert.Equal(t, "openbao-upgrade", c.Spec.Upgrade.JWTAuthRole, "role default")

	h.converge("bao")

	names := resources.NamesFor(c)
	owned := func(obj client.Object) {
		t.Helper()
		refs := obj.GetOwnerReferences()
		require.Len(t, refs, 1, "%T %s owner references", obj, obj.GetName())
		assert.Equal(t, c.UID, refs[0].UID)
		assert.True(t, *refs[0].Controller)
	}

	sts := &appsv1.StatefulSet{}
	require.NoError(t, h.get(names.StatefulSet, sts))
	owned(sts)
	assert.Equal(t, int32(3), *sts.Spec.Replicas)
	assert.Equal(t, appsv1.RollingUpdateStatefulSetStrategyType, sts.Spec.UpdateStrategy.Type)
	assert.Equal(t, int32(3), *sts.Spec.UpdateStrategy.RollingUpdate.Partition, "partition locks every pod")
	assert.Equal(t, names.HeadlessService, sts.Spec.ServiceName)
	pod := sts.Spec.Template.Spec
	require.Len(t, pod.Containers, 1)
	assert.Equal(t, "quay.io/openbao/openbao:2.6.2", pod.Containers[0].Image)
	assert.True(t, *pod.SecurityContext.RunAsNonRoot)
	assert.True(t, *pod.Containers[0].SecurityContext.ReadOnlyRootFilesystem)
	assert.GreaterOrEqual(t, *pod.TerminationGracePeriodSeconds, int64(30))
	assert.False(t, *pod.AutomountServiceAccountToken)
	assert.Equal(t, resource.MustParse("10Gi"), sts.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests[corev1.ResourceStorage])

	headless := &corev1.Service{}
	require.NoError(t, h.get(names.HeadlessService, headless))
	owned(headless)
	assert.Equal(t, corev1.ClusterIPNone, headless.Spec.ClusterIP)
	assert.True(t, headless.Spec.PublishNotReadyAddresses)
	clientSvc := &corev1.Service{}
	require.NoError(t, h.get(names.ClientService, clientSvc))
	owned(clientSvc)
	assert.Equal(t, resources.StatefulSetSelector(c, "bao"), clientSvc.Spec.Selector)

	cm := &corev1.ConfigMap{}
	require.NoError(t, h.get(names.ConfigMap, cm))
	owned(cm)
	cfg := cm.Data[resources.ConfigFile]
	for _, want := range []string{`storage "raft"`, `seal "static"`, "retry_join", "bao-2.bao-internal." + h.namespace + ".svc", "8201", "telemetry"} {
		assert.Contains(t, cfg, want)
	}
	selfInit := cm.Data[resources.SelfInitConfigFile]
	for _, want := range []string{"auth/jwt/config", "system:serviceaccount:" + h.namespace + ":bao-upgrade-serviceaccount", "sys/step-down", "BEGIN PUBLIC KEY"} {
		assert.Contains(t, selfInit, want)
	}
	assert.NotContains(t, strings.ToLower(cfg+selfInit), "root_token")

	seal := &corev1.Secret{}
	require.NoError(t, h.get(names.SealSecret, seal))
	assert.Len(t, seal.Data[resources.SealKeyFile], 32)
	assert.Empty(t, seal.OwnerReferences, "the seal key outlives the cluster, like the data volumes")

	tls := &corev1.Secret{}
	require.NoError(t, h.get(names.TLSSecret, tls))
	owned(tls)
	cert, err := pki.ParseCertificate(tls.Data["tls.crt"])
	require.NoError(t, err)
	assert.NoError(t, cert.VerifyHostname("bao-1.bao-internal."+h.namespace+".svc"))
	assert.NoError(t, cert.VerifyHostname("bao."+h.namespace+".svc"))
	assert.Empty(t, pki.NeedsRenewal(tls.Data["tls.crt"], tls.Data["ca.crt"], nil, cert.NotBefore.Add(1e9), 0))

	for _, sa := range []string{names.ServiceAccount, names.UpgradeServiceAccount} {
		obj := &corev1.ServiceAccount{}
		require.NoError(t, h.get(sa, obj), sa)
		owned(obj)
		assert.False(t, *obj.AutomountServiceAccountToken)
	}
	pdb := &policyv1.PodDisruptionBudget{}
	require.NoError(t, h.get(names.PodDisruptionBudget, pdb))
	owned(pdb)
	assert.Equal(t, int32(1), pdb.Spec.MaxUnavailable.IntVal)

	c = h.cluster("bao")
	assert.Equal(t, "2.6.2", c.Status.CurrentVersion)
	assert.Equal(t, openbaov1alpha1.PhasePending, c.Status.Phase, "no pods exist without nodes")
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionAvailable))
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionPaused))
	assert.Equal(t, c.Generation, c.Status.ObservedGeneration)

	// Converged: another pass writes nothing at all.
	before := h.writes.n.Load()
	_, err = h.reconcile("bao")
	require.NoError(t, err)
	assert.Equal(t, before, h.writes.n.Load(), "a converged cluster must not be written")
}

func TestSpecChangeUpdatesTemplateButNotPartition(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")
	sts := &appsv1.StatefulSet{}
	require.NoError(t, h.get("bao", sts))
	oldTemplate := sts.Spec.Template.DeepCopy()

	c := h.cluster("bao")
	c.Spec.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}}
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")

	require.NoError(t, h.get("bao", sts))
	assert.NotEqual(t, oldTemplate.Spec.Containers[0].Resources, sts.Spec.Template.Spec.Containers[0].Resources)
	assert.Equal(t, resource.MustParse("256Mi"), sts.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory])
	assert.Equal(t, int32(3), *sts.Spec.UpdateStrategy.RollingUpdate.Partition, "the partition never drops on its own")

	// A version change is an upgrade: the template keeps the running image until the
	// upgrade manager takes it over.
	c = h.cluster("bao")
	c.Spec.Version = "2.7.2"
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	require.NoError(t, h.get("bao", sts))
	assert.Equal(t, int32(3), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
	c = h.cluster("bao")
	assert.Equal(t, "2.6.2", c.Status.CurrentVersion)
	assert.Nil(t, c.Status.Upgrade, "no upgrade starts while pre-checks fail")
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	require.NotNil(t, cond)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradePending, cond.Reason)
	assert.Contains(t, cond.Message, "waits for pre-check AllPodsReady")
	assert.Equal(t, "quay.io/openbao/openbao:2.6.2", sts.Spec.Template.Spec.Containers[0].Image)
}

func TestDowngradeIsBlocked(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")
	c := h.cluster("bao")
	c.Spec.Version = "2.5.0"
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	c = h.cluster("bao")
	h.requireDegraded("bao", openbaov1alpha1.ReasonDowngradeBlocked, "downgrades are blocked")
	assert.Nil(t, c.Status.Upgrade)

	// Setting the version back clears the condition.
	c.Spec.Version = "2.6.2"
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	assert.True(t, meta.IsStatusConditionFalse(h.cluster("bao").Status.Conditions, openbaov1alpha1.ConditionDegraded))
}

func TestSealKeyIsNeverRegenerated(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")
	seal := &corev1.Secret{}
	require.NoError(t, h.get("bao-unseal-key", seal))
	key := append([]byte(nil), seal.Data["key"]...)

	// Secrets the operator manages are rewritten when damaged; the seal key never is.
	h.converge("bao")
	require.NoError(t, h.get("bao-unseal-key", seal))
	assert.Equal(t, key, seal.Data["key"])
	assert.True(t, *seal.Immutable)
}

// TestDeletedSealKeyOfInitializedClusterIsReported: the operator does not watch Secrets, so
// a deleted seal key is found missing at the next pass; once the cluster is initialized its
// data is encrypted under that key, so the pass reports it instead of generating another,
// and the original, put back, is used again.
func TestDeletedSealKeyOfInitializedClusterIsReported(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")
	c := h.cluster("bao")
	c.Status.Initialized = true
	require.NoError(t, h.client.Status().Update(t.Context(), c))
	seal := &corev1.Secret{}
	require.NoError(t, h.get("bao-unseal-key", seal))
	original := seal.DeepCopy()
	require.NoError(t, h.client.Delete(t.Context(), seal))

	_, err := h.reconcile("bao")
	require.NoError(t, err)
	h.requireDegraded("bao", openbaov1alpha1.ReasonInvalidSpec, "bao-unseal-key, the seal key that encrypts this cluster's data, is missing")
	assert.True(t, apierrors.IsNotFound(h.get("bao-unseal-key", &corev1.Secret{})), "no new key generated")

	original.ObjectMeta = metav1.ObjectMeta{Namespace: original.Namespace, Name: original.Name}
	require.NoError(t, h.client.Create(t.Context(), original))
	h.converge("bao")
	assert.False(t, meta.IsStatusConditionTrue(h.cluster("bao").Status.Conditions, openbaov1alpha1.ConditionDegraded))
	require.NoError(t, h.get("bao-unseal-key", seal))
	assert.Equal(t, original.Data, seal.Data)
	assert.Equal(t, resources.ManagedBy, seal.Labels[resources.LabelManagedBy], "the operator's labels put back")
}

func TestPausedClusterIsNotChanged(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")

	c := h.cluster("bao")
	c.Spec.Paused = true
	c.Spec.Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}}
	require.NoError(t, h.client.Update(t.Context(), c))
	sts := &appsv1.StatefulSet{}
	require.NoError(t, h.get("bao", sts))
	rv := sts.ResourceVersion

	for range 2 {
		_, err := h.reconcile("bao")
		require.NoError(t, err)
	}
	require.NoError(t, h.get("bao", sts))
	assert.Equal(t, rv, sts.ResourceVersion, "nothing changes while paused")
	c = h.cluster("bao")
	assert.True(t, meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionPaused))
	assert.Equal(t, openbaov1alpha1.PhasePaused, c.Status.Phase)

	c.Spec.Paused = false
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	require.NoError(t, h.get("bao", sts))
	assert.Equal(t, resource.MustParse("100m"), sts.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU], "applied after unpausing")
	assert.True(t, meta.IsStatusConditionFalse(h.cluster("bao").Status.Conditions, openbaov1alpha1.ConditionPaused))
}

func TestMissingTLSSecretIsReported(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "bao")
	c.Spec.TLS = &openbaov1alpha1.TLSSpec{ExistingSecret: "my-tls"}
	require.NoError(t, h.client.Create(t.Context(), c))
	_, err := h.reconcile("bao")
	require.NoError(t, err)
	c = h.cluster("bao")
	h.requireDegraded("bao", openbaov1alpha1.ReasonInvalidSpec, `"my-tls" does not exist`)
	assert.Equal(t, openbaov1alpha1.PhaseDegraded, c.Status.Phase)
	sts := &appsv1.StatefulSet{}
	assert.Error(t, h.get("bao", sts), "no servers without their certificate")
}

// TestUnrenderableConfigurationStopsThePass: a spec the schema accepts but whose
// configuration cannot be rendered (a null in a self-initialization request) is reported
// and nothing of the cluster is created.
func TestUnrenderableConfigurationStopsThePass(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "bao")
	c.Spec.SelfInit = []openbaov1alpha1.SelfInitRequest{{
		Name: "kv", Path: "sys/mounts/secret", Data: &runtime.RawExtension{Raw: []byte(`{"type":"kv","options":null}`)},
	}}
	require.NoError(t, h.client.Create(t.Context(), c))
	_, err := h.reconcile("bao")
	require.ErrorIs(t, err, reconcile.TerminalError(nil), "a spec that can never work is a terminal error: no retries until it changes")
	c = h.cluster("bao")
	h.requireDegraded("bao", openbaov1alpha1.ReasonInvalidSpec, "self-initialization requests cannot be rendered")
	for name, obj := range map[string]client.Object{
		"bao": &appsv1.StatefulSet{}, "bao-config": &corev1.ConfigMap{}, "bao-internal": &corev1.Service{},
		"bao-unseal-key": &corev1.Secret{}, "bao-upgrade-serviceaccount": &corev1.ServiceAccount{},
	} {
		assert.Error(t, h.get(name, obj), "%T %s must not be created for a spec that cannot work", obj, name)
	}
}

func TestInvalidSpecsAreRejected(t *testing.T) {
	h := newHarness(t)
	cases := []struct {
		name   string
		mutate func(*openbaov1alpha1.OpenBaoCluster)
		want   string
	}{
		{"non-semver version", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Version = "latest" }, "version must be a semantic version"},
		{"two-part version", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Version = "2.7" }, "version must be a semantic version"},
		{"even replicas", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Replicas = ptr.To[int32](4) }, "replicas must be odd"},
		{"zero replicas", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Replicas = ptr.To[int32](0) }, "should be greater than or equal to 1"},
		{"too many replicas", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Replicas = ptr.To[int32](11) }, "should be less than or equal to 9"},
		{"unknown strategy", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Upgrade.Strategy = "Recreate" }, "strategy must be Rolling or BlueGreen"},
		{"version with a v", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Version = "v2.7.2" }, "without a leading v"},
		{"negative step timeout", func(c *openbaov1alpha1.OpenBaoCluster) {
			c.Spec.Upgrade.StepTimeout = &metav1.Duration{Duration: -time.Minute}
		}, "stepTimeout must be a positive duration"},
		{"zero step timeout", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Upgrade.StepTimeout = &metav1.Duration{} }, "stepTimeout must be a positive duration"},
		{"raft timing too slow", func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Raft.PerformanceMultiplier = 11 }, "performanceMultiplier"},
		{"negative verification period", func(c *openbaov1alpha1.OpenBaoCluster) {
			c.Spec.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenSpec{VerificationPeriod: &metav1.Duration{Duration: -time.Minute}}
		}, "verificationPeriod must not be negative"},
		{"confirmed version not a version", func(c *openbaov1alpha1.OpenBaoCluster) {
			c.Spec.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenSpec{RequireConfirmation: true, ConfirmedVersion: "yes"}
		}, "confirmedVersion in body should match"},
		{"bad self-init path", func(c *openbaov1alpha1.OpenBaoCluster) {
			c.Spec.SelfInit = []openbaov1alpha1.SelfInitRequest{{Name: "x", Path: "/v1/sys/mounts"}}
		}, "path is relative to /v1/"},
		{"long name", func(c *openbaov1alpha1.OpenBaoCluster) { c.Name = strings.Repeat("a", 41) }, "at most 40 characters"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(h.namespace, "bad")
			tc.mutate(c)
			err := h.client.Create(t.Context(), c)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked", "one clear message, not a second one about skipped rules")
		})
	}
}

// TestBadInputHasOneClearMessage sends what the typed client cannot (explicit empty
// strings) and changes a valid cluster into invalid ones, as `kubectl edit` would.
func TestBadInputHasOneClearMessage(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "edited")
	require.NoError(t, h.client.Create(t.Context(), c))
	cases := []struct {
		name, patch, want string
	}{
		{"empty executor image", `{"spec":{"upgrade":{"executorImage":""}}}`, "executorImage must name an image"},
		{"negative step timeout", `{"spec":{"upgrade":{"stepTimeout":"-1m"}}}`, "stepTimeout must be a positive duration"},
		{"zero step timeout", `{"spec":{"upgrade":{"stepTimeout":"0s"}}}`, "stepTimeout must be a positive duration"},
		{"two-part version", `{"spec":{"version":"2.7"}}`, "version must be a semantic version such as 2.7.2"},
		{"version with a v", `{"spec":{"version":"v2.7.2"}}`, "without a leading v"},
		{"unknown strategy", `{"spec":{"upgrade":{"strategy":"Canary"}}}`, "strategy must be Rolling or BlueGreen"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := h.client.Patch(t.Context(), c.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(tc.patch)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked")
			assert.NotContains(t, err.Error(), "chars long", "the rule's message, not a length complaint")
		})
	}
}
