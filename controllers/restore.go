package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/restore"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Pacing of a restore.
const (
	// requeueRestoreWaiting looks again at a restore that waits for its turn.
	requeueRestoreWaiting = 10 * time.Second
	// requeueRestoreJob looks again at a running restore Job; its changes trigger a pass too.
	requeueRestoreJob = 5 * time.Second
	// requeueRestoreRestart looks again at servers being restarted or verified: a restarted
	// server's unsealing and catch-up change no Kubernetes object.
	requeueRestoreRestart = 2 * time.Second
	// requeueRestoreActed looks again soon after a side effect.
	requeueRestoreActed = 500 * time.Millisecond
)

// restoreFinalizer releases the cluster's operation lock when a restore that holds it is
// deleted.
const restoreFinalizer = "openbao.org/restore-lock"

// OpenBaoRestoreReconciler restores Raft snapshots into OpenBao clusters (pkg/restore
// decides, one step per pass; this reconciler applies the step).
type OpenBaoRestoreReconciler struct {
	client.Client
	// APIReader reads past the cache (the cluster, right after its lock was taken; the
	// cluster's TLS Secret, as Secrets are never cached: UncachedKinds). The Client when nil.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Observer  Observer
	Options   Options
}

// +kubebuilder:rbac:groups=openbao.org,resources=openbaorestores,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=openbao.org,resources=openbaorestores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=openbao.org,resources=openbaorestores/finalizers,verbs=update

// SetupWithManager registers the reconciler and its watches: its Jobs, its cluster, and the
// cluster's pods (restarts).
func (r *OpenBaoRestoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&openbaov1alpha1.OpenBaoRestore{}).
		Owns(&batchv1.Job{}).
		Watches(&openbaov1alpha1.OpenBaoCluster{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return r.restoresOf(ctx, o.GetNamespace(), o.GetName())
		})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			l := o.GetLabels()
			if l[resources.LabelName] != resources.AppName || l[resources.LabelInstance] == "" || l[resources.LabelComponent] != resources.ComponentServer {
				return nil
			}
			return r.restoresOf(ctx, o.GetNamespace(), l[resources.LabelInstance])
		})).
		Named("openbaorestore").
		Complete(r)
}

// restoresOf are the restores of a cluster that are not over.
func (r *OpenBaoRestoreReconciler) restoresOf(ctx context.Context, namespace, cluster string) []reconcile.Request {
	list := &openbaov1alpha1.OpenBaoRestoreList{}
	if err := r.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil
	}
	var out []reconcile.Request
	for _, rs := range list.Items {
		if rs.Spec.Cluster.Name == cluster && !rs.Status.Phase.Done() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rs)})
		}
	}
	return out
}

func (r *OpenBaoRestoreReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// Reconcile plans one step of a restore and applies it.
func (r *OpenBaoRestoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rs := &openbaov1alpha1.OpenBaoRestore{}
	if err := r.Get(ctx, req.NamespacedName, rs); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logger := log.FromContext(ctx).WithValues("openBaoRestore", klog.KObj(rs), "cluster", rs.Spec.Cluster.Name)
	ctx = log.IntoContext(ctx, logger)

	cluster := &openbaov1alpha1.OpenBaoCluster{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: rs.Namespace, Name: rs.Spec.Cluster.Name}, cluster); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("read cluster: %w", err)
		}
		cluster = nil
	}
	if !rs.DeletionTimestamp.IsZero() {
		if err := r.releaseLock(ctx, cluster, rs); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, rs)
	}

	state, err := r.restoreState(ctx, rs, cluster)
	if err != nil {
		return ctrl.Result{}, err
	}
	original := rs.DeepCopy()
	step := restore.Plan(state)
	if step.Kind != restore.Wait && step.Kind != restore.Idle {
		logger.Info("Restore step", "step", step.Kind, "phase", rs.Status.Phase, "pod", step.Pod, "message", rs.Status.Message)
	}
	switch step.Kind {
	case restore.Idle:
		if err := r.releaseLock(ctx, cluster, rs); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, rs)
	case restore.Wait:
		return ctrl.Result{RequeueAfter: restoreRequeue(rs.Status.Phase)}, nil
	case restore.Record:
		if err := r.writeRestoreStatus(ctx, rs, original); err != nil {
			return ctrl.Result{}, err
		}
		r.event(rs, step)
		return ctrl.Result{RequeueAfter: requeueRestoreActed}, nil
	case restore.TakeLock:
		return r.takeLock(ctx, rs, original, cluster, step)
	case restore.Finish:
		if err := r.writeRestoreStatus(ctx, rs, original); err != nil {
			return ctrl.Result{}, err
		}
		r.event(rs, step)
		if err := r.releaseLock(ctx, cluster, rs); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{}, r.removeFinalizer(ctx, rs)
	}

	// The remaining steps have a side effect: intent first.
	if err := r.writeRestoreStatus(ctx, rs, original); err != nil {
		return ctrl.Result{}, err
	}
	switch step.Kind {
	case restore.CreateJob:
		if err := r.createRestoreJob(ctx, rs, cluster, step.Pod); err != nil {
			return ctrl.Result{}, err
		}
	case restore.CreateStepDownJob:
		if err := r.createStepDownJob(ctx, rs, cluster, step.Pod); err != nil {
			return ctrl.Result{}, err
		}
	case restore.DeletePod:
		pod := state.Pods[step.Pod]
		if pod == nil {
			return ctrl.Result{RequeueAfter: requeueRestoreActed}, nil
		}
		uid := pod.UID
		if err := r.Delete(ctx, pod, client.Preconditions{UID: &uid}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return ctrl.Result{}, fmt.Errorf("delete pod %s: %w", pod.Name, err)
		}
	default:
		return ctrl.Result{}, fmt.Errorf("unknown restore step %q", step.Kind)
	}
	r.event(rs, step)
	return ctrl.Result{RequeueAfter: requeueRestoreActed}, nil
}

func restoreRequeue(p openbaov1alpha1.RestorePhase) time.Duration {
	switch p {
	case openbaov1alpha1.RestoreRestarting, openbaov1alpha1.RestoreVerifying:
		return requeueRestoreRestart
	case openbaov1alpha1.RestoreRestoring:
		return requeueRestoreJob
	default:
		return requeueRestoreWaiting
	}
}

// restoreState gathers what the plan needs: the restore's Jobs and their result and, while
// servers are restarted or verified, the cluster's pods and what its servers say.
func (r *OpenBaoRestoreReconciler) restoreState(ctx context.Context, rs *openbaov1alpha1.OpenBaoRestore, c *openbaov1alpha1.OpenBaoCluster) (*restore.State, error) {
	state := &restore.State{Restore: rs, Cluster: c, Pods: map[string]*corev1.Pod{}, Now: r.Clock.Now()}
	if c == nil || !restore.HoldsLock(c, rs) {
		return state, nil
	}
	jobName := rs.Status.JobName
	if jobName == "" {
		jobName = resources.RestoreJobName(c, rs)
	}
	job, err := r.getJob(ctx, rs.Namespace, jobName)
	if err != nil {
		return nil, err
	}
	state.Job = job
	if job != nil {
		if succeeded, failed := upgrade.JobFinished(job); succeeded || failed {
			msg, err := jobTerminationMessage(ctx, r, job, succeeded)
			if err != nil {
				state.JobResultError = err.Error()
			} else {
				res := &restore.Result{}
				if err := json.Unmarshal([]byte(msg), res); err != nil {
					state.JobResultError = fmt.Sprintf("the Job's result is not readable (%v): %q", err, truncate(msg, 200))
				} else {
					state.JobResult = res
				}
			}
		}
	}
	if rs.Status.StepDownJob != "" {
		if state.StepDownJob, err = r.getJob(ctx, rs.Namespace, rs.Status.StepDownJob); err != nil {
			return nil, err
		}
	}
	if p := rs.Status.Phase; p != openbaov1alpha1.RestoreRestarting && p != openbaov1alpha1.RestoreVerifying {
		return state, nil
	}
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(c.Namespace), client.MatchingLabels(resources.StatefulSetSelector(c, resources.ActiveStatefulSet(c)))); err != nil {
		return nil, fmt.Errorf("list pods: %w", err)
	}
	for i := range pods.Items {
		state.Pods[pods.Items[i].Name] = &pods.Items[i]
	}
	if r.Observer != nil && len(pods.Items) > 0 {
		ca, err := r.clusterCA(ctx, c)
		if err != nil {
			return nil, err
		}
		o := r.Observer.Observe(ctx, c, pods.Items, ca)
		state.Servers, state.Leader, state.Raft = o.Servers, o.Leader, o.Raft
	}
	return state, nil
}

func (r *OpenBaoRestoreReconciler) getJob(ctx context.Context, namespace, name string) (*batchv1.Job, error) {
	job := &batchv1.Job{}
	if err := r.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, job); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("read job %s: %w", name, err)
	}
	return job, nil
}

// clusterCA is the CA certificate that signed the cluster's servers.
func (r *OpenBaoRestoreReconciler) clusterCA(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster) ([]byte, error) {
	secret := &corev1.Secret{}
	key := client.ObjectKey{Namespace: c.Namespace, Name: resources.TLSSecretName(c)}
	// Read by name from the API server, as every Secret (UncachedKinds).
	if err := r.apiReader().Get(ctx, key, secret); err != nil {
		return nil, fmt.Errorf("read the cluster's CA from %s: %w", key.Name, err)
	}
	return secret.Data["ca.crt"], nil
}

// takeLock writes the cluster's operation lock, conditional on the cluster not having
// changed since it was read (an upgrade, a backup or a scale-down that started meanwhile
// makes the write fail, and the next pass sees it), then checks the cluster once more as
// the API server has it, and only then records the restore as started.
func (r *OpenBaoRestoreReconciler) takeLock(ctx context.Context, rs, original *openbaov1alpha1.OpenBaoRestore, c *openbaov1alpha1.OpenBaoCluster, step restore.Step) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(rs, restoreFinalizer) {
		// Patched on a copy: the answer would replace the status this pass planned.
		withFinalizer := original.DeepCopy()
		controllerutil.AddFinalizer(withFinalizer, restoreFinalizer)
		if err := r.Patch(ctx, withFinalizer, client.MergeFrom(original)); err != nil {
			return ctrl.Result{}, fmt.Errorf("add finalizer: %w", err)
		}
		rs.Finalizers, rs.ResourceVersion = withFinalizer.Finalizers, withFinalizer.ResourceVersion
		original.Finalizers, original.ResourceVersion = withFinalizer.Finalizers, withFinalizer.ResourceVersion
	}
	before := c.DeepCopy()
	now := metav1.NewTime(r.Clock.Now())
	c.Status.Restore = &openbaov1alpha1.RestoreLock{Name: rs.Name, UID: string(rs.UID), Since: &now}
	if err := r.Status().Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		if apierrors.IsConflict(err) {
			log.FromContext(ctx).V(1).Info("The cluster changed while the lock was taken; planning again")
			return ctrl.Result{RequeueAfter: requeueRestoreActed}, nil
		}
		return ctrl.Result{}, fmt.Errorf("take the cluster's operation lock: %w", err)
	}
	fresh := &openbaov1alpha1.OpenBaoCluster{}
	if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(c), fresh); err != nil {
		return ctrl.Result{}, fmt.Errorf("read the cluster back: %w", err)
	}
	if fresh.Status.Upgrade != nil || fresh.Status.ScaleDown != nil || (fresh.Status.Backup != nil && fresh.Status.Backup.Running != nil) {
		// The cluster controller wrote its own intent without seeing the lock: give way;
		// the next pass refuses or waits with the reason.
		log.FromContext(ctx).Info("An upgrade, scale-down or backup started as the lock was taken; releasing it")
		return ctrl.Result{RequeueAfter: requeueRestoreActed}, r.releaseLock(ctx, fresh, rs)
	}
	if err := r.writeRestoreStatus(ctx, rs, original); err != nil {
		return ctrl.Result{}, err
	}
	r.event(rs, step)
	return ctrl.Result{RequeueAfter: requeueRestoreActed}, nil
}

// releaseLock clears the cluster's operation lock if it names rs. The cluster controller
// writes the same status, so a write that finds the cluster changed reads it again from the
// API server and, if the lock still names rs, clears it on that version.
func (r *OpenBaoRestoreReconciler) releaseLock(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, rs *openbaov1alpha1.OpenBaoRestore) error {
	if c == nil {
		return nil
	}
	released := false
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !restore.HoldsLock(c, rs) {
			return nil
		}
		before := c.DeepCopy()
		c.Status.Restore = nil
		err := r.Status().Patch(ctx, c, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
		if apierrors.IsConflict(err) {
			log.FromContext(ctx).V(1).Info("The cluster changed while the lock was released; reading it again")
			if rerr := r.apiReader().Get(ctx, client.ObjectKeyFromObject(c), c); rerr != nil {
				return rerr
			}
		}
		released = err == nil
		return err
	})
	if err != nil {
		return fmt.Errorf("release the cluster's operation lock: %w", err)
	}
	if released {
		log.FromContext(ctx).Info("Released the cluster's operation lock")
	}
	return nil
}

func (r *OpenBaoRestoreReconciler) removeFinalizer(ctx context.Context, rs *openbaov1alpha1.OpenBaoRestore) error {
	if !controllerutil.ContainsFinalizer(rs, restoreFinalizer) {
		return nil
	}
	before := rs.DeepCopy()
	controllerutil.RemoveFinalizer(rs, restoreFinalizer)
	if err := r.Patch(ctx, rs, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}

// writeRestoreStatus sends what the plan changed in the status, as a merge patch.
func (r *OpenBaoRestoreReconciler) writeRestoreStatus(ctx context.Context, rs, original *openbaov1alpha1.OpenBaoRestore) error {
	if err := r.Status().Patch(ctx, rs, client.MergeFrom(original)); err != nil {
		return fmt.Errorf("patch restore status: %w", err)
	}
	return nil
}

func (r *OpenBaoRestoreReconciler) executorImage(c *openbaov1alpha1.OpenBaoCluster) (string, error) {
	if img := c.Spec.Upgrade.ExecutorImage; img != "" {
		return img, nil
	}
	if r.Options.OperatorImage == "" {
		return "", fmt.Errorf("no image for the restore Job: set spec.upgrade.executorImage, or run the operator with OPERATOR_IMAGE set to its own image")
	}
	return r.Options.OperatorImage, nil
}

func (r *OpenBaoRestoreReconciler) createRestoreJob(ctx context.Context, rs *openbaov1alpha1.OpenBaoRestore, c *openbaov1alpha1.OpenBaoCluster, leader string) error {
	image, err := r.executorImage(c)
	if err != nil {
		return err
	}
	src, problem := restore.ResolveSource(rs, c)
	if problem != "" {
		return fmt.Errorf("%s", problem)
	}
	src.Location, src.SHA256 = rs.Status.Location, rs.Status.ExpectedSHA256
	job := resources.RestoreJob(c, rs, resources.RestoreJobParams{
		Name: rs.Status.JobName, Image: image, TargetPod: leader, Source: src, Force: rs.Spec.Force, Platform: r.Options.Platform,
	})
	return r.createOwned(ctx, rs, job)
}

func (r *OpenBaoRestoreReconciler) createStepDownJob(ctx context.Context, rs *openbaov1alpha1.OpenBaoRestore, c *openbaov1alpha1.OpenBaoCluster, pod string) error {
	image, err := r.executorImage(c)
	if err != nil {
		return err
	}
	job := resources.ExecutorJob(c, resources.ExecutorJobParams{
		Name: rs.Status.StepDownJob, Revision: "restore-" + resources.RestoreSuffix(rs), Image: image,
		Action: resources.ActionStepDown, TargetPod: pod, Timeout: resources.StepDownTimeout, Platform: r.Options.Platform,
	})
	// A restore's Job, not an upgrade's: the upgrade's clean-up and the scale-down leave it.
	for _, l := range []map[string]string{job.Labels, job.Spec.Template.Labels} {
		l[resources.LabelComponent] = resources.ComponentRestore
		l[resources.LabelRestoreName] = job.Labels[resources.LabelRestoreName]
	}
	return r.createOwned(ctx, rs, job)
}

// createOwned creates a Job owned by the restore (deleting the restore deletes its Jobs);
// one that exists already is the one a previous pass created.
func (r *OpenBaoRestoreReconciler) createOwned(ctx context.Context, rs *openbaov1alpha1.OpenBaoRestore, job *batchv1.Job) error {
	if err := ctrl.SetControllerReference(rs, job, r.Scheme); err != nil {
		return err
	}
	if err := r.Create(ctx, job); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create job %s: %w", job.Name, err)
	}
	log.FromContext(ctx).Info("Job created", "job", job.Name)
	return nil
}

// event is emitted after the status write.
func (r *OpenBaoRestoreReconciler) event(rs *openbaov1alpha1.OpenBaoRestore, step restore.Step) {
	if r.Recorder == nil || step.Reason == "" {
		return
	}
	r.Recorder.Eventf(rs, nil, step.EventType, step.Reason, "Restore", "%s", step.Message)
}
