// Package rolling upgrades an OpenBao cluster in place, one server at a time, by lowering
// the StatefulSet's partition from the highest ordinal to 0.
//
// Leadership only ever moves from an old version to a new one (OpenBao's upgrade guide
// forbids failing over from a newer version to an older one): a server is replaced only
// when it is not the active node, and when it is, a step-down Job moves leadership away
// first. Leadership then goes to one of the other voters; once a server runs the new
// version it is never restarted again by this upgrade, so no deliberate step-down ever
// starts on a new-version server. A leader whose own turn would come when the old version is
// a minority is stepped down before any server moves (see placeLeadership).
package rolling

import (
	"context"
	"fmt"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Step names recorded in status.upgrade.step.
const (
	StepWaitTemplate        = "WaitTemplate"
	StepWaitPartition       = "WaitPartition"
	StepStepDown            = upgrade.StepStepDown
	StepWaitLeadershipMoved = upgrade.StepWaitLeadershipMoved
	StepUpdatePod           = "UpdatePod"
	StepWaitPodHealthy      = "WaitPodHealthy"
	StepWaitDoneHealthy     = "WaitDoneHealthy"
	StepCleanup             = "Cleanup"
	StepReplaceStuckPod     = "ReplaceStuckPod"
)

// deletePod is the one action of this strategy's own, performed by Apply; a pod moves by
// the partition, which the Workload declares.
type deletePod struct {
	Name string
	UID  types.UID
}

// stuckGrace is how long a released pod on an old revision must have been unready before
// the operator replaces it itself.
const stuckGrace = 20 * time.Second

// Strategy is the Rolling strategy.
type Strategy struct{}

// Workload: the active StatefulSet's template carries the target from the start of the
// upgrade; the partition keeps every pod where it is until Plan lowers it (it is recorded in
// status.upgrade.rolling before it is applied, and kept when a halted upgrade is given
// another target, so pods already released stay so).
func (Strategy) Workload(c *openbaov1alpha1.OpenBaoCluster) upgrade.Workload {
	u, active := c.Status.Upgrade, resources.ActiveStatefulSet(c)
	set := resources.ServerSet{Name: active, Image: u.ToImage}
	if u.Rolling != nil && u.Rolling.Partition != nil {
		set.Partition = ptr.To(*u.Rolling.Partition)
	}
	return upgrade.Workload{Sets: []resources.ServerSet{set}, Serving: active}
}

// Plan decides the next step from the live StatefulSet, pods, Jobs and servers.
func (Strategy) Plan(ctx context.Context, s *upgrade.State) (upgrade.Step, error) {
	c, u, sts := s.Cluster, s.Upgrade(), s.StatefulSet
	st := status(u)
	if sts == nil {
		return upgrade.Wait(StepWaitTemplate, "", "The StatefulSet does not exist yet."), nil
	}

	if c.Spec.Upgrade.PreUpgradeSnapshot && (u.Snapshot == nil || u.Snapshot.CompletionTime == nil) {
		if step, done := upgrade.Snapshot(s, "the first server moves"); !done {
			return step, nil
		}
	}

	if image := upgrade.TemplateImage(sts); image != u.ToImage {
		return upgrade.Wait(StepWaitTemplate, "", fmt.Sprintf("Waiting for the StatefulSet template to carry %s (it has %s).", u.ToImage, image)), nil
	}
	partition := currentPartition(sts)
	if sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdateRevision == "" {
		if st.Partition != nil && *st.Partition == partition {
			// The last change this upgrade made is the partition: the template was observed
			// before the first partition change.
			step := upgrade.Wait(StepWaitPartition, resources.PodName(sts.Name, int(partition)),
				fmt.Sprintf("Waiting for the StatefulSet controller to observe partition %d, which releases %s.", partition, resources.PodName(sts.Name, int(partition))))
			step.PollAfter = upgrade.QuickPoll
			return step, nil
		}
		return upgrade.Wait(StepWaitTemplate, "", "Waiting for the StatefulSet controller to observe the new template."), nil
	}

	replicas := s.Replicas()
	if step, ok := placeLeadership(s, partition, replicas); ok {
		return step, nil
	}
	for ord := replicas - 1; ord >= 0; ord-- {
		pod := resources.PodName(sts.Name, int(ord))
		if ord >= partition {
			if why := notUpdated(s, pod); why != "" {
				if p := stuckOnOldRevision(s, pod); p != nil {
					return upgrade.Step{
						Kind: upgrade.StepAct, Name: StepReplaceStuckPod, Pod: pod,
						Message: fmt.Sprintf("%s is not ready and still runs revision %s: the StatefulSet controller does not replace an unready pod, so it is deleted to be re-created on revision %s.",
							pod, p.Labels[appsv1.ControllerRevisionHashLabelKey], sts.Status.UpdateRevision),
						Action: deletePod{Name: p.Name, UID: p.UID},
					}, nil
				}
				step := upgrade.Wait(StepWaitPodHealthy, pod, why)
				if slices.Contains(st.PodsDone, pod) {
					// Already done: what is awaited is its health again, before the next
					// server moves, not its replacement.
					step = upgrade.Wait(StepWaitDoneHealthy, pod, why)
				}
				step.PollAfter = upgrade.QuickPoll
				return step, nil
			}
			if !slices.Contains(st.PodsDone, pod) {
				st.PodsDone = append(st.PodsDone, pod)
				st.CatchUpIndex = 0
			}
			continue
		}
		// ord is the next server to move. A server already on the update revision (going
		// back to the version it runs) is not restarted by the partition: it keeps leading.
		if replicas > 1 && s.Leader == pod && !onUpdateRevision(s, pod) {
			return upgrade.StepDownStep(s, upgrade.StepDown{
				Pod: pod, Ordinal: int(ord),
				Reason:    fmt.Sprintf("%s is the active node and moves next", pod),
				Successor: "another server",
			}), nil
		}
		st.Partition = ptr.To(ord)
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepUpdatePod, Pod: pod, NewStep: true,
			Message: fmt.Sprintf("Replacing %s with %s (partition %d).", pod, u.ToVersion, ord),
			Action:  upgrade.ApplyWorkload{Event: "PodUpdating"},
		}, nil
	}

	if len(s.Jobs) > 0 {
		return upgrade.Step{Kind: upgrade.StepAct, Name: StepCleanup, Message: "Removing the upgrade's Jobs.", Action: upgrade.DeleteJobs{}}, nil
	}
	return upgrade.Step{Kind: upgrade.StepComplete, Name: "Complete"}, nil
}

// Apply performs one step's side effect; each is idempotent.
func (Strategy) Apply(ctx context.Context, s *upgrade.State, step upgrade.Step, env upgrade.Env) error {
	if handled, err := upgrade.ApplyShared(ctx, s, step, env); handled {
		return err
	}
	cl := env.Client()
	switch a := step.Action.(type) {
	case deletePod:
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: a.Name, Namespace: s.Cluster.Namespace}}
		err := cl.Delete(ctx, pod, client.Preconditions{UID: &a.UID})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return fmt.Errorf("delete pod %s: %w", a.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "PodReplaced", step.Message)
		return nil
	default:
		return fmt.Errorf("unknown rolling action %T", step.Action)
	}
}

// notUpdated says why a released pod does not count as done yet, or "": it must run the
// update revision and the target, be a healthy voter and, the first time, catch up with
// the leader (upgrade.ServerGap).
func notUpdated(s *upgrade.State, pod string) string {
	u := s.Upgrade()
	st := status(u)
	done := slices.Contains(st.PodsDone, pod)
	want := upgrade.ServerWant{Revision: s.StatefulSet.Status.UpdateRevision, Voter: true, Healthy: true}
	if !done {
		// It caught up once when it was done; it must stay healthy, but need not chase the
		// leader's index again.
		want.CatchUpIndex = func() int64 { return catchUpIndex(s, pod) }
	}
	rung, why := upgrade.ServerGap(s, pod, want)
	if rung == upgrade.RungHealthy && done {
		return fmt.Sprintf("%s is done (on %s); autopilot on the active node %s does not call it healthy at the moment, as happens for a few seconds after leadership moves. No other server moves until it does.", pod, u.ToVersion, s.Leader)
	}
	return why
}

// onUpdateRevision says whether pod already runs the StatefulSet's update revision, so that
// lowering the partition past it does not restart it.
func onUpdateRevision(s *upgrade.State, pod string) bool {
	p, ok := s.Pods[pod]
	return ok && p.DeletionTimestamp == nil && p.Labels[appsv1.ControllerRevisionHashLabelKey] == s.StatefulSet.Status.UpdateRevision
}

// catchUpIndex is the leader's committed index recorded when pod was first seen healthy on
// the target, recorded now if it was not yet (upgrade.NotCaughtUp).
func catchUpIndex(s *upgrade.State, pod string) int64 {
	u := s.Upgrade()
	st := status(u)
	if u.CurrentPod != pod || u.Step != StepWaitPodHealthy || st.CatchUpIndex == 0 {
		st.CatchUpIndex = int64(s.Raft.LeaderCommittedIndex)
	}
	return st.CatchUpIndex
}

// stuckOnOldRevision returns the pod when it is released (at or above the partition) but
// still on an old revision and has not been ready for stuckGrace: a pod whose previous
// target could not run. The StatefulSet controller waits for such a pod to become ready
// before it updates it, which it never will, so Kubernetes asks for it to be deleted by hand.
// A ready pod is never deleted here: the controller replaces it itself.
func stuckOnOldRevision(s *upgrade.State, pod string) *corev1.Pod {
	sts := s.StatefulSet
	p, ok := s.Pods[pod]
	if !ok || p.DeletionTimestamp != nil || upgrade.PodReady(p) ||
		sts.Status.ObservedGeneration < sts.Generation || sts.Status.UpdateRevision == "" ||
		p.Labels[appsv1.ControllerRevisionHashLabelKey] == sts.Status.UpdateRevision {
		return nil
	}
	since := p.CreationTimestamp.Time
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.LastTransitionTime.After(since) {
			since = c.LastTransitionTime.Time
		}
	}
	if s.Now.Sub(since) < stuckGrace {
		return nil
	}
	return p
}

// earlyStepDownSuffix marks the Job of the step-down that places leadership before any
// server moves.
const earlyStepDownSuffix = "-early"

// placeLeadership steps the active node down before the first server moves when its own
// turn would come at a bad moment. When an active node steps down, OpenBao hands leadership
// to its most up-to-date follower, the first in the Raft configuration (the lowest ordinal)
// when they are level. A follower that still runs the old version cannot win that election
// once the new version holds a majority (the new servers reject its vote requests), and the
// cluster has no active node until Raft's timeouts run out: 10–11 s measured with OpenBao
// 2.6.2 → 2.7.2, five servers, the leader on ordinal 1. Servers move from the highest
// ordinal down, so at the turn of a leader on ordinal k the k+1 servers of ordinals 0…k run
// the old version: a minority when 1 ≤ k < replicas/2. Such a leader is stepped down while
// every server still runs the old version, where any hand-over works, once per upgrade;
// leadership then normally lands on ordinal 0, which moves last, when every other server
// runs the new version.
func placeLeadership(s *upgrade.State, partition, replicas int32) (upgrade.Step, bool) {
	if partition < replicas {
		return upgrade.Step{}, false
	}
	for k := int32(1); k < replicas/2; k++ {
		if _, ok := s.Jobs[upgrade.StepDownJobName(s, int(k), earlyStepDownSuffix)]; !ok {
			continue
		}
		pod := resources.PodName(s.StatefulSet.Name, int(k))
		if s.Leader != "" && s.Leader != pod {
			return upgrade.Step{}, false // placed: another server leads
		}
		// Still stepping down, or nobody leads yet: no server moves meanwhile.
		return upgrade.StepDownStep(s, earlyStepDown(s, pod, k)), true
	}
	for k := int32(1); k < replicas/2; k++ {
		if pod := resources.PodName(s.StatefulSet.Name, int(k)); s.Leader == pod {
			return upgrade.StepDownStep(s, earlyStepDown(s, pod, k)), true
		}
	}
	return upgrade.Step{}, false
}

func earlyStepDown(s *upgrade.State, pod string, k int32) upgrade.StepDown {
	return upgrade.StepDown{
		Pod: pod, Ordinal: int(k), JobSuffix: earlyStepDownSuffix,
		Reason: fmt.Sprintf("%s is the active node; at its turn the servers still on %s would be a minority, which a hand-over to one of them cannot survive, so leadership moves before any server does",
			pod, s.Upgrade().FromVersion),
		Successor: "another server",
	}
}

// status is this strategy's part of status.upgrade, started afresh for a new target (a
// halted upgrade that was given another version has a new revision); the partition is
// kept, so that the StatefulSet's stays where it is.
func status(u *openbaov1alpha1.UpgradeStatus) *openbaov1alpha1.RollingStatus {
	if u.Rolling == nil || u.Rolling.Revision != u.Revision {
		fresh := &openbaov1alpha1.RollingStatus{Revision: u.Revision}
		if u.Rolling != nil {
			fresh.Partition = u.Rolling.Partition
		}
		u.Rolling = fresh
	}
	return u.Rolling
}

func currentPartition(sts *appsv1.StatefulSet) int32 {
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		return *ru.Partition
	}
	return 0
}
