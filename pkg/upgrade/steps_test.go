package upgrade

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// The step-down step through the life of its Job: blocked, created, running, succeeded,
// failed (halt), and failed once the user resumed (the Job is deleted to run again).
func TestStepDownStepFollowsItsJob(t *testing.T) {
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "uid-1"},
		Status: openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{
			Revision: "r1", Step: StepStepDown,
		}},
	}
	s := &State{Cluster: c, Jobs: map[string]*batchv1.Job{}, ExecutorImage: "executor:1"}
	d := StepDown{Pod: "bao-2", Ordinal: 2, Reason: "bao-2 leads", Successor: "another server", OnFailure: "nothing moved"}
	const job = "bao-stepdown-r1-2"

	// The Job would refuse: no Job is started.
	step := StepDownStep(s, d)
	assert.Equal(t, StepWait, step.Kind)
	assert.Contains(t, step.Message, "Waiting to read the Raft state")
	s.Raft = &RaftState{RaftView: openbao.RaftView{
		Voters:  map[string]bool{"bao-0": true, "bao-1": true, "bao-2": true},
		Healthy: map[string]bool{"bao-0": true, "bao-1": true, "bao-2": true},
	}}
	step = StepDownStep(s, d)
	assert.Equal(t, StepWait, step.Kind)
	assert.Contains(t, step.Message, "autopilot has no verdict on the cluster yet")
	s.Raft.AutopilotHealthy = ptr.To(true)

	step = StepDownStep(s, d)
	require.Equal(t, StepAct, step.Kind)
	create, ok := step.Action.(CreateJob)
	require.True(t, ok, "action %T", step.Action)
	assert.Equal(t, job, create.Job.Name)
	assert.Equal(t, "executor:1", create.Job.Spec.Template.Spec.Containers[0].Image)
	assert.Contains(t, create.Job.Spec.Template.Spec.Containers[0].Args, string(resources.ActionStepDown))
	assert.Contains(t, step.Message, "bao-2 leads: moving leadership to another server")

	s.Jobs[job] = &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: job}}
	step = StepDownStep(s, d)
	assert.Equal(t, StepWait, step.Kind)
	assert.Equal(t, StepStepDown, step.Name)

	s.Jobs[job].Status.Succeeded = 1
	step = StepDownStep(s, d)
	assert.Equal(t, StepWait, step.Kind)
	assert.Equal(t, StepWaitLeadershipMoved, step.Name)

	s.Jobs[job].Status = batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}
	step = StepDownStep(s, d)
	assert.Equal(t, StepHalt, step.Kind)
	assert.Contains(t, step.Message, "bao-2 stays the active node and nothing moved.")

	c.Status.Upgrade.Step = StepStarted
	step = StepDownStep(s, d)
	require.Equal(t, StepAct, step.Kind)
	assert.Equal(t, DeleteJob{Name: job}, step.Action)
}
