package envtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// spec.replicas may be lowered to any odd count down to 1; even counts and 0 keep their one
// clear message, also when they are an edit of a running cluster.
func TestReplicasCanBeLowered(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "scaled")
	c.Spec.Replicas = ptr.To[int32](7)
	require.NoError(t, h.client.Create(t.Context(), c))
	for _, tc := range []struct {
		patch, want string
	}{
		{`{"spec":{"replicas":4}}`, "replicas must be odd (1, 3, 5, 7 or 9) so that Raft keeps a majority"},
		{`{"spec":{"replicas":0}}`, "should be greater than or equal to 1"},
		{`{"spec":{"replicas":5}}`, ""},
		{`{"spec":{"replicas":2}}`, "replicas must be odd"},
		{`{"spec":{"replicas":1}}`, ""},
		{`{"spec":{"replicas":9}}`, ""},
		{`{"spec":{"replicas":3}}`, ""},
	} {
		t.Run(tc.patch, func(t *testing.T) {
			err := h.client.Patch(t.Context(), c.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(tc.patch)))
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked")
			assert.NotContains(t, err.Error(), "cannot be lowered")
		})
	}
}

// A lower spec.replicas never lowers the StatefulSet by itself: while the servers that would
// remain cannot be judged healthy (here no OpenBao answers), the scale-down is refused with
// ScalingDown=False ScaleDownBlocked and nothing changes; setting it back clears the refusal.
func TestScaleDownRefusedWhileServersAreNotHealthy(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "bao")
	c.Spec.Replicas = ptr.To[int32](5)
	require.NoError(t, h.client.Create(t.Context(), c))
	h.converge("bao")
	sts := &appsv1.StatefulSet{}
	require.NoError(t, h.get("bao", sts))
	require.Equal(t, int32(5), *sts.Spec.Replicas)

	c = h.cluster("bao")
	c.Spec.Replicas = ptr.To[int32](3)
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")

	require.NoError(t, h.get("bao", sts))
	assert.Equal(t, int32(5), *sts.Spec.Replicas, "the StatefulSet keeps its servers")
	assert.Equal(t, int32(5), *sts.Spec.UpdateStrategy.RollingUpdate.Partition)
	c = h.cluster("bao")
	assert.Nil(t, c.Status.ScaleDown, "no scale-down recorded")
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionScalingDown)
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Equal(t, openbaov1alpha1.ReasonScaleDownBlocked, cond.Reason)
	assert.Contains(t, cond.Message, "spec.replicas 3 waits: the Raft state could not be read")
	assert.Contains(t, cond.Message, "Nothing was changed")

	c.Spec.Replicas = ptr.To[int32](5)
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	cond = meta.FindStatusCondition(h.cluster("bao").Status.Conditions, openbaov1alpha1.ConditionScalingDown)
	require.NotNil(t, cond)
	assert.Equal(t, openbaov1alpha1.ReasonNoScaleDown, cond.Reason)

	// Growing needs no scale-down: the StatefulSet follows at once.
	c = h.cluster("bao")
	c.Spec.Replicas = ptr.To[int32](7)
	require.NoError(t, h.client.Update(t.Context(), c))
	h.converge("bao")
	require.NoError(t, h.get("bao", sts))
	assert.Equal(t, int32(7), *sts.Spec.Replicas)
}
