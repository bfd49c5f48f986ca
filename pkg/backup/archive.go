package backup

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"

	wrapping "github.com/openbao/go-kms-wrapping/v2"
	"google.golang.org/protobuf/proto"
)

// Files of a Raft snapshot archive (OpenBao's internal/physical/raft/snapshot/archive.go):
// a gzipped tar of the snapshot's metadata, its data, the SHA-256 of both, and the same
// list encrypted by the cluster's seal. The sealed list comes last: a snapshot that broke
// off has none.
const (
	archiveMeta       = "meta.json"
	archiveState      = "state.bin"
	archiveSums       = "SHA256SUMS"
	archiveSealedSums = "SHA256SUMS.sealed"
	// maxSumsSize bounds the two small files, as OpenBao does when it reads them.
	maxSumsSize = 8192
)

// Reasons a restore is refused before anything changed (RestoreResult.Reason with Refused).
const (
	// ReasonInvalidRequest: the flags or the seal key file are wrong.
	ReasonInvalidRequest = "InvalidRequest"
	// ReasonNotFound: the snapshot does not exist.
	ReasonNotFound = "NotFound"
	// ReasonNoChecksum: no checksum is recorded with the snapshot and none was given.
	ReasonNoChecksum = "NoChecksum"
	// ReasonChecksumMismatch: the snapshot's SHA-256 is not the expected one.
	ReasonChecksumMismatch = "ChecksumMismatch"
	// ReasonIncompleteSnapshot: the archive ends early or has no sealed SHA256SUMS.
	ReasonIncompleteSnapshot = "IncompleteSnapshot"
	// ReasonCorruptSnapshot: the archive is complete but its files do not match its
	// SHA256SUMS, or it holds files a snapshot does not have.
	ReasonCorruptSnapshot = "CorruptSnapshot"
	// ReasonSealKeyMismatch: the cluster's seal key cannot decrypt the snapshot's sealed
	// SHA256SUMS; restored, the data could never be unsealed.
	ReasonSealKeyMismatch = "SealKeyMismatch"
	// ReasonSourceUnreadable: the snapshot could not be read (storage or network error).
	ReasonSourceUnreadable = "SourceUnreadable"
	// ReasonLoginFailed: the executor could not log in (or its token may not restore).
	ReasonLoginFailed = "LoginFailed"
	// ReasonSnapshotChanged: the object changed between the check and the restore.
	ReasonSnapshotChanged = "SnapshotChanged"
	// ReasonRefusedByOpenBao: OpenBao refused the snapshot (HTTP 400) after reading it; it
	// changes nothing then.
	ReasonRefusedByOpenBao = "RefusedByOpenBao"
)

// Reasons a restore failed (RestoreResult.Reason with Refused false).
const (
	// ReasonRestoreFailed: the restore request failed; OpenBao may or may not have
	// installed the snapshot.
	ReasonRestoreFailed = "RestoreFailed"
	// ReasonNotServingAfterRestore: OpenBao accepted the snapshot but the server did not
	// come back unsealed with an active node in time.
	ReasonNotServingAfterRestore = "NotServingAfterRestore"
)

// RestoreResult is what a restore Job reports, as JSON in its termination message.
type RestoreResult struct {
	// Location of the snapshot, s3://<bucket>/<key> or pvc://<claim>/<path>.
	Location string `json:"location,omitempty"`
	Size     int64  `json:"size,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	// Forced says whether the restore was forced (snapshot-force: another cluster's snapshot).
	Forced bool `json:"forced"`
	// Refused is true when the executor refused the snapshot or the request before it
	// sent anything to OpenBao (or OpenBao refused it before installing it): the cluster is
	// unchanged.
	Refused bool `json:"refused"`
	// Reason is one of the Reason* constants; empty after a successful restore.
	Reason string `json:"reason,omitempty"`
	// Message says what happened, for a person.
	Message string `json:"message,omitempty"`
}

// RefusalError is a refusal before anything changed; Reason is a Reason* constant.
type RefusalError struct {
	Reason string
	Err    error
}

func (e *RefusalError) Error() string { return e.Err.Error() }
func (e *RefusalError) Unwrap() error { return e.Err }

// Refuse returns a RefusalError with a formatted message.
func Refuse(reason, format string, args ...any) error {
	return &RefusalError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// SealKey is a cluster's static seal key.
type SealKey struct {
	ID  string
	Key []byte
}

// ReadSealKey reads a static seal key file as OpenBao reads `current_key = "file://…"`
// (go-kms-wrapping's static wrapper): the file's bytes, not trimmed, are 32 raw bytes, 64
// hex digits, 44 base64 or 43 unpadded URL-safe base64 characters of a 32-byte key.
func ReadSealKey(path, id string) (SealKey, error) {
	if id == "" {
		return SealKey{}, errors.New("no seal key ID")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return SealKey{}, fmt.Errorf("read the seal key: %w", err)
	}
	var key []byte
	switch len(b) {
	case 32:
		key = b
	case 64:
		key, err = hex.DecodeString(string(b))
	case 44:
		key, err = base64.StdEncoding.DecodeString(string(b))
	case 43:
		key, err = base64.RawURLEncoding.DecodeString(string(b))
	default:
		return SealKey{}, fmt.Errorf("the seal key file %s holds %d bytes: not a 32-byte key, raw, hex or base64", path, len(b))
	}
	if err != nil || len(key) != 32 {
		return SealKey{}, fmt.Errorf("the seal key file %s does not hold a 32-byte key: %v", path, err)
	}
	return SealKey{ID: id, Key: key}, nil
}

// Open decrypts a value encrypted by OpenBao's static seal with this key: a go-kms-wrapping
// BlobInfo (protobuf) whose Iv (12 bytes) and Ciphertext together are the AES-256-GCM nonce
// and sealed text, without additional data, and whose KeyInfo names the key.
func (k SealKey) Open(sealed []byte) ([]byte, error) {
	var blob wrapping.BlobInfo
	if err := proto.Unmarshal(sealed, &blob); err != nil {
		return nil, fmt.Errorf("not a sealed value: %w", err)
	}
	if blob.KeyInfo == nil || blob.KeyInfo.KeyId == "" {
		return nil, errors.New("the sealed value names no key")
	}
	if blob.KeyInfo.KeyId != k.ID {
		return nil, fmt.Errorf("sealed with the key %q, not with this cluster's key %q", blob.KeyInfo.KeyId, k.ID)
	}
	block, err := aes.NewCipher(k.Key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, err
	}
	pt, err := gcm.Open(nil, nil, append(slices.Clone(blob.Iv), blob.Ciphertext...), nil)
	if err != nil {
		return nil, fmt.Errorf("the key %q does not decrypt it (another key with the same ID?)", k.ID)
	}
	return pt, nil
}

// ArchiveInfo is what CheckArchive learned.
type ArchiveInfo struct {
	// Size and SHA256 of the whole stream.
	Size   int64
	SHA256 string
}

// CheckArchive reads a Raft snapshot from r to its very end and checks, without holding
// more than one small file in memory, that it is a complete archive whose meta.json and
// state.bin match its SHA256SUMS, and that key decrypts its SHA256SUMS.sealed to the same
// sums: what OpenBao checks before a restore that is not forced, done with the seal key of
// the cluster that will have to unseal the data. A failed check is a *RefusalError.
func CheckArchive(r io.Reader, key SealKey) (ArchiveInfo, error) {
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(r, h)}
	err := checkArchive(cr, key)
	var refusal *RefusalError
	if err == nil || errors.As(err, &refusal) {
		// The SHA-256 covers every byte, also what gzip does not read, and after a refusal
		// it tells a damaged copy (checksum mismatch) from a snapshot that was bad already.
		if _, cerr := io.Copy(io.Discard, cr); cerr != nil {
			err = cerr
		}
	}
	info := ArchiveInfo{Size: cr.n, SHA256: hex.EncodeToString(h.Sum(nil))}
	return info, err
}

func checkArchive(r io.Reader, key SealKey) error {
	incomplete := func(format string, args ...any) error {
		return Refuse(ReasonIncompleteSnapshot, "incomplete snapshot: "+format, args...)
	}
	corrupt := func(format string, args ...any) error {
		return Refuse(ReasonCorruptSnapshot, "corrupt snapshot: "+format, args...)
	}
	// Read errors of the source itself (network, disk) are not the snapshot's fault.
	src := &errRecorder{r: r}
	gz, err := gzip.NewReader(src)
	if err != nil {
		if src.err != nil {
			return src.err
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return incomplete("empty or cut short before the gzip header")
		}
		return corrupt("not a gzip stream: %v", err)
	}
	sums := map[string]hash.Hash{archiveMeta: sha256.New(), archiveState: sha256.New()}
	var plain, sealed []byte
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return readError(src, err, incomplete, corrupt)
		}
		switch hdr.Name {
		case archiveMeta, archiveState:
			if _, err := io.Copy(sums[hdr.Name], tr); err != nil {
				return readError(src, err, incomplete, corrupt)
			}
		case archiveSums, archiveSealedSums:
			b, err := io.ReadAll(io.LimitReader(tr, maxSumsSize+1))
			if err != nil {
				return readError(src, err, incomplete, corrupt)
			}
			if len(b) > maxSumsSize {
				return corrupt("%s is larger than %d bytes", hdr.Name, maxSumsSize)
			}
			if hdr.Name == archiveSums {
				plain = b
			} else {
				sealed = b
			}
		default:
			return corrupt("unexpected file %q", hdr.Name)
		}
	}
	// Read gzip to its end, so that its CRC and length are checked too.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return readError(src, err, incomplete, corrupt)
	}
	if len(sealed) == 0 {
		return incomplete("no %s (the archive is cut short, or was written without a seal)", archiveSealedSums)
	}
	if plain == nil {
		return incomplete("no %s", archiveSums)
	}
	want, err := parseSums(plain)
	if err != nil {
		return corrupt("%s: %v", archiveSums, err)
	}
	got := map[string]string{}
	for name, s := range sums {
		got[name] = hex.EncodeToString(s.Sum(nil))
	}
	if !sameSums(want, got) {
		return corrupt("meta.json and state.bin do not match %s", archiveSums)
	}
	opened, err := key.Open(sealed)
	if err != nil {
		return Refuse(ReasonSealKeyMismatch, "the cluster's seal key cannot decrypt the snapshot's %s: %v; restored, the data could not be unsealed", archiveSealedSums, err)
	}
	sealedSums, err := parseSums(opened)
	if err != nil {
		return corrupt("decrypted %s: %v", archiveSealedSums, err)
	}
	// OpenBao writes both lists from a map: the lines may come in another order.
	if !sameSums(sealedSums, got) {
		return corrupt("the decrypted %s does not match the archive's files", archiveSealedSums)
	}
	return nil
}

// readError tells a snapshot that ends early from one that is damaged, and passes on the
// source's own errors.
func readError(src *errRecorder, err error, incomplete, corrupt func(string, ...any) error) error {
	if src.err != nil {
		return src.err
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return incomplete("the archive ends early: %v", err)
	}
	return corrupt("%v", err)
}

// parseSums reads a SHA256SUMS file: "<hex>  <name>" per line.
func parseSums(b []byte) (map[string]string, error) {
	out := map[string]string{}
	s := bufio.NewScanner(strings.NewReader(string(b)))
	for s.Scan() {
		sum, name, ok := strings.Cut(s.Text(), "  ")
		if !ok || len(sum) != 64 || name == "" {
			return nil, fmt.Errorf("bad line %q", s.Text())
		}
		if _, err := hex.DecodeString(sum); err != nil {
			return nil, fmt.Errorf("bad line %q", s.Text())
		}
		out[name] = strings.ToLower(sum)
	}
	return out, s.Err()
}

func sameSums(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// errRecorder keeps the first error of the source other than io.EOF.
type errRecorder struct {
	r   io.Reader
	err error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && e.err == nil {
		e.err = err
	}
	return n, err
}
