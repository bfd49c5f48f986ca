package controllers

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/scaledown"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Pacing of a scale-down.
const (
	// requeueScaleDownWaiting looks again at a scale-down that waits for a pod, a volume or
	// leadership to move.
	requeueScaleDownWaiting = 2 * time.Second
	// requeueScaleDownActed looks again soon after a step's side effect.
	requeueScaleDownActed = 500 * time.Millisecond
	// requeueScaleDownBlocked looks again at a lower spec.replicas that waits for the
	// servers that remain to be healthy.
	requeueScaleDownBlocked = 10 * time.Second
)

// statefulSetReplicas is the replica count of the server StatefulSet. spec.replicas, except
// while servers are being removed: then the scale-down's own count (status.scaleDown.replicas,
// lowered by one only after a server left the Raft configuration), and while a lower
// spec.replicas waits for its scale-down to start, the StatefulSet's current count. The
// StatefulSet is never lowered here directly: that would delete a pod that is still a Raft
// voter.
func statefulSetReplicas(c *openbaov1alpha1.OpenBaoCluster, existing *appsv1.StatefulSet) int32 {
	if sd := c.Status.ScaleDown; sd != nil {
		return sd.Replicas
	}
	want := c.Spec.ReplicaCount()
	if existing != nil && existing.Spec.Replicas != nil && *existing.Spec.Replicas > want {
		return *existing.Spec.Replicas
	}
	return want
}

// reconcileScaleDown removes servers after spec.replicas was lowered (pkg/scaledown), one
// step per pass. While a scale-down is in flight or waits for healthy servers, the pass ends
// here, so no upgrade starts meanwhile; a scale-down waits for an upgrade in flight.
func (r *OpenBaoClusterReconciler) reconcileScaleDown(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	if s.statefulSet == nil || s.statefulSet.Spec.Replicas == nil ||
		(c.Status.ScaleDown == nil && *s.statefulSet.Spec.Replicas <= c.Spec.ReplicaCount()) {
		scaledown.Plan(&upgrade.State{Cluster: c, StatefulSet: s.statefulSet}) // clears a stale ScaleDownBlocked
		return ctrl.Result{}, nil
	}
	if l := c.Status.Restore; l != nil && c.Status.ScaleDown == nil {
		// A restore restarts every server and holds the cluster's operation lock: a lower
		// spec.replicas waits for it (the StatefulSet keeps its count meanwhile).
		log.FromContext(ctx).V(1).Info("Scale-down waits for the restore in flight", "restore", l.Name)
		return ctrl.Result{RequeueAfter: requeueScaleDownBlocked}, nil
	}
	state, err := r.scaleDownState(ctx, s)
	if err != nil {
		return ctrl.Result{}, err
	}
	step := scaledown.Plan(state)
	logger := log.FromContext(ctx)
	env := &upgradeEnv{r: r, s: s}
	switch step.Kind {
	case scaledown.Idle:
		return ctrl.Result{}, nil
	case scaledown.Blocked:
		if step.Name != "" {
			logger.Info("Scale-down blocked", "reason", step.Message)
			env.Event(corev1.EventTypeWarning, "ScaleDownBlocked", step.Message)
		}
		if step.UpgradeRuns {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{RequeueAfter: requeueScaleDownBlocked}, nil
	case scaledown.Done:
		logger.Info("Scale-down finished", "message", step.Message)
		env.Event(corev1.EventTypeNormal, "ScaleDownCompleted", step.Message)
		return ctrl.Result{RequeueAfter: requeueScaleDownActed}, nil
	case scaledown.Wait:
		return ctrl.Result{RequeueAfter: requeueScaleDownWaiting}, nil
	case scaledown.Act:
		// Intent before the side effect: after a restart the status says what was decided.
		if err := r.persistStatus(ctx, s); err != nil {
			return ctrl.Result{}, fmt.Errorf("record scale-down intent: %w", err)
		}
		logger.Info("Scale-down step", "step", step.Name, "pod", step.Pod, "message", step.Message)
		if err := scaledown.Apply(ctx, state, step, env); err != nil {
			return ctrl.Result{}, fmt.Errorf("scale-down step %s: %w", step.Name, err)
		}
		return ctrl.Result{RequeueAfter: requeueScaleDownActed}, nil
	default:
		return ctrl.Result{}, fmt.Errorf("unknown scale-down step kind %q", step.Kind)
	}
}

// scaleDownState gathers what the scale-down plans from: this pass' pods and OpenBao
// observation, the cluster's executor Jobs and data volumes.
func (r *OpenBaoClusterReconciler) scaleDownState(ctx context.Context, s *scope) (*upgrade.State, error) {
	c := s.cluster
	jobs := &batchv1.JobList{}
	if err := r.List(ctx, jobs, client.InNamespace(c.Namespace),
		client.MatchingLabels{resources.LabelCluster: c.Name, resources.LabelComponent: resources.ComponentJob}); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	claims := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, claims, client.InNamespace(c.Namespace), client.MatchingLabels{resources.LabelCluster: c.Name}); err != nil {
		return nil, fmt.Errorf("list persistent volume claims: %w", err)
	}
	state := &upgrade.State{
		Cluster:       c,
		StatefulSet:   s.statefulSet,
		Pods:          map[string]*corev1.Pod{},
		Jobs:          map[string]*batchv1.Job{},
		Claims:        map[string]*corev1.PersistentVolumeClaim{},
		Servers:       map[string]upgrade.ServerState{},
		ExecutorImage: c.Spec.Upgrade.ExecutorImage,
		Platform:      r.Options.Platform,
		Now:           r.Clock.Now(),
	}
	r.fillState(s, state, jobs.Items)
	for i := range claims.Items {
		state.Claims[claims.Items[i].Name] = &claims.Items[i]
	}
	return state, nil
}
