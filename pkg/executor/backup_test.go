package executor_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/backup/s3test"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestBackupToObjectStorage runs the backup action against a real bao server and a real
// S3 server (TLS, access keys): the object holds a snapshot whose size and SHA-256 are
// those reported and tagged, retention removes the old backups of the cluster only, the
// backup role can do nothing but read a snapshot, and a failed upload leaves no object.
func TestBackupToObjectStorage(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	c.Start()
	srv := s3test.Start(t)
	srv.MakeBucket(t, "backups")
	leader := c.WaitActive(time.Minute)

	jwt := c.SignJWT(c.UpgradeSubject(), resources.BackupAudience)
	f := jobFiles(t, c, jwt)
	dir := t.TempDir()
	creds := filepath.Join(dir, "s3")
	if err := os.MkdirAll(creds, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(filepath.Join(creds, "AWS_ACCESS_KEY_ID"), s3test.AccessKey+"\n")
	writeFile(filepath.Join(creds, "AWS_SECRET_ACCESS_KEY"), s3test.SecretKey+"\n")
	s3CA := filepath.Join(dir, "s3-ca.crt")
	writeFile(s3CA, string(srv.CAPEM))

	prefix := backup.ObjectPrefix("openbao/", "ns", "bao")
	mc := srv.Target(t, "backups", prefix).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Two older backups of this cluster and one of another cluster sharing the bucket.
	now := time.Now().UTC().Truncate(time.Second)
	old1, old2 := backup.SnapshotName("bao", now.Add(-48*time.Hour)), backup.SnapshotName("bao", now.Add(-24*time.Hour))
	other := backup.ObjectPrefix("openbao/", "ns", "bao-2") + backup.SnapshotName("bao-2", now.Add(-72*time.Hour))
	for _, k := range []string{prefix + old1, prefix + old2, other} {
		if _, err := mc.PutObject(ctx, "backups", k, strings.NewReader("old"), 3, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	args := func(name, resultFile string, extra ...string) []string {
		return append([]string{"backup",
			"--address", leader.Address(), "--tls-server-name", leader.DNSName,
			"--ca-file", f.ca, "--token-file", f.token,
			"--cluster", "bao", "--name", name, "--result-file", resultFile,
			"--s3-endpoint", srv.Endpoint, "--s3-bucket", "backups", "--s3-prefix", prefix,
			"--s3-path-style", "--s3-ca-file", s3CA, "--s3-credentials-dir", creds,
			"--timeout", "2m"}, extra...)
	}
	readResult := func(p string) backup.Result {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("read the result file: %v", err)
		}
		var res backup.Result
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("result %q: %v", b, err)
		}
		return res
	}

	name := backup.SnapshotName("bao", now)
	resultFile := filepath.Join(dir, "result.json")
	r := runExecutor(t, args(name, resultFile, "--keep-last", "2")...)
	if r.code != 0 {
		t.Fatalf("backup failed: %s", r)
	}
	assertNoSecret(t, r, jwt)
	if strings.Contains(r.stdout+r.stderr, s3test.SecretKey) {
		t.Error("the S3 secret key is in the output")
	}
	res := readResult(resultFile)
	if res.Error != "" || res.Location != "s3://backups/"+prefix+name || res.Endpoint != srv.Endpoint {
		t.Fatalf("result %+v", res)
	}
	obj, err := mc.GetObject(ctx, "backups", prefix+name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != res.Size || hex.EncodeToString(sum[:]) != res.SHA256 || res.Size < 100 {
		t.Errorf("object of %d bytes, sha256 %x; result says %d bytes, sha256 %s", len(data), sum, res.Size, res.SHA256)
	}
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		t.Errorf("the object is not a gzip stream (a Raft snapshot): starts with %x", data[:min(4, len(data))])
	}
	tags, err := mc.GetObjectTagging(ctx, "backups", prefix+name, minio.GetObjectTaggingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := tags.ToMap(); m[backup.TagSHA256] != res.SHA256 || m[backup.TagSize] != strconv.FormatInt(res.Size, 10) {
		t.Errorf("tags %v, result %+v", m, res)
	}
	if want := []string{"s3://backups/" + prefix + old1}; !slices.Equal(res.Deleted, want) {
		t.Errorf("retention deleted %v, want %v", res.Deleted, want)
	}
	var left []string
	for o := range mc.ListObjects(ctx, "backups", minio.ListObjectsOptions{Prefix: "openbao/", Recursive: true}) {
		left = append(left, o.Key)
	}
	slices.Sort(left)
	if want := []string{prefix + name, prefix + old2, other}; !slices.Equal(left, sortedCopy(want)) {
		t.Errorf("objects left %v, want %v", left, sortedCopy(want))
	}

	t.Run("the backup role may only read a snapshot", func(t *testing.T) {
		cl := leader.Client()
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultBackupRole, jwt); err != nil {
			t.Fatal(err)
		}
		if _, err := cl.RaftConfiguration(ctx); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("the backup role read the Raft configuration: %v", err)
		}
		upgradeJWT := c.SignJWT(c.UpgradeSubject(), baotest.UpgradeAudience)
		if err := leader.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultBackupRole, upgradeJWT); err == nil {
			t.Error("a token for the upgrade audience logged in to the backup role")
		}
		if err := leader.Client().LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, jwt); err == nil {
			t.Error("a backup Job's token logged in to the upgrade role")
		}
	})

	t.Run("a pre-upgrade snapshot outlives retention", func(t *testing.T) {
		pre := backup.PreUpgradeName("bao", "2.6.2", "r1")
		preResult := filepath.Join(dir, "pre-upgrade.json")
		if r := runExecutor(t, args(pre, preResult)...); r.code != 0 {
			t.Fatalf("pre-upgrade snapshot failed: %s", r)
		}
		res := readResult(preResult)
		if res.Error != "" || res.Location != "s3://backups/"+prefix+pre || res.Size < 100 || len(res.SHA256) != 64 || len(res.Deleted) != 0 {
			t.Fatalf("result of the pre-upgrade snapshot %+v", res)
		}
		tags, err := mc.GetObjectTagging(ctx, "backups", prefix+pre, minio.GetObjectTaggingOptions{})
		if err != nil || tags.ToMap()[backup.TagSHA256] != res.SHA256 {
			t.Fatalf("tags of the pre-upgrade snapshot: %v, %v", tags, err)
		}
		// The next scheduled backup keeps only itself; the pre-upgrade snapshot stays.
		next := backup.SnapshotName("bao", now.Add(30*time.Second))
		nextResult := filepath.Join(dir, "next.json")
		if r := runExecutor(t, args(next, nextResult, "--keep-last", "1")...); r.code != 0 {
			t.Fatalf("backup failed: %s", r)
		}
		if got := readResult(nextResult).Deleted; slices.Contains(got, "s3://backups/"+prefix+pre) || len(got) != 2 {
			t.Errorf("retention deleted %v; want the two older backups and never the pre-upgrade snapshot", got)
		}
		if _, err := mc.StatObject(ctx, "backups", prefix+pre, minio.StatObjectOptions{}); err != nil {
			t.Errorf("the pre-upgrade snapshot is gone after retention: %v", err)
		}
		if r := runExecutor(t, args("bao-pre-upgrade-../x.snap", preResult)...); r.code == 0 {
			t.Errorf("a name that is neither a backup's nor a pre-upgrade snapshot's was accepted: %s", r)
		}
	})

	t.Run("a failed upload leaves no object", func(t *testing.T) {
		writeFile(filepath.Join(creds, "AWS_SECRET_ACCESS_KEY"), "not-the-secret")
		failed := backup.SnapshotName("bao", now.Add(time.Minute))
		failedResult := filepath.Join(dir, "failed.json")
		r := runExecutor(t, args(failed, failedResult)...)
		if r.code != 1 {
			t.Fatalf("backup with a wrong secret key: %s", r)
		}
		if res := readResult(failedResult); res.Error == "" || res.Location != "" {
			t.Errorf("result of a failed backup: %+v", res)
		}
		if _, err := mc.StatObject(ctx, "backups", prefix+failed, minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
			t.Errorf("stat %s after a failed backup: %v, want NoSuchKey", failed, err)
		}
	})
}

// TestBackupToVolume writes to a directory as the snapshot volume's Job does.
func TestBackupToVolume(t *testing.T) {
	c := baotest.NewCluster(t, baotest.Options{Nodes: 1})
	c.Start()
	leader := c.WaitActive(time.Minute)
	jwt := c.SignJWT(c.UpgradeSubject(), resources.BackupAudience)
	f := jobFiles(t, c, jwt)
	dir := filepath.Join(t.TempDir(), backup.VolumeDir)
	name := backup.SnapshotName("bao", time.Now())
	resultFile := filepath.Join(t.TempDir(), "result.json")
	r := runExecutor(t, "backup",
		"--address", leader.Address(), "--tls-server-name", leader.DNSName,
		"--ca-file", f.ca, "--token-file", f.token,
		"--cluster", "bao", "--name", name, "--result-file", resultFile,
		"--dir", dir, "--claim", "bao-snapshots", "--timeout", "2m")
	if r.code != 0 {
		t.Fatalf("backup failed: %s", r)
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	b, _ := os.ReadFile(resultFile)
	var res backup.Result
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	if res.Location != "pvc://bao-snapshots/backups/"+name || res.SHA256 != hex.EncodeToString(sum[:]) || res.Size != int64(len(data)) {
		t.Errorf("result %+v for a file of %d bytes, sha256 %x", res, len(data), sum)
	}
	check, err := os.ReadFile(filepath.Join(dir, name+backup.ChecksumSuffix))
	if err != nil || !strings.HasPrefix(string(check), res.SHA256) {
		t.Errorf("checksum file %q, %v", check, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("the directory holds %d entries, want the snapshot and its checksum", len(entries))
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
