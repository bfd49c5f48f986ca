package fake_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
)

func clientOf(t *testing.T, c *fake.Cluster, id string) openbao.Client {
	t.Helper()
	cl, err := c.NewClient(openbao.Config{Address: "https://" + id + ":8200"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.LoginJWT(context.Background(), "jwt", "openbao-upgrade", "a.jwt.token"); err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestStepDownMovesLeadershipToAnotherHealthyVoter(t *testing.T) {
	ctx := context.Background()
	c := fake.NewHealthyCluster("bao", 3, "2.6.2")
	// bao-1 trails the leader by more than autopilot allows: unhealthy, no successor.
	c.SetCommitIndex(100 + fake.MaxTrailingLogs + 1)
	c.Update("bao-2", func(n *fake.Node) { n.AppliedIndex = 100 + fake.MaxTrailingLogs + 1 })
	standby := clientOf(t, c, "bao-2")

	if h, _ := standby.Health(ctx); h.StatusCode != 429 || !h.Standby {
		t.Fatalf("bao-2 health: %+v", h)
	}
	if err := standby.StepDown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c.Leader(); got != "bao-2" {
		t.Errorf("leader after step-down = %s, want bao-2 (bao-1 is unhealthy)", got)
	}
	if h, _ := standby.Health(ctx); h.StatusCode != 200 || !h.Active() {
		t.Errorf("bao-2 health after step-down: %+v", h)
	}

	c.StepDownMovesLeadership = false
	if err := standby.StepDown(ctx); err != nil || c.Leader() != "bao-2" {
		t.Errorf("a step-down that does nothing moved leadership: %v %s", err, c.Leader())
	}
	if n := len(c.CallsTo("StepDown")); n != 2 {
		t.Errorf("recorded %d step-downs", n)
	}
	for _, call := range c.CallsTo("LoginJWT") {
		for _, a := range call.Args {
			if a == "a.jwt.token" {
				t.Error("the JWT was recorded")
			}
		}
	}
}

// TestStepDownToAnOldServerFailsWhenTheNewVersionHoldsAMajority: as measured on real
// OpenBao, servers on the new version reject the election of one on the old version; the
// cluster has no leader for a while, then a server that can win is elected.
func TestStepDownToAnOldServerFailsWhenTheNewVersionHoldsAMajority(t *testing.T) {
	ctx := context.Background()
	c := fake.NewHealthyCluster("bao", 5, "2.6.2")
	c.SetLeader("bao-1")
	for _, id := range []string{"bao-2", "bao-3", "bao-4"} {
		c.Update(id, func(n *fake.Node) { n.Version = "2.7.2" })
	}
	cl := clientOf(t, c, "bao-2")
	if err := cl.StepDown(ctx); err != nil {
		t.Fatal(err)
	}
	// bao-0 stands first and runs 2.6.2: three of five voters refuse it.
	if got := c.Leader(); got != "" {
		t.Fatalf("leader right after the step-down = %q, want none", got)
	}
	var leaders []string
	for range c.LeaderlessCalls + 1 {
		if _, err := cl.Health(ctx); err != nil {
			t.Fatal(err)
		}
		leaders = append(leaders, c.Leader())
	}
	if got := c.Leader(); got != "bao-2" {
		t.Errorf("leaders seen by the calls after the step-down: %q, want bao-2 in the end (the first new-version voter)", leaders)
	}
	if leaders[0] != "" {
		t.Errorf("the first call after the step-down saw leader %q, want none", leaders[0])
	}

	// With the old version holding the majority, the old server wins at once.
	c2 := fake.NewHealthyCluster("bao", 5, "2.6.2")
	c2.SetLeader("bao-1")
	c2.Update("bao-4", func(n *fake.Node) { n.Version = "2.7.2" })
	if err := clientOf(t, c2, "bao-2").StepDown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := c2.Leader(); got != "bao-0" {
		t.Errorf("leader after the step-down with one new server = %q, want bao-0", got)
	}
}

func TestMembershipChangesBehaveLikeOpenBao(t *testing.T) {
	ctx := context.Background()
	c := fake.NewHealthyCluster("bao", 3, "2.6.2")
	c.AddNode(fake.Node{ID: "green-0", Address: "https://green-0:8200", Version: "2.7.2", Initialized: true, Member: true, AppliedIndex: 100})
	cl := clientOf(t, c, "bao-0")

	err := cl.Promote(ctx, "bao-1")
	if !errors.Is(err, openbao.ErrServer) || openbao.IsTransient(err) {
		t.Errorf("promote a voter: %v", err)
	}
	// The promotion is answered at once and applied on autopilot's next cycle.
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c.Clock, c.PromotionDelay = func() time.Time { return now }, 10*time.Second
	if err := cl.Promote(ctx, "green-0"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(9 * time.Second)
	if err := cl.Promote(ctx, "green-0"); err != nil {
		t.Errorf("promote a server whose promotion is pending: %v", err)
	}
	st, err := cl.AutopilotState(ctx)
	if err != nil || len(st.Voters) != 3 {
		t.Fatalf("autopilot before the promotion took effect: %+v %v, want green-0 a non-voter", st, err)
	}
	now = now.Add(time.Second)
	st, err = cl.AutopilotState(ctx)
	if err != nil || len(st.Voters) != 4 || !st.IsHealthy() {
		t.Fatalf("autopilot after the promotion took effect: %+v %v", st, err)
	}
	if err := cl.RemovePeer(ctx, "no-such-node"); err != nil {
		t.Errorf("remove an unknown peer: %v", err)
	}
	if err := cl.RemovePeer(ctx, "bao-0"); err != nil {
		t.Fatal(err)
	}
	if got := c.Leader(); got != "bao-1" {
		t.Errorf("leader after removing bao-0 = %q", got)
	}
	servers, _ := clientOf(t, c, "bao-1").RaftConfiguration(ctx)
	if len(servers) != 3 {
		t.Errorf("servers after remove: %+v", servers)
	}
}

func TestInjectedErrorsAndUnknownState(t *testing.T) {
	ctx := context.Background()
	c := fake.NewHealthyCluster("bao", 3, "2.6.2")
	cl := clientOf(t, c, "bao-0")
	c.InjectError("Health", "https://bao-0:8200", &openbao.Error{Op: "health", Kind: openbao.ErrUnavailable}, 1)
	if _, err := cl.Health(ctx); !openbao.IsTransient(err) {
		t.Errorf("injected error: %v", err)
	}
	if _, err := cl.Health(ctx); err != nil {
		t.Errorf("second call still fails: %v", err)
	}
	c.Update("bao-2", func(n *fake.Node) { n.Down = true })
	if _, err := clientOf2(c, "bao-2").Health(ctx); !errors.Is(err, openbao.ErrUnavailable) {
		t.Errorf("down node: %v", err)
	}
	noToken, _ := c.NewClient(openbao.Config{Address: "https://bao-1:8200"})
	if _, err := noToken.RaftConfiguration(ctx); !errors.Is(err, openbao.ErrPermissionDenied) {
		t.Errorf("without login: %v", err)
	}
}

func clientOf2(c *fake.Cluster, id string) openbao.Client {
	cl, _ := c.NewClient(openbao.Config{Address: "https://" + id + ":8200"})
	return cl
}

func TestVerifiedMembershipChanges(t *testing.T) {
	ctx := context.Background()
	c := fake.NewHealthyCluster("bao", 3, "2.6.2")
	leader := clientOf(t, c, c.Leader())

	if _, err := openbao.PromoteNonVoter(ctx, leader, "ghost"); !errors.Is(err, openbao.ErrNotMember) {
		t.Errorf("promote an unknown server: %v, want ErrNotMember", err)
	}
	if asked, err := openbao.PromoteNonVoter(ctx, leader, "bao-1"); err != nil || asked {
		t.Errorf("promote a voter: asked=%v %v, want a no-op", asked, err)
	}
	if n := len(c.CallsTo("Promote")); n != 0 {
		t.Errorf("a voter was promoted again (%d calls): OpenBao answers 500", n)
	}
	if err := openbao.RemovePeerVerified(ctx, leader, "bao-2"); err != nil {
		t.Fatal(err)
	}
	if n, ok := c.Node("bao-2"); ok && n.Member {
		t.Errorf("bao-2 is still a member: %+v", n)
	}
}

// TestAutopilotVerdictDerivesFromTheServers: autopilot's verdicts follow the servers' state
// the way OpenBao's do (the measurements are in the package documentation).
func TestAutopilotVerdictDerivesFromTheServers(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := fake.NewHealthyCluster("bao", 3, "2.7.2")
	c.Clock, c.LastContactThreshold = func() time.Time { return now }, 10*time.Second
	cl := clientOf(t, c, "bao-0")
	verdict := func() string {
		t.Helper()
		st, err := cl.AutopilotState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("healthy=%v tolerance=%d", st.IsHealthy(), st.FailureTolerance)
		for _, srv := range st.Servers {
			if !srv.Healthy {
				out += " unhealthy:" + srv.ID
			}
		}
		return out
	}
	steps := []struct {
		what   string
		change func()
		want   string
	}{
		{"three healthy voters", func() {}, "healthy=true tolerance=1"},
		{"a follower stops: healthy until the last contact is too old", func() { c.Update("bao-2", func(n *fake.Node) { n.Down = true }) }, "healthy=true tolerance=1"},
		{"10 s later", func() { now = now.Add(10 * time.Second) }, "healthy=false tolerance=0 unhealthy:bao-2"},
		{"it runs again", func() { c.Update("bao-2", func(n *fake.Node) { n.Down = false }) }, "healthy=true tolerance=1"},
		{"it restarts sealed", func() { c.Update("bao-2", func(n *fake.Node) { n.Sealed = true }); now = now.Add(11 * time.Second) }, "healthy=false tolerance=0 unhealthy:bao-2"},
		{"unsealed", func() { c.Update("bao-2", func(n *fake.Node) { n.Sealed = false }) }, "healthy=true tolerance=1"},
		{"it trails by more than max_trailing_logs", func() {
			c.SetCommitIndex(100 + fake.MaxTrailingLogs + 1)
			c.Update("bao-1", func(n *fake.Node) { n.AppliedIndex = 100 + fake.MaxTrailingLogs + 1 })
		}, "healthy=false tolerance=0 unhealthy:bao-2"},
		{"caught up", func() { c.Update("bao-2", func(n *fake.Node) { n.AppliedIndex = 100 + fake.MaxTrailingLogs }) }, "healthy=true tolerance=1"},
		{"a non-voter joins", func() {
			c.AddNode(fake.Node{ID: "bao-3", Address: "https://bao-3:8200", Version: "2.7.2", Initialized: true, Member: true})
		}, "healthy=false tolerance=1 unhealthy:bao-3"},
		{"its statistics arrive", func() { c.Update("bao-3", func(n *fake.Node) { n.AppliedIndex = 1100 }) }, "healthy=true tolerance=1"},
		{"it is promoted: four voters", func() { c.Update("bao-3", func(n *fake.Node) { n.Voter = true }) }, "healthy=true tolerance=1"},
		{"one of four stops", func() { c.Update("bao-1", func(n *fake.Node) { n.Down = true }); now = now.Add(10 * time.Second) }, "healthy=false tolerance=0 unhealthy:bao-1"},
	}
	for _, s := range steps {
		s.change()
		if got := verdict(); got != s.want {
			t.Errorf("%s: %s, want %s", s.what, got, s.want)
		}
	}
	// A new leader's autopilot never heard from the stopped server: unhealthy at once.
	c.Update("bao-1", func(n *fake.Node) { n.Down = false })
	c.Update("bao-2", func(n *fake.Node) { n.Down = true })
	if !c.Healthy("bao-2") {
		t.Fatal("bao-2 is unhealthy at once after it stopped")
	}
	if err := cl.StepDown(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Healthy("bao-2") || c.Leader() == "bao-0" {
		t.Errorf("after a step-down: leader %s, bao-2 healthy=%v", c.Leader(), c.Healthy("bao-2"))
	}
}
