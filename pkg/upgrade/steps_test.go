package upgrade

import (
	"strings"
	"testing"
	"time"

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

// The pre-upgrade snapshot with an S3 backup target: the location is recorded before the
// Job exists, the Job is the backup action writing a name retention never lists, a pass
// after a restart finds the same Job and location, and the Job's result gives size and
// SHA-256. A failure halts with the executor's error; once resumed, the Job runs again.
func TestSnapshotToTheBackupBucket(t *testing.T) {
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "uid-1"},
		Spec: openbaov1alpha1.OpenBaoClusterSpec{Backup: &openbaov1alpha1.BackupSpec{
			Retention: openbaov1alpha1.BackupRetention{KeepLast: ptr.To[int32](1)},
			Target: openbaov1alpha1.BackupTarget{S3: &openbaov1alpha1.S3Target{
				Endpoint: "https://s3.example.com/", Bucket: "backups", Prefix: "openbao/", CredentialsSecret: "s3-creds",
			}},
		}},
		Status: openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{
			Revision: "r1", FromVersion: "2.6.2", ToVersion: "2.7.2", Step: StepStarted,
		}},
	}
	s := &State{Cluster: c, Jobs: map[string]*batchv1.Job{}, ExecutorImage: "executor:1"}
	const job = "bao-snapshot-r1"
	const location = "s3://backups/openbao/ns/bao/bao-pre-upgrade-2.6.2-r1.snap"

	// No active node: the intent is recorded, nothing is created.
	step, done := Snapshot(s, "the first server moves")
	assert.False(t, done)
	assert.Equal(t, StepWait, step.Kind)
	u := c.Status.Upgrade
	require.NotNil(t, u.Snapshot)
	assert.Equal(t, openbaov1alpha1.SnapshotStatus{JobName: job, Location: location, Endpoint: "https://s3.example.com"}, *u.Snapshot)

	s.Leader = "bao-1"
	step, done = Snapshot(s, "the first server moves")
	assert.False(t, done)
	require.Equal(t, StepAct, step.Kind)
	create, ok := step.Action.(CreateJob)
	require.True(t, ok, "action %T", step.Action)
	assert.Nil(t, create.Claim, "no snapshot volume for a snapshot to the bucket")
	assert.Equal(t, job, create.Job.Name)
	assert.Equal(t, resources.ComponentJob, create.Job.Labels[resources.LabelComponent], "the upgrade's clean-up must find the Job")
	args := create.Job.Spec.Template.Spec.Containers[0].Args
	assert.Equal(t, []string{"executor", string(resources.ActionBackup)}, args[:2])
	assert.Contains(t, strings.Join(args, " "), "--role "+resources.DefaultBackupRole)
	assert.Contains(t, strings.Join(args, " "), "--name bao-pre-upgrade-2.6.2-r1.snap")
	assert.Contains(t, strings.Join(args, " "), "--s3-bucket backups")
	assert.Contains(t, strings.Join(args, " "), "--s3-prefix openbao/ns/bao/")
	assert.NotContains(t, args, "--keep-last", "the pre-upgrade snapshot applies no retention")
	assert.Contains(t, strings.Join(args, " "), "bao-1.")
	assert.Contains(t, step.Message, location)

	// The operator restarts with the Job running: the same Job, the same location.
	persisted := u.Snapshot.DeepCopy()
	s.Jobs[job] = create.Job
	s.Leader = "bao-2"
	step, done = Snapshot(s, "the first server moves")
	assert.False(t, done)
	assert.Equal(t, StepWait, step.Kind)
	assert.Equal(t, persisted, u.Snapshot)

	// It fails: the upgrade halts with the executor's error; resumed, the Job runs again.
	s.Jobs[job].Status = batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}}
	s.JobResults = map[string]string{job: `{"error":"upload: access denied"}`}
	u.Step = StepSnapshot
	step, done = Snapshot(s, "the first server moves")
	assert.False(t, done)
	assert.Equal(t, StepHalt, step.Kind)
	assert.Contains(t, step.Message, "failed: upload: access denied")
	u.Step = StepStarted
	step, _ = Snapshot(s, "the first server moves")
	require.Equal(t, StepAct, step.Kind)
	assert.Equal(t, DeleteJob{Name: job}, step.Action)

	// It completes: size and SHA-256 from the result.
	sum := strings.Repeat("ab", 32)
	finished := metav1.NewTime(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	s.Jobs[job].Status = batchv1.JobStatus{Succeeded: 1, CompletionTime: &finished,
		Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}}
	s.JobResults = map[string]string{job: `{"location":"` + location + `","endpoint":"https://s3.example.com","size":40960,"sha256":"` + sum + `"}`}
	step, done = Snapshot(s, "the first server moves")
	assert.True(t, done)
	assert.Equal(t, Step{}, step)
	assert.Equal(t, openbaov1alpha1.SnapshotStatus{JobName: job, Location: location, Endpoint: "https://s3.example.com",
		Size: 40960, SHA256: sum, CompletionTime: &finished}, *u.Snapshot)
}

// Without an S3 target the snapshot goes to the snapshot volume, as before; the location
// names the file on it. A completed bucket Job whose pod is gone still completes the step
// with the recorded location (the object carries its checksum as a tag).
func TestSnapshotToTheVolumeAndWithoutAResult(t *testing.T) {
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns"},
		Status: openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{
			Revision: "r1", FromVersion: "2.6.2", ToVersion: "2.7.2", Step: StepStarted,
		}},
	}
	s := &State{Cluster: c, Jobs: map[string]*batchv1.Job{}, ExecutorImage: "executor:1", Leader: "bao-0", Now: time.Now()}
	step, done := Snapshot(s, "the first server moves")
	assert.False(t, done)
	require.Equal(t, StepAct, step.Kind)
	create := step.Action.(CreateJob)
	require.NotNil(t, create.Claim)
	assert.Equal(t, "bao-snapshots", create.Claim.Name)
	assert.Equal(t, string(resources.ActionSnapshot), create.Job.Spec.Template.Spec.Containers[0].Args[1])
	assert.Equal(t, openbaov1alpha1.SnapshotStatus{JobName: "bao-snapshot-r1", PersistentVolumeClaim: "bao-snapshots",
		Path: "/snapshots/bao-2.6.2-r1.snap", Location: "pvc://bao-snapshots/bao-2.6.2-r1.snap"}, *c.Status.Upgrade.Snapshot)

	// The same upgrade recorded to go to a bucket, whose Job completed with no pod left.
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{Target: openbaov1alpha1.BackupTarget{S3: &openbaov1alpha1.S3Target{Endpoint: "https://s3", Bucket: "b", CredentialsSecret: "x"}}}
	c.Status.Upgrade.Snapshot = nil
	_, _ = Snapshot(s, "the first server moves")
	s.Jobs["bao-snapshot-r1"] = &batchv1.Job{Status: batchv1.JobStatus{Succeeded: 1}}
	_, done = Snapshot(s, "the first server moves")
	assert.True(t, done)
	got := c.Status.Upgrade.Snapshot
	assert.Equal(t, "s3://b/ns/bao/bao-pre-upgrade-2.6.2-r1.snap", got.Location)
	assert.Empty(t, got.SHA256)
	require.NotNil(t, got.CompletionTime)

	// spec.backup.target.s3 removed before the Job was created: halt, say what to do.
	c.Status.Upgrade.Snapshot.CompletionTime = nil
	delete(s.Jobs, "bao-snapshot-r1")
	c.Spec.Backup = nil
	step, _ = Snapshot(s, "the first server moves")
	assert.Equal(t, StepHalt, step.Kind)
	assert.Contains(t, step.Message, "spec.backup.target.s3 was removed")
}
