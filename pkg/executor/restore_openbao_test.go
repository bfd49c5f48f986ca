package executor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestOpenBaoRestoreBehaviour pins what OpenBao itself does with snapshots of other
// clusters, which is what the executor's checks protect against (run on 2.6.2 and 2.7.2):
//   - not forced, another cluster with the same seal key: accepted; the cluster then serves
//     the other cluster's data (OpenBao checks only that its seal opens the snapshot's
//     sealed SHA256SUMS, so a shared seal key passes for "same cluster");
//   - not forced, another seal key: refused (400), nothing changed;
//   - forced, another seal key: accepted (204), and the server is left sealed for good.
func TestOpenBaoRestoreBehaviour(t *testing.T) {
	src := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: kvRequests()})
	shared := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: kvRequests()})
	foreign := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: kvRequests()})
	key, err := os.ReadFile(src.SealKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(shared.SealKeyPath(), key, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*baotest.Cluster{src, shared, foreign} {
		c.Start()
	}
	srcLeader := src.WaitActive(time.Minute)
	kvPut(t, kv(t, src, srcLeader), "from-source")
	snapPath, _ := backupToDir(t, src, srcLeader, t.TempDir())

	restore := func(c *baotest.Cluster, force bool) (*baotest.Node, error) {
		t.Helper()
		n := c.WaitActive(time.Minute)
		kvPut(t, kv(t, c, n), "own")
		cl := n.Client()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultRestoreRole, c.SignJWT(c.UpgradeSubject(), resources.RestoreAudience)); err != nil {
			t.Fatal(err)
		}
		return n, cl.RestoreSnapshot(ctx, func() (io.ReadCloser, error) { return os.Open(snapPath) }, force)
	}

	t.Run("not forced, same seal key", func(t *testing.T) {
		n, err := restore(shared, false)
		t.Logf("answer: %v", err)
		if err != nil {
			t.Fatalf("got %v, want the snapshot accepted", err)
		}
		n.WaitServing(time.Minute)
		shared.WaitActive(time.Minute)
		// The restored cluster trusts the source cluster's JWT key and holds its data.
		l := kvSignedBy(t, src, shared, n)
		if !kvHas(t, l, "from-source") || kvHas(t, l, "own") {
			t.Errorf("from-source %v (want true), own %v (want false)", kvHas(t, l, "from-source"), kvHas(t, l, "own"))
		}
	})
	t.Run("not forced, another seal key", func(t *testing.T) {
		n, err := restore(foreign, false)
		t.Logf("answer: %v", err)
		if !errors.Is(err, openbao.ErrBadRequest) {
			t.Fatalf("got %v, want a refusal (400)", err)
		}
		if !kvHas(t, kv(t, foreign, n), "own") {
			t.Error("a refused restore changed the data")
		}
	})
	t.Run("forced, another seal key", func(t *testing.T) {
		n, err := restore(foreign, true)
		t.Logf("answer: %v", err)
		if err != nil {
			t.Fatalf("got %v, want the snapshot accepted", err)
		}
		// OpenBao applies it in the background; watch the server for a while.
		deadline := time.Now().Add(15 * time.Second)
		var last string
		for time.Now().Before(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			h, err := n.Client().Health(ctx)
			cancel()
			if err == nil {
				last = fmt.Sprintf("initialized %v sealed %v active %v", h.Initialized, h.Sealed, h.Active())
			} else {
				last = err.Error()
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("15 s after a forced restore with another seal key: %s", last)
		if last != "initialized true sealed true active false" {
			t.Errorf("server state %q, want it sealed", last)
		}
		n.Stop()
		n.Start()
		time.Sleep(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h, err := n.Client().Health(ctx)
		if err != nil || !h.Sealed {
			t.Errorf("after a restart: %+v %v, want sealed", h, err)
		}
		t.Logf("after a restart: %+v", h)
	})
}

// TestRestoreThreeServers restores into a three-server cluster, through a standby that
// redirects the request to the active server, and reads, through every server and with
// leadership moved twice, what was written before and after the snapshot.
func TestRestoreThreeServers(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3, SelfInit: kvRequests()})
	c.Start()
	leader := c.WaitActive(2 * time.Minute)
	waitThreeHealthyVoters(t, c, leader)
	l := kv(t, c, leader)
	kvPut(t, l, "before")
	snapPath, _ := backupToDir(t, c, leader, t.TempDir())
	kvPut(t, l, "after")
	// Reads through every server before the restore, so that each has served "after".
	for _, n := range c.Nodes {
		if !kvHas(t, kv(t, c, n), "after") {
			t.Fatalf("%s does not serve secret/after before the restore", n.PodName)
		}
	}

	// Through a standby: it redirects the restore to the active server.
	var standby *baotest.Node
	for _, n := range c.Nodes {
		if n != leader {
			standby = n
			break
		}
	}
	e := newRestoreEnv(t, c, standby)
	resultFile := filepath.Join(e.dir, "result.json")
	r := runExecutor(t, e.args(resultFile, "pvc://bao-snapshots/backups/"+filepath.Base(snapPath), "--snapshot-dir", filepath.Dir(filepath.Dir(snapPath)))...)
	if r.code != 0 {
		t.Fatalf("restore: %s", r)
	}
	for round := range 3 {
		active := c.WaitActive(time.Minute)
		for _, n := range c.Nodes {
			l := kv(t, c, n)
			before, after := kvHas(t, l, "before"), kvHas(t, l, "after")
			t.Logf("round %d, active %s, read through %s: before %v, after %v", round, active.PodName, n.PodName, before, after)
			if !before || after {
				t.Errorf("round %d: %s (active %s) serves before=%v after=%v, want the snapshot's data", round, n.PodName, active.PodName, before, after)
			}
		}
		if round == 2 {
			break
		}
		// Move leadership to another server and read again.
		cl := active.Client()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)); err != nil {
			cancel()
			t.Fatal(err)
		}
		if err := cl.StepDown(ctx); err != nil {
			cancel()
			t.Fatal(err)
		}
		cancel()
		baotest.Eventually(t, time.Minute, "another active server", func(ctx context.Context) error {
			for _, n := range c.Nodes {
				if n == active {
					continue
				}
				if h, err := n.Client().Health(ctx); err == nil && h.Active() {
					return nil
				}
			}
			return errors.New("none yet")
		})
	}
}
