package backup_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/backup/s3test"
)

// TestS3TargetAgainstSeaweedFS writes, lists, tags and deletes snapshots in a real S3
// server over TLS, and checks that an upload whose stream breaks off after a full part
// leaves neither an object nor an unfinished multipart upload.
func TestS3TargetAgainstSeaweedFS(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "backups")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	prefix := backup.ObjectPrefix("openbao/", "ns", "bao")
	target := srv.Target(t, "backups", prefix)
	mc := target.Client()

	// Two parts and a bit: the multipart path, not a single PUT.
	data := make([]byte, 2*backup.PartSize+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	name := backup.SnapshotName("bao", now)
	if err := target.Put(ctx, name, bytes.NewReader(data), func() backup.Sum {
		return backup.Sum{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}); err != nil {
		t.Fatal(err)
	}
	obj, err := mc.GetObject(ctx, "backups", prefix+name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back %d bytes (%v), want the %d written", len(got), err, len(data))
	}
	tags, err := mc.GetObjectTagging(ctx, "backups", prefix+name, minio.GetObjectTaggingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := tags.ToMap(); m[backup.TagSHA256] != hex.EncodeToString(sum[:]) || m[backup.TagSize] != "33566777" {
		t.Errorf("tags %v, want sha256 %x and size %d", m, sum, len(data))
	}
	if loc := target.Location(name); loc != "s3://backups/openbao/ns/bao/"+name {
		t.Errorf("Location = %q", loc)
	}

	// A stream that breaks off after more than one part.
	broken := backup.SnapshotName("bao", now.Add(time.Hour))
	boom := errors.New("snapshot stream broke off")
	err = target.Put(ctx, broken, io.MultiReader(bytes.NewReader(data[:backup.PartSize+1000]), errReader{boom}), func() backup.Sum {
		t.Error("sum called for a failed upload")
		return backup.Sum{}
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Put of a broken stream: %v, want %v", err, boom)
	}
	if _, err := mc.StatObject(ctx, "backups", prefix+broken, minio.StatObjectOptions{}); minio.ToErrorResponse(err).Code != "NoSuchKey" {
		t.Errorf("after a failed upload, stat %s: %v, want NoSuchKey", broken, err)
	}
	for u := range mc.ListIncompleteUploads(ctx, "backups", prefix, true) {
		if u.Err != nil {
			t.Fatalf("list incomplete uploads: %v", u.Err)
		}
		t.Errorf("an unfinished multipart upload is left: %s (%s)", u.Key, u.UploadID)
	}

	// Retention lists only this cluster's snapshots under the prefix.
	for _, k := range []string{
		prefix + backup.SnapshotName("bao", now.Add(-24*time.Hour)),
		prefix + backup.SnapshotName("bao", now.Add(-48*time.Hour)),
		prefix + "notes.txt",
		backup.ObjectPrefix("openbao/", "ns", "bao-2") + backup.SnapshotName("bao-2", now.Add(-72*time.Hour)),
	} {
		if _, err := mc.PutObject(ctx, "backups", k, bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := backup.ApplyRetention(ctx, target, "bao", name, backup.Retention{KeepLast: 2}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"s3://backups/" + prefix + backup.SnapshotName("bao", now.Add(-48*time.Hour))}; !slices.Equal(deleted, want) {
		t.Errorf("retention deleted %v, want %v", deleted, want)
	}
	var left []string
	for o := range mc.ListObjects(ctx, "backups", minio.ListObjectsOptions{Prefix: "openbao/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		left = append(left, o.Key)
	}
	want := []string{
		prefix + name,
		prefix + backup.SnapshotName("bao", now.Add(-24*time.Hour)),
		prefix + "notes.txt",
		backup.ObjectPrefix("openbao/", "ns", "bao-2") + backup.SnapshotName("bao-2", now.Add(-72*time.Hour)),
	}
	slices.Sort(left)
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("objects left %v\nwant %v", left, want)
	}
}

// TestS3TargetRefusesWrongKeysAndCA: a wrong secret key or an untrusted server certificate
// fails the upload and leaves nothing.
func TestS3TargetRefusesWrongKeysAndCA(t *testing.T) {
	srv := s3test.Start(t)
	srv.MakeBucket(t, "backups")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := backup.SnapshotName("bao", time.Now())
	for _, tc := range []struct {
		name string
		cfg  backup.S3Config
	}{
		{"wrong secret key", backup.S3Config{SecretAccessKey: "wrong", CAPEM: srv.CAPEM}},
		{"read-only keys", backup.S3Config{AccessKeyID: s3test.ReadOnlyAccessKey, SecretAccessKey: s3test.ReadOnlySecretKey, CAPEM: srv.CAPEM}},
		{"system CAs only", backup.S3Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Endpoint, cfg.Bucket, cfg.PathStyle, cfg.Prefix = srv.Endpoint, "backups", true, "p/"
			if cfg.AccessKeyID == "" {
				cfg.AccessKeyID = s3test.AccessKey
			}
			if cfg.SecretAccessKey == "" {
				cfg.SecretAccessKey = s3test.SecretKey
			}
			target, err := backup.NewS3(cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = target.Put(ctx, name, bytes.NewReader([]byte("snapshot")), func() backup.Sum { return backup.Sum{Size: 8, SHA256: "x"} })
			if err == nil {
				t.Fatal("Put succeeded")
			}
			t.Logf("refused: %v", err)
		})
	}
	left := srv.Target(t, "backups", "p/")
	items, err := left.List(ctx, "bao")
	if err != nil || len(items) != 0 {
		t.Errorf("objects left after refused uploads: %v, %v", items, err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
