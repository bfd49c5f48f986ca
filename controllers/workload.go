package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// annotationTemplateHash on the StatefulSet records the hash of the pod template the
// operator last wrote, so that a converged StatefulSet is not written again even though the
// API server adds defaults to the template.
const annotationTemplateHash = "openbao.org/template-hash"

// reconcileWorkload applies the cluster's Workload and reads the servers' pods.
func (r *OpenBaoClusterReconciler) reconcileWorkload(ctx context.Context, s *scope) (ctrl.Result, error) {
	if err := r.applyWorkload(ctx, s); err != nil {
		if apierrors.IsConflict(err) {
			// The object kept changing while it was written (a controller's status writes):
			// look again shortly rather than report an error.
			log.FromContext(ctx).V(1).Info("A workload object changed while it was written; looking again", "error", err.Error())
			return ctrl.Result{RequeueAfter: requeueStaleCache}, nil
		}
		return ctrl.Result{}, err
	}
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(s.cluster.Namespace), client.MatchingLabels(resources.SelectorLabels(s.cluster))); err != nil {
		return ctrl.Result{}, fmt.Errorf("list pods: %w", err)
	}
	s.pods = pods.Items
	return ctrl.Result{}, nil
}

// applyWorkload applies the Workload the cluster's status declares (upgrade.Manager.Workload):
// every server StatefulSet with its ConfigMap, and the client Service's selection; it records
// the active StatefulSet in status.statefulSet. It is the one place that writes them: an
// upgrade step that changes them records its intent in the status and has it applied here
// (upgradeEnv.ApplyWorkload). The active StatefulSet's replicas are removed by the
// scale-down alone (see statefulSetReplicas); every other set has as many.
func (r *OpenBaoClusterReconciler) applyWorkload(ctx context.Context, s *scope) error {
	c := s.cluster
	w := r.Upgrades.Workload(c)
	if active := w.Active().Name; resources.ActiveStatefulSet(c) != active {
		c.Status.StatefulSet = active
	}
	var replicas int32
	for i, set := range w.Sets {
		selfInit := ""
		if i == 0 {
			existing := &appsv1.StatefulSet{}
			err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: set.Name}, existing)
			switch {
			case apierrors.IsNotFound(err):
				existing = nil
			case err != nil:
				return fmt.Errorf("read statefulset %s: %w", set.Name, err)
			}
			replicas, selfInit = statefulSetReplicas(c, existing), s.selfInitConfig
		}
		cm, sts, err := resources.ServerSetObjects(c, set, resources.ServerSetParams{
			Config: *s.configParams, SelfInit: selfInit, Replicas: replicas, Platform: r.Options.Platform,
		})
		if err != nil {
			return err
		}
		if err := r.ensure(ctx, s, cm, func(o client.Object) { o.(*corev1.ConfigMap).Data = cm.Data }); err != nil {
			return fmt.Errorf("config map %s: %w", cm.Name, err)
		}
		applied, err := r.ensureStatefulSet(ctx, s, sts)
		if err != nil {
			return err
		}
		if i == 0 {
			s.statefulSet = applied
		}
	}
	return r.ensureService(ctx, s, resources.ClientService(c, resources.StatefulSetSelector(c, w.Serving)))
}

// ensureStatefulSet creates or converges one server StatefulSet and returns it as the cache
// now shows it. The template is written only when it differs from the one last written
// (annotationTemplateHash); selector, service name and volume claim templates are
// immutable.
func (r *OpenBaoClusterReconciler) ensureStatefulSet(ctx context.Context, s *scope, desired *appsv1.StatefulSet) (*appsv1.StatefulSet, error) {
	hash, err := hashOf(desired.Spec.Template)
	if err != nil {
		return nil, err
	}
	desired.Annotations = map[string]string{annotationTemplateHash: hash}
	obj := desired.DeepCopy()
	if err := r.ensure(ctx, s, obj, func(o client.Object) {
		sts := o.(*appsv1.StatefulSet)
		sts.Spec.Replicas = desired.Spec.Replicas
		sts.Spec.UpdateStrategy = desired.Spec.UpdateStrategy
		sts.Spec.PersistentVolumeClaimRetentionPolicy = desired.Spec.PersistentVolumeClaimRetentionPolicy
		if sts.Annotations[annotationTemplateHash] != hash {
			sts.Spec.Template = desired.Spec.Template
		}
	}); err != nil {
		return nil, fmt.Errorf("statefulset %s: %w", desired.Name, err)
	}
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return nil, err
	}
	return obj, nil
}

// hashOf is a short, stable hash of v's JSON form.
func hashOf(v any) (string, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("hash: %w", err)
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:8]), nil
}
