package openbao_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// The upgrade strategies decide from autopilot's verdicts and the Raft configuration
// (openbao.NewRaftView): when a server may step down, when a joined server is ready. Their
// simulations run against pkg/openbao/fake, so the fake must answer as OpenBao does. One
// scenario, written once below, runs against both: TestAutopilotScenarioOnTheFake checks the
// fake against what real servers answered, TestAutopilotScenarioOnRealServers runs it on
// three real servers and on the fake side by side and fails on any step where the two differ.

// autopilotCluster is what the scenario does to a cluster of servers bao-0, bao-1, … and
// what it reads from it, on real servers or on the fake.
type autopilotCluster interface {
	// Leader is the active server's ID when the scenario starts.
	Leader() string
	// Stop stops a server's process; Start starts it again on its data.
	Stop(id string)
	Start(id string)
	// JoinNonVoter starts a new server that joins as a non-voter and returns its ID.
	JoinNonVoter() string
	// Operator is a client logged in with the operator's role, of a server that runs.
	Operator(ctx context.Context) (openbao.Client, error)
	// StepDown asks server id, logged in with the upgrade Job's role, to step down.
	StepDown(ctx context.Context, id string) error
	// Await lets time pass until done holds for what the cluster reports, and returns it.
	Await(what string, done func(apObservation) bool) apObservation
}

// apObservation is what the operator reads from the cluster and how it judges it.
type apObservation struct {
	Verdict   string // autopilot's overall verdict: true, false or none
	Tolerance int
	Voters    []string // the Raft configuration
	NonVoters []string
	// AutopilotVoters are the voters autopilot counts; its state follows the Raft
	// configuration on its next update, a few seconds later.
	AutopilotVoters []string
	// Unhealthy are the servers of the configuration that autopilot does not call healthy
	// (or does not list yet), as openbao.RaftView judges them.
	Unhealthy []string
	Leader    string
	// MayStepDown is openbao.RaftView.Successors' answer for the scenario's first leader.
	MayStepDown string
	// known are the servers autopilot lists.
	known []string
}

func (o apObservation) String() string {
	return fmt.Sprintf("verdict=%s tolerance=%d voters=%v non-voters=%v autopilot-voters=%v unhealthy=%v; may the first leader step down: %s",
		o.Verdict, o.Tolerance, o.Voters, o.NonVoters, o.AutopilotVoters, o.Unhealthy, o.MayStepDown)
}

func (o apObservation) listed(id string) bool {
	return slices.Contains(o.Voters, id) || slices.Contains(o.NonVoters, id)
}

// reported says whether autopilot lists the server, healthy or not.
func (o apObservation) reported(id string) bool { return slices.Contains(o.known, id) }

func (o apObservation) unhealthy(id string) bool { return slices.Contains(o.Unhealthy, id) }

// settled says whether autopilot's state has caught up with the Raft configuration.
func (o apObservation) settled() bool { return slices.Equal(o.Voters, o.AutopilotVoters) }

// observeAutopilot reads the Raft configuration and autopilot's state, as the operator does.
func observeAutopilot(ctx context.Context, cl openbao.Client, firstLeader string) (apObservation, error) {
	servers, err := cl.RaftConfiguration(ctx)
	if err != nil {
		return apObservation{}, err
	}
	ap, err := cl.AutopilotState(ctx)
	if err != nil {
		return apObservation{}, err
	}
	o := apObservation{Verdict: "none", Tolerance: ap.FailureTolerance, Leader: ap.Leader}
	if ap.Healthy != nil {
		o.Verdict = fmt.Sprint(*ap.Healthy)
	}
	view := openbao.NewRaftView(servers, ap)
	for _, s := range servers {
		if s.Voter {
			o.Voters = append(o.Voters, s.NodeID)
		} else {
			o.NonVoters = append(o.NonVoters, s.NodeID)
		}
		if !view.Healthy[s.NodeID] {
			o.Unhealthy = append(o.Unhealthy, s.NodeID)
		}
	}
	o.AutopilotVoters = slices.Sorted(slices.Values(ap.Voters))
	for _, s := range ap.Servers {
		o.known = append(o.known, s.ID)
	}
	ready, why := view.Successors(firstLeader)
	if why != "" {
		o.MayStepDown = "no: " + why
	} else {
		o.MayStepDown = "yes, to " + strings.Join(ready, " or ")
	}
	return o, nil
}

// scenarioStep is one step of the scenario and what the cluster reported after it.
type scenarioStep struct {
	What string
	Seen apObservation
}

// runAutopilotScenario: three healthy voters; a follower stops (autopilot calls it and the
// cluster unhealthy once its last contact is too old, and failure tolerance drops) and
// starts again; a non-voter joins (unhealthy until autopilot has its statistics) and is
// promoted (after a delay); the follower stops again and is removed; the first leader steps
// down and leadership moves to a healthy voter. After each step it records what the
// operator reads.
func runAutopilotScenario(t *testing.T, c autopilotCluster) []scenarioStep {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	leader := c.Leader()
	follower := "bao-2"
	if leader == follower {
		follower = "bao-1"
	}
	var steps []scenarioStep
	record := func(what string, o apObservation) { steps = append(steps, scenarioStep{What: what, Seen: o}) }

	record("three voters", c.Await("three healthy voters", func(o apObservation) bool {
		return o.Verdict == "true" && len(o.Voters) == 3 && o.settled() && len(o.Unhealthy) == 0
	}))
	c.Stop(follower)
	record("a follower stopped", c.Await(follower+" unhealthy", func(o apObservation) bool { return o.unhealthy(follower) }))
	c.Start(follower)
	record("the follower runs again", c.Await(follower+" healthy again", func(o apObservation) bool {
		return o.Verdict == "true" && len(o.Unhealthy) == 0
	}))
	joined := c.JoinNonVoter()
	record("a non-voter joined", c.Await(joined+" listed by autopilot", func(o apObservation) bool { return o.reported(joined) }))
	record("the non-voter caught up", c.Await(joined+" healthy", func(o apObservation) bool {
		return o.reported(joined) && !o.unhealthy(joined)
	}))
	op, err := c.Operator(ctx)
	if err != nil {
		t.Fatalf("operator client: %v", err)
	}
	if asked, err := openbao.PromoteNonVoter(ctx, op, joined); err != nil || !asked {
		t.Fatalf("promote %s: asked=%v %v", joined, asked, err)
	}
	record("the non-voter promoted", c.Await(joined+" a voter", func(o apObservation) bool {
		return slices.Contains(o.Voters, joined) && o.settled() && o.Verdict == "true"
	}))
	c.Stop(follower)
	record("one of four voters stopped", c.Await(follower+" unhealthy", func(o apObservation) bool { return o.unhealthy(follower) }))
	if op, err = c.Operator(ctx); err != nil {
		t.Fatalf("operator client: %v", err)
	}
	if err := openbao.RemovePeerVerified(ctx, op, follower); err != nil {
		t.Fatalf("remove %s: %v", follower, err)
	}
	record("the stopped voter removed", c.Await(follower+" gone and the cluster healthy", func(o apObservation) bool {
		return !o.listed(follower) && o.settled() && o.Verdict == "true"
	}))
	if err := c.StepDown(ctx, leader); err != nil {
		t.Fatalf("step down %s: %v", leader, err)
	}
	record("the first leader stepped down", c.Await("another leader and the cluster healthy", func(o apObservation) bool {
		return o.Leader != "" && o.Leader != leader && o.settled() && o.Verdict == "true" && len(o.Unhealthy) == 0
	}))
	return steps
}

// autopilotScenarioWant is what three OpenBao 2.6.2 and 2.7.2 servers answered at each step,
// with bao-0 the first leader.
var autopilotScenarioWant = []string{
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-2] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-2] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-2",
	"verdict=false tolerance=0 voters=[bao-0 bao-1 bao-2] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-2] unhealthy=[bao-2]; may the first leader step down: no: autopilot reports the cluster unhealthy",
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-2] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-2] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-2",
	"verdict=false tolerance=1 voters=[bao-0 bao-1 bao-2] non-voters=[bao-3] autopilot-voters=[bao-0 bao-1 bao-2] unhealthy=[bao-3]; may the first leader step down: no: autopilot reports the cluster unhealthy",
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-2] non-voters=[bao-3] autopilot-voters=[bao-0 bao-1 bao-2] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-2",
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-2 bao-3] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-2 bao-3] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-2 or bao-3",
	"verdict=false tolerance=0 voters=[bao-0 bao-1 bao-2 bao-3] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-2 bao-3] unhealthy=[bao-2]; may the first leader step down: no: autopilot reports the cluster unhealthy",
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-3] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-3] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-3",
	"verdict=true tolerance=1 voters=[bao-0 bao-1 bao-3] non-voters=[] autopilot-voters=[bao-0 bao-1 bao-3] unhealthy=[]; may the first leader step down: yes, to bao-1 or bao-3",
}

func checkScenario(t *testing.T, name string, steps []scenarioStep) {
	t.Helper()
	if len(steps) != len(autopilotScenarioWant) {
		t.Fatalf("%s: %d steps, want %d", name, len(steps), len(autopilotScenarioWant))
	}
	for i, s := range steps {
		if got := s.Seen.String(); got != autopilotScenarioWant[i] {
			t.Errorf("%s, step %q:\n  got  %s\n  want %s", name, s.What, got, autopilotScenarioWant[i])
		}
	}
}

// TestAutopilotScenarioOnTheFake: the fake answers what real servers answered.
func TestAutopilotScenarioOnTheFake(t *testing.T) {
	checkScenario(t, "fake", runAutopilotScenario(t, newFakeScenarioCluster(t, "bao-0")))
}

// TestAutopilotScenarioOnRealServers runs the scenario on three real servers and on the fake,
// and fails on every step where the two answers differ, showing both.
func TestAutopilotScenarioOnRealServers(t *testing.T) {
	t.Parallel()
	servers := newRealScenarioCluster(t)
	if servers.Leader() != "bao-0" {
		t.Logf("the first leader is %s (expected bao-0, the server that initialized)", servers.Leader())
	}
	fakeSteps := runAutopilotScenario(t, newFakeScenarioCluster(t, servers.Leader()))
	started := time.Now()
	realSteps := runAutopilotScenario(t, servers)
	t.Logf("the scenario took %s on real servers", time.Since(started).Round(time.Second))
	for i := range min(len(realSteps), len(fakeSteps)) {
		r, f := realSteps[i].Seen.String(), fakeSteps[i].Seen.String()
		if r != f {
			t.Errorf("step %q: the fake diverges from OpenBao\n  OpenBao: %s\n  fake:    %s", realSteps[i].What, r, f)
		}
	}
	if servers.Leader() == "bao-0" {
		checkScenario(t, "OpenBao", realSteps)
	}
}

// fakeScenarioCluster drives pkg/openbao/fake on a simulated clock with autopilot's timing
// as measured: a server out of reach is unhealthy after 10 s without contact, a promotion
// shows 5 s after the request, a joining server sends its first statistics 8 s after it
// started.
type fakeScenarioCluster struct {
	t       *testing.T
	c       *fake.Cluster
	now     time.Time
	leader  string
	started map[string]time.Time // joining servers, by start time
}

const (
	fakeTick        = 500 * time.Millisecond
	fakeStatsDelay  = 8 * time.Second
	fakeAwaitLimit  = 10 * time.Minute
	realAwaitLimit  = 3 * time.Minute
	scenarioVersion = "2.7.2"
)

func newFakeScenarioCluster(t *testing.T, leader string) *fakeScenarioCluster {
	f := &fakeScenarioCluster{t: t, c: fake.NewHealthyCluster("bao", 3, scenarioVersion), leader: leader,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), started: map[string]time.Time{}}
	f.c.SetLeader(leader)
	f.c.Clock = func() time.Time { return f.now }
	f.c.LastContactThreshold = 10 * time.Second
	f.c.PromotionDelay = 5 * time.Second
	return f
}

func (f *fakeScenarioCluster) Leader() string { return f.leader }
func (f *fakeScenarioCluster) Stop(id string) {
	f.c.Update(id, func(n *fake.Node) { n.Down = true })
}
func (f *fakeScenarioCluster) Start(id string) {
	f.c.Update(id, func(n *fake.Node) { n.Down = false })
}

func (f *fakeScenarioCluster) JoinNonVoter() string {
	id := "bao-3"
	f.c.AddNode(fake.Node{ID: id, Address: "https://" + id + ":8200", Version: scenarioVersion, Initialized: true, Member: true})
	f.started[id] = f.now
	return id
}

func (f *fakeScenarioCluster) client(ctx context.Context, id, role string) (openbao.Client, error) {
	n, ok := f.c.Node(id)
	if !ok {
		return nil, fmt.Errorf("no server %s", id)
	}
	cl, err := f.c.NewClient(openbao.Config{Address: n.Address})
	if err != nil {
		return nil, err
	}
	return cl, cl.LoginJWT(ctx, resources.JWTAuthMount, role, "a.jwt")
}

func (f *fakeScenarioCluster) Operator(ctx context.Context) (openbao.Client, error) {
	var errs []error
	for _, id := range []string{"bao-0", "bao-1", "bao-2", "bao-3"} {
		if n, ok := f.c.Node(id); ok && !n.Down {
			cl, err := f.client(ctx, id, resources.OperatorRole)
			if err == nil {
				return cl, nil
			}
			errs = append(errs, err)
		}
	}
	return nil, fmt.Errorf("no server answers: %w", errors.Join(errs...))
}

func (f *fakeScenarioCluster) StepDown(ctx context.Context, id string) error {
	cl, err := f.client(ctx, id, resources.DefaultUpgradeRole)
	if err != nil {
		return err
	}
	return cl.StepDown(ctx)
}

// Await advances the clock in ticks; a joining server's statistics arrive fakeStatsDelay
// after it started, with the leader's index.
func (f *fakeScenarioCluster) Await(what string, done func(apObservation) bool) apObservation {
	f.t.Helper()
	ctx := context.Background()
	var last apObservation
	var lastErr error
	for start := f.now; f.now.Sub(start) < fakeAwaitLimit; f.now = f.now.Add(fakeTick) {
		for id, at := range f.started {
			if f.now.Sub(at) >= fakeStatsDelay {
				f.c.Update(id, func(n *fake.Node) { n.AppliedIndex = 100 })
				delete(f.started, id)
			}
		}
		cl, err := f.Operator(ctx)
		if err == nil {
			last, err = observeAutopilot(ctx, cl, f.leader)
		}
		if lastErr = err; err == nil && done(last) {
			return last
		}
	}
	f.t.Fatalf("fake: %s: not reached within %s of simulated time: %s (last error: %v)", what, fakeAwaitLimit, last, lastErr)
	return last
}

// realScenarioCluster runs three real servers from the configuration the operator renders.
type realScenarioCluster struct {
	t      *testing.T
	c      *baotest.Cluster
	leader string
	// operators are logged-in operator clients by server, kept while they answer.
	operators map[string]openbao.Client
}

func newRealScenarioCluster(t *testing.T) *realScenarioCluster {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3})
	c.Start()
	for _, n := range c.Nodes {
		n.WaitServing(2 * time.Minute)
	}
	return &realScenarioCluster{t: t, c: c, leader: c.WaitActive(time.Minute).PodName, operators: map[string]openbao.Client{}}
}

func (r *realScenarioCluster) node(id string) *baotest.Node {
	for _, n := range r.c.Nodes {
		if n.PodName == id {
			return n
		}
	}
	r.t.Fatalf("no server %s", id)
	return nil
}

func (r *realScenarioCluster) Leader() string  { return r.leader }
func (r *realScenarioCluster) Stop(id string)  { r.node(id).Stop() }
func (r *realScenarioCluster) Start(id string) { r.node(id).Start() }
func (r *realScenarioCluster) JoinNonVoter() string {
	n := r.c.AddNode(true)
	n.Start()
	return n.PodName
}

func (r *realScenarioCluster) login(ctx context.Context, n *baotest.Node, role string) (openbao.Client, error) {
	subject, audience := r.c.UpgradeSubject(), baotest.UpgradeAudience
	if role == resources.OperatorRole {
		subject, audience = baotest.OperatorSubject, baotest.OperatorAudience
	}
	cl := n.Client()
	return cl, cl.LoginJWT(ctx, resources.JWTAuthMount, role, r.c.SignJWT(subject, audience))
}

func (r *realScenarioCluster) Operator(ctx context.Context) (openbao.Client, error) {
	var errs []error
	for _, n := range r.c.Nodes {
		if !n.Running() {
			continue
		}
		if cl, ok := r.operators[n.PodName]; ok {
			return cl, nil
		}
		cl, err := r.login(ctx, n, resources.OperatorRole)
		if err == nil {
			r.operators[n.PodName] = cl
			return cl, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.PodName, err))
	}
	return nil, fmt.Errorf("no server answers: %w", errors.Join(errs...))
}

func (r *realScenarioCluster) StepDown(ctx context.Context, id string) error {
	cl, err := r.login(ctx, r.node(id), resources.DefaultUpgradeRole)
	if err != nil {
		return err
	}
	return cl.StepDown(ctx)
}

func (r *realScenarioCluster) Await(what string, done func(apObservation) bool) apObservation {
	r.t.Helper()
	var last apObservation
	started := time.Now()
	baotest.Eventually(r.t, realAwaitLimit, "OpenBao: "+what, func(ctx context.Context) error {
		cl, err := r.Operator(ctx)
		if err != nil {
			return err
		}
		o, err := observeAutopilot(ctx, cl, r.leader)
		if err != nil {
			clear(r.operators) // log in again, maybe on another server
			return err
		}
		if last = o; !done(o) {
			return fmt.Errorf("last seen: %s", o)
		}
		return nil
	})
	r.t.Logf("OpenBao: %s after %s", what, time.Since(started).Round(100*time.Millisecond))
	return last
}
