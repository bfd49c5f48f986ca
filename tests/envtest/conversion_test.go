package envtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// A cluster that the previous release of the operator left in the middle of a Rolling
// upgrade, with the strategy's fields flat in status.upgrade: the first pass of this release
// moves them to status.upgrade.rolling, removes the flat ones from the stored object and
// carries on with the upgrade.
func TestUpgradeStatusOfThePreviousReleaseIsConverted(t *testing.T) {
	h := newHarness(t)
	require.NoError(t, h.client.Create(t.Context(), newCluster(h.namespace, "bao")))
	h.converge("bao")

	c := h.cluster("bao")
	c.Spec.Version = "2.7.2"
	require.NoError(t, h.client.Update(t.Context(), c))
	c = h.cluster("bao")
	start := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2",
		ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: openbaov1alpha1.RollingUpgrade, Revision: "0123abcd", Step: "WaitPodHealthy", CurrentPod: "bao-1",
		StartTime: &start, StepStartTime: &start,
		Partition: ptr.To[int32](1), CatchUpIndex: 4242, PodsDone: []string{"bao-2"},
	}
	require.NoError(t, h.client.Status().Update(t.Context(), c))
	stored := h.storedUpgrade(t)
	require.Contains(t, stored, "podsDone", "the API server keeps the previous release's fields")

	_, err := h.reconcile("bao")
	require.NoError(t, err)

	c = h.cluster("bao")
	u := c.Status.Upgrade
	require.NotNil(t, u, "the upgrade is still in flight")
	assert.Equal(t, &openbaov1alpha1.RollingStatus{Revision: "0123abcd", Partition: ptr.To[int32](1), CatchUpIndex: 4242, PodsDone: []string{"bao-2"}}, u.Rolling)
	assert.NotEqual(t, "Halted", u.Step)
	stored = h.storedUpgrade(t)
	for _, old := range []string{"partition", "catchUpIndex", "podsDone"} {
		assert.NotContains(t, stored, old, "the flat field %s is removed from the stored object", old)
	}
	assert.Contains(t, stored, "rolling")
}

// storedUpgrade reads status.upgrade of the cluster "bao" as the API server stores it.
func (h *harness) storedUpgrade(t *testing.T) map[string]any {
	t.Helper()
	obj := &unstructured.Unstructured{}
	obj.SetGroupVersionKind(openbaov1alpha1.GroupVersion.WithKind("OpenBaoCluster"))
	require.NoError(t, h.client.Get(t.Context(), client.ObjectKey{Namespace: h.namespace, Name: "bao"}, obj))
	u, found, err := unstructured.NestedMap(obj.Object, "status", "upgrade")
	require.NoError(t, err)
	require.True(t, found, "status.upgrade is stored")
	return u
}
