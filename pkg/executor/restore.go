package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

// RestoreOptions are the flags of the restore action besides the connection to OpenBao.
type RestoreOptions struct {
	// Cluster is the OpenBaoCluster restored into, for messages.
	Cluster string
	// Source is s3://<bucket>/<key> or pvc://<claim>/<path inside the volume>, the forms
	// of status.backup's locations.
	Source string
	// SHA256 is the expected checksum; empty: the one recorded with the backup.
	SHA256 string
	// Force restores a snapshot of another cluster (snapshot-force).
	Force bool
	// SealKeyFile and SealKeyID are the cluster's static seal key.
	SealKeyFile string
	SealKeyID   string
	// SnapshotDir is where the claim of a pvc:// source is mounted.
	SnapshotDir string
	// ResultFile receives the JSON RestoreResult (the container's termination message).
	ResultFile string

	S3Endpoint       string
	S3Bucket         string
	S3Region         string
	S3PathStyle      bool
	S3CAFile         string
	S3CredentialsDir string
}

// snapshotSource is one snapshot, opened twice: once to check it, once to restore it. Both
// opens yield the same bytes or fail (a file opened once, an object version pinned by
// ETag).
type snapshotSource interface {
	// RecordedSHA256 is the checksum written with the backup; empty when there is none.
	RecordedSHA256() string
	Open(ctx context.Context) (io.ReadCloser, error)
	Close() error
}

// restoreRun restores one snapshot in two passes and writes the result file. Pass 1 streams
// the snapshot through a SHA-256 and a gzip and tar reader and refuses it, before anything
// is sent to OpenBao, when its checksum is not the expected one, when the archive is
// incomplete or damaged, or when the cluster's seal key cannot decrypt its sealed
// SHA256SUMS. Pass 2 streams the same bytes again into OpenBao's snapshot restore through
// the active node and waits until the server is back, unsealed. Nothing is held in memory
// beyond a buffer, and nothing is written to disk.
//
// A retried Job restores the same snapshot again, which leaves the same data: harmless.
func (r *runner) restoreRun(ctx context.Context) error {
	o := r.opts.Restore
	res := backup.RestoreResult{Location: o.Source, Forced: o.Force}
	err := r.restore(ctx, &res)
	if err != nil {
		var refusal *backup.RefusalError
		if errors.As(err, &refusal) {
			res.Refused, res.Reason = true, refusal.Reason
			res.Message = "refused, nothing changed: " + err.Error()
		} else {
			if res.Reason == "" {
				res.Reason = backup.ReasonRestoreFailed
			}
			res.Message = err.Error()
		}
		r.printf("%s", res.Message)
	}
	if werr := writeRestoreResult(o.ResultFile, res); werr != nil {
		return errors.Join(err, werr)
	}
	return err
}

func (r *runner) restore(ctx context.Context, res *backup.RestoreResult) error {
	o := r.opts.Restore
	key, err := backup.ReadSealKey(o.SealKeyFile, o.SealKeyID)
	if err != nil {
		return &backup.RefusalError{Reason: backup.ReasonInvalidRequest, Err: err}
	}
	src, err := r.openSource(ctx)
	if err != nil {
		return err
	}
	defer src.Close() //nolint:errcheck
	want := strings.ToLower(o.SHA256)
	if want == "" {
		want = src.RecordedSHA256()
	}
	if want == "" {
		return backup.Refuse(backup.ReasonNoChecksum, "%s has no recorded SHA-256 (no .sha256 file beside it, no sha256 tag): give the expected one with --sha256", o.Source)
	}
	if rec := src.RecordedSHA256(); rec != "" && rec != want {
		r.printf("--sha256 %s differs from the checksum recorded with %s (%s); checking against --sha256", want, o.Source, rec)
	}

	// Pass 1: check, change nothing.
	rc, err := src.Open(ctx)
	if err != nil {
		return err
	}
	info, checkErr := backup.CheckArchive(rc, key)
	_ = rc.Close()
	res.Size, res.SHA256 = info.Size, info.SHA256
	var refusal *backup.RefusalError
	if checkErr != nil && !errors.As(checkErr, &refusal) {
		return backup.Refuse(backup.ReasonSourceUnreadable, "read %s: %v", o.Source, checkErr)
	}
	if info.SHA256 != want {
		return backup.Refuse(backup.ReasonChecksumMismatch, "%s has SHA-256 %s (%d bytes), want %s", o.Source, info.SHA256, info.Size, want)
	}
	if checkErr != nil {
		return checkErr
	}
	r.printf("checked %s: %d bytes, sha256 %s, complete, sealed SHA256SUMS decrypted with seal key %q and matching", o.Source, info.Size, info.SHA256, key.ID)

	// Pass 2: restore.
	cl, err := r.client()
	if err != nil {
		return backup.Refuse(backup.ReasonInvalidRequest, "%v", err)
	}
	if err := r.login(ctx, cl); err != nil {
		return backup.Refuse(backup.ReasonLoginFailed, "%v", err)
	}
	var sent *verifyingReader
	open := func() (io.ReadCloser, error) {
		rc, err := src.Open(ctx)
		if err != nil {
			return nil, err
		}
		sent = &verifyingReader{r: rc, h: sha256.New(), want: info.SHA256, size: info.Size}
		return sent, nil
	}
	r.printf("restoring %s into cluster %s through %s (forced: %v)", o.Source, o.Cluster, r.opts.Address, o.Force)
	attempt := 0
	active := cl
	err = retry(ctx, func() error {
		attempt++
		if attempt > 1 {
			if err := r.login(ctx, cl); err != nil {
				return err
			}
		}
		var err error
		if active, err = r.activeClient(ctx, cl); err != nil {
			return err
		}
		err = active.RestoreSnapshot(ctx, open, o.Force)
		if errors.As(err, &refusal) {
			// A snapshot that changed is not a network error to try again after.
			return refusal
		}
		return err
	})
	if err != nil {
		switch {
		case errors.As(err, &refusal):
			return err
		case errors.Is(err, openbao.ErrBadRequest):
			// OpenBao answers 400 after reading the archive and before installing it.
			return backup.Refuse(backup.ReasonRefusedByOpenBao, "OpenBao refused the snapshot: %v", err)
		case errors.Is(err, openbao.ErrPermissionDenied):
			return backup.Refuse(backup.ReasonLoginFailed, "%v", err)
		}
		res.Reason = backup.ReasonRestoreFailed
		return fmt.Errorf("restore %s: %w", o.Source, err)
	}
	if sent != nil && sent.n == info.Size {
		r.printf("OpenBao read all %d bytes, sha256 %s", sent.n, info.SHA256)
	} else if sent != nil {
		r.printf("OpenBao answered after reading %d of %d bytes (the end of the archive)", sent.n, info.Size)
	}
	r.printf("OpenBao accepted the snapshot; waiting for the server to be back")
	accepted := time.Now()
	if err := r.waitServingAfterRestore(ctx, active); err != nil {
		res.Reason = backup.ReasonNotServingAfterRestore
		return err
	}
	r.printf("the snapshot is installed (the executor's token is gone) and %s is unsealed with an active node, %s after OpenBao accepted it", active.Address(), time.Since(accepted).Round(10*time.Millisecond))
	res.Message = fmt.Sprintf("restored %s (%d bytes, sha256 %s) into cluster %s", o.Source, info.Size, info.SHA256, o.Cluster)
	if o.Force {
		res.Message += ", forced"
	}
	r.printf("%s", res.Message)
	return nil
}

// waitServingAfterRestore waits until the restored data is in place and served. OpenBao
// answers before it installs the snapshot (in the background, holding the active node's
// state lock, sealing that node if the installation fails), so the answer proves nothing.
// The executor's token was created after the snapshot was taken, so it does not exist in
// the restored data: once it is gone, the snapshot is installed. Then the server at
// the active node must be unsealed and know it is active.
func (r *runner) waitServingAfterRestore(ctx context.Context, cl openbao.Client) error {
	var last string
	tokenGone := false
	for {
		if !tokenGone {
			err := cl.CheckToken(ctx)
			switch {
			case errors.Is(err, openbao.ErrPermissionDenied):
				tokenGone = true
			case err == nil:
				last = "the executor's token still exists: the snapshot is not installed yet"
			default:
				last = err.Error()
			}
		}
		if tokenGone {
			h, err := cl.Health(ctx)
			switch {
			case err != nil:
				last = err.Error()
			case !h.Serving():
				last = fmt.Sprintf("initialized %v, sealed %v", h.Initialized, h.Sealed)
			default:
				l, err := cl.Leader(ctx)
				if err == nil && (l.IsSelf || l.LeaderAddress != "") {
					return nil
				}
				last = "no active node yet"
				if err != nil {
					last = err.Error()
				}
			}
		}
		if sleep(ctx, pollInterval) != nil {
			return fmt.Errorf("OpenBao accepted the snapshot, but %s was not back unsealed with the restored data and an active node in time: %s", cl.Address(), last)
		}
	}
}

// activeClient is a client of the active server, sharing cl's token: cl itself when the
// server at --address is active. A restore must only ever reach the active server: OpenBao
// 2.6.2 lets a standby accept a snapshot, fail to install it ("node is not the leader") and
// seal itself until it is restarted (measured; 2.7.2 redirects to the active server).
func (r *runner) activeClient(ctx context.Context, cl openbao.Client) (openbao.Client, error) {
	l, err := cl.Leader(ctx)
	if err != nil {
		return nil, err
	}
	if l.IsSelf {
		return cl, nil
	}
	if l.LeaderAddress == "" {
		return nil, &openbao.Error{Op: "find the active server", Kind: openbao.ErrServer, StatusCode: 503, Messages: []string{"no active node"}}
	}
	u, err := url.Parse(l.LeaderAddress)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("the active server's address %q is not an https URL", l.LeaderAddress)
	}
	// The active server's api_addr names it; its certificate is checked against that name.
	active, err := r.newClient(openbao.Config{Address: l.LeaderAddress, CACertPEM: r.caPEM, Timeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	active.UseSession(cl.Session())
	r.printf("the active server is %s", l.LeaderAddress)
	return active, nil
}

// verifyingReader hashes what OpenBao reads and fails the request at the end when the bytes
// are not those checked in pass 1.
type verifyingReader struct {
	r    io.ReadCloser
	h    hash.Hash
	want string
	size int64
	n    int64
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.n += int64(n)
	_, _ = v.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(v.h.Sum(nil)); got != v.want || v.n != v.size {
			return n, backup.Refuse(backup.ReasonSnapshotChanged, "the snapshot changed between the check and the restore (sha256 %s, %d bytes; checked %s, %d bytes)", got, v.n, v.want, v.size)
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return v.r.Close() }

// openSource finds the snapshot that --source names.
func (r *runner) openSource(ctx context.Context) (snapshotSource, error) {
	o := r.opts.Restore
	kind, bucketOrClaim, rel, err := parseLocation(o.Source)
	if err != nil {
		return nil, backup.Refuse(backup.ReasonInvalidRequest, "%v", err)
	}
	switch kind {
	case "pvc":
		return openVolumeSnapshot(filepath.Join(o.SnapshotDir, filepath.FromSlash(rel)), o.Source)
	default:
		target, err := r.s3(bucketOrClaim)
		if err != nil {
			return nil, backup.Refuse(backup.ReasonInvalidRequest, "%v", err)
		}
		obj, err := target.StatSnapshot(ctx, rel)
		if errors.Is(err, backup.ErrObjectNotFound) {
			return nil, backup.Refuse(backup.ReasonNotFound, "%v", err)
		}
		if err != nil {
			return nil, backup.Refuse(backup.ReasonSourceUnreadable, "%v", err)
		}
		return &s3Snapshot{s3: target, obj: obj}, nil
	}
}

// parseLocation splits s3://<bucket>/<key> and pvc://<claim>/<path>; the path stays inside
// the volume.
func parseLocation(loc string) (kind, bucketOrClaim, rel string, err error) {
	scheme, rest, ok := strings.Cut(loc, "://")
	if !ok || (scheme != "s3" && scheme != "pvc") {
		return "", "", "", fmt.Errorf("--source %q is neither s3://<bucket>/<key> nor pvc://<claim>/<path>", loc)
	}
	first, rel, ok := strings.Cut(rest, "/")
	if !ok || first == "" || rel == "" || strings.HasSuffix(rel, "/") {
		return "", "", "", fmt.Errorf("--source %q names no object or file", loc)
	}
	if scheme == "pvc" {
		clean := path.Clean(rel)
		if clean != rel || clean == ".." || strings.HasPrefix(clean, "../") || path.IsAbs(rel) {
			return "", "", "", fmt.Errorf("--source %q: the path must be a clean path inside the volume", loc)
		}
	}
	return scheme, first, rel, nil
}

func (r *runner) s3(bucket string) (*backup.S3, error) {
	o := r.opts.Restore
	b := BackupOptions{
		S3Endpoint: o.S3Endpoint, S3Bucket: bucket, S3Region: o.S3Region, S3PathStyle: o.S3PathStyle,
		S3CAFile: o.S3CAFile, S3CredentialsDir: o.S3CredentialsDir,
	}
	t, err := s3Target(b)
	if err != nil {
		return nil, err
	}
	return t, nil
}

// volumeSnapshot is a file opened once: both passes read the same file even if another is
// renamed over its name meanwhile.
type volumeSnapshot struct {
	f        *os.File
	recorded string
}

func openVolumeSnapshot(p, loc string) (*volumeSnapshot, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, backup.Refuse(backup.ReasonNotFound, "%s: no file %s", loc, p)
	}
	if err != nil {
		return nil, backup.Refuse(backup.ReasonSourceUnreadable, "%s: %v", loc, err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, backup.Refuse(backup.ReasonNotFound, "%s: %s is not a regular file", loc, p)
	}
	v := &volumeSnapshot{f: f}
	// The backup wrote "<sha256>  <name>\n" beside the snapshot.
	if b, err := os.ReadFile(p + backup.ChecksumSuffix); err == nil {
		sum, _, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		if _, herr := hex.DecodeString(sum); herr == nil && len(sum) == 64 {
			v.recorded = strings.ToLower(sum)
		}
	}
	return v, nil
}

func (v *volumeSnapshot) RecordedSHA256() string { return v.recorded }

func (v *volumeSnapshot) Open(context.Context) (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(v.f, 0, math.MaxInt64)), nil
}

func (v *volumeSnapshot) Close() error { return v.f.Close() }

type s3Snapshot struct {
	s3  *backup.S3
	obj backup.Object
}

func (s *s3Snapshot) RecordedSHA256() string { return strings.ToLower(s.obj.SHA256) }

func (s *s3Snapshot) Open(ctx context.Context) (io.ReadCloser, error) {
	rc, err := s.s3.OpenSnapshot(ctx, s.obj)
	switch {
	case errors.Is(err, backup.ErrObjectChanged):
		return nil, backup.Refuse(backup.ReasonSnapshotChanged, "%v", err)
	case errors.Is(err, backup.ErrObjectNotFound):
		return nil, backup.Refuse(backup.ReasonNotFound, "%v", err)
	}
	if err != nil {
		return nil, backup.Refuse(backup.ReasonSourceUnreadable, "%v", err)
	}
	return rc, nil
}

func (s *s3Snapshot) Close() error { return nil }

// writeRestoreResult writes res as JSON to path (the termination message, at most 4096
// bytes: a long message is cut short).
func writeRestoreResult(path string, res backup.RestoreResult) error {
	if path == "" {
		return nil
	}
	if len(res.Message) > 3000 {
		res.Message = res.Message[:3000] + "…"
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write the result: %w", err)
	}
	return nil
}

// missingRestoreFlags names the required restore flags that are empty.
func missingRestoreFlags(x RestoreOptions) []string {
	var missing []string
	for name, v := range map[string]string{"--cluster": x.Cluster, "--source": x.Source, "--seal-key-file": x.SealKeyFile, "--seal-key-id": x.SealKeyID} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	switch {
	case strings.HasPrefix(x.Source, "pvc://") && x.SnapshotDir == "":
		missing = append(missing, "--snapshot-dir")
	case strings.HasPrefix(x.Source, "s3://"):
		if x.S3Endpoint == "" {
			missing = append(missing, "--s3-endpoint")
		}
		if x.S3CredentialsDir == "" {
			missing = append(missing, "--s3-credentials-dir")
		}
	}
	return missing
}

// validateRestoreFlags checks the values of the restore flags.
func validateRestoreFlags(x RestoreOptions) error {
	kind, bucket, _, err := parseLocation(x.Source)
	if err != nil {
		return err
	}
	if kind == "s3" && x.S3Bucket != "" && x.S3Bucket != bucket {
		return fmt.Errorf("--source %q is not in --s3-bucket %q", x.Source, x.S3Bucket)
	}
	if x.SHA256 != "" {
		if b, err := hex.DecodeString(x.SHA256); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("--sha256 %q is not 64 hex digits", x.SHA256)
		}
	}
	return nil
}

// refuseRestore writes the result of a restore refused before it started.
func refuseRestore(x RestoreOptions, reason string, err error) error {
	return writeRestoreResult(x.ResultFile, backup.RestoreResult{
		Location: x.Source, Forced: x.Force, Refused: true, Reason: reason,
		Message: "refused, nothing changed: " + err.Error(),
	})
}
