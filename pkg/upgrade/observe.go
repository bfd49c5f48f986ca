package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// Observation is what a cluster's servers reported in one pass.
type Observation struct {
	Servers map[string]ServerState
	// Errors says, per pod, why it could not be asked.
	Errors map[string]string
	Leader string
	Raft   *RaftState
}

// Observer asks every server pod of a cluster directly, by pod IP with the TLS server name of
// the pod's DNS name, as the operator runs inside the cluster. Health, version and Raft
// indexes need no token; Raft membership and autopilot's verdict are read from the active
// node with the operator's own JWT role (never a root token).
type Observer struct {
	// NewClient creates OpenBao clients; openbao.New when nil.
	NewClient openbao.NewFunc
	// TokenFile is the operator's projected service-account token for OpenBao.
	TokenFile string

	// lastAccepted is the last token OpenBao accepted (see Login).
	mu           sync.Mutex
	lastAccepted string
}

func (o *Observer) newClient(c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) (openbao.Client, error) {
	newClient := o.NewClient
	if newClient == nil {
		newClient = openbao.New
	}
	return newClient(openbao.Config{
		Address:       openbao.PodAddress(pod.Status.PodIP, resources.APIPort),
		CACertPEM:     caPEM,
		TLSServerName: resources.PodDNSName(c, pod.Name),
	})
}

// Observe asks each pod.
func (o *Observer) Observe(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) Observation {
	out := Observation{Servers: map[string]ServerState{}, Errors: map[string]string{}}
	clients := map[string]openbao.Client{}
	for i := range pods {
		pod := &pods[i]
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			out.Servers[pod.Name] = ServerState{}
			out.Errors[pod.Name] = "The pod has no IP address or is terminating."
			continue
		}
		cl, err := o.newClient(c, pod, caPEM)
		if err != nil {
			out.Servers[pod.Name] = ServerState{}
			out.Errors[pod.Name] = err.Error()
			continue
		}
		health, err := cl.Health(ctx)
		if err != nil {
			out.Servers[pod.Name] = ServerState{}
			out.Errors[pod.Name] = memberError(err)
			continue
		}
		clients[pod.Name] = cl
		srv := ServerState{Reachable: true, Initialized: health.Initialized, Sealed: health.Sealed, Active: health.Active(), Version: health.Version}
		if srv.Active {
			out.Leader = pod.Name
		}
		out.Servers[pod.Name] = srv
	}

	// The leader's committed index first: a server whose applied index is read later and
	// reaches it has caught up.
	if out.Leader != "" {
		if ls, err := clients[out.Leader].Leader(ctx); err == nil {
			out.Raft = &RaftState{LeaderCommittedIndex: ls.RaftCommittedIndex}
		}
	}
	for name, cl := range clients {
		srv := out.Servers[name]
		if !srv.Serving() {
			continue
		}
		if ls, err := cl.Leader(ctx); err == nil {
			srv.AppliedIndex = ls.RaftAppliedIndex
			out.Servers[name] = srv
		}
	}
	if out.Leader != "" && out.Raft != nil {
		if err := o.observeRaft(ctx, clients[out.Leader], out.Raft); err != nil {
			log.FromContext(ctx).V(1).Info("Raft membership not read; reporting health only", "reason", err.Error())
			out.Raft = nil
		}
	}
	return out
}

// Login logs a client in with the operator's JWT role.
func (o *Observer) Login(ctx context.Context, cl openbao.Client) error {
	if o.TokenFile == "" {
		return errors.New("the operator has no OpenBao token file configured")
	}
	raw, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return fmt.Errorf("read the operator's token: %w", err)
	}
	jwt := strings.TrimSpace(string(raw))
	err = cl.LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, jwt)
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		o.lastAccepted = jwt
		return nil
	}
	// Right after the API server starts signing with a new key, the kubelet may refresh the
	// token file with a token OpenBao cannot verify yet: the operator is the one that gives
	// OpenBao the new key, and needs a login to do so. The previous token, signed by the old
	// key, stays valid until it expires (OpenBao checks that), so it is tried once more.
	if errors.Is(err, openbao.ErrLoginRefused) && o.lastAccepted != "" && o.lastAccepted != jwt {
		if prevErr := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, o.lastAccepted); prevErr == nil {
			return nil
		}
	}
	return err
}

// Client returns a client for a pod, logged in with the operator's JWT role.
func (o *Observer) Client(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) (openbao.Client, error) {
	cl, err := o.newClient(c, pod, caPEM)
	if err != nil {
		return nil, err
	}
	if err := o.Login(ctx, cl); err != nil {
		return nil, err
	}
	return cl, nil
}

func (o *Observer) observeRaft(ctx context.Context, active openbao.Client, raft *RaftState) error {
	if err := o.Login(ctx, active); err != nil {
		return err
	}
	servers, err := active.RaftConfiguration(ctx)
	if err != nil {
		return err
	}
	raft.Voters, raft.NonVoters, raft.Healthy = map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, srv := range servers {
		if srv.Voter {
			raft.Voters[srv.NodeID] = true
		} else {
			raft.NonVoters[srv.NodeID] = true
		}
	}
	state, err := active.AutopilotState(ctx)
	if err != nil {
		return err
	}
	raft.AutopilotHealthy = state.Healthy
	for _, srv := range state.Servers {
		raft.Healthy[srv.ID] = srv.Healthy
	}
	return nil
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
