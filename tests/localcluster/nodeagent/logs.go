package nodeagent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Container output is kept the way `kubectl logs` needs it: each run of a
// container writes StateDir/logs/<ns>_<pod>_<uid>/<container>/<restartCount>.log
// (the raw bytes the process wrote to stdout and stderr) and, next to it,
// <restartCount>.idx, one record per line: the line's offset in the .log file
// and the time the agent read its first byte (16 bytes, little endian). The
// index gives `timestamps`, `sinceSeconds`/`sinceTime` and `tailLines`
// without touching the raw file, which people and tests read directly.

const idxRecordSize = 16

// logRecord is one line of a container's output.
type logRecord struct {
	offset int64
	time   time.Time
}

// logWriters tracks the copiers of running containers, so that a follower
// knows whether more output can come.
type logWriters struct {
	mu     sync.Mutex
	active map[string]chan struct{}
}

func (l *logWriters) start(path string) chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active == nil {
		l.active = map[string]chan struct{}{}
	}
	done := make(chan struct{})
	l.active[path] = done
	return done
}

func (l *logWriters) finish(path string, done chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.active[path] == done {
		delete(l.active, path)
	}
	close(done)
}

// done returns a channel closed once no more output can be written to path.
func (l *logWriters) done(path string) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ch, ok := l.active[path]; ok {
		return ch
	}
	closed := make(chan struct{})
	close(closed)
	return closed
}

// openContainerLog creates the log and index files of one container run and
// returns the writing end of a pipe to hand to the process as stdout and
// stderr. A goroutine copies the pipe into the files until every writer
// (the container and whatever it started) has closed it; the caller closes
// its own copy of the returned file once the process started.
func (l *logWriters) openContainerLog(path string) (*os.File, error) {
	logFile, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	idxFile, err := os.OpenFile(strings.TrimSuffix(path, ".log")+".idx", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	st, err := logFile.Stat()
	if err != nil {
		logFile.Close()
		idxFile.Close()
		return nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		idxFile.Close()
		return nil, err
	}
	done := l.start(path)
	go func() {
		defer l.finish(path, done)
		defer logFile.Close()
		defer idxFile.Close()
		defer r.Close()
		copyIndexed(r, logFile, idxFile, st.Size(), time.Now)
	}()
	return w, nil
}

// copyIndexed copies r to log, appending an index record to idx for every
// line that starts; offset is the log's current size. The index record is
// written before the line's bytes, so a reader never sees bytes without
// their record.
func copyIndexed(r io.Reader, log, idx io.Writer, offset int64, now func() time.Time) {
	buf := make([]byte, 32<<10)
	// Output appended to an earlier run's file (the agent restarted) starts
	// a new line record too.
	atLineStart := true
	var rec []byte
	for {
		n, err := r.Read(buf)
		if n > 0 {
			t := now().UnixNano()
			rec = rec[:0]
			for i := 0; i < n; i++ {
				if atLineStart {
					rec = binary.LittleEndian.AppendUint64(rec, uint64(offset+int64(i)))
					rec = binary.LittleEndian.AppendUint64(rec, uint64(t))
				}
				atLineStart = buf[i] == '\n'
			}
			if len(rec) > 0 {
				if _, werr := idx.Write(rec); werr != nil {
					return
				}
			}
			if _, werr := log.Write(buf[:n]); werr != nil {
				return
			}
			offset += int64(n)
		}
		if err != nil {
			return
		}
	}
}

// readIndex reads every line record of a log.
func readIndex(logPath string) ([]logRecord, error) {
	data, err := os.ReadFile(strings.TrimSuffix(logPath, ".log") + ".idx")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	recs := make([]logRecord, 0, len(data)/idxRecordSize)
	for i := 0; i+idxRecordSize <= len(data); i += idxRecordSize {
		recs = append(recs, logRecord{
			offset: int64(binary.LittleEndian.Uint64(data[i:])),
			time:   time.Unix(0, int64(binary.LittleEndian.Uint64(data[i+8:]))),
		})
	}
	return recs, nil
}

// containerRuns lists the log files of a container's runs, oldest first.
func containerRuns(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	type run struct {
		n    int
		path string
	}
	var runs []run
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		runs = append(runs, run{n, filepath.Join(dir, e.Name())})
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].n < runs[j].n })
	paths := make([]string, len(runs))
	for i, r := range runs {
		paths[i] = r.path
	}
	return paths, nil
}

// logOptions are the kubelet's PodLogOptions that apply to one run.
type logOptions struct {
	follow     bool
	timestamps bool
	tailLines  *int64
	limitBytes *int64
	since      time.Time
}

// errLimitReached ends a stream once limitBytes have been written.
var errLimitReached = errors.New("limit reached")

// streamLog writes the run's output at path to out as the kubelet does:
// lines from since on, the last tailLines of them, each prefixed with its
// RFC 3339 time when timestamps is set, at most limitBytes bytes; with
// follow, it keeps writing new output until done is closed and everything
// was written, or ctx ends.
func streamLog(ctx context.Context, path string, o logOptions, done <-chan struct{}, out io.Writer, flush func()) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := readIndex(path)
	if err != nil {
		return err
	}
	first := 0
	if !o.since.IsZero() {
		first = sort.Search(len(recs), func(i int) bool { return !recs[i].time.Before(o.since) })
	}
	if o.tailLines != nil {
		// A last line without its newline yet counts as a line.
		if tail := len(recs) - int(*o.tailLines); tail > first {
			first = tail
		}
	}
	pos := int64(0)
	if first < len(recs) {
		pos = recs[first].offset
	} else if st, err := f.Stat(); err == nil {
		pos = st.Size()
	}
	next := first // the next record whose line start is still to be written
	var written int64
	emit := func(b []byte) error {
		if o.limitBytes != nil && written+int64(len(b)) > *o.limitBytes {
			b = b[:*o.limitBytes-written]
			_, err := out.Write(b)
			written += int64(len(b))
			if err != nil {
				return err
			}
			return errLimitReached
		}
		_, err := out.Write(b)
		written += int64(len(b))
		return err
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := f.ReadAt(buf, pos)
		if n > 0 {
			chunk := buf[:n]
			if o.timestamps {
				for len(chunk) > 0 {
					if next >= len(recs) || recs[next].offset < pos {
						// Records written after the index was read.
						if recs, err = readIndex(path); err != nil {
							return err
						}
					}
					if next < len(recs) && recs[next].offset == pos {
						if err := emit([]byte(recs[next].time.UTC().Format(time.RFC3339Nano) + " ")); err != nil {
							return filterLimit(err)
						}
						next++
					}
					end := len(chunk)
					if next < len(recs) && recs[next].offset-pos < int64(end) {
						end = int(recs[next].offset - pos)
					} else if i := indexNewline(chunk); i >= 0 {
						end = i + 1
					}
					if err := emit(chunk[:end]); err != nil {
						return filterLimit(err)
					}
					pos += int64(end)
					chunk = chunk[end:]
				}
			} else {
				if err := emit(chunk); err != nil {
					return filterLimit(err)
				}
				pos += int64(n)
			}
			if flush != nil {
				flush()
			}
		}
		if rerr != nil && !errors.Is(rerr, io.EOF) {
			return rerr
		}
		if n > 0 {
			continue
		}
		if !o.follow {
			return nil
		}
		select {
		case <-done:
			// The writer is gone: whatever it wrote before is in the
			// file; one more read drains it.
			if st, err := f.Stat(); err == nil && st.Size() > pos {
				continue
			}
			return nil
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func indexNewline(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}

func filterLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// selectRun picks the log of the current run (the latest) or, with
// previous, the run before it, as the kubelet does.
func selectRun(dir, container, pod string, previous bool) (string, error) {
	runs, err := containerRuns(dir)
	if err != nil {
		return "", err
	}
	if previous {
		if len(runs) < 2 {
			return "", fmt.Errorf("previous terminated container %q in pod %q not found", container, pod)
		}
		return runs[len(runs)-2], nil
	}
	if len(runs) == 0 {
		return "", fmt.Errorf("container %q in pod %q is waiting to start: ContainerCreating", container, pod)
	}
	return runs[len(runs)-1], nil
}
