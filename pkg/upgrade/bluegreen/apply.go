package bluegreen

// Apply: the side effect of each step.

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Apply performs one step's side effect; each is idempotent.
func (Strategy) Apply(ctx context.Context, s *upgrade.State, step upgrade.Step, env upgrade.Env) error {
	if handled, err := upgrade.ApplyShared(ctx, s, step, env); handled {
		return err
	}
	c := s.Cluster
	cl := env.Client()
	switch a := step.Action.(type) {
	case promote:
		ob, err := env.OpenBao(ctx, a.Leader)
		if err != nil {
			return fmt.Errorf("promote %s: %w", a.Pod, err)
		}
		asked, err := openbao.PromoteNonVoter(ctx, ob, a.Pod)
		if err != nil {
			return fmt.Errorf("promote %s: %w", a.Pod, err)
		}
		if asked {
			env.Event(corev1.EventTypeNormal, "ServerPromoted", step.Message)
		}
		return nil
	case removePeer:
		ob, err := env.OpenBao(ctx, a.Leader)
		if err != nil {
			return fmt.Errorf("remove %s from the Raft cluster: %w", a.Pod, err)
		}
		if err := openbao.RemovePeerVerified(ctx, ob, a.Pod); err != nil {
			return fmt.Errorf("remove %s from the Raft cluster: %w", a.Pod, err)
		}
		env.Event(corev1.EventTypeNormal, "PeerRemoved", step.Message)
		return nil
	case deleteStatefulSet:
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: a.Name}}
		if err := cl.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete StatefulSet %s: %w", a.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "StatefulSetDeleted", step.Message)
		return nil
	case deleteVolumes:
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: resources.ConfigMapName(a.StatefulSet)}}
		if err := cl.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete ConfigMap %s: %w", cm.Name, err)
		}
		if err := cl.DeleteAllOf(ctx, &corev1.PersistentVolumeClaim{}, client.InNamespace(c.Namespace),
			client.MatchingLabels{resources.LabelCluster: c.Name, resources.LabelStatefulSet: a.StatefulSet}); err != nil {
			return fmt.Errorf("delete the volumes of %s: %w", a.StatefulSet, err)
		}
		env.Event(corev1.EventTypeNormal, "VolumesDeleted", step.Message)
		return nil
	default:
		return fmt.Errorf("unknown blue/green action %T", step.Action)
	}
}
