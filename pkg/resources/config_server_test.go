package resources_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// tokenPattern matches OpenBao tokens (s., b., r. and the hvs. style).
var tokenPattern = regexp.MustCompile(`\b(?:hv[sbr]|[sbr])\.[A-Za-z0-9]{20,}`)

const trickyText = "quote \" backslash \\ dollar ${not_interpolated} newline\nend"

// userRequests are what a user would add: a KV engine, a value with characters HCL treats
// specially, and a role to read and change the value with. The engine is KV version 1: a KV
// version 2 mount upgrades its storage in the background and refuses writes ("invalid
// request") until it is done, so a write in the same self-initialization can fail on a
// busy machine.
func userRequests() []resources.InitRequest {
	return []resources.InitRequest{
		{Name: "enable-kv", Path: "sys/mounts/secret", Data: map[string]any{"type": "kv", "options": map[string]any{"version": "1"}}},
		{Name: "tricky-value", Path: "secret/tricky", Data: map[string]any{"text": trickyText}},
		{Name: "kv-user-policy", Path: "sys/policies/acl/kv-user", Data: map[string]any{"policy": "path \"secret/*\" {\n  capabilities = [\"read\", \"update\"]\n}\n"}},
		{Name: "kv-user-role", Path: "auth/jwt/role/kv-user", Data: map[string]any{
			"role_type": "jwt", "bound_audiences": []string{"kv-user"}, "bound_subject": "system:serviceaccount:ns:kv-user",
			"user_claim": "sub", "token_policies": []string{"kv-user"}, "token_ttl": "5m",
		}},
	}
}

func login(t *testing.T, c *baotest.Cluster, n *baotest.Node, role, subject, audience string) openbao.Client {
	t.Helper()
	cl := n.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.LoginJWT(ctx, resources.JWTAuthMount, role, c.SignJWT(subject, audience)); err != nil {
		t.Fatalf("login as %s on %s: %v", role, n.PodName, err)
	}
	return cl
}

func wantKind(t *testing.T, what string, err, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Errorf("%s: got error %v, want %v", what, err, kind)
	}
}

// TestRenderedConfigSelfInitializesSingleServer starts one real server on the rendered
// configuration and checks what self-initialization promises.
func TestRenderedConfigSelfInitializesSingleServer(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: userRequests()})
	n := c.Nodes[0]
	start := time.Now()
	n.Start()
	h := n.WaitServing(90 * time.Second)
	c.WaitActive(60 * time.Second)
	t.Logf("auto-unsealed and initialized in %s (OpenBao %s)", time.Since(start).Round(100*time.Millisecond), h.Version)
	if h.ClusterName != "bao" {
		t.Errorf("cluster_name = %q, want bao", h.ClusterName)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// The upgrade executor's role.
	upgrade := login(t, c, n, resources.DefaultUpgradeRole, c.UpgradeSubject(), baotest.UpgradeAudience)
	if _, err := upgrade.RaftConfiguration(ctx); err != nil {
		t.Errorf("upgrade role reads raft configuration: %v", err)
	}
	if _, err := upgrade.AutopilotState(ctx); err != nil {
		t.Errorf("upgrade role reads autopilot state: %v", err)
	}
	if err := upgrade.Snapshot(ctx, io.Discard); err != nil {
		t.Errorf("upgrade role takes a snapshot: %v", err)
	}
	_, err := upgrade.VersionHistory(ctx)
	wantKind(t, "upgrade role lists version history", err, openbao.ErrPermissionDenied)
	wantKind(t, "upgrade role promotes", upgrade.Promote(ctx, "x"), openbao.ErrPermissionDenied)
	if err := upgrade.StepDown(ctx); err != nil {
		t.Errorf("upgrade role steps down: %v", err)
	}
	// A single server takes leadership back after stepping down.
	c.WaitActive(60 * time.Second)
	// The Job service account of another cluster of the namespace logs in too: a cluster that
	// restored this one's snapshot runs its Jobs under its own name.
	ns := c.Namespace()
	rollback := login(t, c, n, resources.DefaultUpgradeRole, "system:serviceaccount:"+ns+":bao-rollback-upgrade-serviceaccount", baotest.UpgradeAudience)
	if _, err := rollback.RaftConfiguration(ctx); err != nil {
		t.Errorf("another cluster's Job account reads the raft configuration: %v", err)
	}

	// Refused logins: wrong subject, wrong audience, wrong signing key, unknown role.
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	refused := map[string]struct{ role, jwt string }{
		"wrong subject":                      {resources.DefaultUpgradeRole, c.SignJWT("system:serviceaccount:ns:someone-else", baotest.UpgradeAudience)},
		"a Job account of another namespace": {resources.DefaultUpgradeRole, c.SignJWT("system:serviceaccount:elsewhere:bao-upgrade-serviceaccount", baotest.UpgradeAudience)},
		"an account named like a Job's in another namespace's subject": {resources.DefaultUpgradeRole, c.SignJWT("system:serviceaccount:"+ns+"x:bao-upgrade-serviceaccount", baotest.UpgradeAudience)},
		"wrong audience": {resources.DefaultUpgradeRole, c.SignJWT(c.UpgradeSubject(), "vault")},
		"operator's audience for the upgrade role": {resources.DefaultUpgradeRole, c.SignJWT(c.UpgradeSubject(), baotest.OperatorAudience)},
		"wrong key":    {resources.DefaultUpgradeRole, c.SignJWTWithKey(other, c.UpgradeSubject(), baotest.UpgradeAudience)},
		"unknown role": {"admin", c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)},
	}
	for name, r := range refused {
		err := n.Client().LoginJWT(ctx, resources.JWTAuthMount, r.role, r.jwt)
		wantKind(t, name, err, openbao.ErrLoginRefused)
		if IsTransient := openbao.IsTransient(err); IsTransient {
			t.Errorf("%s: a refused login is reported transient", name)
		}
	}

	// The operator's role.
	op := login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)
	hist, err := op.VersionHistory(ctx)
	if err != nil || len(hist) != 1 || hist[0].Version != h.Version {
		t.Errorf("operator role lists version history: %v %+v", err, hist)
	}
	wantKind(t, "operator role steps down", op.StepDown(ctx), openbao.ErrPermissionDenied)
	wantKind(t, "operator role takes a snapshot", op.Snapshot(ctx, io.Discard), openbao.ErrPermissionDenied)

	// The user's requests ran after the operator's, with their data intact.
	readTricky(ctx, t, c, n, trickyText)

	// No token was printed: self-initialization used a root token inside the server only.
	if m := tokenPattern.FindString(n.Log()); m != "" {
		t.Errorf("the server log shows a token: %q", m)
	}
	if !strings.Contains(n.Log(), "loading self-initialization") {
		t.Errorf("the first server on empty storage did not load the self-initialization file")
	}

	// Restart on the same data: no second self-initialization, same cluster, same roles.
	n.Stop()
	n.Start()
	h2 := n.WaitServing(90 * time.Second)
	c.WaitActive(60 * time.Second)
	if h2.ClusterID != h.ClusterID {
		t.Errorf("cluster ID changed across a restart: %s -> %s", h.ClusterID, h2.ClusterID)
	}
	second := lastStart(n.Log())
	for _, s := range []string{"loading self-initialization", "root token generated", "beginning post-unseal configuration"} {
		if strings.Contains(second, s) {
			t.Errorf("the restart on existing data logged %q: self-initialization ran again", s)
		}
	}
	login(t, c, n, resources.DefaultUpgradeRole, c.UpgradeSubject(), baotest.UpgradeAudience)
	readTricky(ctx, t, c, n, trickyText)

	// Even with the stanzas loaded, OpenBao does not run them on initialized storage: the
	// user's KV write would otherwise have put back the value the user has changed since.
	const changed = "changed by the user"
	if _, err := kvUser(ctx, t, c, n).WriteWithContext(ctx, "secret/tricky", map[string]any{"text": changed}); err != nil {
		t.Fatalf("change the value: %v", err)
	}
	n.Stop()
	n.AlwaysLoadSelfInit = true
	n.Start()
	h3 := n.WaitServing(90 * time.Second)
	c.WaitActive(60 * time.Second)
	third := lastStart(n.Log())
	for _, s := range []string{"root token generated", "beginning post-unseal configuration"} {
		if strings.Contains(third, s) {
			t.Errorf("a restart with the stanzas loaded logged %q: self-initialization ran again", s)
		}
	}
	if h3.ClusterID != h.ClusterID {
		t.Errorf("cluster ID changed: %s -> %s", h.ClusterID, h3.ClusterID)
	}
	readTricky(ctx, t, c, n, changed)
}

// kvUser logs in with the user's role from self-initialization, which may read and
// change the KV engine's values.
func kvUser(ctx context.Context, t *testing.T, c *baotest.Cluster, n *baotest.Node) *api.Logical {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = n.Address()
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: c.CACertPEM(), TLSServerName: n.DNSName}); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cl.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{
		"role": "kv-user", "jwt": c.SignJWT("system:serviceaccount:ns:kv-user", "kv-user"),
	})
	if err != nil {
		t.Fatalf("login as the user's kv-user role: %v", err)
	}
	cl.SetToken(secret.Auth.ClientToken)
	return cl.Logical()
}

// readTricky reads the value written by self-initialization and checks it is want.
func readTricky(ctx context.Context, t *testing.T, c *baotest.Cluster, n *baotest.Node, want string) {
	t.Helper()
	kv, err := kvUser(ctx, t, c, n).ReadWithContext(ctx, "secret/tricky")
	if err != nil || kv == nil {
		t.Fatalf("read the value written by self-initialization: %v", err)
	}
	if got := kv.Data["text"]; got != want {
		t.Errorf("value at secret/tricky = %q, want %q", got, want)
	}
}

func lastStart(log string) string {
	i := strings.LastIndex(log, "==== start")
	if i < 0 {
		return log
	}
	return log[i:]
}

// TestRenderedConfigThreeServersFormOneCluster starts three servers at once on the rendered
// configuration and the pod command: only the first initializes, the others join it.
func TestRenderedConfigThreeServersFormOneCluster(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 3})
	start := time.Now()
	c.Start()
	ids := map[string]string{}
	for _, n := range c.Nodes {
		h := n.WaitServing(2 * time.Minute)
		ids[n.PodName] = h.ClusterID
	}
	t.Logf("3 servers initialized and unsealed in %s", time.Since(start).Round(100*time.Millisecond))
	if ids["bao-0"] == "" || ids["bao-0"] != ids["bao-1"] || ids["bao-0"] != ids["bao-2"] {
		t.Fatalf("servers are in different clusters: %v", ids)
	}
	for _, n := range c.Nodes {
		loaded := strings.Contains(n.Log(), "loading self-initialization")
		if loaded != (n.Index == 0) {
			t.Errorf("%s loaded the self-initialization file: %v", n.PodName, loaded)
		}
		if m := tokenPattern.FindString(n.Log()); m != "" {
			t.Errorf("%s log shows a token: %q", n.PodName, m)
		}
	}
	c.WaitActive(60 * time.Second)
	// The roles work through a standby too, and the executor may step the leader down.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	upgrade := login(t, c, c.Nodes[2], resources.DefaultUpgradeRole, c.UpgradeSubject(), baotest.UpgradeAudience)
	baotest.Eventually(t, 90*time.Second, "three voters in the raft configuration", func(ctx context.Context) error {
		servers, err := upgrade.RaftConfiguration(ctx)
		if err != nil {
			return err
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		if len(servers) != 3 || voters != 3 {
			return errors.New("not yet three voters")
		}
		return nil
	})
	if err := upgrade.StepDown(ctx); err != nil {
		t.Errorf("upgrade role steps down through a standby: %v", err)
	}
	c.WaitActive(60 * time.Second)
}
