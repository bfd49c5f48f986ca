package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
)

// BackupOptions are the flags of the backup action besides the connection to OpenBao.
type BackupOptions struct {
	// Cluster names the snapshots (<cluster>-<time>.snap) and finds them for retention.
	Cluster string
	// Name is the snapshot's name, chosen by the operator so that a retried Job writes the
	// same one.
	Name string
	// ResultFile receives the JSON Result (the container's termination message).
	ResultFile string

	// Volume target: Dir inside the mounted snapshot volume, and the claim's name.
	Dir   string
	Claim string

	// S3 target, used when S3Endpoint is set.
	S3Endpoint       string
	S3Bucket         string
	S3Prefix         string
	S3Region         string
	S3PathStyle      bool
	S3CAFile         string
	S3CredentialsDir string

	KeepLast int
	MaxAge   time.Duration
}

// backupRun takes one backup: it logs in, streams a snapshot through a SHA-256 into the
// target, applies retention, and writes the result file. The snapshot never touches memory
// beyond one upload part, nor any disk but the target's.
func (r *runner) backupRun(ctx context.Context) error {
	res, err := r.backup(ctx)
	if err != nil {
		res.Error = err.Error()
	}
	if werr := r.writeResult(res); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func (r *runner) backup(ctx context.Context) (backup.Result, error) {
	o := r.opts.Backup
	var res backup.Result
	target, err := r.backupTarget()
	if err != nil {
		return res, err
	}
	res.Endpoint = o.S3Endpoint
	cl, err := r.client()
	if err != nil {
		return res, err
	}
	if err := r.login(ctx, cl); err != nil {
		return res, err
	}

	pr, pw := io.Pipe()
	h := sha256.New()
	var size int64
	counter := writerFunc(func(p []byte) (int, error) {
		size += int64(len(p))
		return h.Write(p)
	})
	go func() {
		// The reader side fails with the snapshot's error, which aborts the upload.
		pw.CloseWithError(cl.Snapshot(ctx, io.MultiWriter(pw, counter)))
	}()
	sum := func() backup.Sum { return backup.Sum{Size: size, SHA256: hex.EncodeToString(h.Sum(nil))} }
	err = target.Put(ctx, o.Name, pr, sum)
	// Unblock the snapshot if the upload stopped reading.
	_ = pr.CloseWithError(errors.New("upload ended"))
	if err != nil {
		return res, fmt.Errorf("back up a raft snapshot from %s to %s: %w", r.opts.Address, target.Location(o.Name), err)
	}
	s := sum()
	if s.Size == 0 {
		_ = target.Delete(ctx, o.Name)
		return res, fmt.Errorf("back up a raft snapshot from %s: the snapshot is empty", r.opts.Address)
	}
	res.Location, res.Size, res.SHA256 = target.Location(o.Name), s.Size, s.SHA256
	r.printf("saved raft snapshot to %s (%d bytes, sha256 %s)", res.Location, res.Size, res.SHA256)

	ret := backup.Retention{KeepLast: o.KeepLast, MaxAge: o.MaxAge}
	deleted, err := backup.ApplyRetention(ctx, target, o.Cluster, o.Name, ret, time.Now())
	res.Deleted = deleted
	for _, d := range deleted {
		r.printf("retention deleted %s", d)
	}
	if err != nil {
		// The backup is safe; retention runs again after the next one.
		res.RetentionError = err.Error()
		r.printf("retention did not finish: %v", err)
	}
	return res, nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func (r *runner) backupTarget() (backup.Target, error) {
	o := r.opts.Backup
	if o.S3Endpoint == "" {
		return &backup.Volume{Dir: o.Dir, Claim: o.Claim, SubPath: backup.VolumeDir}, nil
	}
	return s3Target(o)
}

// s3Target is the bucket of the S3 flags, with the credentials and CA files they name.
func s3Target(o BackupOptions) (*backup.S3, error) {
	readKey := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(o.S3CredentialsDir, name))
		if err != nil {
			return "", fmt.Errorf("read the S3 credentials: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	id, err := readKey("AWS_ACCESS_KEY_ID")
	if err != nil {
		return nil, err
	}
	secret, err := readKey("AWS_SECRET_ACCESS_KEY")
	if err != nil {
		return nil, err
	}
	var ca []byte
	if o.S3CAFile != "" {
		if ca, err = os.ReadFile(o.S3CAFile); err != nil {
			return nil, fmt.Errorf("read the S3 CA bundle: %w", err)
		}
	}
	return backup.NewS3(backup.S3Config{
		Endpoint: o.S3Endpoint, Bucket: o.S3Bucket, Region: o.S3Region, PathStyle: o.S3PathStyle,
		Prefix: o.S3Prefix, AccessKeyID: id, SecretAccessKey: secret, CAPEM: ca,
	})
}

// writeResult writes res as JSON to the result file (the termination message, at most
// 4096 bytes: a long list of deletions is cut short).
func (r *runner) writeResult(res backup.Result) error {
	if r.opts.Backup.ResultFile == "" {
		return nil
	}
	b, err := json.Marshal(res)
	for len(b) > 4000 && len(res.Deleted) > 0 {
		res.Deleted = res.Deleted[:len(res.Deleted)/2]
		b, err = json.Marshal(res)
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.opts.Backup.ResultFile, b, 0o644); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}
