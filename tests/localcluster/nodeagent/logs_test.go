package nodeagent

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeRun writes a container run's log through copyIndexed, one chunk per
// element of chunks, the n-th chunk read at base+n seconds.
func writeRun(t *testing.T, path string, base time.Time, chunks ...string) {
	t.Helper()
	logF, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer logF.Close()
	idxF, err := os.Create(strings.TrimSuffix(path, ".log") + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	defer idxF.Close()
	n := 0
	copyIndexed(&chunkReader{chunks: chunks}, logF, idxF, 0, func() time.Time {
		n++
		return base.Add(time.Duration(n-1) * time.Second)
	})
}

// chunkReader returns one chunk per Read, as a pipe does for each write.
type chunkReader struct{ chunks []string }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	r.chunks = r.chunks[1:]
	return n, nil
}

func readLog(t *testing.T, path string, o logOptions) string {
	t.Helper()
	var out bytes.Buffer
	if err := streamLog(context.Background(), path, o, closedChan(), &out, nil); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func closedChan() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func TestStreamLogOptions(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	// Line "two" arrives in two writes; "three" and "four" in one.
	writeRun(t, path, base, "one\n", "tw", "o\nthree\nfour\n", "five")
	if raw, _ := os.ReadFile(path); string(raw) != "one\ntwo\nthree\nfour\nfive" {
		t.Fatalf("raw log file %q: the file must hold exactly what the container wrote", raw)
	}
	tail := func(n int64) *int64 { return &n }
	for _, tc := range []struct {
		name string
		o    logOptions
		want string
	}{
		{"all", logOptions{}, "one\ntwo\nthree\nfour\nfive"},
		{"tailLines", logOptions{tailLines: tail(2)}, "four\nfive"},
		{"tailLines more than lines", logOptions{tailLines: tail(10)}, "one\ntwo\nthree\nfour\nfive"},
		{"tailLines 0", logOptions{tailLines: tail(0)}, ""},
		{"limitBytes", logOptions{limitBytes: tail(6)}, "one\ntw"},
		// "two" started at base+1s, "three" and "four" at base+2s.
		{"since", logOptions{since: base.Add(2 * time.Second)}, "three\nfour\nfive"},
		{"since and tail", logOptions{since: base.Add(time.Second), tailLines: tail(1)}, "five"},
		{"timestamps", logOptions{timestamps: true, tailLines: tail(3)},
			"2026-01-02T03:04:07Z three\n2026-01-02T03:04:07Z four\n2026-01-02T03:04:08Z five"},
		{"timestamps split line", logOptions{timestamps: true, tailLines: tail(4)},
			"2026-01-02T03:04:06Z two\n2026-01-02T03:04:07Z three\n2026-01-02T03:04:07Z four\n2026-01-02T03:04:08Z five"},
		{"timestamps limited", logOptions{timestamps: true, limitBytes: tail(25)}, "2026-01-02T03:04:05Z one\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readLog(t, path, tc.o); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSelectRun(t *testing.T) {
	dir := t.TempDir()
	if _, err := selectRun(dir, "c", "p", false); err == nil || !strings.Contains(err.Error(), "waiting to start") {
		t.Fatalf("no run yet: got %v, want a 'waiting to start' error", err)
	}
	for _, n := range []string{"0", "1", "10", "2"} {
		writeRun(t, filepath.Join(dir, n+".log"), time.Now(), "run "+n+"\n")
	}
	if _, err := selectRun(filepath.Join(dir, "missing"), "c", "p", true); err == nil || !strings.Contains(err.Error(), "previous terminated container") {
		t.Fatalf("previous of nothing: got %v", err)
	}
	cur, err := selectRun(dir, "c", "p", false)
	if err != nil || filepath.Base(cur) != "10.log" {
		t.Fatalf("current run: %s, %v; want 10.log (numeric order)", cur, err)
	}
	prev, err := selectRun(dir, "c", "p", true)
	if err != nil || filepath.Base(prev) != "2.log" {
		t.Fatalf("previous run: %s, %v; want 2.log", prev, err)
	}
}

// TestFollow streams a log that is still being written and ends once its
// writer is done.
func TestFollow(t *testing.T) {
	dir := t.TempDir()
	var writers logWriters
	path := filepath.Join(dir, "0.log")
	w, err := writers.openContainerLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("first\n"); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	ended := make(chan error, 1)
	go func() {
		ended <- streamLog(context.Background(), path, logOptions{follow: true}, writers.done(path), pw, nil)
		pw.Close()
	}()
	got := make(chan string, 10)
	go func() {
		buf := make([]byte, 100)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil {
				close(got)
				return
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		var have string
		timeout := time.After(5 * time.Second)
		for have != want {
			select {
			case s, ok := <-got:
				if !ok {
					t.Fatalf("stream ended with %q, want %q", have, want)
				}
				have += s
			case <-timeout:
				t.Fatalf("got %q within 5 s, want %q", have, want)
			}
		}
	}
	expect("first\n")
	if _, err := w.WriteString("second\n"); err != nil {
		t.Fatal(err)
	}
	expect("second\n")
	select {
	case err := <-ended:
		t.Fatalf("follow ended (%v) while the writer is open", err)
	case <-time.After(500 * time.Millisecond):
	}
	_, _ = w.WriteString("last")
	w.Close()
	expect("last")
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the writer closed")
	}
}
