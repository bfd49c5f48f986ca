// Package openbao is the only code of the operator that speaks OpenBao's API. It wraps
// github.com/openbao/openbao/api/v2 behind a small Client interface with domain verbs, typed
// errors and an IsTransient helper, so that upgrade strategies can be tested against
// pkg/openbao/fake and the real server alike.
//
// Behaviours of OpenBao the types here encode, measured with the official 2.6.2 and 2.7.2
// binaries (raft storage, static seal, TLS, 3 nodes on loopback):
//
//   - sys/health answers 200 active, 429 standby, 501 not initialized, 503 sealed (473
//     performance standby does not occur in OpenBao); the body is the same JSON in every case.
//   - sys/leader needs no token and reports is_self, the active node's address and the
//     asked node's raft_committed_index/raft_applied_index.
//   - Autopilot reports healthy=false (or no verdict at all) until its servers have been
//     stable for server_stabilization_time; so Healthy is a *bool and "not yet known" is
//     never read as healthy.
//   - sys/step-down needs update and sudo; it answers 204 at once and leadership moves about
//     half a second later, if a healthy voter can take over; a standby forwards it.
//   - promote of a voter answers 500 "server is not a non-voter"; remove-peer and demote of an
//     unknown id answer 204: check RaftConfiguration afterwards instead of the answer.
//   - A node joined with retry_join_as_non_voter shows node_type "non-voter" in autopilot and
//     stays a non-voter until promoted; promote and demote show in the Raft configuration
//     within autopilot's ~10 s cycle.
//   - Only the active node serves sys/storage/raft/snapshot; a standby answers 307 to the
//     active node's api_addr (BAO_API_ADDR), which the client follows with the same TLS
//     server name: the server certificate must hold every pod's name (the headless
//     Service's wildcard). Logins and the other calls work on a standby (forwarded).
//   - An uninitialized node, and a node whose static seal key does not match its data,
//     answer API calls with 503 "Vault is sealed" (ErrSealed); sys/health says 501 and 503.
//   - Three nodes on loopback: all unsealed ~10.5 s after start, autopilot healthy with three
//     voters after ~30 s; a step-down moved leadership in ~0.8 s.
package openbao

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"time"

	"github.com/openbao/openbao/api/v2"
)

// DefaultTimeout bounds each request but Snapshot when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// Client is what the operator does with an OpenBao server. Each Client talks to one server;
// a standby forwards what only the active server can do.
type Client interface {
	// Address is the server's API address.
	Address() string
	// Health reads sys/health without a token; every status code it answers with is a
	// state, not an error.
	Health(ctx context.Context) (*HealthStatus, error)
	// Leader reads sys/leader without a token.
	Leader(ctx context.Context) (*LeaderStatus, error)
	// LoginJWT logs in to the JWT auth method at mount with role and jwt and keeps the token
	// for the next calls. Neither the JWT nor the token is ever logged or put into errors.
	LoginJWT(ctx context.Context, mount, role, jwt string) error
	// Session is the token the client sends and, for a token from LoginJWT, when it
	// expires; zero when the client has no token.
	Session() Session
	// UseSession makes the client send a token obtained earlier by a client of the same
	// OpenBao cluster (tokens are valid on every server of it), instead of logging in again.
	UseSession(s Session)
	// RenewSelf renews the client's token (auth/token/renew-self) for the lifetime its role
	// gives, capped by the role's maximum; Session then tells the new expiry. A token past
	// its maximum lifetime, revoked or expired is refused (ErrPermissionDenied).
	RenewSelf(ctx context.Context) error
	// RaftConfiguration lists the Raft peers, sorted by node ID.
	RaftConfiguration(ctx context.Context) ([]RaftServer, error)
	// AutopilotState reads autopilot's view of the cluster.
	AutopilotState(ctx context.Context) (*AutopilotState, error)
	// VersionHistory lists every version the cluster has run, oldest first.
	VersionHistory(ctx context.Context) ([]VersionEntry, error)
	// StepDown asks the active server to give up leadership. A nil error does not mean that
	// leadership moved: poll Health or Leader.
	StepDown(ctx context.Context) error
	// Promote makes a non-voter a voter.
	Promote(ctx context.Context, nodeID string) error
	// RemovePeer removes a server from the Raft configuration.
	RemovePeer(ctx context.Context, nodeID string) error
	// Snapshot writes a Raft snapshot to w and checks that it is complete.
	Snapshot(ctx context.Context, w io.Writer) error
	// RestoreSnapshot installs the Raft snapshot that open yields, through the active
	// server (snapshot-force when force: a snapshot of another cluster). OpenBao answers
	// once it has read and checked the whole archive, and applies it afterwards, in the
	// background: poll Health to see the server back. open is called again when a standby
	// redirects the request to the active server.
	RestoreSnapshot(ctx context.Context, open func() (io.ReadCloser, error), force bool) error
	// CheckToken looks the client's token up (auth/token/lookup-self, granted by the default
	// policy): nil while the token exists, ErrPermissionDenied once it does not, such as
	// after a snapshot from before the login was restored.
	CheckToken(ctx context.Context) error
	// SetJWTAuthConfig replaces the JWT auth method's configuration with the issuer and the
	// validation keys of cfg. A write replaces the whole configuration: the issuer must be
	// sent again, or OpenBao would stop checking it.
	SetJWTAuthConfig(ctx context.Context, mount string, cfg JWTAuthConfig) error
}

// JWTAuthConfig is the part of a JWT auth method's configuration the operator manages: the
// issuer tokens must come from and the PEM public keys that verify their signatures.
type JWTAuthConfig struct {
	BoundIssuer          string
	JWTValidationPubKeys []string
}

// Session is a token and when it expires (zero when the server did not say).
type Session struct {
	Token   string
	Expires time.Time
	// TTL is the lifetime the server granted at the last login or renewal.
	TTL time.Duration
	// Renewable says whether the server allows renewing the token.
	Renewable bool
}

// String never shows the token, so that a Session printed or logged by mistake leaks
// nothing.
func (s Session) String() string {
	if s.Token == "" {
		return "openbao.Session{none}"
	}
	return "openbao.Session{token redacted, expires " + s.Expires.UTC().Format(time.RFC3339) + "}"
}

// GoString is String, for %#v.
func (s Session) GoString() string { return s.String() }

// Config says how to reach one server.
type Config struct {
	// Address is the server's API URL, such as https://10.1.2.3:8200 (see PodAddress).
	Address string
	// CACertPEM is the CA that signed the server's certificate.
	CACertPEM []byte
	// TLSServerName is the name the certificate is checked against, such as the pod's DNS
	// name, when Address holds an IP.
	TLSServerName string
	// Timeout of each request but Snapshot; DefaultTimeout when zero.
	Timeout time.Duration
	// Token is an optional initial token.
	Token string
}

// NewFunc creates a Client; strategies take one so that tests can pass the fake's.
type NewFunc func(Config) (Client, error)

var _ NewFunc = New

// PodAddress is the API URL of a server at ip (IPv4 or IPv6) and port.
func PodAddress(ip string, port int) string {
	return "https://" + net.JoinHostPort(ip, strconv.Itoa(port))
}

// HealthStatus is a server's answer to sys/health.
type HealthStatus struct {
	// StatusCode is the HTTP code: 200 active, 429 standby, 473 performance standby,
	// 501 not initialized, 503 sealed.
	StatusCode  int
	Initialized bool
	Sealed      bool
	Standby     bool
	// PerformanceStandby is never true with OpenBao.
	PerformanceStandby bool
	Version            string
	ClusterName        string
	ClusterID          string
	ServerTime         time.Time
}

// Active says whether the server is the initialized, unsealed active node.
func (h *HealthStatus) Active() bool {
	return h.Initialized && !h.Sealed && !h.Standby && !h.PerformanceStandby
}

// Serving says whether the server is initialized and unsealed, active or standby.
func (h *HealthStatus) Serving() bool { return h.Initialized && !h.Sealed }

// LeaderStatus is a server's answer to sys/leader.
type LeaderStatus struct {
	HAEnabled bool
	// IsSelf is true on the active server.
	IsSelf               bool
	LeaderAddress        string
	LeaderClusterAddress string
	ActiveTime           time.Time
	// RaftCommittedIndex and RaftAppliedIndex are those of the server asked: a server has
	// caught up when its applied index reaches the leader's committed index.
	RaftCommittedIndex uint64
	RaftAppliedIndex   uint64
}

// RaftServer is one peer of the Raft configuration.
type RaftServer struct {
	NodeID  string
	Address string
	Leader  bool
	Voter   bool
}

// AutopilotState is autopilot's view of the cluster.
type AutopilotState struct {
	// Healthy is nil while autopilot has no verdict (right after the cluster formed).
	Healthy          *bool
	FailureTolerance int
	Leader           string
	Voters           []string
	NonVoters        []string
	// Servers, sorted by ID.
	Servers []AutopilotServer
}

// IsHealthy is true only when autopilot has said the cluster is healthy.
func (s *AutopilotState) IsHealthy() bool { return s.Healthy != nil && *s.Healthy }

// Server returns the server with this node ID.
func (s *AutopilotState) Server(id string) (AutopilotServer, bool) {
	for _, srv := range s.Servers {
		if srv.ID == id {
			return srv, true
		}
	}
	return AutopilotServer{}, false
}

// AutopilotServer is one server as autopilot sees it.
type AutopilotServer struct {
	ID          string
	Name        string
	Address     string
	NodeStatus  string
	Healthy     bool
	LastContact string
	LastTerm    uint64
	LastIndex   uint64
	StableSince time.Time
	// Status is leader, voter or non-voter.
	Status         string
	Version        string
	UpgradeVersion string
	// NodeType is voter or non-voter ("non-voter" for servers that joined with
	// retry_join_as_non_voter).
	NodeType string
}

// VersionEntry is one version the cluster has run.
type VersionEntry struct {
	Version         string
	PreviousVersion string
	InstalledAt     time.Time
	BuildDate       string
}

type client struct {
	api     *api.Client
	address string
	timeout time.Duration
	// expires is when the token from the last login or renewal expires, ttl the lifetime
	// that login or renewal granted, renewable whether the server allows a renewal.
	expires   time.Time
	ttl       time.Duration
	renewable bool
}

// New creates a Client for one server. It reads no environment variable: the address, the
// CA and the token come from cfg only.
func New(cfg Config) (Client, error) {
	if cfg.Address == "" {
		return nil, errors.New("openbao client: Address is required")
	}
	if len(cfg.CACertPEM) == 0 {
		return nil, errors.New("openbao client: CACertPEM is required")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := api.DefaultConfig()
	if c.Error != nil {
		return nil, fmt.Errorf("openbao client: %w", c.Error)
	}
	c.Address = cfg.Address
	// Requests are bounded by their context; a snapshot may take longer than any fixed limit.
	c.Timeout = 0
	c.HttpClient.Timeout = 0
	// The operator retries on its own schedule; the library's retries would hide a down pod.
	c.MaxRetries = 0
	transport, err := transports.get(cfg.CACertPEM, cfg.TLSServerName)
	if err != nil {
		return nil, fmt.Errorf("openbao client: configure TLS: %w", err)
	}
	c.HttpClient = &http.Client{Transport: transport, CheckRedirect: c.HttpClient.CheckRedirect}
	ac, err := api.NewClient(c)
	if err != nil {
		return nil, fmt.Errorf("openbao client: %w", err)
	}
	// NewClient takes a token from the environment; the operator's must come from cfg.
	ac.ClearToken()
	if cfg.Token != "" {
		ac.SetToken(cfg.Token)
	}
	return &client{api: ac, address: cfg.Address, timeout: timeout}, nil
}

func (c *client) Address() string { return c.address }

func (c *client) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.timeout)
}

func (c *client) Health(ctx context.Context) (*HealthStatus, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	r := c.api.NewRequest(http.MethodGet, "/v1/sys/health")
	resp, err := c.api.RawRequestWithContext(ctx, r)
	if resp == nil {
		return nil, classify("health", err)
	}
	defer resp.Body.Close() //nolint:errcheck
	// sys/health answers 429, 473, 501 and 503 with the same body as 200: they are states.
	switch resp.StatusCode {
	case http.StatusOK, http.StatusTooManyRequests, 473, http.StatusNotImplemented, http.StatusServiceUnavailable:
	default:
		return nil, classify("health", err)
	}
	var body struct {
		Initialized        bool   `json:"initialized"`
		Sealed             bool   `json:"sealed"`
		Standby            bool   `json:"standby"`
		PerformanceStandby bool   `json:"performance_standby"`
		Version            string `json:"version"`
		ClusterName        string `json:"cluster_name"`
		ClusterID          string `json:"cluster_id"`
		ServerTimeUTC      int64  `json:"server_time_utc"`
	}
	if err := resp.DecodeJSON(&body); err != nil {
		return nil, &Error{Op: "health", StatusCode: resp.StatusCode, Kind: ErrUnexpectedResponse, Messages: []string{err.Error()}}
	}
	h := &HealthStatus{
		StatusCode:         resp.StatusCode,
		Initialized:        body.Initialized,
		Sealed:             body.Sealed,
		Standby:            body.Standby,
		PerformanceStandby: body.PerformanceStandby || resp.StatusCode == 473,
		Version:            body.Version,
		ClusterName:        body.ClusterName,
		ClusterID:          body.ClusterID,
	}
	if body.ServerTimeUTC > 0 {
		h.ServerTime = time.Unix(body.ServerTimeUTC, 0).UTC()
	}
	return h, nil
}

func (c *client) Leader(ctx context.Context) (*LeaderStatus, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	l, err := c.api.Sys().LeaderWithContext(ctx)
	if err != nil {
		return nil, classify("leader", err)
	}
	return &LeaderStatus{
		HAEnabled:            l.HAEnabled,
		IsSelf:               l.IsSelf,
		LeaderAddress:        l.LeaderAddress,
		LeaderClusterAddress: l.LeaderClusterAddress,
		ActiveTime:           l.ActiveTime,
		RaftCommittedIndex:   l.RaftCommittedIndex,
		RaftAppliedIndex:     l.RaftAppliedIndex,
	}, nil
}

func (c *client) LoginJWT(ctx context.Context, mount, role, jwt string) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if mount == "" || role == "" || jwt == "" {
		return errors.New("jwt login: mount, role and jwt are required")
	}
	// Log in with a clone so that a stale token is not sent along with the login.
	login, err := c.api.Clone()
	if err != nil {
		return fmt.Errorf("jwt login: %w", err)
	}
	login.ClearToken()
	secret, err := login.Logical().WriteWithContext(ctx, "auth/"+mount+"/login", map[string]any{"role": role, "jwt": jwt})
	if err != nil {
		return classify("jwt login as role "+role, loginError(err))
	}
	if secret == nil || secret.Auth == nil || secret.Auth.ClientToken == "" {
		return &Error{Op: "jwt login as role " + role, Kind: ErrUnexpectedResponse, Messages: []string{"no token in the answer"}}
	}
	c.api.SetToken(secret.Auth.ClientToken)
	c.setLease(secret.Auth)
	return nil
}

// setLease keeps the lifetime a login or a renewal granted.
func (c *client) setLease(auth *api.SecretAuth) {
	c.expires, c.ttl = time.Time{}, 0
	c.renewable = auth.Renewable
	if auth.LeaseDuration > 0 {
		c.ttl = time.Duration(auth.LeaseDuration) * time.Second
		c.expires = time.Now().Add(c.ttl)
	}
}

func (c *client) RenewSelf(ctx context.Context) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if c.api.Token() == "" {
		return errors.New("renew the token: the client has no token")
	}
	secret, err := c.api.Auth().Token().RenewSelfWithContext(ctx, 0)
	if err != nil {
		return classify("renew the token", err)
	}
	if secret == nil || secret.Auth == nil {
		return &Error{Op: "renew the token", Kind: ErrUnexpectedResponse, Messages: []string{"no lease in the answer"}}
	}
	c.setLease(secret.Auth)
	return nil
}

func (c *client) Session() Session {
	return Session{Token: c.api.Token(), Expires: c.expires, TTL: c.ttl, Renewable: c.renewable}
}

func (c *client) UseSession(s Session) {
	c.api.SetToken(s.Token)
	c.expires, c.ttl, c.renewable = s.Expires, s.TTL, s.Renewable
}

// loginError reports a refused login (400 or 403 from the auth method: wrong audience,
// subject, issuer or signature) as ErrLoginRefused.
func loginError(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) && (re.StatusCode == http.StatusBadRequest || re.StatusCode == http.StatusForbidden) {
		return &Error{StatusCode: re.StatusCode, Kind: ErrLoginRefused, Messages: re.Errors}
	}
	return err
}

func (c *client) RaftConfiguration(ctx context.Context) ([]RaftServer, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	secret, err := c.api.Logical().ReadWithContext(ctx, "sys/storage/raft/configuration")
	if err != nil {
		return nil, classify("read raft configuration", err)
	}
	var body struct {
		Config struct {
			Servers []struct {
				NodeID  string `json:"node_id"`
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
				Voter   bool   `json:"voter"`
			} `json:"servers"`
		} `json:"config"`
	}
	if err := decodeData(secret, &body); err != nil {
		return nil, &Error{Op: "read raft configuration", Kind: ErrUnexpectedResponse, Messages: []string{err.Error()}}
	}
	out := make([]RaftServer, 0, len(body.Config.Servers))
	for _, s := range body.Config.Servers {
		out = append(out, RaftServer{NodeID: s.NodeID, Address: s.Address, Leader: s.Leader, Voter: s.Voter})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

func (c *client) AutopilotState(ctx context.Context) (*AutopilotState, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	secret, err := c.api.Logical().ReadWithContext(ctx, "sys/storage/raft/autopilot/state")
	if err != nil {
		return nil, classify("read autopilot state", err)
	}
	var body struct {
		Healthy          *bool    `json:"healthy"`
		FailureTolerance int      `json:"failure_tolerance"`
		Leader           string   `json:"leader"`
		Voters           []string `json:"voters"`
		NonVoters        []string `json:"non_voters"`
		Servers          map[string]struct {
			ID             string `json:"id"`
			Name           string `json:"name"`
			Address        string `json:"address"`
			NodeStatus     string `json:"node_status"`
			Healthy        bool   `json:"healthy"`
			LastContact    string `json:"last_contact"`
			LastTerm       uint64 `json:"last_term"`
			LastIndex      uint64 `json:"last_index"`
			StableSince    string `json:"stable_since"`
			Status         string `json:"status"`
			Version        string `json:"version"`
			UpgradeVersion string `json:"upgrade_version"`
			NodeType       string `json:"node_type"`
		} `json:"servers"`
	}
	if err := decodeData(secret, &body); err != nil {
		return nil, &Error{Op: "read autopilot state", Kind: ErrUnexpectedResponse, Messages: []string{err.Error()}}
	}
	st := &AutopilotState{
		Healthy:          body.Healthy,
		FailureTolerance: body.FailureTolerance,
		Leader:           body.Leader,
		Voters:           body.Voters,
		NonVoters:        body.NonVoters,
	}
	for id, s := range body.Servers {
		srv := AutopilotServer{
			ID: s.ID, Name: s.Name, Address: s.Address, NodeStatus: s.NodeStatus, Healthy: s.Healthy,
			LastContact: s.LastContact, LastTerm: s.LastTerm, LastIndex: s.LastIndex, Status: s.Status,
			Version: s.Version, UpgradeVersion: s.UpgradeVersion, NodeType: s.NodeType,
		}
		if srv.ID == "" {
			srv.ID = id
		}
		if t, err := time.Parse(time.RFC3339Nano, s.StableSince); err == nil {
			srv.StableSince = t
		}
		st.Servers = append(st.Servers, srv)
	}
	sort.Slice(st.Servers, func(i, j int) bool { return st.Servers[i].ID < st.Servers[j].ID })
	return st, nil
}

func (c *client) VersionHistory(ctx context.Context) ([]VersionEntry, error) {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	secret, err := c.api.Logical().ListWithContext(ctx, "sys/version-history")
	if err != nil {
		return nil, classify("list version history", err)
	}
	var body struct {
		Keys    []string `json:"keys"`
		KeyInfo map[string]struct {
			PreviousVersion    string `json:"previous_version"`
			TimestampInstalled string `json:"timestamp_installed"`
			BuildDate          string `json:"build_date"`
		} `json:"key_info"`
	}
	if err := decodeData(secret, &body); err != nil {
		return nil, &Error{Op: "list version history", Kind: ErrUnexpectedResponse, Messages: []string{err.Error()}}
	}
	out := make([]VersionEntry, 0, len(body.Keys))
	for _, v := range body.Keys {
		info := body.KeyInfo[v]
		e := VersionEntry{Version: v, PreviousVersion: info.PreviousVersion, BuildDate: info.BuildDate}
		if t, err := time.Parse(time.RFC3339Nano, info.TimestampInstalled); err == nil {
			e.InstalledAt = t
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].InstalledAt.Before(out[j].InstalledAt) })
	return out, nil
}

func (c *client) StepDown(ctx context.Context) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if err := c.api.Sys().StepDownWithContext(ctx); err != nil {
		return classify("step down", err)
	}
	return nil
}

func (c *client) Promote(ctx context.Context, nodeID string) error {
	return c.raftMembership(ctx, "promote", nodeID)
}

func (c *client) RemovePeer(ctx context.Context, nodeID string) error {
	return c.raftMembership(ctx, "remove-peer", nodeID)
}

func (c *client) raftMembership(ctx context.Context, verb, nodeID string) error {
	if nodeID == "" {
		return fmt.Errorf("raft %s: node ID is required", verb)
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if _, err := c.api.Logical().WriteWithContext(ctx, "sys/storage/raft/"+verb, map[string]any{"server_id": nodeID}); err != nil {
		return classify("raft "+verb+" "+nodeID, err)
	}
	return nil
}

func (c *client) SetJWTAuthConfig(ctx context.Context, mount string, cfg JWTAuthConfig) error {
	if mount == "" || cfg.BoundIssuer == "" || len(cfg.JWTValidationPubKeys) == 0 {
		return errors.New("write jwt auth config: mount, issuer and at least one key are required")
	}
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if _, err := c.api.Logical().WriteWithContext(ctx, "auth/"+mount+"/config", map[string]any{
		"bound_issuer":           cfg.BoundIssuer,
		"jwt_validation_pubkeys": cfg.JWTValidationPubKeys,
	}); err != nil {
		return classify("write auth/"+mount+"/config", err)
	}
	return nil
}

// Snapshot streams sys/storage/raft/snapshot to w. Only the active server serves it; a
// standby answers 307 to the active server's api_addr. The api library's own snapshot call
// drops the answer of the redirected request (api/v2 v2.7.1), so the request is made here
// and follows one redirect with the same TLS settings. The archive is checked to end with
// its sealed SHA256SUMS file, as OpenBao's CLI does.
func (c *client) Snapshot(ctx context.Context, w io.Writer) error {
	const op = "raft snapshot"
	cfg := c.api.CloneConfig()
	target, err := url.Parse(c.address + "/v1/sys/storage/raft/snapshot")
	if err != nil {
		return &Error{Op: op, Kind: ErrBadRequest, cause: err}
	}
	var resp *http.Response
	for redirects := 0; ; redirects++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return &Error{Op: op, Kind: ErrBadRequest, cause: err}
		}
		if token := c.api.Token(); token != "" {
			req.Header.Set(api.AuthHeaderName, token)
		}
		resp, err = cfg.HttpClient.Do(req)
		if err != nil {
			return classify(op, err)
		}
		if resp.StatusCode != http.StatusTemporaryRedirect || redirects > 0 {
			break
		}
		loc, err := resp.Location()
		_ = resp.Body.Close()
		if err != nil || loc.Scheme != "https" {
			return &Error{Op: op, StatusCode: resp.StatusCode, Kind: ErrUnexpectedResponse, Messages: []string{"redirect to a non-https location"}}
		}
		target = loc
	}
	defer resp.Body.Close() //nolint:errcheck
	if resp.StatusCode != http.StatusOK {
		return classify(op, (&api.Response{Response: resp}).Error())
	}

	pr, pw := io.Pipe()
	verified := make(chan bool, 1)
	go func() {
		ok := snapshotComplete(pr)
		_, _ = io.Copy(io.Discard, pr)
		verified <- ok
	}()
	_, copyErr := io.Copy(io.MultiWriter(w, pw), resp.Body)
	_ = pw.CloseWithError(copyErr)
	ok := <-verified
	if copyErr != nil {
		return classify(op, copyErr)
	}
	if !ok {
		return &Error{Op: op, Kind: ErrUnexpectedResponse, Messages: []string{"incomplete snapshot: no sealed SHA256SUMS file at its end"}}
	}
	return nil
}

// RestoreSnapshot posts the snapshot to sys/storage/raft/snapshot(-force). A standby answers
// 307 to the active server's api_addr for these paths (OpenBao never forwards them); the
// request asks for "100-continue", so that the redirect comes before any of the body is
// sent, and is repeated once at the new location with a body opened again. OpenBao reads
// the whole archive into a temporary file and checks it (SHA256SUMS, and unless forced the
// sealed SHA256SUMS against its seal) before it answers 204; a refusal (400) changes
// nothing.
func (c *client) RestoreSnapshot(ctx context.Context, open func() (io.ReadCloser, error), force bool) error {
	op := "raft snapshot restore"
	path := "/v1/sys/storage/raft/snapshot"
	if force {
		op, path = "raft snapshot restore (forced)", "/v1/sys/storage/raft/snapshot-force"
	}
	cfg := c.api.CloneConfig()
	target, err := url.Parse(c.address + path)
	if err != nil {
		return &Error{Op: op, Kind: ErrBadRequest, cause: err}
	}
	for redirects := 0; ; redirects++ {
		body, err := open()
		if err != nil {
			return fmt.Errorf("%s: open the snapshot: %w", op, err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target.String(), body)
		if err != nil {
			_ = body.Close()
			return &Error{Op: op, Kind: ErrBadRequest, cause: err}
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Expect", "100-continue")
		if token := c.api.Token(); token != "" {
			req.Header.Set(api.AuthHeaderName, token)
		}
		// The http client closes the body.
		resp, err := cfg.HttpClient.Do(req)
		if err != nil {
			return classify(op, err)
		}
		if resp.StatusCode == http.StatusTemporaryRedirect && redirects == 0 {
			loc, lerr := resp.Location()
			_ = resp.Body.Close()
			if lerr != nil || loc.Scheme != "https" {
				return &Error{Op: op, StatusCode: resp.StatusCode, Kind: ErrUnexpectedResponse, Messages: []string{"redirect to a non-https location"}}
			}
			target = loc
			continue
		}
		defer resp.Body.Close() //nolint:errcheck
		if resp.StatusCode/100 != 2 {
			return classify(op, (&api.Response{Response: resp}).Error())
		}
		return nil
	}
}

func (c *client) CheckToken(ctx context.Context) error {
	ctx, cancel := c.bounded(ctx)
	defer cancel()
	if _, err := c.api.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return classify("token lookup-self", err)
	}
	return nil
}

// snapshotComplete reads a gzipped tar archive and says whether it holds a non-empty
// SHA256SUMS.sealed file.
func snapshotComplete(r io.Reader) bool {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return false
	}
	tr := tar.NewReader(gz)
	for {
		h, err := tr.Next()
		if err != nil {
			return false
		}
		if h.Name != "SHA256SUMS.sealed" {
			continue
		}
		b, err := io.ReadAll(tr)
		return err == nil && len(b) > 0
	}
}

// decodeData re-decodes a response's data into out, which uses JSON tags.
func decodeData(secret *api.Secret, out any) error {
	if secret == nil || secret.Data == nil {
		return errors.New("empty answer")
	}
	raw, err := json.Marshal(secret.Data)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, out)
}
