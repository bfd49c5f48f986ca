package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
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

func TestParseRestoreFlags(t *testing.T) {
	base := []string{"--address", "https://bao-0.bao-internal.ns.svc:8200", "--ca-file", "/openbao/tls/ca.crt",
		"--token-file", "/var/run/secrets/openbao.org/restore/token", "--cluster", "bao",
		"--seal-key-file", "/etc/openbao-seal/key", "--seal-key-id", "operator-1"}
	sum := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		args    []string
		want    RestoreOptions
		wantErr string
	}{{
		name: "volume",
		args: append([]string{"--source", "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap", "--snapshot-dir", "/snapshots", "--result-file", "/dev/termination-log"}, base...),
		want: RestoreOptions{Cluster: "bao", Source: "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap", SnapshotDir: "/snapshots",
			SealKeyFile: "/etc/openbao-seal/key", SealKeyID: "operator-1", ResultFile: "/dev/termination-log"},
	}, {
		name: "S3, forced, with a checksum",
		args: append([]string{"--source", "s3://backups/prod/ns/bao/bao-20261130T060000Z.snap", "--force", "--sha256", sum,
			"--s3-endpoint", "https://s3.example.com", "--s3-bucket", "backups", "--s3-region", "eu-west-1", "--s3-path-style",
			"--s3-ca-file", "/etc/openbao-backup/ca/ca.crt", "--s3-credentials-dir", "/etc/openbao-backup/credentials"}, base...),
		want: RestoreOptions{Cluster: "bao", Source: "s3://backups/prod/ns/bao/bao-20261130T060000Z.snap", Force: true, SHA256: sum,
			SealKeyFile: "/etc/openbao-seal/key", SealKeyID: "operator-1",
			S3Endpoint: "https://s3.example.com", S3Bucket: "backups", S3Region: "eu-west-1", S3PathStyle: true,
			S3CAFile: "/etc/openbao-backup/ca/ca.crt", S3CredentialsDir: "/etc/openbao-backup/credentials"},
	}, {
		name:    "the seal key is required",
		args:    []string{"--address", "https://bao-0:8200", "--ca-file", "ca", "--token-file", "t", "--cluster", "bao", "--source", "pvc://c/a.snap", "--snapshot-dir", "/s"},
		wantErr: "missing --seal-key-file, --seal-key-id",
	}, {
		name:    "a volume source needs --snapshot-dir",
		args:    append([]string{"--source", "pvc://bao-snapshots/backups/a.snap"}, base...),
		wantErr: "missing --snapshot-dir",
	}, {
		name:    "an S3 source needs the endpoint and credentials",
		args:    append([]string{"--source", "s3://backups/a.snap"}, base...),
		wantErr: "missing --s3-credentials-dir, --s3-endpoint",
	}, {
		name:    "the source's bucket is --s3-bucket",
		args:    append([]string{"--source", "s3://other/a.snap", "--s3-endpoint", "https://s3", "--s3-credentials-dir", "/c", "--s3-bucket", "backups"}, base...),
		wantErr: `is not in --s3-bucket "backups"`,
	}, {
		name:    "unknown scheme",
		args:    append([]string{"--source", "https://example.com/a.snap"}, base...),
		wantErr: "neither s3://<bucket>/<key> nor pvc://<claim>/<path>",
	}, {
		name:    "no object",
		args:    append([]string{"--source", "s3://backups/", "--s3-endpoint", "https://s3", "--s3-credentials-dir", "/c"}, base...),
		wantErr: "names no object or file",
	}, {
		name:    "a path out of the volume",
		args:    append([]string{"--source", "pvc://claim/backups/../../etc/shadow", "--snapshot-dir", "/snapshots"}, base...),
		wantErr: "must be a clean path inside the volume",
	}, {
		name:    "a checksum that is not one",
		args:    append([]string{"--source", "pvc://claim/a.snap", "--snapshot-dir", "/snapshots", "--sha256", "abc"}, base...),
		wantErr: "is not 64 hex digits",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFlags(ActionRestore, tc.args, &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Role != "openbao-restore" || got.Timeout != 30*time.Minute {
				t.Errorf("role %q, timeout %s: want the restore role and timeout by default", got.Role, got.Timeout)
			}
			if got.Restore != tc.want {
				t.Errorf("got %+v\nwant %+v", got.Restore, tc.want)
			}
		})
	}
}

// TestRestoreBadFlagsAreARefusal: the operator reads a refusal from the result file, and
// the exit code is 1 as for any refusal.
func TestRestoreBadFlagsAreARefusal(t *testing.T) {
	result := filepath.Join(t.TempDir(), "result.json")
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"restore", "--source", "ftp://x/y", "--result-file", result}, &out, &errOut)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d", code, exitFailed)
	}
	b, err := os.ReadFile(result)
	if err != nil {
		t.Fatal(err)
	}
	var res backup.RestoreResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if !res.Refused || res.Reason != backup.ReasonInvalidRequest || !strings.Contains(res.Message, "missing --address") || res.Location != "ftp://x/y" {
		t.Errorf("result %+v", res)
	}
}
