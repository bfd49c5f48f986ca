package controllers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// The pre-upgrade snapshot Job's result is read from its pod's termination message once it
// finished; without a pod left to read, the step goes on without it.
func TestReadJobResultsOfThePreUpgradeSnapshot(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns"},
		Status: openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{
			Snapshot: &openbaov1alpha1.SnapshotStatus{JobName: "bao-snapshot-r1"},
		}},
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "bao-snapshot-r1", Namespace: "ns", Labels: map[string]string{resources.LabelBackupName: "bao-pre-upgrade-2.6.2-r1"}},
		Status:     batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
	}
	const result = `{"location":"s3://b/ns/bao/bao-pre-upgrade-2.6.2-r1.snap","size":10,"sha256":"ab"}`
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bao-snapshot-r1-x", Namespace: "ns", Labels: map[string]string{batchv1.JobNameLabel: job.Name}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Message: result},
		}}}},
	}
	state := func() *upgrade.State {
		return &upgrade.State{Cluster: c, Jobs: map[string]*batchv1.Job{job.Name: job}}
	}

	r := &OpenBaoClusterReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(pod).Build()}
	s := state()
	require.NoError(t, r.readJobResults(ctx, s))
	assert.Equal(t, map[string]string{job.Name: result}, s.JobResults)

	// Running: nothing is read.
	running := job.DeepCopy()
	running.Status.Conditions = nil
	s = &upgrade.State{Cluster: c, Jobs: map[string]*batchv1.Job{job.Name: running}}
	require.NoError(t, r.readJobResults(ctx, s))
	assert.Nil(t, s.JobResults)

	// No pod left: no result, no error.
	r = &OpenBaoClusterReconciler{Client: fake.NewClientBuilder().WithScheme(scheme).Build()}
	s = state()
	require.NoError(t, r.readJobResults(ctx, s))
	assert.Nil(t, s.JobResults)
}
