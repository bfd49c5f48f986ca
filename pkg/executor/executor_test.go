package executor_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/executor"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// result is one run of the executor.
type result struct {
	code           int
	stdout, stderr string
	took           time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("exit %d after %s\nstdout:\n%sstderr:\n%s", r.code, r.took.Round(time.Millisecond), r.stdout, r.stderr)
}

// runExecutor runs `manager executor <args>` in-process, as the Job's container would.
func runExecutor(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	code := executor.Main(ctx, args, &out, &errOut)
	r := result{code: code, stdout: out.String(), stderr: errOut.String(), took: time.Since(start)}
	t.Logf("executor %s\n%s", strings.Join(args[:1], " "), r)
	return r
}

// files writes the CA and a token the way the Job's volumes provide them.
type files struct{ ca, token string }

func jobFiles(t *testing.T, c *baotest.Cluster, jwt string) files {
	t.Helper()
	dir := t.TempDir()
	f := files{ca: filepath.Join(dir, "ca.crt"), token: filepath.Join(dir, "token")}
	if err := os.WriteFile(f.ca, c.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.token, []byte(jwt), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func stepDownArgs(f files, n *baotest.Node, timeout string) []string {
	return []string{"step-down",
		"--address", n.Address(), "--tls-server-name", n.DNSName, "--node-id", n.PodName,
		"--ca-file", f.ca, "--token-file", f.token, "--role", resources.DefaultUpgradeRole,
		"--timeout", timeout}
}

func snapshotArgs(f files, n *baotest.Node, out string) []string {
	return []string{"snapshot",
		"--address", n.Address(), "--tls-server-name", n.DNSName,
		"--ca-file", f.ca, "--token-file", f.token, "--role", resources.DefaultUpgradeRole,
		"--out", out, "--timeout", "2m"}
}

// assertNoSecret checks that the JWT of the token file did not reach the output.
func assertNoSecret(t *testing.T, r result, jwt string) {
	t.Helper()
	all := r.stdout + r.stderr
	if strings.Contains(all, jwt) || strings.Contains(all, jwt[:40]) {
		t.Errorf("the token file's JWT is in the output")
	}
}

// waitThreeHealthyVoters waits until the cluster could survive losing its leader: three
// voters in the Raft configuration and autopilot's healthy verdict for all of them.
func waitThreeHealthyVoters(t *testing.T, c *baotest.Cluster, via *baotest.Node) {
	t.Helper()
	cl := via.Client()
	baotest.Eventually(t, 30*time.Second, "login as the upgrade role", func(ctx context.Context) error {
		return cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience))
	})
	baotest.Eventually(t, 3*time.Minute, "three healthy voters", func(ctx context.Context) error {
		servers, err := cl.RaftConfiguration(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d voters: %+v", voters, servers)
		}
		ap, err := cl.AutopilotState(ctx)
		if err != nil {
			return err
		}
		healthy := 0
		for _, s := range ap.Servers {
			if s.Healthy {
				healthy++
			}
		}
		if !ap.IsHealthy() || healthy != 3 {
			return fmt.Errorf("autopilot healthy=%v with %d healthy servers", ap.Healthy, healthy)
		}
		return nil
	})
}

// TestAgainstThreeNodes runs every action against three real servers, in the order an
// upgrade uses them: refused logins, a snapshot, a step-down, and the same Jobs again.
func TestAgainstThreeNodes(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3})
	started := time.Now()
	c.Start()
	for _, n := range c.Nodes {
		n.WaitServing(2 * time.Minute)
	}
	leader := c.WaitActive(time.Minute)
	waitThreeHealthyVoters(t, c, leader)
	t.Logf("three healthy voters %s after start; %s is active", time.Since(started).Round(time.Millisecond), leader.PodName)

	goodJWT := c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)
	good := jobFiles(t, c, goodJWT)

	t.Run("a token for another audience or subject is refused", func(t *testing.T) {
		for _, tc := range []struct{ name, jwt, reason string }{
			{"audience", c.SignJWT(c.UpgradeSubject(), baotest.OperatorAudience), "error validating token: invalid audience (aud) claim"},
			{"subject", c.SignJWT("system:serviceaccount:ns:someone-else", baotest.UpgradeAudience), `error validating claims: claim "sub" does not match any associated bound claim values`},
		} {
			name, jwt := tc.name, tc.jwt
			r := runExecutor(t, stepDownArgs(jobFiles(t, c, jwt), leader, "30s")...)
			if r.code != 1 {
				t.Errorf("wrong %s: exit %d, want 1", name, r.code)
			}
			want := "log in to " + leader.Address() + " as role openbao-upgrade (auth mount jwt): jwt login as role openbao-upgrade: login refused (HTTP 400): " + tc.reason
			if !strings.Contains(r.stderr, want) {
				t.Errorf("wrong %s: stderr does not say %q:\n%s", name, want, r.stderr)
			}
			if strings.Contains(r.stdout, "stepped down") {
				t.Errorf("wrong %s: stepped down anyway", name)
			}
			assertNoSecret(t, r, jwt)
		}
		if h, err := leader.Client().Health(context.Background()); err != nil || !h.Active() {
			t.Errorf("%s is no longer active after refused logins: %+v, %v", leader.PodName, h, err)
		}
	})

	snap := filepath.Join(t.TempDir(), "snapshots", "pre-upgrade.snap")
	if err := os.MkdirAll(filepath.Dir(snap), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Run("snapshot saves a complete file and keeps it on retry", func(t *testing.T) {
		standby := otherNode(c, leader)
		r := runExecutor(t, snapshotArgs(good, standby, snap)...)
		if r.code != 0 {
			t.Fatalf("snapshot failed: %s", r)
		}
		fi, err := os.Stat(snap)
		if err != nil || fi.Size() == 0 {
			t.Fatalf("snapshot file: %v, %v", fi, err)
		}
		want := fmt.Sprintf("saved raft snapshot to %s (%d bytes)", snap, fi.Size())
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout does not say %q", want)
		}
		if _, err := os.Stat(snap + ".partial"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s.partial left behind: %v", snap, err)
		}
		assertNoSecret(t, r, goodJWT)

		again := runExecutor(t, snapshotArgs(good, leader, snap)...)
		if again.code != 0 || !strings.Contains(again.stdout, "already exists") {
			t.Errorf("second snapshot run: %s", again)
		}
		fi2, err := os.Stat(snap)
		if err != nil || fi2.Size() != fi.Size() || !fi2.ModTime().Equal(fi.ModTime()) {
			t.Errorf("the existing snapshot was rewritten: before %v, after %v (%v)", fi, fi2, err)
		}
	})

	t.Run("the snapshot restores on a fresh server", func(t *testing.T) {
		restoreOnScratchServer(t, c, snap)
	})

	var newLeader *baotest.Node
	t.Run("step-down moves leadership away from the active node", func(t *testing.T) {
		r := runExecutor(t, stepDownArgs(good, leader, "2m")...)
		if r.code != 0 {
			t.Fatalf("step-down failed: %s", r)
		}
		if !strings.Contains(r.stdout, "stepped down "+leader.PodName+"; new active node https://127.0.0.1:") {
			t.Errorf("stdout does not report the step-down:\n%s", r.stdout)
		}
		assertNoSecret(t, r, goodJWT)
		newLeader = c.WaitActive(30 * time.Second)
		if newLeader == leader {
			t.Fatalf("%s is still the active node", leader.PodName)
		}
		if !strings.Contains(r.stdout, "new active node "+newLeader.Address()) {
			t.Errorf("stdout names another node than the active %s (%s)", newLeader.PodName, newLeader.Address())
		}
		h, err := leader.Client().Health(context.Background())
		if err != nil || h.StatusCode != 429 {
			t.Errorf("old leader's health: %+v, %v (want 429 standby)", h, err)
		}
	})
	if newLeader == nil {
		t.FailNow()
	}

	t.Run("step-down again against the old leader does nothing", func(t *testing.T) {
		r := runExecutor(t, stepDownArgs(good, leader, "1m")...)
		if r.code != 0 {
			t.Fatalf("second step-down: %s", r)
		}
		want := "leadership already moved away from " + leader.PodName + " (active: " + newLeader.Address() + ")"
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout does not say %q", want)
		}
		if strings.Contains(r.stdout, "sending step-down") {
			t.Errorf("a step-down was sent to a standby (it would be forwarded to the active node)")
		}
		if now := c.WaitActive(30 * time.Second); now != newLeader {
			t.Errorf("leadership moved again: %s is active, want %s", now.PodName, newLeader.PodName)
		}
	})
}

// TestStepDownRefusedWithoutAnotherVoter: a single server has nobody to hand leadership to.
func TestStepDownRefusedWithoutAnotherVoter(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	c.Start()
	only := c.Nodes[0]
	only.WaitServing(2 * time.Minute)
	c.WaitActive(time.Minute)
	jwt := c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)
	r := runExecutor(t, stepDownArgs(jobFiles(t, c, jwt), only, "15s")...)
	if r.code != 1 {
		t.Fatalf("step-down of the only server: exit %d, want 1\n%s", r.code, r)
	}
	want := "refusing to step down bao-0: no other healthy voter to take over (the Raft configuration has no voter other than bao-0"
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr does not say %q", want)
	}
	if strings.Contains(r.stdout, "sending step-down") {
		t.Errorf("a step-down was sent")
	}
	if h, err := only.Client().Health(context.Background()); err != nil || !h.Active() {
		t.Errorf("bao-0 is no longer active: %+v, %v", h, err)
	}
}

// TestStepDownWrongNodeID: a --node-id that is not a Raft peer fails at once instead of
// counting the target as "another voter".
func TestStepDownWrongNodeID(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	c.Start()
	only := c.Nodes[0]
	only.WaitServing(2 * time.Minute)
	c.WaitActive(time.Minute)
	jwt := c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)
	args := stepDownArgs(jobFiles(t, c, jwt), only, "1m")
	for i, a := range args {
		if a == "--node-id" {
			args[i+1] = "bao-7"
		}
	}
	r := runExecutor(t, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "node bao-7 is not in the raft configuration (peers: bao-0); check --node-id") {
		t.Errorf("wrong node ID: %s", r)
	}
	if r.took > 30*time.Second {
		t.Errorf("a wrong node ID should fail without waiting for the timeout (took %s)", r.took)
	}
}

func otherNode(c *baotest.Cluster, not *baotest.Node) *baotest.Node {
	for _, n := range c.Nodes {
		if n != not {
			return n
		}
	}
	return nil
}

// restoreOnScratchServer restores snap on a new single server that shares only the source
// cluster's static seal key, then logs in there with the source cluster's JWT role: that role
// exists only in the restored data.
func restoreOnScratchServer(t *testing.T, c *baotest.Cluster, snap string) {
	t.Helper()
	p := c.Params(c.Nodes[0], nil)
	start := time.Now()
	cl := baotest.RestoreOnScratchServer(t, snap, p.SealKeyFile, p.SealKeyID)
	baotest.Eventually(t, time.Minute, "login with the source cluster's upgrade role on the scratch server", func(ctx context.Context) error {
		return cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience))
	})
	t.Logf("restored and serving the source cluster's auth configuration %s after the scratch server started", time.Since(start).Round(time.Millisecond))
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close() //nolint:errcheck
	return l.Addr().(*net.TCPAddr).Port
}
