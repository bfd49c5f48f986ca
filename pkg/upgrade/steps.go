package upgrade

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// Steps and actions every strategy uses. Strategies never import each other; what they
// share lives here.

// Names of the shared steps, recorded in status.upgrade.step.
const (
	StepSnapshot            = "Snapshot"
	StepStepDown            = "StepDown"
	StepWaitLeadershipMoved = "WaitLeadershipMoved"
	// StepRetryFailedJob deletes a failed Job of the upgrade so that it runs again, after
	// the upgrade was retried or given a new target (step Started). The step's own name is
	// the recorded intent: an operator stopped before the deletion deletes it on its next
	// pass instead of reading the failed Job as a new failure.
	StepRetryFailedJob = "RetryFailedJob"
)

// QuickPoll is how soon a strategy looks again at a wait that ends within a second or two
// and holds the next server back.
const QuickPoll = time.Second

// Shared actions, performed by ApplyShared.
type (
	// CreateJob creates an upgrade Job owned by the cluster, and first Claim when set (the
	// snapshot volume, which outlives the cluster).
	CreateJob struct {
		Job   *batchv1.Job
		Claim *corev1.PersistentVolumeClaim
	}
	// DeleteJobs deletes every upgrade Job of the cluster.
	DeleteJobs struct{}
	// ApplyWorkload has the controller apply the Workload the status declares, now that
	// the intent is persisted, and records Event (if any) with the step's message.
	ApplyWorkload struct{ Event string }
	// DeleteJob deletes one Job (a failed one, to run it again).
	DeleteJob struct{ Name string }
)

// Wait is a step without side effect.
func Wait(name, pod, msg string) Step {
	return Step{Kind: StepWait, Name: name, Pod: pod, Message: msg}
}

// ApplyShared performs the shared actions; handled is false for a strategy's own.
func ApplyShared(ctx context.Context, s *State, step Step, env Env) (handled bool, err error) {
	cl := env.Client()
	switch a := step.Action.(type) {
	case CreateJob:
		if a.Claim != nil {
			if err := CreateOwnedOrExisting(ctx, cl, nil, a.Claim); err != nil {
				return true, fmt.Errorf("create snapshot volume: %w", err)
			}
		}
		if err := CreateOwnedOrExisting(ctx, cl, s.Cluster, a.Job); err != nil {
			return true, fmt.Errorf("create Job %s: %w", a.Job.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "JobCreated", step.Message)
		return true, nil
	case ApplyWorkload:
		if err := env.ApplyWorkload(ctx); err != nil {
			return true, fmt.Errorf("apply the workload: %w", err)
		}
		if a.Event != "" {
			env.Event(corev1.EventTypeNormal, a.Event, step.Message)
		}
		return true, nil
	case DeleteJobs:
		return true, cl.DeleteAllOf(ctx, &batchv1.Job{}, client.InNamespace(s.Cluster.Namespace),
			client.MatchingLabels{resources.LabelCluster: s.Cluster.Name, resources.LabelComponent: resources.ComponentJob},
			client.PropagationPolicy(metav1.DeletePropagationBackground))
	case DeleteJob:
		job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: s.Cluster.Namespace, Name: a.Name}}
		if err := cl.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
			return true, fmt.Errorf("delete Job %s: %w", a.Name, err)
		}
		return true, nil
	}
	return false, nil
}

// CreateOwnedOrExisting creates obj (controlled by owner when set); an existing one is fine.
func CreateOwnedOrExisting(ctx context.Context, cl client.Client, owner *openbaov1alpha1.OpenBaoCluster, obj client.Object) error {
	if owner != nil {
		obj.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(owner, openbaov1alpha1.GroupVersion.WithKind("OpenBaoCluster"))})
	}
	if err := cl.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// Snapshot runs the pre-upgrade snapshot Job; done is true once it completed. before says,
// for people, what the snapshot precedes ("the first server moves"). The snapshot goes to
// the bucket of spec.backup.target.s3 when there is one, else to the snapshot volume. Where
// it goes is recorded in status.upgrade.snapshot before the Job is created, so a pass after
// a restart of the operator finds the same Job and the same location; its size and SHA-256
// are recorded from the Job's result once it completed.
func Snapshot(s *State, before string) (step Step, done bool) {
	c, u := s.Cluster, s.Upgrade()
	name := fmt.Sprintf("%s-snapshot-%s", c.Name, u.Revision)
	if u.Snapshot == nil {
		u.Snapshot = snapshotIntent(c, u, name)
	}
	toBucket := u.Snapshot.PersistentVolumeClaim == ""
	job, exists := s.Jobs[name]
	switch {
	case !exists:
		if s.Leader == "" {
			return Wait(StepSnapshot, "", "Waiting for an active node to take the snapshot from."), false
		}
		if toBucket {
			if c.Spec.Backup == nil || c.Spec.Backup.Target.S3 == nil {
				return Step{Kind: StepHalt, Name: StepSnapshot,
					Message: fmt.Sprintf("The pre-upgrade snapshot is recorded to go to %s, but spec.backup.target.s3 was removed, so the upgrade is blocked before %s. Set spec.backup.target.s3 again, or turn spec.upgrade.preUpgradeSnapshot off.", u.Snapshot.Location, before)}, false
			}
			object := path.Base(u.Snapshot.Location)
			return Step{
				Kind: StepAct, Name: StepSnapshot, NewStep: true,
				Message: fmt.Sprintf("Saving a Raft snapshot to %s before %s.", u.Snapshot.Location, before),
				Action: CreateJob{Job: resources.PreUpgradeSnapshotJob(c, resources.PreUpgradeSnapshotParams{
					Name: name, Revision: u.Revision, Image: s.ExecutorImage, TargetPod: s.Leader, Object: object, Platform: s.Platform,
				})},
			}, false
		}
		file := strings.TrimPrefix(u.Snapshot.Path, resources.SnapshotDir+"/")
		return Step{
			Kind: StepAct, Name: StepSnapshot, NewStep: true,
			Message: fmt.Sprintf("Saving a Raft snapshot to %s on volume %s before %s.", u.Snapshot.Path, u.Snapshot.PersistentVolumeClaim, before),
			Action: CreateJob{
				Claim: resources.SnapshotClaim(c),
				Job: resources.ExecutorJob(c, resources.ExecutorJobParams{
					Name: name, Revision: u.Revision, Image: s.ExecutorImage, Action: resources.ActionSnapshot,
					TargetPod: s.Leader, SnapshotFile: file, Timeout: resources.SnapshotTimeout, Platform: s.Platform,
				}),
			},
		}, false
	case JobFailed(job) && (u.Step == StepStarted || u.Step == StepRetryFailedJob && u.CurrentPod == ""):
		// The upgrade was retried (or given a new target) after the snapshot failed: run it again.
		return Step{
			Kind: StepAct, Name: StepRetryFailedJob, NewStep: true,
			Message: fmt.Sprintf("Deleting the failed snapshot Job %s to try again.", name),
			Action:  DeleteJob{Name: name},
		}, false
	case JobFailed(job):
		why := ""
		if res, ok := snapshotResult(s, name); ok && res.Error != "" {
			why = ": " + res.Error
		}
		return Step{Kind: StepHalt, Name: StepSnapshot,
			Message: fmt.Sprintf("The pre-upgrade snapshot Job %s failed%s (see `kubectl logs -n %s job/%s`), so the upgrade is blocked before %s.", name, why, c.Namespace, name, before)}, false
	case job.Status.Succeeded > 0:
		if toBucket {
			// Without a readable result (no pod left) the location still holds: the object
			// carries its size and SHA-256 as tags, which a restore reads.
			if res, ok := snapshotResult(s, name); ok && res.Location != "" {
				u.Snapshot.Location, u.Snapshot.Endpoint, u.Snapshot.Size, u.Snapshot.SHA256 = res.Location, res.Endpoint, res.Size, res.SHA256
			}
		}
		completed := job.Status.CompletionTime
		if completed == nil {
			completed = &metav1.Time{Time: s.Now}
		}
		u.Snapshot.CompletionTime = completed
		return Step{}, true
	default:
		return Wait(StepSnapshot, "", fmt.Sprintf("Waiting for the snapshot Job %s.", name)), false
	}
}

// snapshotIntent is where the pre-upgrade snapshot of u goes: the backup bucket, or else the
// snapshot volume.
func snapshotIntent(c *openbaov1alpha1.OpenBaoCluster, u *openbaov1alpha1.UpgradeStatus, job string) *openbaov1alpha1.SnapshotStatus {
	if b := c.Spec.Backup; b != nil && b.Target.S3 != nil {
		object := backup.PreUpgradeName(c.Name, u.FromVersion, u.Revision)
		return &openbaov1alpha1.SnapshotStatus{
			JobName:  job,
			Location: resources.PreUpgradeSnapshotLocation(c, object),
			Endpoint: strings.TrimSuffix(b.Target.S3.Endpoint, "/"),
		}
	}
	file := fmt.Sprintf("%s-%s-%s.snap", c.Name, u.FromVersion, u.Revision)
	return &openbaov1alpha1.SnapshotStatus{
		JobName:               job,
		PersistentVolumeClaim: resources.SnapshotClaimName(c),
		Path:                  resources.SnapshotDir + "/" + file,
		Location:              "pvc://" + resources.SnapshotClaimName(c) + "/" + file,
	}
}

// snapshotResult is the backup result the snapshot Job reported, if it could be read.
func snapshotResult(s *State, job string) (backup.Result, bool) {
	var res backup.Result
	msg, ok := s.JobResults[job]
	if !ok || json.Unmarshal([]byte(msg), &res) != nil {
		return res, false
	}
	return res, true
}

// StepDown describes moving leadership away from the active node before it goes.
type StepDown struct {
	// Pod is the active node, Ordinal its StatefulSet ordinal (part of the Job's name).
	Pod     string
	Ordinal int
	// JobSuffix tells apart the Jobs of two step-downs of one server in one upgrade.
	JobSuffix string
	// Reason says, for people, why leadership moves now.
	Reason string
	// Successor names who takes over ("another server", "a Green server").
	Successor string
	// OnFailure says what holds when the Job has failed ("Green's servers are voters").
	OnFailure string
}

// StepDownStep runs the step-down Job against d.Pod and waits for it; the Job starts only
// when the Job itself would step the server down (StepDownBlocked). A failed Job halts
// the upgrade; once the user resumes it (the step is Started again), the failed Job is
// deleted and a new one runs.
func StepDownStep(s *State, d StepDown) Step {
	c, u := s.Cluster, s.Upgrade()
	name := StepDownJobName(s, d.Ordinal, d.JobSuffix)
	job, exists := s.Jobs[name]
	switch {
	case !exists:
		if why := StepDownBlocked(s, d.Pod); why != "" {
			return Wait(StepStepDown, d.Pod, why)
		}
		return Step{
			Kind: StepAct, Name: StepStepDown, Pod: d.Pod, NewStep: true,
			Message: fmt.Sprintf("%s: moving leadership to %s with Job %s.", d.Reason, d.Successor, name),
			Action: CreateJob{Job: resources.ExecutorJob(c, resources.ExecutorJobParams{
				Name: name, Revision: u.Revision, Image: s.ExecutorImage, Action: resources.ActionStepDown,
				TargetPod: d.Pod, Timeout: resources.StepDownTimeout, Platform: s.Platform,
			})},
		}
	case JobFailed(job) && (u.Step == StepStarted || u.Step == StepRetryFailedJob && u.CurrentPod == d.Pod):
		return Step{
			Kind: StepAct, Name: StepRetryFailedJob, Pod: d.Pod, NewStep: true,
			Message: fmt.Sprintf("Deleting the failed step-down Job %s to try again.", name),
			Action:  DeleteJob{Name: name},
		}
	case JobFailed(job):
		msg := fmt.Sprintf("The step-down Job %s failed after its retries (see `kubectl logs -n %s job/%s`); %s stays the active node", name, c.Namespace, name, d.Pod)
		if d.OnFailure != "" {
			msg += " and " + d.OnFailure
		}
		return Step{Kind: StepHalt, Name: StepStepDown, Pod: d.Pod, Message: msg + "."}
	case job.Status.Succeeded > 0:
		step := Wait(StepWaitLeadershipMoved, d.Pod, fmt.Sprintf("Job %s stepped %s down; waiting for %s to report itself active.", name, d.Pod, d.Successor))
		step.PollAfter = QuickPoll
		return step
	default:
		return Wait(StepStepDown, d.Pod, fmt.Sprintf("Waiting for the step-down Job %s.", name))
	}
}

// StepDownBlocked says why pod may not step down now, or "". It gives the answer the
// step-down Job gives before it acts (openbao.RaftView.Successors), from the Raft state observed in
// this pass, so that the operator never starts a Job that refuses to step the server down.
func StepDownBlocked(s *State, pod string) string {
	if s.Raft == nil {
		return "Waiting to read the Raft state before stepping down."
	}
	if _, why := s.Raft.Successors(pod); why != "" {
		return fmt.Sprintf("No other server could take over from %s (%s); waiting before stepping it down.", pod, why)
	}
	return ""
}

// StepDownJobName names the step-down Job of the server with the given ordinal in this
// upgrade.
func StepDownJobName(s *State, ordinal int, suffix string) string {
	return fmt.Sprintf("%s-stepdown-%s-%d%s", s.Cluster.Name, s.Upgrade().Revision, ordinal, suffix)
}

// JobFinished reads a Job's terminal conditions.
func JobFinished(j *batchv1.Job) (succeeded, failed bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			succeeded = true
		case batchv1.JobFailed:
			failed = true
		}
	}
	return succeeded, failed
}

// JobFailed is true once a Job has given up.
func JobFailed(j *batchv1.Job) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// ContainerProblem names a container that cannot start (an image that cannot be pulled or
// run), so that the condition tells the user before the step's deadline.
func ContainerProblem(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
			return fmt.Sprintf(" Container %s is waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
	}
	return ""
}

// TemplateImage is the OpenBao image of a StatefulSet's template.
func TemplateImage(sts *appsv1.StatefulSet) string {
	return openBaoImage(sts.Spec.Template.Spec.Containers)
}

// PodImage is the OpenBao image of a pod.
func PodImage(p *corev1.Pod) string { return openBaoImage(p.Spec.Containers) }

func openBaoImage(containers []corev1.Container) string {
	for _, c := range containers {
		if c.Name == "openbao" {
			return c.Image
		}
	}
	return ""
}

// SameVersion compares versions as OpenBao reports them ("v2.7.2" and "2.7.2" are equal).
func SameVersion(a, b string) bool {
	norm := func(v string) string { return strings.TrimPrefix(strings.TrimSpace(v), "v") }
	return norm(a) == norm(b)
}
