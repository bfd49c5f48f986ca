package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/openbao/openbao/api/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestScheduledBackupsToObjectStorage runs backups of a cluster into an S3 server of the
// local cluster: on the schedule and on request, with retention keeping the newest two.
// Each backup is a complete object whose SHA-256 matches status.backup and its tags, and the
// newest restores on a scratch server, serving what was written before it.
func TestScheduledBackupsToObjectStorage(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-backup-s3")
	store := startObjectStore(t, ns)

	c := newCluster(ns, "bao", 1)
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{
		Schedule:  "* * * * *",
		Retention: openbaov1alpha1.BackupRetention{KeepLast: ptr.To[int32](2)},
		Target: openbaov1alpha1.BackupTarget{S3: &openbaov1alpha1.S3Target{
			Endpoint: store.Endpoint, Bucket: s3Bucket, Prefix: "e2e/", Region: s3Region, PathStyle: true,
			CredentialsSecret: store.CredentialsSecret,
			CABundle:          &openbaov1alpha1.CABundleSource{ConfigMapName: store.CAConfigMap},
		}},
	}
	if err := k8s.Create(ctx, c); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c = waitFullyFormed(t, ns, "bao", 1)
	leader, _ := activePod(t, c)
	if leader == nil {
		t.Fatal("no active server")
	}
	app := appLogin(t, c, leader)
	if _, err := app.KVv2("secret").Put(ctx, "e2e/before-backup", map[string]any{"v": "kept"}); err != nil {
		t.Fatalf("write before the backup: %v", err)
	}

	// The schedule fires within a minute; the first backup after the write holds it.
	first := waitBackup(t, ns, "bao", "a scheduled backup", func(b *openbaov1alpha1.BackupStatus) bool {
		return b.LastSuccessful != nil && b.LastSuccessful.Trigger == openbaov1alpha1.BackupScheduled
	})
	t.Logf("scheduled backup: %s (%d bytes)", first.Location, first.Size)

	// Two backups on request; with keepLast 2 the first one goes.
	var last *openbaov1alpha1.BackupRecord
	for _, id := range []string{"one", "two"} {
		updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Backup.RequestID = id })
		last = waitBackup(t, ns, "bao", "the backup requested as "+id, func(b *openbaov1alpha1.BackupStatus) bool {
			return b.LastRequestID == id && b.LastSuccessful != nil && b.LastSuccessful.Trigger == openbaov1alpha1.BackupOnDemand &&
				b.Running == nil && b.LastSuccessful.Location != first.Location
		})
	}
	c = getCluster(t, ns, "bao")
	if cond := meta.FindStatusCondition(c.Status.Conditions, "BackupHealthy"); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("BackupHealthy is %v after successful backups", cond)
	}

	prefix := "e2e/" + ns + "/bao/"
	objects := listObjects(t, store, prefix)
	if len(objects) != 2 {
		t.Fatalf("retention keepLast 2 left %d objects under %s: %v", len(objects), prefix, objects)
	}
	if slices.Contains(objects, strings.TrimPrefix(first.Location, "s3://"+s3Bucket+"/")) {
		t.Errorf("the oldest backup %s is still there after two newer ones (keepLast 2): %v", first.Location, objects)
	}
	key := strings.TrimPrefix(last.Location, "s3://"+s3Bucket+"/")
	if !slices.Contains(objects, key) {
		t.Fatalf("status.backup.lastSuccessful.location %s is not in the bucket: %v", last.Location, objects)
	}
	file, sum := downloadObject(t, store, key)
	if sum != last.SHA256 {
		t.Errorf("object %s has SHA-256 %s, status.backup says %s", key, sum, last.SHA256)
	}
	tags, err := store.Client.GetObjectTagging(ctx, s3Bucket, key, minio.GetObjectTaggingOptions{})
	if err != nil {
		t.Fatalf("tags of %s: %v", key, err)
	}
	if got := tags.ToMap()["sha256"]; got != sum {
		t.Errorf("object %s is tagged sha256=%s, its content has %s", key, got, sum)
	}

	// The backup is a usable snapshot: a scratch server restores it with the cluster's seal
	// key and serves what the application wrote before it.
	restored := restoreOnScratch(t, c, file)
	got, err := restored.KVv2("secret").Get(ctx, "e2e/before-backup")
	if err != nil || got.Data["v"] != "kept" {
		t.Fatalf("the restored backup does not serve e2e/before-backup: %v, %v", got, err)
	}
}

// waitBackup waits until status.backup satisfies ok and returns its last successful backup.
func waitBackup(t *testing.T, ns, name, what string, ok func(*openbaov1alpha1.BackupStatus) bool) *openbaov1alpha1.BackupRecord {
	t.Helper()
	var rec *openbaov1alpha1.BackupRecord
	eventually(t, waitShort, what, func() (bool, string) {
		c := getCluster(t, ns, name)
		b := c.Status.Backup
		if b == nil {
			return false, "no status.backup"
		}
		if b.LastFailed != nil && (b.LastSuccessful == nil || b.LastFailed.ScheduledTime.After(b.LastSuccessful.ScheduledTime.Time)) {
			t.Fatalf("backup %s failed: %s", b.LastFailed.JobName, b.LastFailed.Message)
		}
		rec = b.LastSuccessful
		return ok(b), fmt.Sprintf("running %v, last successful %v", b.Running, b.LastSuccessful)
	})
	return rec
}

// listObjects lists the object names under prefix.
func listObjects(t *testing.T, store *objectStore, prefix string) []string {
	t.Helper()
	var out []string
	for o := range store.Client.ListObjects(context.Background(), s3Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("list %s: %v", prefix, o.Err)
		}
		out = append(out, o.Key)
	}
	return out
}

// downloadObject saves an object to a file of the test and returns it with its SHA-256.
func downloadObject(t *testing.T, store *objectStore, key string) (string, string) {
	t.Helper()
	obj, err := store.Client.GetObject(context.Background(), s3Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Close()
	file := filepath.Join(t.TempDir(), filepath.Base(key))
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), obj); err != nil {
		t.Fatalf("download %s: %v", key, err)
	}
	return file, hex.EncodeToString(h.Sum(nil))
}

// restoreOnScratch restores a snapshot file of cluster c on a scratch server with c's seal
// key and returns a client logged in as the application.
func restoreOnScratch(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, file string) *api.Client {
	t.Helper()
	ctx := context.Background()
	seal, err := cs.CoreV1().Secrets(c.Namespace).Get(ctx, resources.NamesFor(c).SealSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the seal key: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "seal-key")
	if err := os.WriteFile(keyFile, seal.Data[resources.SealKeyFile], 0o600); err != nil {
		t.Fatal(err)
	}
	restored := baotest.RestoreOnScratchServer(t, file, keyFile, resources.SealKeyID)
	cfg := api.DefaultConfig()
	cfg.Address = restored.Address()
	cfg.MaxRetries = 0
	cfg.Timeout = 15 * time.Second
	cl, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cl.ClearToken()
	jwt := serviceAccountToken(t, c.Namespace, appServiceAccount, appAudience)
	secret, err := cl.Logical().Write("auth/jwt/login", map[string]any{"role": appRole, "jwt": jwt})
	if err != nil || secret == nil || secret.Auth == nil {
		t.Fatalf("the restored server refuses the application's login: %v", err)
	}
	cl.SetToken(secret.Auth.ClientToken)
	return cl
}
