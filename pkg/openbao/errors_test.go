package openbao

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/openbao/openbao/api/v2"

	"github.com/openbao-operator/openbao-operator/pkg/pki"
)

func TestClassifyMapsAnswersToKinds(t *testing.T) {
	cases := []struct {
		name      string
		code      int
		messages  []string
		kind      error
		transient bool
	}{
		{"sealed", 503, []string{"Vault is sealed"}, ErrSealed, true},
		{"gateway unavailable", 503, []string{"upstream"}, ErrServer, true},
		{"not initialized", 501, []string{"Vault is not initialized"}, ErrNotInitialized, false},
		{"permission denied", 403, []string{"1 error occurred:\n\t* permission denied\n\n"}, ErrPermissionDenied, false},
		{"missing token", 400, []string{"missing client token"}, ErrPermissionDenied, false},
		{"not found", 404, nil, ErrNotFound, false},
		{"rate limited", 429, []string{"request path \"x\": rate limit quota exceeded"}, ErrRateLimited, true},
		{"standby without active node", 500, []string{"local node not active but active cluster node not found"}, ErrServer, true},
		{"promote a voter", 500, []string{"server is not a non-voter"}, ErrServer, false},
		{"bad gateway", 502, nil, ErrServer, true},
		{"invalid request", 400, []string{"invalid server_id"}, ErrBadRequest, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("op", fmt.Errorf("wrapped: %w", &api.ResponseError{StatusCode: tc.code, Errors: tc.messages}))
			if !errors.Is(err, tc.kind) {
				t.Errorf("kind: got %v, want %v", err, tc.kind)
			}
			if got := IsTransient(err); got != tc.transient {
				t.Errorf("IsTransient = %v, want %v (%v)", got, tc.transient, err)
			}
			var e *Error
			if !errors.As(err, &e) || e.StatusCode != tc.code {
				t.Errorf("status code lost: %#v", err)
			}
		})
	}
}

func TestIsTransientForNetworkAndContextErrors(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := map[string]struct {
		err  error
		want bool
	}{
		"nil":                      {nil, false},
		"connection refused":       {classify("health", refused), true},
		"bare connection refused":  {refused, true},
		"request timed out":        {classify("health", context.DeadlineExceeded), true},
		"caller cancelled":         {classify("health", context.Canceled), false},
		"login refused":            {&Error{Op: "login", StatusCode: 400, Kind: ErrLoginRefused}, false},
		"unrelated error":          {errors.New("boom"), false},
		"tls verification failure": {classify("health", errors.New(`redirect failed: tls: failed to verify certificate: x509: certificate is valid for a, not b`)), false},
	}
	for name, tc := range cases {
		if got := IsTransient(tc.err); got != tc.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", name, tc.err, got, tc.want)
		}
	}
}

func TestErrorMessageNamesOperationKindAndCode(t *testing.T) {
	err := classify("step down", &api.ResponseError{StatusCode: 403, Errors: []string{"permission denied"}})
	want := "step down: permission denied (HTTP 403): permission denied"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
	// Classifying twice keeps the kind and prefixes the operation.
	again := classify("upgrade", err)
	if !errors.Is(again, ErrPermissionDenied) || again.Error() != "upgrade: "+want {
		t.Errorf("reclassified: %v", again)
	}
}

func TestPodAddress(t *testing.T) {
	if got := PodAddress("10.1.2.3", 8200); got != "https://10.1.2.3:8200" {
		t.Error(got)
	}
	if got := PodAddress("fd00::5", 8200); got != "https://[fd00::5]:8200" {
		t.Error(got)
	}
}

func TestNewRequiresAddressAndCA(t *testing.T) {
	if _, err := New(Config{CACertPEM: []byte("x")}); err == nil {
		t.Error("no address accepted")
	}
	if _, err := New(Config{Address: "https://127.0.0.1:8200"}); err == nil {
		t.Error("no CA accepted")
	}
}

func TestNewIgnoresTokenFromEnvironment(t *testing.T) {
	t.Setenv("BAO_TOKEN", "s.fromenvironment000000000")
	t.Setenv("VAULT_TOKEN", "s.fromenvironment000000000")
	ca, err := pki.NewCA("test", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := New(Config{Address: "https://127.0.0.1:8200", CACertPEM: ca.CertPEM})
	if err != nil {
		t.Fatal(err)
	}
	if tok := cl.(*client).api.Token(); tok != "" {
		t.Errorf("client took a token from the environment: %q", tok)
	}
}
