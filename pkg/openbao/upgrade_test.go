package openbao_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// canaryRequests store a value at first start and create a role that may read it. The
// engine is KV version 1: a fresh KV version 2 mount refuses writes until its background
// storage upgrade is done, which a write in the same self-initialization can race.
var canaryRequests = []resources.InitRequest{
	{Name: "enable-kv", Path: "sys/mounts/secret", Data: map[string]any{"type": "kv", "options": map[string]any{"version": "1"}}},
	{Name: "canary", Path: "secret/canary", Data: map[string]any{"value": "still here"}},
	{Name: "reader-policy", Path: "sys/policies/acl/reader", Data: map[string]any{"policy": "path \"secret/*\" {\n  capabilities = [\"read\"]\n}\n"}},
	{Name: "reader-role", Path: "auth/jwt/role/reader", Data: map[string]any{
		"role_type": "jwt", "bound_audiences": []string{"reader"}, "bound_subject": "system:serviceaccount:ns:reader",
		"user_claim": "sub", "token_policies": []string{"reader"}, "token_ttl": "5m",
	}},
}

func readCanary(ctx context.Context, c *baotest.Cluster, n *baotest.Node) error {
	cfg := api.DefaultConfig()
	cfg.Address = n.Address()
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: c.CACertPEM(), TLSServerName: n.DNSName}); err != nil {
		return err
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		return err
	}
	secret, err := cl.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{
		"role": "reader", "jwt": c.SignJWT("system:serviceaccount:ns:reader", "reader"),
	})
	if err != nil {
		return fmt.Errorf("login on %s: %w", n.PodName, err)
	}
	cl.SetToken(secret.Auth.ClientToken)
	kv, err := cl.Logical().ReadWithContext(ctx, "secret/canary")
	if err != nil || kv == nil {
		return fmt.Errorf("read on %s: %v", n.PodName, err)
	}
	if kv.Data["value"] != "still here" {
		return fmt.Errorf("canary on %s = %v", n.PodName, kv.Data)
	}
	return nil
}

// TestRollingUpgradeByHand upgrades three real servers from OPENBAO_UPGRADE_FROM (2.6.2) to
// OPENBAO_UPGRADE_TO (2.7.2) the way the rolling strategy does: standbys first, each restarted
// on the new binary with its data and waited for until it has caught up and autopilot is
// healthy, then the leader steps down, so that leadership only moves from old to new, and is
// upgraded last. It checks that the mixed cluster serves logins and reads through every node.
func TestRollingUpgradeByHand(t *testing.T) {
	t.Parallel()
	from, to := envOr("OPENBAO_UPGRADE_FROM", "2.6.2"), envOr("OPENBAO_UPGRADE_TO", "2.7.2")
	oldBin, newBin := baotest.BinaryOf(t, from), baotest.BinaryOf(t, to)
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3, Binary: oldBin, SelfInit: canaryRequests})
	c.Start()
	for _, n := range c.Nodes {
		n.WaitServing(2 * time.Minute)
	}
	leader := c.WaitActive(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	operator := loginAs(t, c, leader, resources.OperatorRole)
	waitHealthy := func(what string, wantVersions map[string]string) {
		t.Helper()
		baotest.Eventually(t, 3*time.Minute, what, func(ctx context.Context) error {
			st, err := operator.AutopilotState(ctx)
			if err != nil {
				return err
			}
			if !st.IsHealthy() || len(st.Voters) != 3 {
				return fmt.Errorf("healthy=%v voters=%v", st.Healthy, st.Voters)
			}
			for id, v := range wantVersions {
				if srv, ok := st.Server(id); !ok || srv.Version != v || !srv.Healthy {
					return fmt.Errorf("%s: %+v", id, srv)
				}
			}
			return nil
		})
	}
	versions := map[string]string{"bao-0": from, "bao-1": from, "bao-2": from}
	waitHealthy("healthy on "+from, versions)

	upgrade := func(n *baotest.Node) {
		t.Helper()
		// The active node's commit index before the restart: the restarted node has caught up
		// when it has applied at least that much.
		var target uint64
		if l, err := n.Client().Leader(ctx); err == nil {
			target = l.RaftCommittedIndex
		}
		started := time.Now()
		n.Stop()
		n.Binary = newBin
		n.Start()
		n.WaitServing(2 * time.Minute)
		baotest.Eventually(t, 2*time.Minute, n.PodName+" caught up", func(ctx context.Context) error {
			l, err := n.Client().Leader(ctx)
			if err != nil {
				return err
			}
			if l.RaftAppliedIndex < target {
				return fmt.Errorf("applied %d < %d", l.RaftAppliedIndex, target)
			}
			return nil
		})
		versions[n.PodName] = to
		waitHealthy(n.PodName+" healthy on "+to, versions)
		t.Logf("%s restarted on %s, caught up and healthy in %s", n.PodName, to, time.Since(started).Round(100*time.Millisecond))
		// Mixed versions: logins and reads work through every node, forwarded to the leader.
		for _, m := range c.Nodes {
			if err := readCanary(ctx, c, m); err != nil {
				t.Errorf("mixed cluster: %v", err)
			}
		}
	}

	for i := len(c.Nodes) - 1; i >= 0; i-- {
		if n := c.Nodes[i]; n != leader {
			upgrade(n)
		}
	}

	// Leadership moves old -> new: every other node already runs the new version.
	executor := loginAs(t, c, leader, resources.DefaultUpgradeRole)
	asked := time.Now()
	if err := executor.StepDown(ctx); err != nil {
		t.Fatalf("step down %s: %v", leader.PodName, err)
	}
	var next *baotest.Node
	baotest.Eventually(t, time.Minute, "leadership on a "+to+" server", func(ctx context.Context) error {
		for _, n := range c.Nodes {
			h, err := n.Client().Health(ctx)
			if err == nil && h.Active() {
				if n == leader {
					return errors.New("the old leader is still active")
				}
				if h.Version != to {
					return fmt.Errorf("%s is active on %s", n.PodName, h.Version)
				}
				next = n
				return nil
			}
		}
		return errors.New("no active server")
	})
	t.Logf("leadership moved from %s (%s) to %s (%s) in %s", leader.PodName, from, next.PodName, to, time.Since(asked).Round(10*time.Millisecond))
	operator = loginAs(t, c, next, resources.OperatorRole)
	upgrade(leader)

	hist, err := operator.VersionHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Version != from || hist[1].Version != to {
		t.Errorf("version history: %+v", hist)
	}
	for _, n := range c.Nodes {
		h, err := n.Client().Health(ctx)
		if err != nil || h.Version != to {
			t.Errorf("%s after the upgrade: %+v %v", n.PodName, h, err)
		}
	}
	var _ openbao.Client = operator
}
