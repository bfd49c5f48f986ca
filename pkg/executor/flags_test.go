package executor

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	base := []string{"--ca-file", "/openbao/tls/ca.crt", "--token-file", "/var/run/secrets/openbao.org/upgrade/token"}
	tests := []struct {
		name    string
		action  string
		args    []string
		want    Options
		wantErr string
	}{{
		name:   "step-down",
		action: ActionStepDown,
		args:   append([]string{"--address", "https://bao-2.bao-internal.ns.svc:8200", "--node-id", "bao-2"}, base...),
		want: Options{Address: "https://bao-2.bao-internal.ns.svc:8200", CAFile: "/openbao/tls/ca.crt",
			TokenFile: "/var/run/secrets/openbao.org/upgrade/token", Role: "openbao-upgrade", AuthMount: "jwt",
			NodeID: "bao-2", Timeout: 2 * time.Minute},
	}, {
		name:   "every step-down flag",
		action: ActionStepDown,
		args: append([]string{"--address", "https://10.0.0.7:8200", "--node-id", "bao-1", "--role", "r", "--auth-mount", "k8s",
			"--tls-server-name", "bao-1.bao-internal.ns.svc", "--timeout", "30s"}, base...),
		want: Options{Address: "https://10.0.0.7:8200", CAFile: "/openbao/tls/ca.crt", TLSServerName: "bao-1.bao-internal.ns.svc",
			TokenFile: "/var/run/secrets/openbao.org/upgrade/token", Role: "r", AuthMount: "k8s", NodeID: "bao-1", Timeout: 30 * time.Second},
	}, {
		name:    "step-down needs --node-id",
		action:  ActionStepDown,
		args:    append([]string{"--address", "https://bao-2.bao-internal.ns.svc:8200"}, base...),
		wantErr: "missing --node-id",
	}, {
		name:   "snapshot",
		action: ActionSnapshot,
		args:   append([]string{"--address", "https://bao-0.bao-internal.ns.svc:8200", "--out", "/snapshots/a.snap"}, base...),
		want: Options{Address: "https://bao-0.bao-internal.ns.svc:8200", CAFile: "/openbao/tls/ca.crt",
			TokenFile: "/var/run/secrets/openbao.org/upgrade/token", Role: "openbao-upgrade", AuthMount: "jwt",
			Out: "/snapshots/a.snap", Timeout: 10 * time.Minute},
	}, {
		name:    "snapshot needs --out",
		action:  ActionSnapshot,
		args:    append([]string{"--address", "https://bao-0.bao-internal.ns.svc:8200"}, base...),
		wantErr: "missing --out",
	}, {
		name:    "missing flags are named",
		action:  ActionStepDown,
		args:    nil,
		wantErr: "missing --address, --ca-file, --node-id, --token-file",
	}, {
		name:    "unknown action",
		action:  "rollback",
		wantErr: `unknown action "rollback"`,
	}, {
		name:    "not a URL",
		action:  ActionStepDown,
		args:    append([]string{"--address", "bao-0:8200", "--node-id", "bao-0"}, base...),
		wantErr: "is not an http(s) URL",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(tc.action, tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestMainUsage(t *testing.T) {
	for _, args := range [][]string{nil, {"--address", "x"}, {"step-down", "--bogus"}} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, &out, &errOut); code != exitUsage {
			t.Errorf("Main(%q) = %d, want %d", args, code, exitUsage)
		}
		if errOut.Len() == 0 {
			t.Errorf("Main(%q) printed no usage", args)
		}
	}
}
