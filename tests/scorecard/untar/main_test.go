package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeArchive(t *testing.T, entries map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, name := range []string{"bundle/", "bundle/manifests/", "bundle/manifests/csv.yaml", "../escape"} {
		body, ok := entries[name]
		if !ok {
			continue
		}
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}
		if strings.HasSuffix(name, "/") {
			h = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	zw.Close()
	path := filepath.Join(t.TempDir(), "bundle.tar.gz")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestExtractsAsScorecardCallsIt(t *testing.T) {
	archive := writeArchive(t, map[string]string{"bundle/": "", "bundle/manifests/": "", "bundle/manifests/csv.yaml": "kind: ClusterServiceVersion\n"})
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run([]string{"tar", "xvzf", archive, "-C", dir}, &out); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "bundle/manifests/csv.yaml"))
	if err != nil || string(data) != "kind: ClusterServiceVersion\n" {
		t.Fatalf("extracted file: %q, %v", data, err)
	}
	if !strings.Contains(out.String(), "bundle/manifests/csv.yaml\n") {
		t.Fatalf("verbose output %q does not list the file", out.String())
	}
}

func TestRefusesEscapesAndOtherModes(t *testing.T) {
	archive := writeArchive(t, map[string]string{"../escape": "x"})
	if err := run([]string{"tar", "xzf", archive, "-C", t.TempDir()}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "outside") {
		t.Fatalf("an entry outside the target: %v, want an error", err)
	}
	if err := run([]string{"tar", "czf", archive}, &bytes.Buffer{}); err == nil {
		t.Fatal("creating an archive must be refused")
	}
}
