package backup

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadSealKey reads the encodings OpenBao's static seal accepts, and keeps every byte of
// a raw key as OpenBao does (a raw key may end with a newline byte).
func TestReadSealKey(t *testing.T) {
	raw := bytes.Repeat([]byte{0x0a}, 32)
	for name, content := range map[string][]byte{
		"raw":                 raw,
		"hex":                 []byte(hex.EncodeToString(raw)),
		"base64":              []byte(base64.StdEncoding.EncodeToString(raw)),
		"unpadded URL base64": []byte(base64.RawURLEncoding.EncodeToString(raw)),
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			k, err := ReadSealKey(p, "operator-1")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(k.Key, raw) || k.ID != "operator-1" {
				t.Errorf("key %x id %q", k.Key, k.ID)
			}
		})
	}
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, append(bytes.Repeat([]byte{1}, 32), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSealKey(p, "operator-1"); err == nil || !strings.Contains(err.Error(), "holds 33 bytes") {
		t.Errorf("a 33-byte file: %v", err)
	}
	if _, err := ReadSealKey(p, ""); err == nil {
		t.Error("a key without an ID was accepted")
	}
}

// TestCheckArchiveRefusesWhatIsNotASnapshot: the reasons of inputs that are no archive at all.
// Real snapshots, sealed by real servers, are checked in pkg/executor's restore tests.
func TestCheckArchiveRefusesWhatIsNotASnapshot(t *testing.T) {
	for name, tc := range map[string]struct {
		in     []byte
		reason string
	}{
		"empty":       {nil, ReasonIncompleteSnapshot},
		"not gzip":    {[]byte("fake raft snapshot\n"), ReasonCorruptSnapshot},
		"gzip header": {[]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, ReasonIncompleteSnapshot},
	} {
		t.Run(name, func(t *testing.T) {
			info, err := CheckArchive(bytes.NewReader(tc.in), SealKey{ID: "k", Key: make([]byte, 32)})
			re, ok := err.(*RefusalError)
			if !ok || re.Reason != tc.reason {
				t.Fatalf("error %v, want a refusal for %s", err, tc.reason)
			}
			if info.Size != int64(len(tc.in)) {
				t.Errorf("size %d, want %d (the whole input hashed)", info.Size, len(tc.in))
			}
		})
	}
}
