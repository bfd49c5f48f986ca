package upgrade_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// TestLoginFallsBackToTheLastAcceptedToken: after the API server starts signing with a new
// key, the token file may hold a token OpenBao cannot verify yet; the previous token, which
// OpenBao accepted, is tried once more so that the operator can log in and give OpenBao the
// new key.
func TestLoginFallsBackToTheLastAcceptedToken(t *testing.T) {
	bao := fake.NewHealthyCluster("bao", 1, "2.7.2")
	token := filepath.Join(t.TempDir(), "token")
	write := func(s string) {
		if err := os.WriteFile(token, []byte(s+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	o := &upgrade.Observer{NewClient: bao.NewClient, TokenFile: token}
	cl, _ := bao.NewClient(openbao.Config{Address: "https://bao-0:8200"})
	ctx := context.Background()
	refused := &openbao.Error{Op: "jwt login", StatusCode: 400, Kind: openbao.ErrLoginRefused}

	write("signed-by-old-key")
	if err := o.Login(ctx, cl); err != nil {
		t.Fatalf("first login: %v", err)
	}
	write("signed-by-new-key")
	bao.InjectError("LoginJWT", "", refused, 1)
	before := len(bao.CallsTo("LoginJWT"))
	if err := o.Login(ctx, cl); err != nil {
		t.Fatalf("login with the new token refused, the previous one accepted: %v", err)
	}
	if got := len(bao.CallsTo("LoginJWT")) - before; got != 2 {
		t.Errorf("%d logins, want the new token then the previous one", got)
	}

	// A token refused with no other accepted token to fall back to stays refused.
	write("signed-by-old-key")
	if err := o.Login(ctx, cl); err != nil {
		t.Fatal(err)
	}
	bao.InjectError("LoginJWT", "", refused, 1)
	if err := o.Login(ctx, cl); !errors.Is(err, openbao.ErrLoginRefused) {
		t.Errorf("the accepted token itself refused: %v, want ErrLoginRefused", err)
	}
	// Other errors are not retried with another token.
	write("signed-by-new-key")
	bao.InjectError("LoginJWT", "", &openbao.Error{Op: "jwt login", Kind: openbao.ErrUnavailable}, 1)
	before = len(bao.CallsTo("LoginJWT"))
	if err := o.Login(ctx, cl); !errors.Is(err, openbao.ErrUnavailable) {
		t.Errorf("unreachable server: %v", err)
	}
	if got := len(bao.CallsTo("LoginJWT")) - before; got != 1 {
		t.Errorf("%d logins for an unreachable server, want 1", got)
	}
}
