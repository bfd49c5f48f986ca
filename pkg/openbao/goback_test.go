package openbao_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestGoingBackAFollowerThatNeverLed checks, with real servers, the two facts the upgrade
// manager's way back rests on: a server on the newer release (OPENBAO_UPGRADE_TO) that only
// followed adds nothing to sys/version-history, and it starts again on the older release
// (OPENBAO_UPGRADE_FROM) with its data, rejoins, catches up and serves.
func TestGoingBackAFollowerThatNeverLed(t *testing.T) {
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
	follower := c.Nodes[len(c.Nodes)-1]
	if follower == leader {
		follower = c.Nodes[len(c.Nodes)-2]
	}
	waitHealthyOn := func(version string) {
		t.Helper()
		baotest.Eventually(t, 3*time.Minute, follower.PodName+" healthy on "+version, func(ctx context.Context) error {
			st, err := operator.AutopilotState(ctx)
			if err != nil {
				return err
			}
			srv, ok := st.Server(follower.PodName)
			if !st.IsHealthy() || len(st.Voters) != 3 || !ok || !srv.Healthy || srv.Version != version {
				return fmt.Errorf("healthy=%v voters=%v %s=%+v", st.Healthy, st.Voters, follower.PodName, srv)
			}
			return nil
		})
	}
	restartOn := func(bin, version string) {
		t.Helper()
		l, err := leader.Client().Leader(ctx)
		if err != nil {
			t.Fatal(err)
		}
		follower.Stop()
		follower.Binary = bin
		follower.Start()
		follower.WaitServing(2 * time.Minute)
		baotest.Eventually(t, 2*time.Minute, follower.PodName+" caught up", func(ctx context.Context) error {
			fl, err := follower.Client().Leader(ctx)
			if err != nil {
				return err
			}
			if fl.RaftAppliedIndex < l.RaftCommittedIndex {
				return fmt.Errorf("applied %d < %d", fl.RaftAppliedIndex, l.RaftCommittedIndex)
			}
			return nil
		})
		waitHealthyOn(version)
	}

	restartOn(newBin, to)
	// Mixed: logins (token writes on the active node, replicated to the follower) and reads
	// through every server.
	for _, n := range c.Nodes {
		if err := readCanary(ctx, c, n); err != nil {
			t.Errorf("mixed cluster: %v", err)
		}
	}
	hist, err := operator.VersionHistory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Version == to {
			t.Fatalf("a follower on %s, never active, is listed in sys/version-history: %+v", to, hist)
		}
	}

	// Back: the follower runs the older release again on the same data.
	restartOn(oldBin, from)
	for _, n := range c.Nodes {
		if err := readCanary(ctx, c, n); err != nil {
			t.Errorf("after going back: %v", err)
		}
		if h, err := n.Client().Health(ctx); err != nil || h.Version != from {
			t.Errorf("%s after going back: %+v %v", n.PodName, h, err)
		}
	}
	if h := c.WaitActive(time.Minute); h != leader {
		t.Errorf("leadership moved from %s to %s", leader.PodName, h.PodName)
	}
	t.Logf("sys/version-history while mixed: %+v", hist)
}
