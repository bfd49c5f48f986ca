package controllers

import (
	"context"
	"errors"
	"os"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// ObservedCluster is what a cluster's servers reported about themselves.
type ObservedCluster struct {
	// Members, one per pod, sorted by pod name.
	Members []openbaov1alpha1.MemberStatus
	// Leader is the pod that reported itself active.
	Leader string
}

// Observer asks each server pod of a cluster about its OpenBao state.
type Observer interface {
	Observe(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) ObservedCluster
}

// observe records what the servers report in the status.
func (r *OpenBaoClusterReconciler) observe(ctx context.Context, s *scope) (ctrl.Result, error) {
	c := s.cluster
	ready := int32(0)
	for i := range s.pods {
		if podReady(&s.pods[i]) {
			ready++
		}
	}
	c.Status.Replicas = int32(len(s.pods))
	c.Status.ReadyReplicas = ready

	observed := ObservedCluster{}
	if r.Observer != nil && len(s.pods) > 0 {
		observed = r.Observer.Observe(ctx, c, s.pods, s.tlsCAPEM)
	}
	sort.Slice(observed.Members, func(i, j int) bool { return observed.Members[i].Pod < observed.Members[j].Pod })
	c.Status.Members = observed.Members
	c.Status.Leader = observed.Leader
	for _, m := range observed.Members {
		if m.Initialized && !m.Sealed {
			c.Status.Initialized = true
		}
	}
	s.observed = &observed
	s.observedOK = true
	return ctrl.Result{}, nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil {
		return false
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// OpenBaoObserver asks each pod directly, by pod IP with the TLS server name of the pod's
// DNS name, as the operator runs inside the cluster. Health and version need no token; Raft
// membership and autopilot's verdict are read with the operator's own JWT role when its
// projected token is present (never a root token).
type OpenBaoObserver struct {
	// TokenFile is the operator's projected service-account token for OpenBao.
	TokenFile string
	// NewClient creates OpenBao clients; openbao.New when nil.
	NewClient openbao.NewFunc
}

// Observe implements Observer.
func (o *OpenBaoObserver) Observe(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) ObservedCluster {
	newClient := o.NewClient
	if newClient == nil {
		newClient = openbao.New
	}
	var out ObservedCluster
	var active openbao.Client
	for i := range pods {
		pod := &pods[i]
		m := openbaov1alpha1.MemberStatus{Pod: pod.Name}
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			m.Error = "The pod has no IP address or is terminating."
			out.Members = append(out.Members, m)
			continue
		}
		cl, err := newClient(openbao.Config{
			Address:       openbao.PodAddress(pod.Status.PodIP, resources.APIPort),
			CACertPEM:     caPEM,
			TLSServerName: resources.PodDNSName(c, pod.Name),
			Timeout:       openBaoRequestTimeout,
		})
		if err != nil {
			m.Error = err.Error()
			out.Members = append(out.Members, m)
			continue
		}
		health, err := cl.Health(ctx)
		if err != nil {
			m.Error = memberError(err)
			out.Members = append(out.Members, m)
			continue
		}
		m.Version = health.Version
		m.Initialized = health.Initialized
		m.Sealed = health.Sealed
		m.Active = health.Active()
		if m.Active {
			out.Leader = pod.Name
			active = cl
		}
		out.Members = append(out.Members, m)
	}
	if active != nil {
		o.observeRaft(ctx, active, out.Members)
	}
	return out
}

// observeRaft fills voter and health from the active node, with the operator's JWT role.
func (o *OpenBaoObserver) observeRaft(ctx context.Context, active openbao.Client, members []openbaov1alpha1.MemberStatus) {
	if o.TokenFile == "" {
		return
	}
	jwt, err := os.ReadFile(o.TokenFile)
	if err != nil {
		log.FromContext(ctx).V(1).Info("No operator token for OpenBao; reporting health only", "file", o.TokenFile, "reason", err.Error())
		return
	}
	if err := active.LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, strings.TrimSpace(string(jwt))); err != nil {
		log.FromContext(ctx).Info("The operator could not log in to OpenBao; reporting health only", "reason", err.Error())
		return
	}
	servers, err := active.RaftConfiguration(ctx)
	if err != nil {
		log.FromContext(ctx).Info("Cannot read the Raft configuration", "reason", err.Error())
		return
	}
	voters := map[string]bool{}
	for _, srv := range servers {
		voters[srv.NodeID] = srv.Voter
	}
	state, err := active.AutopilotState(ctx)
	for i := range members {
		members[i].Voter = voters[members[i].Pod]
		if err == nil {
			if srv, ok := state.Server(members[i].Pod); ok {
				members[i].Healthy = srv.Healthy
			}
		}
	}
}

// memberError is a short, stable description of why a server could not be asked, so that
// the status does not change with every failed attempt.
func memberError(err error) string {
	switch {
	case errors.Is(err, openbao.ErrUnavailable):
		return "The OpenBao API does not answer yet."
	case errors.Is(err, openbao.ErrSealed):
		return "The server is sealed."
	case errors.Is(err, openbao.ErrNotInitialized):
		return "The server is not initialized."
	default:
		return "The server's health could not be read."
	}
}
