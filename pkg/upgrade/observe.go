package upgrade

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
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
//
// The servers of a cluster are asked in parallel and each call is bounded by
// RequestTimeout, so a pass over a cluster whose servers do not answer takes one timeout,
// not one per server; the controller's workers stay free for the other clusters.
//
// The operator holds one OpenBao session per cluster: the token of its JWT login is kept in
// memory, keyed by the OpenBaoCluster's UID, and reused by every pass and every call of the
// upgrade strategies until two thirds of its lifetime have passed; then the operator renews
// it, and logs in again only when the renewal is refused or reaches the role's maximum
// lifetime, or when a server rejects the token. Each login is a Raft write on the user's
// cluster (a new token), so it should not happen on every pass.
type Observer struct {
	// NewClient creates OpenBao clients; openbao.New when nil.
	NewClient openbao.NewFunc
	// TokenFile is the operator's projected service-account token for OpenBao.
	TokenFile string
	// RequestTimeout bounds each call to a server; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	// Clock tells when a session is due for a new login; the real clock when nil.
	Clock clock.PassiveClock

	sessions sync.Map // types.UID -> *session
	logins   atomic.Int64
	renewals atomic.Int64

	// lastAccepted is the last token OpenBao accepted (see loginJWT).
	mu           sync.Mutex
	lastAccepted string
}

// DefaultRequestTimeout bounds each call of the operator to an OpenBao server: a server that
// answers at all answers within milliseconds.
const DefaultRequestTimeout = 5 * time.Second

// observePhases is the number of calls an observation makes one after another: health,
// the leader's index, the others' indexes, and with the active node the login and two reads.
const observePhases = 6

// staleSession is how long after its renewal time an unused session is dropped (its
// cluster was deleted or no longer has servers).
const staleSession = time.Hour

// sessionWithoutExpiry is how long a token whose lifetime the server did not say is reused.
const sessionWithoutExpiry = 5 * time.Minute

// session is the operator's token for one cluster.
type session struct {
	mu      sync.Mutex
	current openbao.Session
	// renewAt is when the next pass renews the token or logs in again.
	renewAt time.Time
	// loginTTL is the lifetime the last login granted.
	loginTTL time.Duration
	// renewedSinceLogin says whether the token of the last login was renewed.
	renewedSinceLogin bool
	// noRenewal is set once the cluster's role turned out to give tokens that a renewal
	// cannot extend.
	noRenewal bool
}

// Logins is the number of JWT logins the observer has made.
func (o *Observer) Logins() int64 { return o.logins.Load() }

// Renewals is the number of token renewals the observer has asked for.
func (o *Observer) Renewals() int64 { return o.renewals.Load() }

func (o *Observer) now() time.Time {
	if o.Clock == nil {
		return time.Now()
	}
	return o.Clock.Now()
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
		Timeout:       o.requestTimeout(),
	})
}

func (o *Observer) requestTimeout() time.Duration {
	if o.RequestTimeout <= 0 {
		return DefaultRequestTimeout
	}
	return o.RequestTimeout
}

// Observe asks each pod, all at once. The whole observation is bounded by a few request
// timeouts (health, indexes, login, Raft state), whatever the servers do.
func (o *Observer) Observe(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pods []corev1.Pod, caPEM []byte) Observation {
	ctx, cancel := context.WithTimeout(ctx, observePhases*o.requestTimeout())
	defer cancel()
	out := Observation{Servers: map[string]ServerState{}, Errors: map[string]string{}}
	clients := map[string]openbao.Client{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range pods {
		pod := &pods[i]
		if pod.Status.PodIP == "" || pod.DeletionTimestamp != nil {
			mu.Lock()
			out.Servers[pod.Name] = ServerState{}
			out.Errors[pod.Name] = "The pod has no IP address or is terminating."
			mu.Unlock()
			continue
		}
		wg.Go(func() {
			cl, srv, errMsg := o.health(ctx, c, pod, caPEM)
			mu.Lock()
			defer mu.Unlock()
			out.Servers[pod.Name] = srv
			if errMsg != "" {
				out.Errors[pod.Name] = errMsg
				return
			}
			clients[pod.Name] = cl
			if srv.Active {
				out.Leader = pod.Name
			}
		})
	}
	wg.Wait()

	// The leader's committed index first: a server whose applied index is read later and
	// reaches it has caught up.
	if out.Leader != "" {
		if ls, err := clients[out.Leader].Leader(ctx); err == nil {
			out.Raft = &RaftState{LeaderCommittedIndex: ls.RaftCommittedIndex}
		}
	}
	// Chosen before any of them runs: the goroutines write out.Servers.
	serving := map[string]openbao.Client{}
	for name, cl := range clients {
		if out.Servers[name].Serving() {
			serving[name] = cl
		}
	}
	for name, cl := range serving {
		wg.Go(func() {
			ls, err := cl.Leader(ctx)
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			srv := out.Servers[name]
			srv.AppliedIndex = ls.RaftAppliedIndex
			out.Servers[name] = srv
		})
	}
	wg.Wait()
	if out.Leader != "" && out.Raft != nil {
		if err := o.observeRaft(ctx, c, clients[out.Leader], out.Raft); err != nil {
			log.FromContext(ctx).V(1).Info("Raft membership not read; reporting health only", "reason", err.Error())
			out.Raft = nil
		}
	}
	return out
}

// health asks one pod for its health; errMsg says why it could not be asked.
func (o *Observer) health(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) (cl openbao.Client, srv ServerState, errMsg string) {
	cl, err := o.newClient(c, pod, caPEM)
	if err != nil {
		return nil, ServerState{}, err.Error()
	}
	health, err := cl.Health(ctx)
	if err != nil {
		return nil, ServerState{}, memberError(err)
	}
	return cl, ServerState{Reachable: true, Initialized: health.Initialized, Sealed: health.Sealed, Active: health.Active(), Version: health.Version}, ""
}

// Login gives a client the cluster's session. When two thirds of the token's lifetime have
// passed, the token is renewed (renew-self, a cheap call that keeps the token); the operator
// logs in with its JWT role only when there is no token, when the server refuses the
// renewal, or when the renewal no longer moves the token's expiry by half its lifetime (its role's
// maximum is near, or the role of a cluster created before renewals gives tokens whose
// maximum is their lifetime). It says whether the client got a token it already had, which
// a server may still reject (revoked, or expired early).
func (o *Observer) Login(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, cl openbao.Client) (reused bool, err error) {
	v, _ := o.sessions.LoadOrStore(c.UID, &session{})
	sess := v.(*session)
	sess.mu.Lock()
	defer sess.mu.Unlock()
	now := o.now()
	if sess.current.Token != "" && now.Before(sess.renewAt) {
		cl.UseSession(sess.current)
		return true, nil
	}
	if sess.current.Token != "" && o.renew(ctx, sess, cl) {
		sess.renewAt = now.Add(sess.current.TTL * 2 / 3)
		return true, nil
	}
	if err := o.loginJWT(ctx, cl); err != nil {
		return false, err
	}
	o.dropStaleSessions(now, c.UID)
	sess.current = cl.Session()
	sess.loginTTL = sess.current.TTL
	sess.renewedSinceLogin = false
	sess.renewAt = now.Add(sessionWithoutExpiry)
	if !sess.current.Expires.IsZero() {
		sess.renewAt = now.Add(sess.current.Expires.Sub(now) * 2 / 3)
	}
	return false, nil
}

// renew renews the session's token through cl and says whether its expiry moved by at least
// half the lifetime of its login; sess.current is then the renewed session.
func (o *Observer) renew(ctx context.Context, sess *session, cl openbao.Client) bool {
	if !sess.current.Renewable || sess.current.TTL <= 0 || sess.noRenewal {
		return false
	}
	cl.UseSession(sess.current)
	o.renewals.Add(1)
	if err := cl.RenewSelf(ctx); err != nil {
		log.FromContext(ctx).V(1).Info("OpenBao token not renewed; logging in again", "reason", err.Error())
		return false
	}
	renewed := cl.Session()
	if renewed.Expires.Sub(sess.current.Expires) < sess.loginTTL/2 {
		// A first renewal that cannot extend the token: the role's maximum lifetime is its
		// lifetime (a cluster created before the operator renewed its tokens). Renewing it
		// again would only add a call before every login.
		if !sess.renewedSinceLogin {
			sess.noRenewal = true
		}
		return false
	}
	sess.current = renewed
	sess.renewedSinceLogin = true
	return true
}

// dropStaleSessions forgets the sessions of clusters no pass has used for a long time.
func (o *Observer) dropStaleSessions(now time.Time, keep types.UID) {
	o.sessions.Range(func(k, v any) bool {
		sess := v.(*session)
		if k.(types.UID) != keep && sess.mu.TryLock() {
			if !sess.renewAt.IsZero() && now.Sub(sess.renewAt) > staleSession {
				o.sessions.Delete(k)
			}
			sess.mu.Unlock()
		}
		return true
	})
}

// relogin drops the cluster's session after a server rejected its token and logs in again.
func (o *Observer) relogin(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, cl openbao.Client, rejected openbao.Session) error {
	v, _ := o.sessions.LoadOrStore(c.UID, &session{})
	sess := v.(*session)
	sess.mu.Lock()
	if sess.current.Token == rejected.Token {
		sess.current, sess.renewAt = openbao.Session{}, time.Time{}
	}
	sess.mu.Unlock()
	_, err := o.Login(ctx, c, cl)
	return err
}

// loginJWT logs a client in with the operator's JWT role.
func (o *Observer) loginJWT(ctx context.Context, cl openbao.Client) error {
	if o.TokenFile == "" {
		return errors.New("the operator has no OpenBao token file configured")
	}
	raw, err := os.ReadFile(o.TokenFile)
	if err != nil {
		return fmt.Errorf("read the operator's token: %w", err)
	}
	jwt := strings.TrimSpace(string(raw))
	o.logins.Add(1)
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
		o.logins.Add(1)
		if prevErr := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, o.lastAccepted); prevErr == nil {
			return nil
		}
	}
	return err
}

// Client returns a client for a pod with the cluster's session (see Login). A call that the
// server rejects for the token's sake logs in again once and is repeated.
func (o *Observer) Client(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, pod *corev1.Pod, caPEM []byte) (openbao.Client, error) {
	cl, err := o.newClient(c, pod, caPEM)
	if err != nil {
		return nil, err
	}
	if _, err := o.Login(ctx, c, cl); err != nil {
		return nil, err
	}
	return &sessionClient{Client: cl, o: o, cluster: c}, nil
}

func (o *Observer) observeRaft(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, active openbao.Client, raft *RaftState) error {
	if _, err := o.Login(ctx, c, active); err != nil {
		return err
	}
	cl := &sessionClient{Client: active, o: o, cluster: c}
	servers, err := cl.RaftConfiguration(ctx)
	if err != nil {
		return err
	}
	state, err := cl.AutopilotState(ctx)
	if err != nil {
		return err
	}
	raft.RaftView = openbao.NewRaftView(servers, state)
	return nil
}

// sessionClient repeats, once, a call whose token the server rejected, after a new login.
type sessionClient struct {
	openbao.Client
	o       *Observer
	cluster *openbaov1alpha1.OpenBaoCluster
}

// retry runs call and, when the server rejected the token, logs in again and runs it once
// more.
func (s *sessionClient) retry(ctx context.Context, call func() error) error {
	used := s.Session()
	err := call()
	if !errors.Is(err, openbao.ErrPermissionDenied) {
		return err
	}
	if lerr := s.o.relogin(ctx, s.cluster, s.Client, used); lerr != nil {
		return errors.Join(err, lerr)
	}
	return call()
}

func (s *sessionClient) RaftConfiguration(ctx context.Context) (out []openbao.RaftServer, err error) {
	err = s.retry(ctx, func() error { out, err = s.Client.RaftConfiguration(ctx); return err })
	return out, err
}

func (s *sessionClient) AutopilotState(ctx context.Context) (out *openbao.AutopilotState, err error) {
	err = s.retry(ctx, func() error { out, err = s.Client.AutopilotState(ctx); return err })
	return out, err
}

func (s *sessionClient) VersionHistory(ctx context.Context) (out []openbao.VersionEntry, err error) {
	err = s.retry(ctx, func() error { out, err = s.Client.VersionHistory(ctx); return err })
	return out, err
}

func (s *sessionClient) StepDown(ctx context.Context) error {
	return s.retry(ctx, func() error { return s.Client.StepDown(ctx) })
}

func (s *sessionClient) Promote(ctx context.Context, nodeID string) error {
	return s.retry(ctx, func() error { return s.Client.Promote(ctx, nodeID) })
}

func (s *sessionClient) RemovePeer(ctx context.Context, nodeID string) error {
	return s.retry(ctx, func() error { return s.Client.RemovePeer(ctx, nodeID) })
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
