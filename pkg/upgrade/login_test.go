package upgrade_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"

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
	// Each login is for another cluster, so that no session of an earlier one is reused.
	clusters := 0
	login := func() error {
		clusters++
		c := &openbaov1alpha1.OpenBaoCluster{ObjectMeta: metav1.ObjectMeta{UID: types.UID(fmt.Sprintf("cluster-%d", clusters))}}
		_, err := o.Login(ctx, c, cl)
		return err
	}

	write("signed-by-old-key")
	if err := login(); err != nil {
		t.Fatalf("first login: %v", err)
	}
	write("signed-by-new-key")
	bao.InjectError("LoginJWT", "", refused, 1)
	before := len(bao.CallsTo("LoginJWT"))
	if err := login(); err != nil {
		t.Fatalf("login with the new token refused, the previous one accepted: %v", err)
	}
	if got := len(bao.CallsTo("LoginJWT")) - before; got != 2 {
		t.Errorf("%d logins, want the new token then the previous one", got)
	}

	// A token refused with no other accepted token to fall back to stays refused.
	write("signed-by-old-key")
	if err := login(); err != nil {
		t.Fatal(err)
	}
	bao.InjectError("LoginJWT", "", refused, 1)
	if err := login(); !errors.Is(err, openbao.ErrLoginRefused) {
		t.Errorf("the accepted token itself refused: %v, want ErrLoginRefused", err)
	}
	// Other errors are not retried with another token.
	write("signed-by-new-key")
	bao.InjectError("LoginJWT", "", &openbao.Error{Op: "jwt login", Kind: openbao.ErrUnavailable}, 1)
	before = len(bao.CallsTo("LoginJWT"))
	if err := login(); !errors.Is(err, openbao.ErrUnavailable) {
		t.Errorf("unreachable server: %v", err)
	}
	if got := len(bao.CallsTo("LoginJWT")) - before; got != 1 {
		t.Errorf("%d logins for an unreachable server, want 1", got)
	}
}
