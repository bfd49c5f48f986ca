package upgradebench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memorySampler follows the operator's process (the manager binary run without the
// executor subcommand) and keeps the peak of its resident memory.
type memorySampler struct {
	binary string

	mu      sync.Mutex
	peakRSS uint64 // bytes, over the current window
	hwm     uint64 // VmHWM of the latest process seen: its peak since it started
	pid     int
	cancel  context.CancelFunc
	done    chan struct{}
}

func startMemorySampler(binary string) *memorySampler {
	ctx, cancel := context.WithCancel(context.Background())
	m := &memorySampler{binary: binary, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(m.done)
		for {
			m.sample()
			select {
			case <-ctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *memorySampler) stop() {
	m.cancel()
	<-m.done
}

// resetPeak starts a new window and returns the peak of the last one.
func (m *memorySampler) resetPeak() (peakRSS, hwm uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	peakRSS, hwm = m.peakRSS, m.hwm
	m.peakRSS = 0
	return peakRSS, hwm
}

func (m *memorySampler) sample() {
	m.mu.Lock()
	pid := m.pid
	m.mu.Unlock()
	rss, hwm, ok := readStatus(pid)
	if !ok {
		if pid = findOperatorPid(m.binary); pid == 0 {
			return
		}
		if rss, hwm, ok = readStatus(pid); !ok {
			return
		}
	}
	m.mu.Lock()
	m.pid = pid
	m.peakRSS = max(m.peakRSS, rss)
	m.hwm = hwm
	m.mu.Unlock()
}

// readStatus reads VmRSS and VmHWM of pid in bytes.
func readStatus(pid int) (rss, hwm uint64, ok bool) {
	if pid == 0 {
		return 0, 0, false
	}
	rss, hwm, err := ProcessMemory(pid)
	return rss, hwm, err == nil && rss > 0
}

// ProcessMemory reads VmRSS and VmHWM (the peak) of pid from /proc, in bytes.
func ProcessMemory(pid int) (rss, hwm uint64, err error) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseUint(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n * 1024
		case "VmHWM":
			hwm = n * 1024
		}
	}
	return rss, hwm, nil
}

// descendsFrom says whether ancestor is pid's parent, grandparent, and so on: the node
// agent runs inside this process, so the operator's process descends from it while an
// operator of another local cluster on the same machine does not.
func descendsFrom(pid, ancestor int) bool {
	for pid > 1 {
		data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
		if err != nil {
			return false
		}
		next := 0
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PPid:"); ok {
				next, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if next == ancestor {
			return true
		}
		pid = next
	}
	return false
}

// findOperatorPid finds the process running binary (compared by device and inode, which
// also holds inside the pod's mount namespace) whose arguments are not those of an
// upgrade executor Job, among the descendants of this process.
func findOperatorPid(binary string) int {
	var want syscall.Stat_t
	if err := syscall.Stat(binary, &want); err != nil {
		return 0
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "exe"), &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if bytes.Contains(cmdline, []byte("executor")) || !descendsFrom(pid, os.Getpid()) {
			continue
		}
		return pid
	}
	return 0
}
