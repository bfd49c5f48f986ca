// Package fake simulates the servers of one OpenBao cluster behind openbao.Client, for
// unit tests of upgrade strategies. It keeps the state that strategies observe (who is
// active, sealed, a voter, which version runs, how far each server has applied the log) and
// changes it the way OpenBao does: StepDown moves leadership to another healthy voter (and
// leaves the cluster without a leader for a while when that voter runs an older version than
// a majority of the voters), Promote of a voter fails with a 500 and, with a PromotionDelay,
// a promotion shows only once that time has passed on the cluster's Clock (autopilot applies
// it on its next cycle), RemovePeer of an unknown ID succeeds. Autopilot's verdicts are
// derived from the servers' state, as OpenBao derives them (see AutopilotState). It records
// every call; errors can be injected per method and server.
//
// What sys/storage/raft/autopilot/state reports, measured with three OpenBao 2.7.2 servers
// (raft storage, static seal, TLS, loopback; autopilot's defaults: last_contact_threshold
// 10s, max_trailing_logs 1000, server_stabilization_time 10s). The steps of the shared
// scenario that pkg/openbao's TestAutopilotScenarioOnRealServers runs on real servers and
// on this fake gave the same answers on 2.6.2 and 2.7.2:
//   - All healthy: healthy=true, failure_tolerance 1 with three voters and also with four.
//   - failure_tolerance is the number of healthy voters minus a quorum of the voters (never
//     below 0): three voters with one down, 0; four voters with one down, 0; a lone voter, 0.
//   - healthy (the overall verdict) is false as soon as any server of the configuration is
//     unhealthy, non-voters included: a non-voter that is still joining makes it false while
//     failure_tolerance stays 1.
//   - A follower stopped (SIGTERM) stays healthy, node_status "alive", until autopilot has had
//     no contact with it for last_contact_threshold: its healthy flag and the overall verdict
//     turned false 10-11 s after the stop. Restarted, it was healthy again 3-5 s later. A dead
//     server is never removed by itself (dead server cleanup is off by default).
//   - A follower restarted sealed (a static seal key that no longer matches) looks the same as
//     a stopped one: "alive", its last index frozen, unhealthy once the last contact is older
//     than 10 s.
//   - A follower that trails the leader by more than max_trailing_logs is unhealthy even with
//     fresh contact (2,662 entries behind with a contact 0.24 s old: unhealthy); one 680
//     entries behind stayed healthy. A frozen follower (SIGSTOP) turned unhealthy after 10 s
//     without contact and healthy again within 10 s of resuming, once it had caught up.
//   - A server joining as a non-voter is listed at once with last_index 0 and healthy=false
//     (autopilot has no statistics from it yet) for about 8 s, then healthy; it stays a
//     non-voter until promoted. A promotion showed in the voters 1.5-5.6 s after the request.
//   - Right after a cluster forms, the followers are "non-voter" (node_type voter) until
//     autopilot promotes them after server_stabilization_time; healthy=true with one voter.
//   - Autopilot's state follows the Raft configuration on its next update, a few seconds
//     later: right after the cluster formed, a server joined or was promoted, the
//     configuration shows the change while autopilot's voters, failure_tolerance and
//     verdict still describe the cluster before it (a server just joined is not listed yet,
//     and the verdict stays true until it is). The fake's autopilot follows at once.
//   - Right after a step-down the new leader's autopilot reports the others node_status
//     "left", last_index 0, unhealthy for about 1.5 s; a step-down sent while autopilot calls
//     the cluster unhealthy (one of four voters down) still moved leadership.
package fake

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/blang/semver/v4"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

// Node is one simulated server.
type Node struct {
	// ID is the Raft node ID (the pod name).
	ID string
	// Address is the API address clients are created with.
	Address     string
	Version     string
	Initialized bool
	Sealed      bool
	// Down makes every call to the server fail as unreachable.
	Down bool
	// Member says the server is in the Raft configuration.
	Member bool
	Voter  bool
	// AppliedIndex is how far the server has applied the Raft log. 0 stands for a server
	// that autopilot has no statistics from yet (one that is joining): it reports such a
	// server with last_index 0 and unhealthy.
	AppliedIndex uint64

	// promoteAt is when a requested promotion takes effect (zero: none pending).
	promoteAt time.Time
	// unreachableSince is when the server went down or sealed (zero: reachable, or out of
	// reach since before autopilot's leader knew it).
	unreachableSince time.Time
}

// MaxTrailingLogs is autopilot's max_trailing_logs (OpenBao's default): a server that trails
// the leader's last index by more entries is unhealthy.
const MaxTrailingLogs = 1000

// Call is one recorded call. Args never holds a JWT or a token.
type Call struct {
	Address string
	Method  string
	Args    []string
}

type injected struct {
	method, address string
	err             error
	times           int
}

// Cluster is the simulated cluster.
type Cluster struct {
	mu           sync.Mutex
	nodes        map[string]*Node // by ID
	leader       string
	commitIndex  uint64
	history      []openbao.VersionEntry
	calls        []Call
	inject       []*injected
	refuseLogins bool
	jwtAuth      openbao.JWTAuthConfig
	// StepDownMovesLeadership, true by default, can be cleared to simulate a step-down that
	// answers 204 and leaves the same server active.
	StepDownMovesLeadership bool
	// LeaderlessCalls is how many calls see no leader after an election the standing
	// candidate could not win (2 by default).
	LeaderlessCalls int
	// PromotionDelay is how long a promoted server stays a non-voter (0 by default: at
	// once). OpenBao answers a promotion at once and autopilot applies it on its next
	// cycle, about 10 s later.
	PromotionDelay time.Duration
	// LastContactThreshold is how long autopilot still calls a server that went down or
	// sealed healthy (0 by default: not at all). OpenBao's default is 10 s: autopilot judges
	// a server by its last contact, which it only notices as too old after that time.
	LastContactThreshold time.Duration
	// Clock tells the time for PromotionDelay and LastContactThreshold (time.Now when nil).
	Clock func() time.Time
	// electing is set while no candidate has won: leaderlessFor counts the calls down, lost
	// is the leader that was lost.
	electing      bool
	leaderlessFor int
	lost          string
}

var _ openbao.NewFunc = (&Cluster{}).NewClient

// NewCluster returns an empty cluster.
func NewCluster() *Cluster {
	return &Cluster{nodes: map[string]*Node{}, StepDownMovesLeadership: true, LeaderlessCalls: 2, commitIndex: 100}
}

// AddNode adds a server (a copy of n) and returns the cluster for chaining. The first
// initialized, unsealed voter becomes the leader.
func (c *Cluster) AddNode(n Node) *Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := n
	cp.promoteAt, cp.unreachableSince = time.Time{}, time.Time{}
	c.nodes[n.ID] = &cp
	if c.leader == "" && cp.Initialized && !cp.Sealed && cp.Voter && cp.Member {
		c.leader = cp.ID
	}
	return c
}

// NewHealthyCluster has n initialized, unsealed, caught-up voters <prefix>-0 … at version,
// addressed https://<prefix>-<i>:8200, with <prefix>-0 the leader.
func NewHealthyCluster(prefix string, n int, version string) *Cluster {
	c := NewCluster()
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		c.AddNode(Node{ID: id, Address: "https://" + id + ":8200", Version: version, Initialized: true,
			Member: true, Voter: true, AppliedIndex: 100})
	}
	c.history = []openbao.VersionEntry{{Version: version, InstalledAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}}
	return c
}

// Update changes a server's state.
func (c *Cluster) Update(id string, change func(n *Node)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyPromotionsLocked()
	n, ok := c.nodes[id]
	if !ok {
		panic("fake: no node " + id)
	}
	wasReachable := n.reachable()
	change(n)
	switch reachable := n.reachable(); {
	case wasReachable && !reachable:
		n.unreachableSince = c.now()
	case reachable:
		n.unreachableSince = time.Time{}
	}
	if c.leader == id && (n.Down || n.Sealed || !n.Member) {
		c.leader = ""
		c.electLocked("")
	}
}

// reachable says whether the server answers Raft: it runs and is unsealed.
func (n *Node) reachable() bool { return n.Initialized && !n.Sealed && !n.Down }

// healthyLocked is autopilot's verdict on a server, derived from its state as OpenBao
// derives it: the leader is healthy; a follower is unhealthy once autopilot has had no
// contact with it for LastContactThreshold (down or sealed), while it has sent no
// statistics yet (joining, AppliedIndex 0), and while it trails the leader by more than
// MaxTrailingLogs entries.
func (c *Cluster) healthyLocked(n *Node) bool {
	switch {
	case !n.Member:
		return false
	case n.ID == c.leader:
		return true
	case !n.reachable():
		return !n.unreachableSince.IsZero() && c.now().Sub(n.unreachableSince) < c.LastContactThreshold
	case n.AppliedIndex == 0:
		return false
	}
	return n.AppliedIndex+MaxTrailingLogs >= c.commitIndex
}

// Healthy is autopilot's verdict on server id (false for an unknown server).
func (c *Cluster) Healthy(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyPromotionsLocked()
	n, ok := c.nodes[id]
	return ok && c.healthyLocked(n)
}

// Node returns a copy of a server's state.
func (c *Cluster) Node(id string) (Node, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyPromotionsLocked()
	n, ok := c.nodes[id]
	if !ok {
		return Node{}, false
	}
	return *n, true
}

// Leader is the ID of the active server ("" when none).
func (c *Cluster) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// SetLeader makes id the active server.
func (c *Cluster) SetLeader(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = id
}

// SetCommitIndex sets the leader's committed index, as writes would advance it.
func (c *Cluster) SetCommitIndex(i uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commitIndex = i
}

// SetVersionHistory sets what VersionHistory answers.
func (c *Cluster) SetVersionHistory(h []openbao.VersionEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.history = append([]openbao.VersionEntry(nil), h...)
}

// RefuseLogins makes LoginJWT fail with ErrLoginRefused.
func (c *Cluster) RefuseLogins(refuse bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refuseLogins = refuse
}

// InjectError makes the next `times` calls of method (a Client method name) to address
// ("" for any server) fail with err.
func (c *Cluster) InjectError(method, address string, err error, times int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inject = append(c.inject, &injected{method: method, address: address, err: err, times: times})
}

// Calls returns the calls so far.
func (c *Cluster) Calls() []Call {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Call(nil), c.calls...)
}

// CallsTo returns the calls of one method.
func (c *Cluster) CallsTo(method string) []Call {
	var out []Call
	for _, call := range c.Calls() {
		if call.Method == method {
			out = append(out, call)
		}
	}
	return out
}

// NewClient is an openbao.NewFunc: a client of the server with cfg.Address. A client of an
// unknown address answers as an unreachable server.
func (c *Cluster) NewClient(cfg openbao.Config) (openbao.Client, error) {
	return &client{c: c, address: cfg.Address}, nil
}

// electLocked elects a new leader after except (the leader) stepped down or left, as Raft
// does. The first healthy voter by ID stands; a voter grants its vote only to a candidate
// on its own version or a newer one (measured on real OpenBao: servers on the new version
// reject the election of a server on the old one), and a candidate needs a majority of the
// voters. When the candidate that stands cannot win, the cluster is left without a leader
// for the next LeaderlessCalls calls; then a server that can win is elected.
func (c *Cluster) electLocked(except string) {
	candidates := c.candidatesLocked(except)
	if len(candidates) == 0 {
		return
	}
	if c.canWinLocked(candidates[0]) {
		c.setLeaderLocked(candidates[0].ID)
		return
	}
	c.leader, c.electing, c.leaderlessFor, c.lost = "", true, c.LeaderlessCalls, except
	c.electWinnerLocked()
}

// electWinnerLocked counts down a leaderless period and then elects the first candidate
// that can win.
func (c *Cluster) electWinnerLocked() {
	if c.leader != "" || !c.electing {
		return
	}
	if c.leaderlessFor > 0 {
		c.leaderlessFor--
		return
	}
	for _, n := range c.candidatesLocked(c.lost) {
		if c.canWinLocked(n) {
			c.setLeaderLocked(n.ID)
			c.electing = false
			return
		}
	}
}

// setLeaderLocked makes id the leader. Its autopilot has never heard from the servers that
// are out of reach: they are unhealthy at once.
func (c *Cluster) setLeaderLocked(id string) {
	c.leader = id
	for _, n := range c.nodes {
		if !n.reachable() {
			n.unreachableSince = time.Time{}
		}
	}
}

// candidatesLocked are the reachable voters other than except that autopilot calls healthy,
// by ID.
func (c *Cluster) candidatesLocked(except string) []*Node {
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var out []*Node
	for _, id := range ids {
		n := c.nodes[id]
		if id != except && n.Member && n.Voter && n.reachable() && c.healthyLocked(n) {
			out = append(out, n)
		}
	}
	return out
}

// canWinLocked says whether a majority of the voters would vote for candidate.
func (c *Cluster) canWinLocked(candidate *Node) bool {
	voters, votes := 0, 0
	for _, n := range c.nodes {
		if !n.Member || !n.Voter {
			continue
		}
		voters++
		if n == candidate || n.reachable() && !olderVersion(candidate.Version, n.Version) {
			votes++
		}
	}
	return votes > voters/2
}

// olderVersion says whether version a is older than b; versions that do not parse are
// taken as equal.
func olderVersion(a, b string) bool {
	va, errA := semver.Parse(a)
	vb, errB := semver.Parse(b)
	return errA == nil && errB == nil && va.LT(vb)
}

type client struct {
	c        *Cluster
	address  string
	loggedIn bool
}

func (cl *client) Address() string { return cl.address }

// begin records the call and returns the server, or the error the call must fail with.
func (cl *client) begin(method string, args ...string) (*Node, error) {
	c := cl.c
	c.calls = append(c.calls, Call{Address: cl.address, Method: method, Args: args})
	c.electWinnerLocked()
	c.applyPromotionsLocked()
	for i, inj := range c.inject {
		if inj.method == method && (inj.address == "" || inj.address == cl.address) && inj.times > 0 {
			inj.times--
			if inj.times == 0 {
				c.inject = append(c.inject[:i], c.inject[i+1:]...)
			}
			return nil, inj.err
		}
	}
	var node *Node
	for _, n := range c.nodes {
		if n.Address == cl.address {
			node = n
		}
	}
	if node == nil || node.Down {
		return nil, &openbao.Error{Op: method, Kind: openbao.ErrUnavailable}
	}
	return node, nil
}

// ready fails calls that need an initialized, unsealed server and a token.
func (cl *client) ready(method string, n *Node) error {
	switch {
	case !n.Initialized:
		return &openbao.Error{Op: method, StatusCode: http.StatusNotImplemented, Kind: openbao.ErrNotInitialized}
	case n.Sealed:
		return &openbao.Error{Op: method, StatusCode: http.StatusServiceUnavailable, Kind: openbao.ErrSealed, Messages: []string{"Vault is sealed"}}
	case !cl.loggedIn:
		return &openbao.Error{Op: method, StatusCode: http.StatusForbidden, Kind: openbao.ErrPermissionDenied}
	case cl.c.leader == "":
		return &openbao.Error{Op: method, StatusCode: http.StatusInternalServerError, Kind: openbao.ErrServer,
			Messages: []string{"local node not active but active cluster node not found"}}
	}
	return nil
}

func (cl *client) Health(ctx context.Context) (*openbao.HealthStatus, error) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("Health")
	if err != nil {
		return nil, err
	}
	h := &openbao.HealthStatus{Initialized: n.Initialized, Sealed: n.Sealed, Version: n.Version, ClusterName: "fake", ClusterID: "fake-cluster"}
	switch {
	case !n.Initialized:
		h.StatusCode, h.Sealed = 501, true
	case n.Sealed:
		h.StatusCode = 503
	case c.leader == n.ID:
		h.StatusCode = 200
	default:
		h.StatusCode, h.Standby = 429, true
	}
	return h, nil
}

func (cl *client) Leader(ctx context.Context) (*openbao.LeaderStatus, error) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("Leader")
	if err != nil {
		return nil, err
	}
	if n.Sealed || !n.Initialized {
		return nil, &openbao.Error{Op: "Leader", StatusCode: http.StatusServiceUnavailable, Kind: openbao.ErrSealed}
	}
	l := &openbao.LeaderStatus{HAEnabled: true, IsSelf: c.leader == n.ID, RaftCommittedIndex: c.commitIndex, RaftAppliedIndex: n.AppliedIndex}
	if leader, ok := c.nodes[c.leader]; ok {
		l.LeaderAddress = leader.Address
	}
	return l, nil
}

func (cl *client) LoginJWT(ctx context.Context, mount, role, jwt string) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("LoginJWT", mount, role)
	if err != nil {
		return err
	}
	if n.Sealed || !n.Initialized {
		return &openbao.Error{Op: "LoginJWT", StatusCode: http.StatusServiceUnavailable, Kind: openbao.ErrSealed}
	}
	if c.refuseLogins || jwt == "" {
		return &openbao.Error{Op: "LoginJWT", StatusCode: http.StatusBadRequest, Kind: openbao.ErrLoginRefused}
	}
	cl.loggedIn = true
	return nil
}

// Session is a token that stands for the fake's login; it has no expiry.
func (cl *client) Session() openbao.Session {
	cl.c.mu.Lock()
	defer cl.c.mu.Unlock()
	if !cl.loggedIn {
		return openbao.Session{}
	}
	return openbao.Session{Token: "fake-token"}
}

func (cl *client) UseSession(s openbao.Session) {
	cl.c.mu.Lock()
	defer cl.c.mu.Unlock()
	cl.loggedIn = s.Token != ""
}

// RenewSelf succeeds for a logged-in client; the fake's token has no expiry to extend.
func (cl *client) RenewSelf(ctx context.Context) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := cl.begin("RenewSelf"); err != nil {
		return err
	}
	if !cl.loggedIn {
		return &openbao.Error{Op: "RenewSelf", StatusCode: http.StatusForbidden, Kind: openbao.ErrPermissionDenied}
	}
	return nil
}

func (cl *client) RaftConfiguration(ctx context.Context) ([]openbao.RaftServer, error) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("RaftConfiguration")
	if err != nil {
		return nil, err
	}
	if err := cl.ready("RaftConfiguration", n); err != nil {
		return nil, err
	}
	var out []openbao.RaftServer
	for _, m := range c.nodes {
		if m.Member {
			out = append(out, openbao.RaftServer{NodeID: m.ID, Address: m.ID + ":8201", Leader: m.ID == c.leader, Voter: m.Voter})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

func (cl *client) AutopilotState(ctx context.Context) (*openbao.AutopilotState, error) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("AutopilotState")
	if err != nil {
		return nil, err
	}
	if err := cl.ready("AutopilotState", n); err != nil {
		return nil, err
	}
	return c.autopilotLocked(), nil
}

// Autopilot is the state autopilot on the active server reports, nil while there is none
// (a call to AutopilotState then fails). It records no call.
func (c *Cluster) Autopilot() *openbao.AutopilotState {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.applyPromotionsLocked()
	if c.leader == "" {
		return nil
	}
	return c.autopilotLocked()
}

// autopilotLocked derives autopilot's state from the servers'.
func (c *Cluster) autopilotLocked() *openbao.AutopilotState {
	st := &openbao.AutopilotState{Leader: c.leader}
	healthy, voters, healthyVoters := true, 0, 0
	for _, m := range c.nodes {
		if !m.Member {
			continue
		}
		status, nodeType := "non-voter", "non-voter"
		serverHealthy := c.healthyLocked(m)
		healthy = healthy && serverHealthy
		if m.Voter {
			status, nodeType = "voter", "voter"
			st.Voters = append(st.Voters, m.ID)
			voters++
			if serverHealthy {
				healthyVoters++
			}
		} else {
			st.NonVoters = append(st.NonVoters, m.ID)
		}
		if m.ID == c.leader {
			status = "leader"
		}
		st.Servers = append(st.Servers, openbao.AutopilotServer{
			ID: m.ID, Name: m.ID, Address: m.ID + ":8201", NodeStatus: "alive", Healthy: serverHealthy,
			LastIndex: m.AppliedIndex, Status: status, Version: m.Version, UpgradeVersion: m.Version, NodeType: nodeType,
		})
	}
	sort.Strings(st.Voters)
	sort.Strings(st.NonVoters)
	sort.Slice(st.Servers, func(i, j int) bool { return st.Servers[i].ID < st.Servers[j].ID })
	// As OpenBao computes them: the cluster is healthy when every server is, non-voters
	// included; it tolerates as many failures as it has healthy voters beyond a quorum.
	st.Healthy = &healthy
	st.FailureTolerance = max(0, healthyVoters-(voters/2+1))
	return st
}

func (cl *client) VersionHistory(ctx context.Context) ([]openbao.VersionEntry, error) {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("VersionHistory")
	if err != nil {
		return nil, err
	}
	if err := cl.ready("VersionHistory", n); err != nil {
		return nil, err
	}
	return append([]openbao.VersionEntry(nil), c.history...), nil
}

func (cl *client) StepDown(ctx context.Context) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("StepDown")
	if err != nil {
		return err
	}
	if err := cl.ready("StepDown", n); err != nil {
		return err
	}
	// A standby forwards the request to the active server. Leadership moves only if another
	// healthy voter can take it.
	if c.StepDownMovesLeadership {
		c.electLocked(c.leader)
	}
	return nil
}

func (cl *client) Promote(ctx context.Context, nodeID string) error {
	return cl.membership("Promote", nodeID, func(m *Node) error {
		if m.Voter {
			return &openbao.Error{Op: "Promote", StatusCode: http.StatusInternalServerError, Kind: openbao.ErrServer,
				Messages: []string{"server is not a non-voter"}}
		}
		switch {
		case cl.c.PromotionDelay == 0:
			m.Voter = true
		case m.promoteAt.IsZero():
			// A second request while one is pending changes nothing: the server is still a
			// non-voter in the configuration, so OpenBao accepts it.
			m.promoteAt = cl.c.now().Add(cl.c.PromotionDelay)
		}
		return nil
	})
}

func (c *Cluster) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

// applyPromotionsLocked applies the pending promotions that are due.
func (c *Cluster) applyPromotionsLocked() {
	for _, n := range c.nodes {
		if n.promoteAt.IsZero() || c.now().Before(n.promoteAt) {
			continue
		}
		n.promoteAt = time.Time{}
		if n.Member {
			n.Voter = true
		}
	}
}

func (cl *client) RemovePeer(ctx context.Context, nodeID string) error {
	return cl.membership("RemovePeer", nodeID, func(m *Node) error {
		m.Member, m.Voter, m.promoteAt = false, false, time.Time{}
		return nil
	})
}

// membership applies change to a peer. Unknown IDs succeed, as in OpenBao.
func (cl *client) membership(method, nodeID string, change func(m *Node) error) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin(method, nodeID)
	if err != nil {
		return err
	}
	if err := cl.ready(method, n); err != nil {
		return err
	}
	m, ok := c.nodes[nodeID]
	if !ok || !m.Member {
		return nil
	}
	if err := change(m); err != nil {
		return err
	}
	if nodeID == c.leader && !m.Member {
		c.leader = ""
		c.electLocked(nodeID)
	}
	return nil
}

func (cl *client) Snapshot(ctx context.Context, w io.Writer) error {
	c := cl.c
	c.mu.Lock()
	n, err := cl.begin("Snapshot")
	if err == nil {
		err = cl.ready("Snapshot", n)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "fake raft snapshot\n")
	return err
}

// RestoreSnapshot reads the whole snapshot and records the call; the fake's state does not
// change.
func (cl *client) RestoreSnapshot(ctx context.Context, open func() (io.ReadCloser, error), force bool) error {
	c := cl.c
	c.mu.Lock()
	n, err := cl.begin("RestoreSnapshot")
	if err == nil {
		err = cl.ready("RestoreSnapshot", n)
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close() //nolint:errcheck
	_, err = io.Copy(io.Discard, r)
	return err
}

// CheckToken records the call; the fake's tokens never go away.
func (cl *client) CheckToken(ctx context.Context) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("CheckToken")
	if err == nil {
		err = cl.ready("CheckToken", n)
	}
	return err
}

// SetJWTAuth sets the JWT auth method's configuration, as self-initialization would.
func (c *Cluster) SetJWTAuth(cfg openbao.JWTAuthConfig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.jwtAuth = cfg
}

// JWTAuth is the JWT auth method's configuration.
func (c *Cluster) JWTAuth() openbao.JWTAuthConfig {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jwtAuth
}

// SetJWTAuthConfig records the issuer and the number of keys (never the keys themselves).
func (cl *client) SetJWTAuthConfig(ctx context.Context, mount string, cfg openbao.JWTAuthConfig) error {
	c := cl.c
	c.mu.Lock()
	defer c.mu.Unlock()
	n, err := cl.begin("SetJWTAuthConfig", mount, cfg.BoundIssuer, strconv.Itoa(len(cfg.JWTValidationPubKeys)))
	if err == nil {
		err = cl.ready("SetJWTAuthConfig", n)
	}
	if err != nil {
		return err
	}
	c.jwtAuth = openbao.JWTAuthConfig{BoundIssuer: cfg.BoundIssuer, JWTValidationPubKeys: append([]string(nil), cfg.JWTValidationPubKeys...)}
	return nil
}
