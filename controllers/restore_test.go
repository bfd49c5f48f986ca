package controllers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// The cluster controller writes the cluster's status too: a release of the operation lock
// that finds the cluster changed reads it again and releases it on that version, and leaves
// alone a lock that no longer names the restore.
func TestReleaseLockSurvivesAConcurrentStatusWrite(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	require.NoError(t, openbaov1alpha1.AddToScheme(scheme))
	rs := &openbaov1alpha1.OpenBaoRestore{ObjectMeta: metav1.ObjectMeta{Name: "dr", Namespace: "ns", UID: "uid-dr"}}
	locked := func(name, uid string) *openbaov1alpha1.OpenBaoCluster {
		return &openbaov1alpha1.OpenBaoCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns"},
			Status:     openbaov1alpha1.OpenBaoClusterStatus{Restore: &openbaov1alpha1.RestoreLock{Name: name, UID: uid}},
		}
	}
	// conflictOnce makes the first status patch fail as when the cluster controller wrote
	// the status since the restore controller read the cluster.
	conflictOnce := func(patches *int) interceptor.Funcs {
		return interceptor.Funcs{SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			*patches++
			if *patches == 1 {
				return apierrors.NewConflict(schema.GroupResource{Group: "openbao.org", Resource: "openbaoclusters"}, obj.GetName(), nil)
			}
			return c.SubResource(sub).Patch(ctx, obj, patch, opts...)
		}}
	}

	t.Run("released on the fresh version", func(t *testing.T) {
		patches := 0
		cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(locked("dr", "uid-dr")).
			WithStatusSubresource(&openbaov1alpha1.OpenBaoCluster{}).WithInterceptorFuncs(conflictOnce(&patches)).Build()
		r := &OpenBaoRestoreReconciler{Client: cl, Scheme: scheme}
		c := &openbaov1alpha1.OpenBaoCluster{}
		require.NoError(t, cl.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, c))
		require.NoError(t, r.releaseLock(ctx, c, rs))
		assert.Equal(t, 2, patches, "the conflict is retried once")
		stored := &openbaov1alpha1.OpenBaoCluster{}
		require.NoError(t, cl.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, stored))
		assert.Nil(t, stored.Status.Restore, "the lock is released")
	})

	t.Run("another restore's lock is left alone", func(t *testing.T) {
		patches := 0
		cl := fake.NewClientBuilder().WithScheme(scheme).WithObjects(locked("other", "uid-other")).
			WithStatusSubresource(&openbaov1alpha1.OpenBaoCluster{}).WithInterceptorFuncs(conflictOnce(&patches)).Build()
		r := &OpenBaoRestoreReconciler{Client: cl, Scheme: scheme}
		stale := locked("dr", "uid-dr") // what this restore last saw
		require.NoError(t, cl.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, &openbaov1alpha1.OpenBaoCluster{}))
		stale.ResourceVersion = "1"
		require.NoError(t, r.releaseLock(ctx, stale, rs))
		assert.Equal(t, 1, patches, "no second write once the fresh cluster shows another lock")
		stored := &openbaov1alpha1.OpenBaoCluster{}
		require.NoError(t, cl.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, stored))
		require.NotNil(t, stored.Status.Restore)
		assert.Equal(t, "other", stored.Status.Restore.Name)
	})
}
