package resources_test

import (
	"reflect"
	"testing"

	"github.com/hashicorp/hcl"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestJWTKeysPolicyPinsTheIssuer checks the rendered policy as HCL: one path, update only,
// both parameters required, the issuer pinned to exactly the given value (even one with
// characters HCL treats specially), any keys allowed.
func TestJWTKeysPolicyPinsTheIssuer(t *testing.T) {
	if _, err := resources.JWTKeysPolicy(""); err == nil {
		t.Error("a policy without an issuer would allow any issuer; want an error")
	}
	const issuer = `https://issuer.example/"quoted" ${not_interpolated}`
	text, err := resources.JWTKeysPolicy(issuer)
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := hcl.Decode(&raw, text); err != nil {
		t.Fatalf("HCL does not parse the policy: %v\n%s", err, text)
	}
	paths := flatten(raw).(map[string]any)["path"].(map[string]any)
	if len(paths) != 1 {
		t.Fatalf("paths = %v, want auth/jwt/config only", paths)
	}
	p := dig(t, paths, "auth/jwt/config")
	if got := normalize(t, dig(t, p, "capabilities")); !reflect.DeepEqual(got, []any{"update"}) {
		t.Errorf("capabilities = %v, want update only", got)
	}
	if got := normalize(t, dig(t, p, "required_parameters")); !reflect.DeepEqual(got, []any{"bound_issuer", "jwt_validation_pubkeys"}) {
		t.Errorf("required_parameters = %v", got)
	}
	allowed := dig(t, p, "allowed_parameters").(map[string]any)
	if len(allowed) != 2 {
		t.Errorf("allowed_parameters = %v, want bound_issuer and jwt_validation_pubkeys only", allowed)
	}
	if got := normalize(t, dig(t, allowed, "bound_issuer")); !reflect.DeepEqual(got, []any{issuer}) {
		t.Errorf("bound_issuer allowed = %v, want [%q]", got, issuer)
	}
	if got := normalize(t, dig(t, allowed, "jwt_validation_pubkeys")); !reflect.DeepEqual(got, []any{}) {
		t.Errorf("jwt_validation_pubkeys allowed = %v, want [] (any keys)", got)
	}
}
