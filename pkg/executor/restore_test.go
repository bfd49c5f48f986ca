package executor_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/tags"
	"github.com/openbao/openbao/api/v2"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/backup/s3test"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// kvRequests give a test cluster a KV engine and a role that may read and write it, signed
// by the cluster's own JWT key (so a restored cluster keeps the source cluster's role).
func kvRequests() []resources.InitRequest {
	return []resources.InitRequest{
		{Name: "enable-kv", Path: "sys/mounts/secret", Data: map[string]any{"type": "kv", "options": map[string]any{"version": "1"}}},
		{Name: "kv-user-policy", Path: "sys/policies/acl/kv-user", Data: map[string]any{"policy": "path \"secret/*\" {\n  capabilities = [\"create\", \"read\", \"update\"]\n}\n"}},
		{Name: "kv-user-role", Path: "auth/jwt/role/kv-user", Data: map[string]any{
			"role_type": "jwt", "bound_audiences": []string{"kv-user"}, "bound_subject": "system:serviceaccount:ns:kv-user",
			"user_claim": "sub", "token_policies": []string{"kv-user"}, "token_ttl": "5m",
		}},
	}
}

// kv logs in to node n of cluster c with the kv-user role.
func kv(t *testing.T, c *baotest.Cluster, n *baotest.Node) *api.Logical {
	t.Helper()
	return kvSignedBy(t, c, c, n)
}

// kvSignedBy logs in to node n of cluster c with the kv-user role, with a token signed by
// signer's JWT key: after a restore, a cluster trusts the source cluster's key.
func kvSignedBy(t *testing.T, signer, c *baotest.Cluster, n *baotest.Node) *api.Logical {
	t.Helper()
	var l *api.Logical
	baotest.Eventually(t, time.Minute, "login as kv-user on "+n.PodName, func(ctx context.Context) error {
		var err error
		l, err = tryKV(ctx, t, signer, c, n)
		return err
	})
	return l
}

// tryKV makes one attempt of kvSignedBy.
func tryKV(ctx context.Context, t *testing.T, signer, c *baotest.Cluster, n *baotest.Node) (*api.Logical, error) {
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
		"role": "kv-user", "jwt": signer.SignJWT("system:serviceaccount:ns:kv-user", "kv-user"),
	})
	if err != nil {
		return nil, err
	}
	cl.SetToken(secret.Auth.ClientToken)
	return cl.Logical(), nil
}

func kvPut(t *testing.T, l *api.Logical, key string) {
	t.Helper()
	if _, err := l.Write("secret/"+key, map[string]any{"v": key}); err != nil {
		t.Fatalf("write secret/%s: %v", key, err)
	}
}

// kvHas says whether secret/<key> exists.
func kvHas(t *testing.T, l *api.Logical, key string) bool {
	t.Helper()
	s, err := l.Read("secret/" + key)
	if err != nil {
		t.Fatalf("read secret/%s: %v", key, err)
	}
	return s != nil && s.Data["v"] == key
}

// restoreEnv is what a restore Job gets: the server to talk to, a CA, a token for the restore
// audience, the seal key.
type restoreEnv struct {
	c       *baotest.Cluster
	node    *baotest.Node
	files   files
	sealKey string
	dir     string
}

func newRestoreEnv(t *testing.T, c *baotest.Cluster, node *baotest.Node) restoreEnv {
	jwt := c.SignJWT(c.UpgradeSubject(), resources.RestoreAudience)
	return restoreEnv{c: c, node: node, files: jobFiles(t, c, jwt), sealKey: c.SealKeyPath(), dir: t.TempDir()}
}

func (e restoreEnv) args(resultFile, source string, extra ...string) []string {
	return append([]string{"restore",
		"--address", e.node.Address(), "--tls-server-name", e.node.DNSName,
		"--ca-file", e.files.ca, "--token-file", e.files.token,
		"--cluster", "bao", "--source", source,
		"--seal-key-file", e.sealKey, "--seal-key-id", "test-1",
		"--result-file", resultFile, "--timeout", "3m"}, extra...)
}

func readRestoreResult(t *testing.T, p string) backup.RestoreResult {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read the result file: %v", err)
	}
	var res backup.RestoreResult
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatalf("result %q: %v", b, err)
	}
	return res
}

// backupTo runs the backup action into dir (volume) and returns the snapshot's path.
func backupToDir(t *testing.T, c *baotest.Cluster, leader *baotest.Node, dir string) (string, backup.Result) {
	t.Helper()
	f := jobFiles(t, c, c.SignJWT(c.UpgradeSubject(), resources.BackupAudience))
	name := backup.SnapshotName("bao", time.Now())
	resultFile := filepath.Join(t.TempDir(), "backup.json")
	r := runExecutor(t, "backup", "--address", leader.Address(), "--tls-server-name", leader.DNSName,
		"--ca-file", f.ca, "--token-file", f.token, "--cluster", "bao", "--name", name,
		"--result-file", resultFile, "--dir", filepath.Join(dir, backup.VolumeDir), "--claim", "bao-snapshots", "--timeout", "2m")
	if r.code != 0 {
		t.Fatalf("backup: %s", r)
	}
	b, _ := os.ReadFile(resultFile)
	var res backup.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, backup.VolumeDir, name), res
}

// TestRestore backs a real server up to a real S3 server and to a directory, checks that
// every bad snapshot is refused with nothing changed, then restores both: what was written
// after the snapshot is gone, what was written before it is there.
func TestRestore(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: kvRequests()})
	c.Start()
	srv := s3test.Start(t)
	srv.MakeBucket(t, "backups")
	leader := c.WaitActive(time.Minute)
	l := kv(t, c, leader)
	kvPut(t, l, "before")

	// A volume backup and an S3 backup of the same state.
	snapDir := t.TempDir()
	snapPath, volRes := backupToDir(t, c, leader, snapDir)
	creds := filepath.Join(t.TempDir(), "s3")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	for n, v := range map[string]string{"AWS_ACCESS_KEY_ID": s3test.AccessKey, "AWS_SECRET_ACCESS_KEY": s3test.SecretKey} {
		if err := os.WriteFile(filepath.Join(creds, n), []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s3CA := filepath.Join(t.TempDir(), "s3-ca.crt")
	if err := os.WriteFile(s3CA, srv.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	s3Flags := []string{"--s3-endpoint", srv.Endpoint, "--s3-bucket", "backups", "--s3-path-style", "--s3-ca-file", s3CA, "--s3-credentials-dir", creds}
	prefix := backup.ObjectPrefix("openbao/", "ns", "bao")
	name := backup.SnapshotName("bao", time.Now().Add(time.Second))
	bf := jobFiles(t, c, c.SignJWT(c.UpgradeSubject(), resources.BackupAudience))
	if r := runExecutor(t, append([]string{"backup", "--address", leader.Address(), "--tls-server-name", leader.DNSName,
		"--ca-file", bf.ca, "--token-file", bf.token, "--cluster", "bao", "--name", name, "--s3-prefix", prefix, "--timeout", "2m"}, s3Flags...)...); r.code != 0 {
		t.Fatalf("backup to S3: %s", r)
	}
	s3Source := "s3://backups/" + prefix + name
	kvPut(t, l, "after")

	snap, err := os.ReadFile(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	mc := srv.Target(t, "backups", "").Client()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// put stores data as another object, tagged with sha256 when tag is set.
	put := func(key string, data []byte, tag string) string {
		t.Helper()
		if _, err := mc.PutObject(ctx, "backups", key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if tag != "" {
			tg, _ := tags.NewTags(map[string]string{backup.TagSHA256: tag}, true)
			if err := mc.PutObjectTagging(ctx, "backups", key, tg, minio.PutObjectTaggingOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		return "s3://backups/" + key
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	corrupted := bytes.Clone(snap)
	corrupted[len(corrupted)/2] ^= 0xff
	truncated := snap[:len(snap)*2/3]
	otherKey := filepath.Join(t.TempDir(), "other.key")
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	if err := os.WriteFile(otherKey, k, 0o600); err != nil {
		t.Fatal(err)
	}

	e := newRestoreEnv(t, c, leader)
	refusals := []struct {
		name   string
		args   []string
		reason string
	}{
		{"wrong seal key", append(e.args("", s3Source, s3Flags...), "--seal-key-file", otherKey), backup.ReasonSealKeyMismatch},
		{"another seal key ID", append(e.args("", s3Source, s3Flags...), "--seal-key-id", "test-2"), backup.ReasonSealKeyMismatch},
		{"corrupted object", e.args("", put("copies/corrupted.snap", corrupted, volRes.SHA256), s3Flags...), backup.ReasonChecksumMismatch},
		{"truncated archive", e.args("", put("copies/truncated.snap", truncated, sum(truncated)), s3Flags...), backup.ReasonIncompleteSnapshot},
		{"wrong --sha256", e.args("", s3Source, append(s3Flags, "--sha256", sum([]byte("x")))...), backup.ReasonChecksumMismatch},
		{"no recorded checksum", e.args("", put("copies/untagged.snap", snap, ""), s3Flags...), backup.ReasonNoChecksum},
		{"missing object", e.args("", "s3://backups/copies/none.snap", s3Flags...), backup.ReasonNotFound},
		{"missing file", e.args("", "pvc://bao-snapshots/backups/none.snap", "--snapshot-dir", snapDir), backup.ReasonNotFound},
		{"volume snapshot with a wrong seal key", append(e.args("", "pvc://bao-snapshots/backups/"+filepath.Base(snapPath), "--snapshot-dir", snapDir), "--seal-key-file", otherKey), backup.ReasonSealKeyMismatch},
		{"a path outside the volume", e.args("", "pvc://bao-snapshots/../etc/passwd", "--snapshot-dir", snapDir), backup.ReasonInvalidRequest},
	}
	for i, tc := range refusals {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			resultFile := filepath.Join(e.dir, "refusal.json")
			args := tc.args
			// The result file comes first in args; point it at this case's file.
			for j := range args {
				if args[j] == "--result-file" {
					args[j+1] = resultFile
				}
			}
			r := runExecutor(t, args...)
			if r.code != 1 {
				t.Fatalf("case %d: exit %d, want 1: %s", i, r.code, r)
			}
			res := readRestoreResult(t, resultFile)
			if !res.Refused || res.Reason != tc.reason || res.Message == "" {
				t.Errorf("result %+v, want a refusal for %s", res, tc.reason)
			}
			if strings.Contains(r.stdout, "logged in") {
				t.Error("the executor logged in before the snapshot passed its checks")
			}
			if !kvHas(t, l, "after") {
				t.Error("a refused restore changed the data")
			}
		})
	}

	t.Run("an object replaced after the check is not read", func(t *testing.T) {
		target := srv.Target(t, "backups", "")
		key := "copies/replaced.snap"
		put(key, snap, volRes.SHA256)
		o, err := target.StatSnapshot(ctx, key)
		if err != nil || o.SHA256 != volRes.SHA256 || o.ETag == "" {
			t.Fatalf("stat: %+v, %v", o, err)
		}
		put(key, corrupted, volRes.SHA256)
		if rc, err := target.OpenSnapshot(ctx, o); !errors.Is(err, backup.ErrObjectChanged) {
			if rc != nil {
				_ = rc.Close()
			}
			t.Errorf("open the replaced object with the checked ETag: %v, want ErrObjectChanged", err)
		}
	})

	t.Run("least privilege", func(t *testing.T) {
		backupJWT := c.SignJWT(c.UpgradeSubject(), resources.BackupAudience)
		if err := leader.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultRestoreRole, backupJWT); err == nil {
			t.Error("a backup Job's token logged in to the restore role")
		}
		upgradeJWT := c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)
		if err := leader.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultRestoreRole, upgradeJWT); err == nil {
			t.Error("an upgrade Job's token logged in to the restore role")
		}
		restoreJWT := c.SignJWT(c.UpgradeSubject(), resources.RestoreAudience)
		for _, role := range []string{resources.DefaultBackupRole, resources.DefaultUpgradeRole} {
			if err := leader.Client().LoginJWT(ctx, resources.JWTAuthMount, role, restoreJWT); err == nil {
				t.Errorf("a restore Job's token logged in to the role %s", role)
			}
		}
		cl := leader.Client()
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultRestoreRole, restoreJWT); err != nil {
			t.Fatal(err)
		}
		if err := cl.Snapshot(ctx, io.Discard); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the restore role read a snapshot: %v", err)
		}
		if _, err := cl.RaftConfiguration(ctx); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the restore role read the Raft configuration: %v", err)
		}
	})

	t.Run("restore from the volume", func(t *testing.T) {
		resultFile := filepath.Join(e.dir, "volume.json")
		r := runExecutor(t, e.args(resultFile, "pvc://bao-snapshots/backups/"+filepath.Base(snapPath), "--snapshot-dir", snapDir)...)
		if r.code != 0 {
			t.Fatalf("restore: %s", r)
		}
		assertNoSecret(t, r, c.SignJWT(c.UpgradeSubject(), resources.RestoreAudience))
		res := readRestoreResult(t, resultFile)
		if res.Refused || res.Reason != "" || res.SHA256 != volRes.SHA256 || res.Size != volRes.Size || res.Forced {
			t.Errorf("result %+v, backup %+v", res, volRes)
		}
		l := kv(t, c, leader)
		if !kvHas(t, l, "before") || kvHas(t, l, "after") {
			t.Errorf("after the restore: before %v (want true), after %v (want false)", kvHas(t, l, "before"), kvHas(t, l, "after"))
		}
		kvPut(t, l, "after-volume-restore")
	})

	t.Run("restore from S3, twice", func(t *testing.T) {
		for i := range 2 {
			resultFile := filepath.Join(e.dir, "s3.json")
			r := runExecutor(t, e.args(resultFile, s3Source, s3Flags...)...)
			if r.code != 0 {
				t.Fatalf("restore %d: %s", i, r)
			}
			if res := readRestoreResult(t, resultFile); res.Refused || res.Reason != "" || res.Location != s3Source {
				t.Errorf("result %+v", res)
			}
			l := kv(t, c, leader)
			if !kvHas(t, l, "before") || kvHas(t, l, "after") || kvHas(t, l, "after-volume-restore") {
				t.Errorf("restore %d: before %v after %v after-volume-restore %v", i, kvHas(t, l, "before"), kvHas(t, l, "after"), kvHas(t, l, "after-volume-restore"))
			}
		}
	})
}

// TestRestoreIntoAnotherClusterSharingTheSealKey restores one cluster's snapshot into a
// second cluster of three servers that uses the same static seal key: forced, through the
// active server. The active server serves the first cluster's data at once; the standbys
// only after a restart (stale state); after every server was restarted one at a time, the
// active one last, every server, each in turn the active one,
// serves it (and trusts the first cluster's JWT key), and the second cluster keeps its own
// three voters (OpenBao issue 2455 reported the active node left out after a forced restore).
func TestRestoreIntoAnotherClusterSharingTheSealKey(t *testing.T) {
	c1 := baotest.NewCluster(t, baotest.Options{Nodes: 1, SelfInit: kvRequests()})
	c2 := baotest.NewCluster(t, baotest.Options{Nodes: 3})
	key, err := os.ReadFile(c1.SealKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c2.SealKeyPath(), key, 0o600); err != nil {
		t.Fatal(err)
	}
	c1.Start()
	c2.Start()
	l1 := c1.WaitActive(time.Minute)
	l2 := c2.WaitActive(2 * time.Minute)
	waitThreeHealthyVoters(t, c2, l2)
	kvPut(t, kv(t, c1, l1), "from-cluster-1")
	dir := t.TempDir()
	snapPath, res1 := backupToDir(t, c1, l1, dir)
	source := "pvc://bao-snapshots/backups/" + filepath.Base(snapPath)

	e := newRestoreEnv(t, c2, l2)
	resultFile := filepath.Join(e.dir, "result.json")
	r := runExecutor(t, e.args(resultFile, source, "--snapshot-dir", dir, "--force")...)
	if r.code != 0 {
		t.Fatalf("forced restore: %s", r)
	}
	if res := readRestoreResult(t, resultFile); !res.Forced || res.Refused || res.SHA256 != res1.SHA256 {
		t.Errorf("result %+v", res)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// The active server serves the restored data at once. The standbys keep the second
	// cluster's mount table in memory (measured on 2.6.2 and 2.7.2: a login through them
	// answers "could not load configuration") until they are restarted, one at a time.
	if !kvHas(t, kvSignedBy(t, c1, c2, l2), "from-cluster-1") {
		t.Fatal("the active server does not serve the first cluster's data")
	}
	for _, n := range c2.Nodes {
		if n == l2 {
			continue
		}
		_, err := tryKV(ctx, t, c1, c2, n)
		t.Logf("login through the standby %s before its restart: %v", n.PodName, err)
		if err == nil || !strings.Contains(err.Error(), "could not load configuration") {
			t.Errorf("login through the standby %s before its restart: %v, want the stale mount table's \"could not load configuration\"", n.PodName, err)
		}
		n.Stop()
		n.Start()
		n.WaitServing(time.Minute)
	}
	// The server that was active during the restore is restarted last; without that, once
	// it is a standby it answered "active cluster node not found" (2.7.2).
	l2.Stop()
	c2.WaitActive(time.Minute)
	l2.Start()
	l2.WaitServing(time.Minute)
	for round := range 2 {
		active := c2.WaitActive(time.Minute)
		for _, n := range c2.Nodes {
			if h := n.WaitServing(time.Minute); h.Sealed {
				t.Fatalf("%s sealed after the restore", n.PodName)
			}
			if !kvHas(t, kvSignedBy(t, c1, c2, n), "from-cluster-1") {
				t.Errorf("round %d (active %s): %s does not serve the first cluster's data", round, active.PodName, n.PodName)
			}
		}
		// The upgrade role of the restored data trusts the first cluster's JWT key.
		cl := active.Client()
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, c1.SignJWT(c2.UpgradeSubject(), baotest.UpgradeAudience)); err != nil {
			t.Fatal(err)
		}
		servers, err := cl.RaftConfiguration(ctx)
		if err != nil {
			t.Fatal(err)
		}
		voters := 0
		for _, s := range servers {
			if s.Voter {
				voters++
			}
		}
		t.Logf("round %d, active %s, raft configuration %+v", round, active.PodName, servers)
		if voters != 3 {
			t.Errorf("round %d: %d voters after the forced restore, want the second cluster's 3", round, voters)
		}
		if round == 1 {
			break
		}
		if err := cl.StepDown(ctx); err != nil {
			t.Fatal(err)
		}
		baotest.Eventually(t, time.Minute, "another active server", func(ctx context.Context) error {
			for _, n := range c2.Nodes {
				if n == active {
					continue
				}
				if h, err := n.Client().Health(ctx); err == nil && h.Active() {
					return nil
				}
			}
			return errors.New("none yet")
		})
	}
}
