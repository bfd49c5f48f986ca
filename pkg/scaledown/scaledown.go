// Package scaledown removes servers from an OpenBao cluster after spec.replicas was lowered.
//
// Servers go from the highest ordinal down, one at a time, and each in this order:
//
//  1. if it is the active node, a step-down Job (the upgrade executor's step-down) moves
//     leadership to another healthy voter;
//  2. the operator removes it from the Raft configuration through the active node, with its
//     own OpenBao role (which may already remove peers, for blue/green upgrades), and reads the
//     configuration back;
//  3. the StatefulSet's replica count is lowered by one (recorded in status.scaleDown.replicas,
//     which the controller applies), so its pod is deleted;
//  4. once the pod is gone, its data volume is deleted: a removed peer must never start
//     again from its old Raft data, and a later scale-up gives the ordinal an empty volume.
//
// Plan is pure: it decides the next step from the live objects, the servers' answers and the
// persisted status.scaleDown, and records intent in the status before the controller writes
// it and calls Apply, which performs one idempotent side effect. Whether a server is still a
// Raft peer is always read from OpenBao, so a step that already happened is never repeated
// after an operator restart.
package scaledown

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Step names recorded in status.scaleDown.step.
const (
	StepStepDown            = "StepDown"
	StepWaitLeadershipMoved = "WaitLeadershipMoved"
	StepRemovePeer          = "RemovePeer"
	StepLowerReplicas       = "LowerReplicas"
	StepWaitPodGone         = "WaitPodGone"
	StepDeleteVolume        = "DeleteVolume"
	StepWaitVolumeGone      = "WaitVolumeGone"
	StepCleanup             = "Cleanup"
	StepWait                = "Wait"
)

// dataVolumePrefix starts the name of every server's data volume, data-<pod> (the
// StatefulSet's volume claim template is named "data").
const dataVolumePrefix = "data-"

// jobRevision labels the scale-down's step-down Jobs (resources.LabelUpgradeRevision).
const jobRevision = "scaledown"

// retryStepDownAfter: a step-down Job that succeeded while its server leads again this long
// after is run again (leadership came back to it, rare but possible).
const retryStepDownAfter = 30 * time.Second

// Kind says what a Step asks of the controller.
type Kind string

const (
	// Idle: nothing to remove; the pass goes on (an upgrade may run).
	Idle Kind = "Idle"
	// Blocked: a lower spec.replicas waits; Reason says for what. Nothing is changed.
	Blocked Kind = "Blocked"
	// Wait: a scale-down is in flight and waits for the cluster to reach a state.
	Wait Kind = "Wait"
	// Act: one side effect, performed by Apply after the status was written.
	Act Kind = "Act"
	// Done: the scale-down finished (or ended because spec.replicas went up again); the
	// status was updated.
	Done Kind = "Done"
)

// Step is the planner's decision for this pass.
type Step struct {
	Kind    Kind
	Name    string
	Pod     string
	Message string
	// UpgradeRuns is set on a Blocked step that waits for an upgrade: the upgrade must go on.
	UpgradeRuns bool
	Action      any
}

// Actions, performed by Apply.
type (
	createJob   struct{ Job *batchv1.Job }
	deleteJob   struct{ Name string }
	removePeer  struct{ Leader, Pod string }
	deleteClaim struct {
		Name string
		UID  types.UID
	}
	// lowerReplicas has no side effect of its own: the status already holds the new count,
	// which the controller applies to the StatefulSet.
	lowerReplicas struct{ To int32 }
)

// Plan decides the next step. s.StatefulSet is the active server StatefulSet, s.Claims the
// cluster's volumes, s.Jobs its executor Jobs. It updates s.Cluster.Status.ScaleDown and the
// ScalingDown condition.
func Plan(s *upgrade.State) Step {
	c, sts := s.Cluster, s.StatefulSet
	want := c.Spec.ReplicaCount()
	sd := c.Status.ScaleDown
	if sts == nil || sts.Spec.Replicas == nil {
		return Step{Kind: Idle}
	}

	if sd == nil {
		current := *sts.Spec.Replicas
		if current <= want {
			idle(c)
			return Step{Kind: Idle}
		}
		if u := c.Status.Upgrade; u != nil {
			return blocked(c, fmt.Sprintf("spec.replicas %d waits for the upgrade to %s to finish: servers are removed only when no upgrade runs. %d servers run meanwhile.", want, u.ToVersion, current), true)
		}
		if why := notHealthy(s, current, want); why != "" {
			return blocked(c, fmt.Sprintf("spec.replicas %d waits: %s Nothing was changed; the scale-down starts once the servers that remain are healthy.", want, why), false)
		}
		now := metav1.NewTime(s.Now)
		sd = &openbaov1alpha1.ScaleDownStatus{FromReplicas: current, ToReplicas: want, Replicas: current, StartTime: &now}
		c.Status.ScaleDown = sd
		msg := fmt.Sprintf("Scaling down from %d to %d servers, the highest ordinal first.", current, want)
		setCondition(c, true, openbaov1alpha1.ReasonScaleDownInProgress, msg)
		sd.Step, sd.Message = StepWait, msg
		return Step{Kind: Act, Name: "Started", Message: msg, Action: started{}}
	}

	sd.ToReplicas = want
	n := sd.Replicas
	if *sts.Spec.Replicas != n {
		return wait(sd, StepLowerReplicas, "", fmt.Sprintf("Waiting for the StatefulSet to be given %d replicas.", n))
	}
	// Everything of the ordinals at or above the StatefulSet's count must be gone before the
	// next server is touched: the pod first, then its volume.
	if step, pending := leftovers(s, n); pending {
		return step
	}

	if n <= want && sd.Step == StepRemovePeer && sd.Pod == resources.PodName(sts.Name, int(n-1)) {
		// spec.replicas went up while this server was being removed. Once asked to leave, it
		// must not stay with its old data: if it left the Raft configuration, its removal
		// finishes (pod, then volume) and the StatefulSet re-creates it empty.
		if s.Raft == nil || s.Leader == "" {
			return wait(sd, StepWait, sd.Pod, "Waiting to read the Raft configuration with the operator's role from an active node.")
		}
		if !s.Raft.Voters[sd.Pod] && !s.Raft.NonVoters[sd.Pod] {
			return act(sd, Step{Name: StepLowerReplicas, Pod: sd.Pod,
				Message: fmt.Sprintf("%s left the Raft configuration; its pod and volume are deleted before it is created again, empty.", sd.Pod),
				Action:  lowerReplicas{To: n - 1}})
		}
	}
	if n <= want {
		// Every server above spec.replicas was removed (or spec.replicas went up again: the
		// controller now grows the StatefulSet, new servers join with empty volumes).
		if names := jobsOf(s); len(names) > 0 {
			return act(sd, Step{Name: StepCleanup, Message: "Removing the scale-down's step-down Jobs.", Action: deleteJobs{Names: names}})
		}
		msg := fmt.Sprintf("Scaled down from %d to %d servers", sd.FromReplicas, n)
		if sd.StartTime != nil {
			msg += fmt.Sprintf(" in %s", s.Now.Sub(sd.StartTime.Time).Round(time.Second))
		}
		msg += "."
		if want > n {
			msg = fmt.Sprintf("Stopped scaling down at %d servers: spec.replicas is %d again.", n, want)
		}
		c.Status.ScaleDown = nil
		setCondition(c, false, openbaov1alpha1.ReasonScaleDownCompleted, msg)
		return Step{Kind: Done, Message: msg}
	}

	pod := resources.PodName(sts.Name, int(n-1))
	if s.Raft == nil || s.Leader == "" {
		return wait(sd, StepWait, pod, "Waiting to read the Raft configuration with the operator's role from an active node.")
	}
	if !s.Raft.Voters[pod] && !s.Raft.NonVoters[pod] {
		// Not (or no longer) a Raft peer: its pod may go.
		return act(sd, Step{Name: StepLowerReplicas, Pod: pod,
			Message: fmt.Sprintf("%s is not in the Raft configuration; lowering the StatefulSet to %d replicas deletes its pod.", pod, n-1),
			Action:  lowerReplicas{To: n - 1}})
	}
	if s.Leader == pod {
		return stepDown(s, sd, pod, int(n-1))
	}
	if why := removalUnsafe(s, pod); why != "" {
		return wait(sd, StepRemovePeer, pod, why)
	}
	return act(sd, Step{Name: StepRemovePeer, Pod: pod,
		Message: fmt.Sprintf("Removing %s from the Raft configuration through the active node %s (%d of %d servers left to remove).", pod, s.Leader, n-want, sd.FromReplicas-want),
		Action:  removePeer{Leader: s.Leader, Pod: pod}})
}

// started has no side effect: the status records the scale-down.
type started struct{}

// deleteJobs deletes the scale-down's Jobs by name.
type deleteJobs struct{ Names []string }

// stepDown moves leadership away from pod with a step-down Job; the Job starts only when the
// Job itself would step the server down (openbao.RaftView.Successors).
func stepDown(s *upgrade.State, sd *openbaov1alpha1.ScaleDownStatus, pod string, ordinal int) Step {
	c := s.Cluster
	name := JobName(c, ordinal)
	job, exists := s.Jobs[name]
	switch {
	case !exists:
		if _, why := s.Raft.Successors(pod); why != "" {
			return wait(sd, StepStepDown, pod, fmt.Sprintf("No other server could take over from %s (%s); waiting before stepping it down.", pod, why))
		}
		if s.ExecutorImage == "" {
			return wait(sd, StepStepDown, pod, "No image for the step-down Job: set spec.upgrade.executorImage, or run the operator with OPERATOR_IMAGE set to its own image.")
		}
		return act(sd, Step{Name: StepStepDown, Pod: pod,
			Message: fmt.Sprintf("%s is the active node and leaves the cluster: moving leadership to another server with Job %s.", pod, name),
			Action: createJob{Job: resources.ExecutorJob(c, resources.ExecutorJobParams{
				Name: name, Revision: jobRevision, Image: s.ExecutorImage, Action: resources.ActionStepDown,
				TargetPod: pod, Timeout: resources.StepDownTimeout, Platform: s.Platform,
			})}})
	case upgrade.JobFailed(job):
		return act(sd, Step{Name: StepStepDown, Pod: pod,
			Message: fmt.Sprintf("The step-down Job %s failed (see `kubectl logs -n %s job/%s`); deleting it to try again.", name, c.Namespace, name),
			Action:  deleteJob{Name: name}})
	case job.Status.Succeeded > 0:
		if done := job.Status.CompletionTime; done != nil && s.Now.Sub(done.Time) > retryStepDownAfter {
			return act(sd, Step{Name: StepStepDown, Pod: pod,
				Message: fmt.Sprintf("%s leads again %s after Job %s stepped it down; deleting the Job to step it down again.", pod, retryStepDownAfter, name),
				Action:  deleteJob{Name: name}})
		}
		return wait(sd, StepWaitLeadershipMoved, pod, fmt.Sprintf("Job %s stepped %s down; waiting for another server to report itself active.", name, pod))
	default:
		return wait(sd, StepStepDown, pod, fmt.Sprintf("Waiting for the step-down Job %s.", name))
	}
}

// leftovers returns the step that removes what is left of the ordinals at or above n: a pod
// still running or terminating, a data volume not yet deleted.
func leftovers(s *upgrade.State, n int32) (Step, bool) {
	sd, sts := s.Cluster.Status.ScaleDown, s.StatefulSet
	for _, name := range sortedKeys(s.Pods) {
		if ord, ok := ordinalOf(sts.Name, name); ok && ord >= int(n) {
			return wait(sd, StepWaitPodGone, name, fmt.Sprintf("Waiting for the pod %s to be gone before its data volume is deleted.", name)), true
		}
	}
	for _, name := range sortedKeys(s.Claims) {
		pvc := s.Claims[name]
		ord, ok := ordinalOf(sts.Name, strings.TrimPrefix(name, dataVolumePrefix))
		if !strings.HasPrefix(name, dataVolumePrefix) || !ok || ord < int(n) || pvc.Labels[resources.LabelStatefulSet] != sts.Name {
			continue
		}
		pod := resources.PodName(sts.Name, ord)
		if pvc.DeletionTimestamp != nil {
			return wait(sd, StepWaitVolumeGone, pod, fmt.Sprintf("Waiting for the data volume %s to be deleted.", name)), true
		}
		return act(sd, Step{Name: StepDeleteVolume, Pod: pod,
			Message: fmt.Sprintf("Deleting the data volume %s of the removed server %s, so that it never starts again from its old Raft data.", name, pod),
			Action:  deleteClaim{Name: name, UID: pvc.UID}}), true
	}
	return Step{}, false
}

// notHealthy says why the servers that remain after a scale-down from current to want are
// not fit to start it, or "".
func notHealthy(s *upgrade.State, current, want int32) string {
	if s.Raft == nil {
		return "the Raft state could not be read with the operator's OpenBao role."
	}
	if s.Leader == "" {
		return "no server is the active node."
	}
	if s.Raft.AutopilotHealthy == nil || !*s.Raft.AutopilotHealthy {
		return "autopilot does not report the Raft cluster healthy."
	}
	var bad []string
	for i := range int(want) {
		pod := resources.PodName(s.StatefulSet.Name, i)
		p := s.Pods[pod]
		switch {
		case p == nil || !upgrade.PodReady(p):
			bad = append(bad, pod+" (not ready)")
		case !s.Servers[pod].Serving():
			bad = append(bad, pod+" (not unsealed and serving)")
		case !s.Raft.Voters[pod]:
			bad = append(bad, pod+" (not a Raft voter)")
		case !s.Raft.Healthy[pod]:
			bad = append(bad, pod+" (not healthy for autopilot)")
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("the servers that would remain are not all healthy voters: %s.", strings.Join(bad, ", "))
	}
	return ""
}

// removalUnsafe says why removing pod from the Raft configuration now could cost the
// cluster its quorum, or "": every other voter must be healthy, and autopilot's verdict too.
func removalUnsafe(s *upgrade.State, pod string) string {
	if s.Raft.AutopilotHealthy == nil || !*s.Raft.AutopilotHealthy {
		return fmt.Sprintf("Waiting for autopilot to report the Raft cluster healthy before removing %s.", pod)
	}
	var sick []string
	for _, id := range sortedKeys(s.Raft.Voters) {
		if id != pod && s.Raft.Voters[id] && !s.Raft.Healthy[id] {
			sick = append(sick, id)
		}
	}
	if len(sick) > 0 {
		return fmt.Sprintf("Waiting for autopilot to report %s healthy before removing %s.", strings.Join(sick, ", "), pod)
	}
	return ""
}

// Apply performs one step's side effect; each is idempotent.
func Apply(ctx context.Context, s *upgrade.State, step Step, env upgrade.Env) error {
	c, cl := s.Cluster, env.Client()
	switch a := step.Action.(type) {
	case started:
		env.Event(corev1.EventTypeNormal, "ScaleDownStarted", step.Message)
		return nil
	case lowerReplicas:
		env.Event(corev1.EventTypeNormal, "ServerRemoved", step.Message)
		return nil
	case createJob:
		if err := upgrade.CreateOwnedOrExisting(ctx, cl, c, a.Job); err != nil {
			return fmt.Errorf("create Job %s: %w", a.Job.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "JobCreated", step.Message)
		return nil
	case deleteJob:
		return deleteJobNamed(ctx, cl, c.Namespace, a.Name)
	case deleteJobs:
		for _, name := range a.Names {
			if err := deleteJobNamed(ctx, cl, c.Namespace, name); err != nil {
				return err
			}
		}
		return nil
	case removePeer:
		ob, err := env.OpenBao(ctx, a.Leader)
		if err != nil {
			return fmt.Errorf("remove %s from the Raft configuration: %w", a.Pod, err)
		}
		if err := openbao.RemovePeerVerified(ctx, ob, a.Pod); err != nil {
			return fmt.Errorf("remove %s from the Raft configuration: %w", a.Pod, err)
		}
		env.Event(corev1.EventTypeNormal, "PeerRemoved", step.Message)
		return nil
	case deleteClaim:
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: a.Name}}
		if err := cl.Delete(ctx, pvc, client.Preconditions{UID: &a.UID}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete volume %s: %w", a.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "VolumeDeleted", step.Message)
		return nil
	default:
		return fmt.Errorf("unknown scale-down action %T", step.Action)
	}
}

func deleteJobNamed(ctx context.Context, cl client.Client, ns, name string) error {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if err := cl.Delete(ctx, job, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Job %s: %w", name, err)
	}
	return nil
}

// JobName names the step-down Job of the server with this ordinal.
func JobName(c *openbaov1alpha1.OpenBaoCluster, ordinal int) string {
	return fmt.Sprintf("%s-scaledown-stepdown-%d", c.Name, ordinal)
}

// jobsOf lists the scale-down's Jobs that are not being deleted.
func jobsOf(s *upgrade.State) []string {
	var out []string
	for _, name := range sortedKeys(s.Jobs) {
		j := s.Jobs[name]
		if j.Labels[resources.LabelUpgradeRevision] == jobRevision && j.DeletionTimestamp == nil {
			out = append(out, name)
		}
	}
	return out
}

func act(sd *openbaov1alpha1.ScaleDownStatus, step Step) Step {
	step.Kind = Act
	sd.Step, sd.Pod, sd.Message = step.Name, step.Pod, step.Message
	if a, ok := step.Action.(lowerReplicas); ok {
		// Intent: the StatefulSet gets the new count from the status.
		sd.Replicas = a.To
	}
	return step
}

func wait(sd *openbaov1alpha1.ScaleDownStatus, name, pod, msg string) Step {
	sd.Step, sd.Pod, sd.Message = name, pod, msg
	return Step{Kind: Wait, Name: name, Pod: pod, Message: msg}
}

func blocked(c *openbaov1alpha1.OpenBaoCluster, msg string, upgradeRuns bool) Step {
	changed := setCondition(c, false, openbaov1alpha1.ReasonScaleDownBlocked, msg)
	step := Step{Kind: Blocked, Message: msg, UpgradeRuns: upgradeRuns}
	if changed {
		step.Name = "Blocked"
	}
	return step
}

// idle clears a blocked scale-down once spec.replicas no longer asks for one.
func idle(c *openbaov1alpha1.OpenBaoCluster) {
	if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionScalingDown); cond != nil && cond.Reason == openbaov1alpha1.ReasonScaleDownBlocked {
		setCondition(c, false, openbaov1alpha1.ReasonNoScaleDown, "No scale-down is pending.")
	}
}

// setCondition sets ScalingDown and says whether its status or reason changed.
func setCondition(c *openbaov1alpha1.OpenBaoCluster, status bool, reason, msg string) bool {
	before := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionScalingDown)
	changed := before == nil || (before.Status == metav1.ConditionTrue) != status || before.Reason != reason
	st := metav1.ConditionFalse
	if status {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: openbaov1alpha1.ConditionScalingDown, Status: st,
		Reason: reason, Message: msg, ObservedGeneration: c.Generation})
	return changed
}

// ordinalOf parses "<sts>-<n>".
func ordinalOf(sts, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, sts+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
