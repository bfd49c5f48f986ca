package resources_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// rawOperator logs in with the operator's role and returns the api library's client, to send
// requests the operator's client never makes.
func rawOperator(ctx context.Context, t *testing.T, c *baotest.Cluster, n *baotest.Node) *api.Logical {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = n.Address()
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: c.CACertPEM(), TLSServerName: n.DNSName}); err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := cl.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{
		"role": resources.OperatorRole, "jwt": c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience),
	})
	if err != nil {
		t.Fatalf("login as the operator: %v", err)
	}
	cl.SetToken(secret.Auth.ClientToken)
	return cl.Logical()
}

func publicKeyPEM(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestOperatorFollowsSigningKeyRotationOnRealServer checks the operator's JWT keys policy on
// a real server: the operator may replace the trusted keys (first old and new together, then
// the new one alone) and a token signed with the new key logs in; it may not change the
// issuer, leave it out (which would reset it), set any other parameter of the auth method, or
// touch another mount's configuration; the upgrade role may not change the keys at all.
func TestOperatorFollowsSigningKeyRotationOnRealServer(t *testing.T) {
	t.Parallel()
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	c.Start()
	n := c.Nodes[0]
	n.WaitServing(2 * time.Minute)
	c.WaitActive(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	oldPEM, newPEM := c.JWTPublicKeyPEM(), publicKeyPEM(t, newKey)
	loginWithNewKey := func() error {
		return n.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole,
			c.SignJWTWithKey(newKey, baotest.OperatorSubject, baotest.OperatorAudience))
	}
	if err := loginWithNewKey(); !errors.Is(err, openbao.ErrLoginRefused) {
		t.Fatalf("a token signed by a key OpenBao was not given: %v, want a refused login", err)
	}

	op := login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)
	// The rotation's first half: the old key still verifies, the new one signs.
	both := openbao.JWTAuthConfig{BoundIssuer: baotest.Issuer, JWTValidationPubKeys: []string{oldPEM, newPEM}}
	if err := op.SetJWTAuthConfig(ctx, resources.JWTAuthMount, both); err != nil {
		t.Fatalf("the operator replaces the keys with old and new: %v", err)
	}
	if err := loginWithNewKey(); err != nil {
		t.Errorf("login with the new key after the update: %v", err)
	}
	login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)

	// What the policy refuses, whatever the keys.
	raw := rawOperator(ctx, t, c, n)
	refused := map[string]struct {
		path string
		data map[string]any
	}{
		"another issuer": {"auth/jwt/config", map[string]any{
			"bound_issuer": "https://attacker.example", "jwt_validation_pubkeys": []string{newPEM}}},
		"no issuer (would reset it)": {"auth/jwt/config", map[string]any{
			"jwt_validation_pubkeys": []string{newPEM}}},
		"an OIDC discovery URL": {"auth/jwt/config", map[string]any{
			"bound_issuer": baotest.Issuer, "jwt_validation_pubkeys": []string{newPEM}, "oidc_discovery_url": "https://attacker.example"}},
		"a default role": {"auth/jwt/config", map[string]any{
			"bound_issuer": baotest.Issuer, "jwt_validation_pubkeys": []string{newPEM}, "default_role": "openbao-upgrade"}},
		"a role": {"auth/jwt/role/" + resources.OperatorRole, map[string]any{
			"role_type": "jwt", "bound_audiences": []string{"x"}, "user_claim": "sub", "token_policies": []string{"root"}}},
		"a policy": {"sys/policies/acl/" + resources.OperatorJWTKeysPolicy, map[string]any{"policy": `path "*" { capabilities = ["sudo"] }`}},
	}
	for name, r := range refused {
		_, err := raw.WriteWithContext(ctx, r.path, r.data)
		var re *api.ResponseError
		if !errors.As(err, &re) || re.StatusCode != http.StatusForbidden {
			t.Errorf("the operator writes %s: got %v, want 403", name, err)
		}
	}
	upgradeRole := login(t, c, n, resources.DefaultUpgradeRole, c.UpgradeSubject(), baotest.UpgradeAudience)
	err = upgradeRole.SetJWTAuthConfig(ctx, resources.JWTAuthMount, openbao.JWTAuthConfig{BoundIssuer: baotest.Issuer, JWTValidationPubKeys: []string{newPEM}})
	if !errors.Is(err, openbao.ErrPermissionDenied) {
		t.Errorf("the upgrade role replaces the keys: %v, want permission denied", err)
	}
	// Nothing of the refused writes took effect: the issuer and both keys still hold.
	if err := loginWithNewKey(); err != nil {
		t.Errorf("login with the new key after the refused writes: %v", err)
	}
	login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)

	// The rotation's second half: the old key is gone from the API server, so from OpenBao.
	newOnly := openbao.JWTAuthConfig{BoundIssuer: baotest.Issuer, JWTValidationPubKeys: []string{newPEM}}
	if err := op.SetJWTAuthConfig(ctx, resources.JWTAuthMount, newOnly); err != nil {
		t.Fatalf("the operator drops the old key: %v", err)
	}
	err = n.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, c.SignJWT(baotest.OperatorSubject, baotest.OperatorAudience))
	if !errors.Is(err, openbao.ErrLoginRefused) {
		t.Errorf("login with the dropped key: %v, want a refused login", err)
	}
	if err := loginWithNewKey(); err != nil {
		t.Errorf("login with the new key after dropping the old one: %v", err)
	}
}

// TestOlderClusterGetsTheKeysPolicyByHand plays a cluster created by a release whose operator
// role had no JWT keys policy: the operator's write is refused as permission denied (the
// operator reports KeysPolicyMissing), and the README's manual step, run with an
// administrative token, lets the next write through without changing the role otherwise.
func TestOlderClusterGetsTheKeysPolicyByHand(t *testing.T) {
	t.Parallel()
	const adminSubject = "system:serviceaccount:ns:admin"
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: []resources.InitRequest{
		// What an earlier release left: the operator's role with its first policy only, and
		// no keys policy.
		{Name: "older_operator_role", Path: "auth/jwt/role/" + resources.OperatorRole, Data: map[string]any{"role_type": "jwt", "token_policies": []string{resources.OperatorRole}}},
		{Name: "older_no_keys_policy", Path: "sys/policies/acl/" + resources.OperatorJWTKeysPolicy, Operation: "delete"},
		{Name: "admin_policy", Path: "sys/policies/acl/admin", Data: map[string]any{"policy": `path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }`}},
		{Name: "admin_role", Path: "auth/jwt/role/admin", Data: map[string]any{
			"role_type": "jwt", "bound_audiences": []string{"admin"}, "bound_subject": adminSubject,
			"user_claim": "sub", "token_policies": []string{"admin"}, "token_ttl": "5m",
		}},
	}})
	c.Start()
	n := c.Nodes[0]
	n.WaitServing(2 * time.Minute)
	c.WaitActive(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	newKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	both := openbao.JWTAuthConfig{BoundIssuer: baotest.Issuer, JWTValidationPubKeys: []string{c.JWTPublicKeyPEM(), publicKeyPEM(t, newKey)}}
	op := login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)
	if err := op.SetJWTAuthConfig(ctx, resources.JWTAuthMount, both); !errors.Is(err, openbao.ErrPermissionDenied) {
		t.Fatalf("an older cluster's operator role writes the keys: %v, want permission denied", err)
	}

	// The README's manual step.
	policy, err := resources.JWTKeysPolicy(baotest.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := api.DefaultConfig()
	cfg.Address = n.Address()
	cfg.MaxRetries = 0
	if err := cfg.ConfigureTLS(&api.TLSConfig{CACertBytes: c.CACertPEM(), TLSServerName: n.DNSName}); err != nil {
		t.Fatal(err)
	}
	admin, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := admin.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{"role": "admin", "jwt": c.SignJWT(adminSubject, "admin")})
	if err != nil {
		t.Fatalf("admin login: %v", err)
	}
	admin.SetToken(secret.Auth.ClientToken)
	if err := admin.Sys().PutPolicyWithContext(ctx, resources.OperatorJWTKeysPolicy, policy); err != nil {
		t.Fatalf("bao policy write: %v", err)
	}
	if _, err := admin.Logical().WriteWithContext(ctx, "auth/jwt/role/"+resources.OperatorRole, map[string]any{
		"role_type": "jwt", "token_policies": resources.OperatorRole + "," + resources.OperatorJWTKeysPolicy,
	}); err != nil {
		t.Fatalf("bao write of the operator role's policies: %v", err)
	}

	// The role kept its binding (a role write changes only the fields given, but role_type
	// must be repeated: left out, OpenBao takes it for an OIDC role), and its new
	// token may write the keys.
	op = login(t, c, n, resources.OperatorRole, baotest.OperatorSubject, baotest.OperatorAudience)
	if err := op.SetJWTAuthConfig(ctx, resources.JWTAuthMount, both); err != nil {
		t.Fatalf("after the manual step the operator writes the keys: %v", err)
	}
	if err := n.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.OperatorRole, c.SignJWT("system:serviceaccount:ns:someone-else", baotest.OperatorAudience)); !errors.Is(err, openbao.ErrLoginRefused) {
		t.Errorf("the operator role after the manual step accepts another subject: %v", err)
	}
	if _, err := op.VersionHistory(ctx); err != nil {
		t.Errorf("the operator role kept its first policy: %v", err)
	}
}
