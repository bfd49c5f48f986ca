package openbao_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

func loginAs(t *testing.T, c *baotest.Cluster, n *baotest.Node, role string) openbao.Client {
	t.Helper()
	subject, audience := c.UpgradeSubject(), baotest.UpgradeAudience
	if role == resources.OperatorRole {
		subject, audience = baotest.OperatorSubject, baotest.OperatorAudience
	}
	cl := n.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.LoginJWT(ctx, resources.JWTAuthMount, role, c.SignJWT(subject, audience)); err != nil {
		t.Fatalf("login as %s on %s: %v", role, n.PodName, err)
	}
	return cl
}

func raftServers(ctx context.Context, cl openbao.Client) (map[string]openbao.RaftServer, error) {
	servers, err := cl.RaftConfiguration(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]openbao.RaftServer{}
	for _, s := range servers {
		out[s.NodeID] = s
	}
	return out, nil
}

// TestClientAgainstRealCluster runs every verb of the client against three real servers
// formed from the rendered configuration, plus a fourth that joins as a non-voter.
func TestClientAgainstRealCluster(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3})
	started := time.Now()
	c.Start()
	for _, n := range c.Nodes {
		n.WaitServing(2 * time.Minute)
	}
	active := c.WaitActive(time.Minute)
	var standby *baotest.Node
	for _, n := range c.Nodes {
		if n != active {
			standby = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	operator := loginAs(t, c, standby, resources.OperatorRole)

	t.Run("Health maps status codes to states", func(t *testing.T) {
		h, err := active.Client().Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.StatusCode != 200 || !h.Active() || h.Version == "" || h.ClusterID == "" {
			t.Errorf("active: %+v", h)
		}
		h, err = standby.Client().Health(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if h.StatusCode != 429 || h.Active() || !h.Standby || !h.Serving() {
			t.Errorf("standby: %+v", h)
		}
	})

	t.Run("Leader reports the active node and raft indexes", func(t *testing.T) {
		l, err := standby.Client().Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if l.IsSelf || !l.HAEnabled || l.LeaderAddress != active.Address() || l.RaftAppliedIndex == 0 {
			t.Errorf("standby's view: %+v (active is %s)", l, active.Address())
		}
		l, err = active.Client().Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !l.IsSelf || l.RaftCommittedIndex == 0 {
			t.Errorf("active's view: %+v", l)
		}
	})

	t.Run("RaftConfiguration lists three voters and one leader", func(t *testing.T) {
		baotest.Eventually(t, 2*time.Minute, "three voters", func(ctx context.Context) error {
			servers, err := operator.RaftConfiguration(ctx)
			if err != nil {
				return err
			}
			leaders, voters := 0, 0
			for _, s := range servers {
				if s.Leader {
					leaders++
				}
				if s.Voter {
					voters++
				}
			}
			if len(servers) != 3 || voters != 3 || leaders != 1 || servers[0].NodeID != "bao-0" {
				return fmt.Errorf("servers %+v", servers)
			}
			return nil
		})
	})

	t.Run("AutopilotState becomes healthy with three voters", func(t *testing.T) {
		baotest.Eventually(t, 3*time.Minute, "autopilot healthy", func(ctx context.Context) error {
			st, err := operator.AutopilotState(ctx)
			if err != nil {
				return err
			}
			if !st.IsHealthy() || len(st.Voters) != 3 || st.Leader != active.PodName || st.FailureTolerance != 1 {
				return fmt.Errorf("healthy=%v voters=%v leader=%s tolerance=%d", st.Healthy, st.Voters, st.Leader, st.FailureTolerance)
			}
			srv, ok := st.Server(standby.PodName)
			if !ok || !srv.Healthy || srv.Status != "voter" || srv.Version == "" || srv.LastIndex == 0 {
				return fmt.Errorf("standby in autopilot: %+v", srv)
			}
			return nil
		})
		t.Logf("autopilot healthy %s after the servers started", time.Since(started).Round(time.Second))
	})

	t.Run("VersionHistory", func(t *testing.T) {
		hist, err := operator.VersionHistory(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(hist) != 1 || hist[0].InstalledAt.IsZero() {
			t.Errorf("version history: %+v", hist)
		}
	})

	t.Run("Snapshot writes a complete archive", func(t *testing.T) {
		var buf bytes.Buffer
		if err := loginAs(t, c, standby, resources.DefaultUpgradeRole).Snapshot(ctx, &buf); err != nil {
			t.Fatal(err)
		}
		if buf.Len() < 100 || !bytes.HasPrefix(buf.Bytes(), []byte{0x1f, 0x8b}) {
			t.Errorf("snapshot of %d bytes is not a gzip archive", buf.Len())
		}
	})

	t.Run("errors are typed", func(t *testing.T) {
		_, err := standby.Client().RaftConfiguration(ctx)
		if !errors.Is(err, openbao.ErrPermissionDenied) || openbao.IsTransient(err) {
			t.Errorf("without a token: %v", err)
		}
		err = operator.Promote(ctx, active.PodName)
		if !errors.Is(err, openbao.ErrServer) || openbao.IsTransient(err) {
			t.Errorf("promote a voter: %v (transient=%v)", err, openbao.IsTransient(err))
		}
		down, err := openbao.New(openbao.Config{Address: "https://127.0.0.1:1", CACertPEM: c.CACertPEM(), TLSServerName: active.DNSName})
		if err != nil {
			t.Fatal(err)
		}
		_, err = down.Health(ctx)
		if !errors.Is(err, openbao.ErrUnavailable) || !openbao.IsTransient(err) {
			t.Errorf("connection refused: %v", err)
		}
		wrongName, err := openbao.New(openbao.Config{Address: active.Address(), CACertPEM: c.CACertPEM(), TLSServerName: "someone-else.example"})
		if err != nil {
			t.Fatal(err)
		}
		_, err = wrongName.Health(ctx)
		if !errors.Is(err, openbao.ErrTLSVerification) || openbao.IsTransient(err) {
			t.Errorf("wrong server name: %v", err)
		}
	})

	t.Run("a non-voter joins, is promoted and removed", func(t *testing.T) {
		extra := c.AddNode(true)
		extra.Start()
		extra.WaitServing(2 * time.Minute)
		voterIs := func(want bool) func(ctx context.Context) error {
			return func(ctx context.Context) error {
				servers, err := raftServers(ctx, operator)
				if err != nil {
					return err
				}
				s, ok := servers[extra.PodName]
				if !ok || s.Voter != want {
					return fmt.Errorf("%s in raft configuration: present=%v %+v", extra.PodName, ok, s)
				}
				return nil
			}
		}
		baotest.Eventually(t, 2*time.Minute, "joined as non-voter", voterIs(false))
		baotest.Eventually(t, 2*time.Minute, "autopilot sees a non-voter", func(ctx context.Context) error {
			st, err := operator.AutopilotState(ctx)
			if err != nil {
				return err
			}
			if srv, ok := st.Server(extra.PodName); !ok || srv.NodeType != "non-voter" || srv.Status != "non-voter" {
				return fmt.Errorf("%+v", srv)
			}
			return nil
		})
		if asked, err := openbao.PromoteNonVoter(ctx, operator, extra.PodName); err != nil || !asked {
			t.Fatalf("promote: asked=%v %v", asked, err)
		}
		baotest.Eventually(t, 2*time.Minute, "promoted to voter", voterIs(true))
		if asked, err := openbao.PromoteNonVoter(ctx, operator, extra.PodName); err != nil || asked {
			t.Fatalf("promote a voter again: asked=%v %v (want a no-op)", asked, err)
		}
		if err := openbao.RemovePeerVerified(ctx, operator, extra.PodName); err != nil {
			t.Fatalf("remove peer: %v", err)
		}
		baotest.Eventually(t, 2*time.Minute, "removed", func(ctx context.Context) error {
			servers, err := raftServers(ctx, operator)
			if err != nil {
				return err
			}
			if _, ok := servers[extra.PodName]; ok || len(servers) != 3 {
				return fmt.Errorf("servers: %v", servers)
			}
			return nil
		})
		// OpenBao answers 204 for an ID that is not a peer.
		if err := operator.RemovePeer(ctx, "no-such-node"); err != nil {
			t.Errorf("remove an unknown peer: %v", err)
		}
		extra.Stop()
	})

	t.Run("StepDown moves leadership to another server", func(t *testing.T) {
		upgrade := loginAs(t, c, active, resources.DefaultUpgradeRole)
		asked := time.Now()
		if err := upgrade.StepDown(ctx); err != nil {
			t.Fatal(err)
		}
		var next *baotest.Node
		baotest.Eventually(t, time.Minute, "another server active", func(ctx context.Context) error {
			for _, n := range c.Nodes[:3] {
				h, err := n.Client().Health(ctx)
				if err == nil && h.Active() {
					if n == active {
						return errors.New("the old leader is still active")
					}
					next = n
					return nil
				}
			}
			return errors.New("no active server")
		})
		t.Logf("leadership moved from %s to %s in %s", active.PodName, next.PodName, time.Since(asked).Round(10*time.Millisecond))
		h, err := active.Client().Health(ctx)
		if err != nil || !h.Standby {
			t.Errorf("old leader after step-down: %+v %v", h, err)
		}
	})
}

// TestHealthOfUninitializedServer: a server with empty storage and no self-initialization
// answers 501 and Health reports it as a state, not an error.
func TestHealthOfUninitializedServer(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1, NoSelfInit: true})
	n := c.Nodes[0]
	n.Start()
	baotest.Eventually(t, time.Minute, "501 from sys/health", func(ctx context.Context) error {
		h, err := n.Client().Health(ctx)
		if err != nil {
			return err
		}
		if h.StatusCode != 501 || h.Initialized || h.Serving() {
			return fmt.Errorf("%+v", h)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := n.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience))
	if err == nil {
		t.Fatal("login on an uninitialized server succeeded")
	}
	t.Logf("login on an uninitialized server: %v (transient=%v)", err, openbao.IsTransient(err))
}

// TestHealthOfSealedServer: a server whose static seal key no longer matches its data stays
// sealed; Health reports 503 as a state and API calls fail with ErrSealed, which is transient.
func TestHealthOfSealedServer(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	n := c.Nodes[0]
	n.Start()
	n.WaitServing(90 * time.Second)
	n.Stop()
	other := make([]byte, 32)
	for i := range other {
		other[i] = byte(i)
	}
	if err := os.WriteFile(c.SealKeyPath(), other, 0o600); err != nil {
		t.Fatal(err)
	}
	n.Start()
	baotest.Eventually(t, time.Minute, "503 from sys/health", func(ctx context.Context) error {
		h, err := n.Client().Health(ctx)
		if err != nil {
			return err
		}
		if h.StatusCode != 503 || !h.Initialized || !h.Sealed || h.Serving() {
			return fmt.Errorf("%+v", h)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := n.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience))
	if !errors.Is(err, openbao.ErrSealed) || !openbao.IsTransient(err) {
		t.Errorf("login on a sealed server: %v (transient=%v)", err, openbao.IsTransient(err))
	}
}
