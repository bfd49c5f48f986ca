package controllers

import (
	"context"
	"sort"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Observer asks each server pod of a cluster about its OpenBao state.
type Observer interface {
	Observe(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) upgrade.Observation
	// Client returns a client for a pod, logged in with the operator's JWT role.
	Client(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) (openbao.Client, error)
}

var _ Observer = &upgrade.Observer{}

// observe records what the servers report in the status.
func (r *OpenBaoClusterReconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	ready := int32(0)
	for i := range s.pods {
		if upgrade.PodReady(&s.pods[i]) {
			ready++
		}
	}
	c.Status.Replicas = int32(len(s.pods))
	c.Status.ReadyReplicas = ready

	observed := upgrade.Observation{}
	if r.Observer != nil && len(s.pods) > 0 {
		observed = r.Observer.Observe(ctx, c, s.pods, s.tlsCAPEM)
	}
	s.observed = &observed
	s.observedOK = true
	c.Status.Leader = observed.Leader
	r.leaders.watch(c, s.pods, s.tlsCAPEM)
	c.Status.Members = members(s.pods, observed)
	for _, m := range c.Status.Members {
		if m.Initialized && !m.Sealed {
			c.Status.Initialized = true
		}
	}
	return ctrl.Result{}, nil
}

// members turns an observation into the status' member list, sorted by pod.
func members(pods []corev1.Pod, o upgrade.Observation) []openbaov1alpha1.MemberStatus {
	var out []openbaov1alpha1.MemberStatus
	for _, p := range pods {
		srv := o.Servers[p.Name]
		m := openbaov1alpha1.MemberStatus{
			Pod:         p.Name,
			Version:     srv.Version,
			Initialized: srv.Initialized,
			Sealed:      srv.Sealed,
			Active:      srv.Active,
			Error:       o.Errors[p.Name],
		}
		if o.Raft != nil {
			m.Voter = o.Raft.Voters[p.Name]
			m.Healthy = o.Raft.Healthy[p.Name]
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Pod < out[j].Pod })
	return out
}
