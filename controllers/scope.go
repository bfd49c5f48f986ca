package controllers

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// scope is what one reconcile learned: the cluster as read, the objects it converged and
// what OpenBao reported. Conditions are computed from it once, at the end.
type scope struct {
	cluster  *openbaov1alpha1.OpenBaoCluster
	original *openbaov1alpha1.OpenBaoCluster

	paused      bool
	invalidSpec string

	tlsCAPEM []byte
	// selfInitConfig is the rendered self-init.hcl of this pass ("" once initialized).
	selfInitConfig string
	// statefulSet is the active server StatefulSet, as applied in this pass.
	statefulSet *appsv1.StatefulSet
	pods        []corev1.Pod
	observed    *upgrade.Observation
	observedOK  bool

	// configParams are the active StatefulSet's configuration parameters of this pass.
	configParams *resources.ConfigParams

	// keys is what this pass did about the service-account keys OpenBao trusts.
	keys *keysOutcome

	// events wait for the status write.
	events []pendingEvent
}

func newScope(c *openbaov1alpha1.OpenBaoCluster) *scope {
	return &scope{cluster: c, original: c.DeepCopy()}
}

// quorum is the number of voters a Raft cluster of the spec's size needs.
func (s *scope) quorum() int {
	return int(s.cluster.Spec.ReplicaCount())/2 + 1
}

// available: an active node and a quorum of ready, unsealed servers.
func (s *scope) available() bool {
	return s.cluster.Status.Leader != "" && int(s.cluster.Status.ReadyReplicas) >= s.quorum()
}

// patchStatus computes the conditions and phase from the scope and writes the status once,
// only when it changed (see writeStatus).
func (r *OpenBaoClusterReconciler) patchStatus(ctx context.Context, s *scope, reconcileErr error) error {
	c := s.cluster
	gen := c.Generation
	setCondition := func(t string, status bool, reason, msg string) {
		meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
			Type: t, Status: conditionStatus(status), Reason: reason, Message: msg, ObservedGeneration: gen,
		})
	}

	// Paused.
	if s.paused {
		setCondition(openbaov1alpha1.ConditionPaused, true, openbaov1alpha1.ReasonPausedByUser,
			"spec.paused is true: the operator changes nothing. Set it to false to resume; changes made meanwhile are applied then.")
	} else {
		setCondition(openbaov1alpha1.ConditionPaused, false, openbaov1alpha1.ReasonNotPaused, "The operator manages the cluster.")
	}

	// Degraded.
	switch {
	case s.invalidSpec != "":
		setCondition(openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonInvalidSpec, s.invalidSpec)
	case reconcileErr != nil:
		setCondition(openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonReconcileError,
			fmt.Sprintf("The operator could not converge the cluster and retries: %v", reconcileErr))
	case s.paused:
		// Keep what was reported before the pause.
	default:
		if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded); cond == nil ||
			cond.Reason == openbaov1alpha1.ReasonInvalidSpec || cond.Reason == openbaov1alpha1.ReasonReconcileError || cond.Reason == openbaov1alpha1.ReasonAsExpected {
			setCondition(openbaov1alpha1.ConditionDegraded, false, openbaov1alpha1.ReasonAsExpected, "Nothing needs attention.")
		}
	}

	// Available, from what the servers said in this reconcile (kept while paused or when the
	// reconcile stopped before asking them).
	if s.observedOK {
		switch {
		case s.available():
			setCondition(openbaov1alpha1.ConditionAvailable, true, openbaov1alpha1.ReasonQuorumAvailable,
				fmt.Sprintf("%d of %d servers are ready; %s is the active node.", c.Status.ReadyReplicas, c.Spec.ReplicaCount(), c.Status.Leader))
		case c.Status.Leader == "":
			setCondition(openbaov1alpha1.ConditionAvailable, false, openbaov1alpha1.ReasonNoActiveNode,
				fmt.Sprintf("No server reports itself as the active node (%d of %d ready). New clusters take a minute to initialize; otherwise check the pods' logs.", c.Status.ReadyReplicas, c.Spec.ReplicaCount()))
		default:
			setCondition(openbaov1alpha1.ConditionAvailable, false, openbaov1alpha1.ReasonServersNotReady,
				fmt.Sprintf("Only %d of %d servers are ready; a quorum needs %d.", c.Status.ReadyReplicas, c.Spec.ReplicaCount(), s.quorum()))
		}
	} else if meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionAvailable) == nil {
		setCondition(openbaov1alpha1.ConditionAvailable, false, openbaov1alpha1.ReasonNotProvisioned, "The servers are not created yet.")
	}

	// Upgrading: owned by the upgrade manager once an upgrade exists.
	if meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading) == nil {
		setCondition(openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonNoUpgrade, "No upgrade is in progress.")
	}

	setServiceAccountKeysCondition(c, s.keys)

	c.Status.Phase = phaseOf(c)
	if reconcileErr == nil && !s.paused {
		c.Status.ObservedGeneration = gen
	}

	if !equality.Semantic.DeepEqual(s.original.Status, c.Status) {
		if err := r.writeStatus(ctx, s); err != nil {
			return err
		}
		r.emitEvents(ctx, s)
	}
	if r.Recorder != nil {
		for _, e := range s.events {
			action := e.action
			if action == "" {
				action = "Upgrade"
			}
			r.Recorder.Eventf(c, nil, e.eventType, e.reason, action, "%s", e.message)
		}
	}
	return nil
}

// phaseOf summarizes the conditions.
func phaseOf(c *openbaov1alpha1.OpenBaoCluster) openbaov1alpha1.ClusterPhase {
	switch {
	case meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionPaused):
		return openbaov1alpha1.PhasePaused
	case meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionDegraded):
		return openbaov1alpha1.PhaseDegraded
	case meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading):
		return openbaov1alpha1.PhaseUpgrading
	case meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionAvailable):
		return openbaov1alpha1.PhaseRunning
	case c.Status.Replicas > 0:
		return openbaov1alpha1.PhaseInitializing
	default:
		return openbaov1alpha1.PhasePending
	}
}

// emitEvents announces condition changes a user should notice, after they were written.
func (r *OpenBaoClusterReconciler) emitEvents(ctx context.Context, s *scope) {
	if r.Recorder == nil {
		return
	}
	changed := func(t string) (*metav1.Condition, bool) {
		now := meta.FindStatusCondition(s.cluster.Status.Conditions, t)
		before := meta.FindStatusCondition(s.original.Status.Conditions, t)
		if now == nil {
			return nil, false
		}
		return now, before == nil || before.Status != now.Status || before.Reason != now.Reason
	}
	if cond, ok := changed(openbaov1alpha1.ConditionDegraded); ok && cond.Status == metav1.ConditionTrue {
		r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeWarning, cond.Reason, "Reconcile", "%s", cond.Message)
	}
	if cond, ok := changed(openbaov1alpha1.ConditionAvailable); ok {
		eventType := corev1.EventTypeNormal
		if cond.Status != metav1.ConditionTrue {
			eventType = corev1.EventTypeWarning
		}
		if cond.Status == metav1.ConditionTrue || meta.FindStatusCondition(s.original.Status.Conditions, openbaov1alpha1.ConditionAvailable) != nil {
			r.Recorder.Eventf(s.cluster, nil, eventType, cond.Reason, "Observe", "%s", cond.Message)
		}
	}
	if cond, ok := changed(openbaov1alpha1.ConditionPaused); ok && s.original.Status.Phase != "" {
		r.Recorder.Eventf(s.cluster, nil, corev1.EventTypeNormal, cond.Reason, "Pause", "%s", cond.Message)
	}
	log.FromContext(ctx).V(1).Info("Status updated", "phase", s.cluster.Status.Phase)
}

// writeStatus sends what this pass changed in the status, as a merge patch against the
// status it read. The controller is the status' only writer, so the patch carries no
// resourceVersion: a change of the spec (or of metadata) by someone else during the pass
// does not throw the pass' status and events away. A pass never starts from a status older
// than the one the controller last wrote (statusWrites), which the optimistic lock used to
// guarantee.
func (r *OpenBaoClusterReconciler) writeStatus(ctx context.Context, s *scope) error {
	if err := r.Status().Patch(ctx, s.cluster, client.MergeFrom(s.original)); err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	r.statusWrites.wrote(s.cluster)
	return nil
}

// statusWrites holds, per cluster, the resourceVersion of the controller's last status
// write.
type statusWrites struct{ m sync.Map }

func (w *statusWrites) wrote(c *openbaov1alpha1.OpenBaoCluster) {
	w.m.Store(client.ObjectKeyFromObject(c), c.ResourceVersion)
}

// behind says whether c, as read, is older than the controller's last status write. A
// resourceVersion is opaque to clients in general; the API server's are etcd revisions,
// which only grow. One that is not a number is never "behind".
func (w *statusWrites) behind(c *openbaov1alpha1.OpenBaoCluster) bool {
	last, ok := w.m.Load(client.ObjectKeyFromObject(c))
	if !ok {
		return false
	}
	written, err1 := strconv.ParseUint(last.(string), 10, 64)
	read, err2 := strconv.ParseUint(c.ResourceVersion, 10, 64)
	return err1 == nil && err2 == nil && read < written
}
