// Package controllers holds the reconcilers of the OpenBao operator. It is the only package
// that knows the controller manager, watches and RBAC.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blang/semver/v4"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Options are the operator-wide settings of the reconciler.
type Options struct {
	// ImageRepository is used for spec.version when spec.image is empty.
	ImageRepository string
	// OperatorNamespace and OperatorServiceAccount identify the operator to OpenBao's JWT
	// auth (the read-mostly operator role).
	OperatorNamespace      string
	OperatorServiceAccount string
	// OperatorImage is the operator's own image, the default image of upgrade Jobs.
	OperatorImage string
	// Platform says whether the pods the operator creates choose their user and group IDs
	// (see DetectPlatform).
	Platform resources.Platform
	// MaxConcurrentReconciles is the number of clusters reconciled at once;
	// DefaultMaxConcurrentReconciles when zero.
	MaxConcurrentReconciles int
	// SecretMemoTTL is how long a Secret read by name is remembered (secretMemo):
	// secretMemoTTL when zero, not at all when negative.
	SecretMemoTTL time.Duration
}

// DefaultMaxConcurrentReconciles: a pass waits mostly on OpenBao and the API server, not on
// the CPU, so clusters are served by more workers than there are cores; one cluster whose
// servers do not answer holds one worker for at most one observation's timeouts.
const DefaultMaxConcurrentReconciles = 10

// OpenBaoClusterReconciler creates an OpenBao cluster's objects and keeps them converged,
// and reports what the cluster's servers say about themselves.
type OpenBaoClusterReconciler struct {
	client.Client
	// APIReader reads from the API server, past the cache: every Secret, by name (Secrets
	// are never cached: UncachedKinds), and an object whose labels were removed, which the
	// cache (CacheOptions) no longer holds. The Client when nil.
	APIReader client.Reader
	Scheme    *runtime.Scheme
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Issuer    IssuerSource
	Observer  Observer
	Upgrades  *upgrade.Manager
	Options   Options

	// secrets remembers the Secrets read by name for a few seconds (secretMemo).
	secrets secretMemo

	// leaders watches each cluster's active server between full observations (nil when the
	// reconciler runs without a manager, as in tests).
	leaders *leaderWatch

	// statusWrites remembers the status this controller last wrote per cluster (see
	// behindOwnWrite).
	statusWrites statusWrites
}

// +kubebuilder:rbac:groups=openbao.org,resources=openbaoclusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=openbao.org,resources=openbaoclusters/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=openbao.org,resources=openbaoclusters/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// Secrets are read by name and never listed or watched (UncachedKinds); the operator
// deletes none (the garbage collector removes the owned ones with their cluster).
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;update;patch;delete

// SetupWithManager registers the reconciler and its watches.
func (r *OpenBaoClusterReconciler) SetupWithManager(mgr ctrl.Manager) error {
	r.leaders = newLeaderWatch(leaderPollInterval)
	if err := mgr.Add(r.leaders); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&openbaov1alpha1.OpenBaoCluster{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		// No Secret informer (UncachedKinds): a deleted or changed Secret of a cluster is
		// repaired at the cluster's next pass (within requeueSteady when it is Available).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&batchv1.Job{}).
		// Pod readiness changes the cluster's status; pods are owned by the StatefulSet, so
		// they are mapped to their cluster by label.
		Watches(&corev1.Pod{}, podToCluster(), builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		// A leadership change changes no Kubernetes object: the leader watch announces it.
		WatchesRawSource(r.leaders.source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.maxConcurrentReconciles()}).
		Named("openbaocluster").
		Complete(r)
}

func (r *OpenBaoClusterReconciler) maxConcurrentReconciles() int {
	if r.Options.MaxConcurrentReconciles > 0 {
		return r.Options.MaxConcurrentReconciles
	}
	return DefaultMaxConcurrentReconciles
}

// Reconcile converges one OpenBaoCluster.
func (r *OpenBaoClusterReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	cluster := &openbaov1alpha1.OpenBaoCluster{}
	if err := r.Get(ctx, req.NamespacedName, cluster); err != nil {
		if apierrors.IsNotFound(err) {
			r.leaders.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	logger := log.FromContext(ctx).WithValues("openBaoCluster", klog.KObj(cluster))
	ctx = log.IntoContext(ctx, logger)
	if !cluster.DeletionTimestamp.IsZero() {
		r.leaders.forget(req.NamespacedName)
		// Owner references let the garbage collector remove what the cluster owns.
		return ctrl.Result{}, nil
	}

	if r.statusWrites.behind(cluster) {
		// The cache has not yet seen this controller's last status write: a pass on the older
		// status would decide again what was already decided (and, as status is written
		// without an optimistic lock, could write it back). The write's own event follows.
		logger.V(1).Info("Waiting for the cache to show the last status write")
		return ctrl.Result{RequeueAfter: requeueStaleCache}, nil
	}

	s := newScope(cluster)
	defer func() {
		if err := r.patchStatus(ctx, s, retErr); err != nil {
			// An error and a result never go back together: the error's backoff decides.
			retErr, result = errors.Join(retErr, err), ctrl.Result{}
		}
	}()

	if cluster.Spec.Paused {
		// Paused: change nothing, not even owned objects; only report. An upgrade in flight
		// keeps its state; its step deadline stops running.
		s.paused = true
		r.leaders.forget(req.NamespacedName)
		upgrade.Paused(cluster, r.Clock.Now())
		return ctrl.Result{}, nil
	}

	steps := []func(context.Context, *scope) (ctrl.Result, error){
		r.validateSpec,
		r.renderConfig,
		r.reconcileServiceAccounts,
		r.reconcileSealKey,
		r.reconcileTLS,
		r.reconcileServices,
		r.reconcilePodDisruptionBudget,
		r.reconcileWorkload,
		r.observe,
		r.reconcileServiceAccountKeys,
		r.reconcileScaleDown,
		r.reconcileUpgrade,
	}
	var upgradeResult ctrl.Result
	for i, step := range steps {
		res, err := step(ctx, s)
		if i == len(steps)-1 && err == nil {
			upgradeResult = res
			break
		}
		if err != nil {
			return ctrl.Result{}, err
		}
		if !res.IsZero() {
			return res, nil
		}
	}
	res := ctrl.Result{RequeueAfter: requeueConverging}
	switch {
	case upgradeResult.RequeueAfter > 0:
		res = upgradeResult
	case s.available():
		res = ctrl.Result{RequeueAfter: requeueSteady}
	}
	if b := r.reconcileBackup(ctx, s); b.RequeueAfter > 0 && b.RequeueAfter < res.RequeueAfter {
		res = b
	}
	return res, nil
}

// validateSpec rejects what the schema cannot judge. Such a spec can never work, so the
// error is terminal: the user must change the spec, which triggers a new reconcile.
func (r *OpenBaoClusterReconciler) validateSpec(ctx context.Context, s *scope) (ctrl.Result, error) {
	if _, err := semver.ParseTolerant(s.cluster.Spec.Version); err != nil {
		s.invalidSpec = fmt.Sprintf("spec.version %q is not a semantic version: %v. Set it to a release such as 2.7.2.", s.cluster.Spec.Version, err)
		return ctrl.Result{}, reconcile.TerminalError(errors.New(s.invalidSpec))
	}
	if s.cluster.Status.CurrentVersion == "" {
		// The version the servers are first created with: the start of every later upgrade.
		s.cluster.Status.CurrentVersion = s.cluster.Spec.Version
		s.cluster.Status.CurrentImage = resources.DesiredImage(s.cluster, r.Options.ImageRepository)
	}
	return ctrl.Result{}, nil
}

// ensure creates obj when it does not exist and otherwise lets mutate bring the existing
// object to the desired state, writing only when mutate changed something.
func (r *OpenBaoClusterReconciler) ensure(ctx context.Context, s *scope, obj client.Object, mutate func(existing client.Object)) error {
	if err := ctrl.SetControllerReference(s.cluster, obj, r.Scheme); err != nil {
		return err
	}
	existing := obj.DeepCopyObject().(client.Object)
	err := r.readerFor(obj).Get(ctx, client.ObjectKeyFromObject(obj), existing)
	if apierrors.IsNotFound(err) {
		log.FromContext(ctx).Info("Creating object", "kind", fmt.Sprintf("%T", obj), "name", obj.GetName())
		err = r.Create(ctx, obj)
		r.wrote(obj)
		if !apierrors.IsAlreadyExists(err) {
			return err
		}
		// It exists without the operator's labels (they were removed), so the cache does
		// not hold it: read it by name; the update below puts the labels back.
		err = r.apiReader().Get(ctx, client.ObjectKeyFromObject(obj), existing)
	}
	if err != nil {
		return err
	}
	if !metav1.IsControlledBy(existing, s.cluster) {
		return fmt.Errorf("%T %s exists and is not owned by this OpenBaoCluster: rename or delete it", obj, obj.GetName())
	}
	before := existing.DeepCopyObject()
	mutate(existing)
	mergeMetadata(existing, obj)
	if equality.Semantic.DeepEqual(before, existing) {
		return nil
	}
	log.FromContext(ctx).Info("Updating object", "kind", fmt.Sprintf("%T", obj), "name", obj.GetName())
	err = r.Update(ctx, existing)
	r.wrote(obj)
	if !apierrors.IsConflict(err) {
		return err
	}
	// The cache had not yet seen the object's latest change (often this operator's own,
	// earlier in the pass, or a controller's status write): apply the same changes to the
	// object as the API server has it, if it still needs them.
	for range ensureConflictRetries {
		latest := obj.DeepCopyObject().(client.Object)
		if err := r.apiReader().Get(ctx, client.ObjectKeyFromObject(obj), latest); err != nil {
			return err
		}
		if !metav1.IsControlledBy(latest, s.cluster) {
			return fmt.Errorf("%T %s exists and is not owned by this OpenBaoCluster: rename or delete it", obj, obj.GetName())
		}
		before := latest.DeepCopyObject()
		mutate(latest)
		mergeMetadata(latest, obj)
		if equality.Semantic.DeepEqual(before, latest) {
			return nil
		}
		err = r.Update(ctx, latest)
		r.wrote(obj)
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

// ensureConflictRetries is how many times ensure applies its changes again to the object as
// the API server has it after a conflict.
const ensureConflictRetries = 3

// readerFor is where obj is read: Secrets from the API server (UncachedKinds) through the
// secret memo, everything else from the cache.
func (r *OpenBaoClusterReconciler) readerFor(obj client.Object) client.Reader {
	if _, ok := obj.(*corev1.Secret); ok {
		return secretReader{r}
	}
	return r.Client
}

// wrote forgets a Secret the reconciler wrote (or tried to), so that its next read is the
// API server's.
func (r *OpenBaoClusterReconciler) wrote(obj client.Object) {
	if _, ok := obj.(*corev1.Secret); ok {
		r.secrets.forget(client.ObjectKeyFromObject(obj))
	}
}

// apiReader reads past the cache.
func (r *OpenBaoClusterReconciler) apiReader() client.Reader {
	if r.APIReader != nil {
		return r.APIReader
	}
	return r.Client
}

// mergeMetadata sets the desired labels and annotations on existing, keeping those that
// others added.
func mergeMetadata(existing, desired client.Object) {
	existing.SetLabels(mergeMaps(existing.GetLabels(), desired.GetLabels()))
	existing.SetAnnotations(mergeMaps(existing.GetAnnotations(), desired.GetAnnotations()))
	existing.SetOwnerReferences(desired.GetOwnerReferences())
}

func mergeMaps(existing, desired map[string]string) map[string]string {
	if len(desired) == 0 {
		return existing
	}
	out := make(map[string]string, len(existing)+len(desired))
	for k, v := range existing {
		out[k] = v
	}
	for k, v := range desired {
		out[k] = v
	}
	return out
}

func (r *OpenBaoClusterReconciler) reconcileServiceAccounts(ctx context.Context, s *scope) (ctrl.Result, error) {
	for _, sa := range []*corev1.ServiceAccount{resources.ServerServiceAccount(s.cluster), resources.UpgradeServiceAccount(s.cluster)} {
		desired := sa.DeepCopy()
		if err := r.ensure(ctx, s, sa, func(o client.Object) {
			o.(*corev1.ServiceAccount).AutomountServiceAccountToken = desired.AutomountServiceAccountToken
		}); err != nil {
			return ctrl.Result{}, fmt.Errorf("service account %s: %w", desired.Name, err)
		}
	}
	return ctrl.Result{}, nil
}

// reconcileServices converges the headless Service the servers find each other through; the
// client Service, whose selection an upgrade moves, is part of the Workload (applyWorkload).
func (r *OpenBaoClusterReconciler) reconcileServices(ctx context.Context, s *scope) (ctrl.Result, error) {
	return ctrl.Result{}, r.ensureService(ctx, s, resources.HeadlessService(s.cluster))
}

// ensureService creates or converges one of the cluster's Services: its selector, ports and
// whether it publishes unready pods.
func (r *OpenBaoClusterReconciler) ensureService(ctx context.Context, s *scope, svc *corev1.Service) error {
	desired := svc.DeepCopy()
	if err := r.ensure(ctx, s, svc, func(o client.Object) {
		existing := o.(*corev1.Service)
		existing.Spec.Selector = desired.Spec.Selector
		existing.Spec.Ports = desired.Spec.Ports
		existing.Spec.PublishNotReadyAddresses = desired.Spec.PublishNotReadyAddresses
	}); err != nil {
		return fmt.Errorf("service %s: %w", desired.Name, err)
	}
	return nil
}

func (r *OpenBaoClusterReconciler) reconcilePodDisruptionBudget(ctx context.Context, s *scope) (ctrl.Result, error) {
	pdb := resources.PodDisruptionBudget(s.cluster)
	desired := pdb.DeepCopy()
	if err := r.ensure(ctx, s, pdb, func(o client.Object) {
		o.(*policyv1.PodDisruptionBudget).Spec = desired.Spec
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("pod disruption budget: %w", err)
	}
	return ctrl.Result{}, nil
}

// podToCluster maps a server pod to its OpenBaoCluster by its labels.
func podToCluster() handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		labels := o.GetLabels()
		if labels[resources.LabelName] != resources.AppName || labels[resources.LabelInstance] == "" {
			return nil
		}
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: labels[resources.LabelInstance]}}}
	})
}

// conditionStatus turns a bool into a condition status.
func conditionStatus(b bool) metav1.ConditionStatus {
	if b {
		return metav1.ConditionTrue
	}
	return metav1.ConditionFalse
}
