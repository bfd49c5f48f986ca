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

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// annotationTemplateHash on the StatefulSet records the hash of the pod template the
// operator last wrote, so that a converged StatefulSet is not written again even though the
// API server adds defaults to the template.
const annotationTemplateHash = "openbao.org/template-hash"

// reconcileStatefulSet converges the server StatefulSet. It never lowers the partition: a
// template change waits for the upgrade manager, which alone moves pods.
func (r *OpenBaoClusterReconciler) reconcileStatefulSet(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	name := resources.NamesFor(c).StatefulSet

	existing := &appsv1.StatefulSet{}
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: name}, existing)
	switch {
	case apierrors.IsNotFound(err):
		existing = nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("read statefulset: %w", err)
	}
	// Servers are removed by the scale-down alone (see statefulSetReplicas).
	replicas := statefulSetReplicas(c, existing)
	partition := replicas
	if existing != nil && c.Status.Upgrade != nil {
		// The upgrade in flight owns the partition.
		if ru := existing.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
			partition = *ru.Partition
		}
	}

	desired := resources.StatefulSet(c, resources.StatefulSetParams{
		Name: name, Image: r.Upgrades.Workload(c).Image, Replicas: replicas, Partition: partition, ConfigHash: s.configHash,
		Platform: r.Options.Platform,
	})
	hash, err := hashOf(desired.Spec.Template)
	if err != nil {
		return ctrl.Result{}, err
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
		// Selector, service name and volume claim templates are immutable.
	}); err != nil {
		return ctrl.Result{}, fmt.Errorf("statefulset: %w", err)
	}
	if err := r.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return ctrl.Result{}, err
	}
	s.statefulSet = obj

	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(c.Namespace), client.MatchingLabels(resources.SelectorLabels(c))); err != nil {
		return ctrl.Result{}, fmt.Errorf("list pods: %w", err)
	}
	s.pods = pods.Items
	return ctrl.Result{}, nil
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
