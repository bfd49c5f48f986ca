package controllers

import (
	"testing"

	"github.com/stretchr/testify/assert"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// The StatefulSet is never lowered by the provisioning pass: only the scale-down's own count
// (written after a server left the Raft configuration) lowers it.
func TestStatefulSetReplicas(t *testing.T) {
	sts := func(n int32) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(n)}}
	}
	for _, tc := range []struct {
		name      string
		spec      int32
		existing  *appsv1.StatefulSet
		scaleDown *openbaov1alpha1.ScaleDownStatus
		want      int32
	}{
		{"new cluster", 3, nil, nil, 3},
		{"steady", 3, sts(3), nil, 3},
		{"scale up", 5, sts(3), nil, 5},
		{"lower spec waits for its scale-down", 3, sts(5), nil, 5},
		{"scale-down in flight", 3, sts(5), &openbaov1alpha1.ScaleDownStatus{Replicas: 4}, 4},
		{"scale-down finishing a removal after spec went up", 5, sts(5), &openbaov1alpha1.ScaleDownStatus{Replicas: 4}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &openbaov1alpha1.OpenBaoCluster{Spec: openbaov1alpha1.OpenBaoClusterSpec{Replicas: ptr.To(tc.spec)}}
			c.Status.ScaleDown = tc.scaleDown
			assert.Equal(t, tc.want, statefulSetReplicas(c, tc.existing))
		})
	}
}
