package controlplane_test

import (
	"path/filepath"
	"slices"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestRotateServiceAccountKey rotates the signing key in its two restarts and checks what the
// API server publishes and accepts after each: first both keys published, tokens of both
// accepted; then only the new key, and tokens of the old one refused.
func TestRotateServiceAccountKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cp")
	cp := startControlPlane(t, dir)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	const ns = "rotate"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	token := func() (jwt, kid string) {
		t.Helper()
		resp, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "app", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("request a token: %v", err)
		}
		header, _, _, _ := splitJWT(t, resp.Status.Token)
		var h struct {
			Kid string `json:"kid"`
		}
		decodeSegment(t, header, &h)
		return resp.Status.Token, h.Kid
	}
	published := func() []string {
		t.Helper()
		var jwks struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		getJSON(t, cs, "/openid/v1/jwks", &jwks)
		var kids []string
		for _, k := range jwks.Keys {
			kids = append(kids, k.Kid)
		}
		slices.Sort(kids)
		return kids
	}
	accepted := func(jwt string) bool {
		t.Helper()
		r, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: jwt}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token review: %v", err)
		}
		return r.Status.Authenticated
	}

	oldJWT, oldKid := token()
	if got := published(); !slices.Equal(got, []string{oldKid}) {
		t.Fatalf("published keys %v, want the signing key %s only", got, oldKid)
	}

	if _, err := cp.RotateServiceAccountKey(ctx); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if err := cp.Check(); err != nil {
		t.Fatalf("after the first restart: %v", err)
	}
	newJWT, newKid := token()
	if newKid == oldKid {
		t.Fatalf("a token after the rotation is signed by the old key %s", oldKid)
	}
	want := []string{oldKid, newKid}
	slices.Sort(want)
	if got := published(); !slices.Equal(got, want) {
		t.Errorf("published keys after the first restart %v, want old and new %v", got, want)
	}
	if !accepted(oldJWT) || !accepted(newJWT) {
		t.Errorf("after the first restart: old token accepted %v, new %v; want both", accepted(oldJWT), accepted(newJWT))
	}

	if err := cp.RetireOldServiceAccountKeys(ctx); err != nil {
		t.Fatalf("retire: %v", err)
	}
	if got := published(); !slices.Equal(got, []string{newKid}) {
		t.Errorf("published keys after the second restart %v, want the new key %s only", got, newKid)
	}
	if accepted(oldJWT) {
		t.Error("a token of the retired key is still accepted")
	}
	if !accepted(newJWT) {
		t.Error("a token of the new key is refused")
	}
	if pids := recordedPIDs(t, dir); len(pids) != 3 {
		t.Errorf("recorded PIDs after the restarts: %v, want 3", pids)
	}
}
