package controllers

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;delete;deletecollection
// +kubebuilder:rbac:groups="",resources=persistentvolumeclaims,verbs=get;list;watch;create;delete;deletecollection

// reconcileUpgrade runs the upgrade manager with what this pass observed.
func (r *OpenBaoClusterReconciler) reconcileUpgrade(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	jobs := &batchv1.JobList{}
	if err := r.List(ctx, jobs, client.InNamespace(c.Namespace),
		client.MatchingLabels{resources.LabelCluster: c.Name, resources.LabelComponent: resources.ComponentJob}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list upgrade jobs: %w", err)
	}
	state := &upgrade.State{
		Cluster:       c,
		StatefulSet:   s.statefulSet,
		Pods:          map[string]*corev1.Pod{},
		Jobs:          map[string]*batchv1.Job{},
		Servers:       map[string]upgrade.ServerState{},
		ExecutorImage: c.Spec.Upgrade.ExecutorImage,
		Platform:      r.Options.Platform,
		Now:           r.Clock.Now(),
	}
	if c.Status.Upgrade != nil {
		// A strategy may run a second StatefulSet and must find what it created.
		if err := r.listClusterObjects(ctx, s, state); err != nil {
			return ctrl.Result{}, err
		}
	}
	r.fillState(s, state, jobs.Items)
	if err := r.readJobResults(ctx, state); err != nil {
		return ctrl.Result{}, err
	}
	persist := func(ctx context.Context) error { return r.persistStatus(ctx, s) }
	res, err := r.Upgrades.Reconcile(ctx, state, &upgradeEnv{r: r, s: s}, persist)
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: res.RequeueAfter}, nil
}

// listClusterObjects adds the cluster's StatefulSets, ConfigMaps and data volumes to state.
func (r *OpenBaoClusterReconciler) listClusterObjects(ctx context.Context, s *scope, state *upgrade.State) error {
	c := s.cluster
	inCluster := []client.ListOption{client.InNamespace(c.Namespace), client.MatchingLabels{resources.LabelCluster: c.Name}}
	sets := &appsv1.StatefulSetList{}
	if err := r.List(ctx, sets, inCluster...); err != nil {
		return fmt.Errorf("list statefulsets: %w", err)
	}
	claims := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, claims, inCluster...); err != nil {
		return fmt.Errorf("list persistent volume claims: %w", err)
	}
	configMaps := &corev1.ConfigMapList{}
	if err := r.List(ctx, configMaps, inCluster...); err != nil {
		return fmt.Errorf("list config maps: %w", err)
	}
	state.StatefulSets = map[string]*appsv1.StatefulSet{}
	for i := range sets.Items {
		state.StatefulSets[sets.Items[i].Name] = &sets.Items[i]
	}
	state.Claims = map[string]*corev1.PersistentVolumeClaim{}
	for i := range claims.Items {
		state.Claims[claims.Items[i].Name] = &claims.Items[i]
	}
	state.ConfigMaps = map[string]*corev1.ConfigMap{}
	for i := range configMaps.Items {
		state.ConfigMaps[configMaps.Items[i].Name] = &configMaps.Items[i]
	}
	return nil
}

// persistStatus writes the status now (intent before a side effect) and makes it the new
// base of the final status patch.
func (r *OpenBaoClusterReconciler) persistStatus(ctx context.Context, s *scope) error {
	if err := r.writeStatus(ctx, s); err != nil {
		return err
	}
	s.original = s.cluster.DeepCopy()
	return nil
}

// upgradeEnv gives strategies their side effects.
type upgradeEnv struct {
	r *OpenBaoClusterReconciler
	s *scope
}

func (e *upgradeEnv) Client() client.Client { return e.r.Client }

func (e *upgradeEnv) OpenBao(ctx context.Context, pod string) (openbao.Client, error) {
	for i := range e.s.pods {
		if e.s.pods[i].Name == pod {
			return e.r.Observer.Client(ctx, e.s.cluster, &e.s.pods[i], e.s.tlsCAPEM)
		}
	}
	return nil, fmt.Errorf("pod %s not found", pod)
}

// ApplyWorkload applies the Workload the status now declares, in the one place that writes it.
func (e *upgradeEnv) ApplyWorkload(ctx context.Context) error { return e.r.applyWorkload(ctx, e.s) }

// Event is emitted after the status is written.
func (e *upgradeEnv) Event(eventType, reason, message string) {
	e.s.events = append(e.s.events, pendingEvent{eventType: eventType, reason: reason, message: message})
}

// pendingEvent is an event waiting for the status write; action defaults to "Upgrade".
type pendingEvent struct{ eventType, reason, action, message string }

// fillState gives a strategy's or the scale-down's state what this pass saw: the pods, the
// cluster's Jobs, the observed servers, and the executor image.
func (r *OpenBaoClusterReconciler) fillState(s *scope, state *upgrade.State, jobs []batchv1.Job) {
	if state.ExecutorImage == "" {
		state.ExecutorImage = r.Options.OperatorImage
	}
	for i := range s.pods {
		state.Pods[s.pods[i].Name] = &s.pods[i]
	}
	for i := range jobs {
		state.Jobs[jobs[i].Name] = &jobs[i]
	}
	if s.observed != nil {
		state.Servers, state.Leader, state.Raft = s.observed.Servers, s.observed.Leader, s.observed.Raft
	}
}

// readJobResults reads the result of the pre-upgrade snapshot Job once it finished, while
// the upgrade waits for it: the executor's termination message, read as the backup
// controller reads a backup Job's.
func (r *OpenBaoClusterReconciler) readJobResults(ctx context.Context, state *upgrade.State) error {
	u := state.Cluster.Status.Upgrade
	if u == nil || u.Snapshot == nil || u.Snapshot.CompletionTime != nil {
		return nil
	}
	job, ok := state.Jobs[u.Snapshot.JobName]
	if !ok || job.Labels[resources.LabelBackupName] == "" {
		return nil
	}
	succeeded, failed := upgrade.JobFinished(job)
	if !succeeded && !failed {
		return nil
	}
	msg, err := jobTerminationMessage(ctx, r, job, succeeded)
	if errors.Is(err, errNoFinishedPod) {
		// The step goes on without the result: the location is recorded, and the object
		// carries its size and SHA-256 as tags.
		log.FromContext(ctx).Info("No pod of the snapshot Job is left to read its result from", "job", job.Name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the result of the snapshot Job %s: %w", job.Name, err)
	}
	state.JobResults = map[string]string{job.Name: msg}
	return nil
}
