package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	logsDir = "logs"
	pidsDir = "pids"

	// logTailBytes is how much of a process log a start error quotes.
	logTailBytes = 4096
)

// process is one control-plane binary running as a child of this process.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	pidPath string
	logFile *os.File
	done    chan struct{} // closed once the process has exited and been reaped
	exitErr error         // valid after done is closed
}

// spawner starts child processes from one OS thread that stays alive until
// the control plane is stopped. The kernel delivers Pdeathsig when the
// parent *thread* exits, not the parent process: a child started from an
// arbitrary goroutine would be killed as soon as the Go runtime retired that
// thread (which it does when a goroutine locked to its thread, as network
// namespace code is, returns).
type spawner struct {
	requests chan func()
}

func newSpawner() *spawner {
	s := &spawner{requests: make(chan func())}
	go func() {
		// Never unlocked: when this goroutine returns after close, the
		// runtime ends the thread, which by then has no children left.
		runtime.LockOSThread()
		for f := range s.requests {
			f()
		}
	}()
	return s
}

// run calls f on the spawner's thread and waits for it.
func (s *spawner) run(f func()) {
	done := make(chan struct{})
	s.requests <- func() {
		defer close(done)
		f()
	}
	<-done
}

// close ends the spawner's thread. Call it only once every child it started
// has exited.
func (s *spawner) close() { close(s.requests) }

// startProcess runs binary with args, logging to <dir>/logs/<name>.log and
// recording its PID in <dir>/pids/<name>.pid so that Cleanup can find it
// after this process has crashed.
func startProcess(sp *spawner, dir, name, binary string, args []string) (*process, error) {
	logPath := filepath.Join(dir, logsDir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log for %s: %w", name, err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = childEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// If this process dies without stopping the control plane, the
		// kernel kills the children instead of leaving them running.
		Pdeathsig: syscall.SIGKILL,
		// A process group of its own keeps a terminal's Ctrl-C away from
		// the children, so that Stop can end them in order.
		Setpgid: true,
	}
	sp.run(func() { err = cmd.Start() })
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{
		name:    name,
		cmd:     cmd,
		logPath: logPath,
		pidPath: filepath.Join(dir, pidsDir, name+".pid"),
		logFile: logFile,
		done:    make(chan struct{}),
	}
	go func() {
		p.exitErr = cmd.Wait()
		close(p.done)
	}()
	if err := os.WriteFile(p.pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = p.stop(0)
		return nil, fmt.Errorf("record PID of %s: %w", name, err)
	}
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace for the process to end, then kills
// it. It is safe to call on a process that has already exited.
func (p *process) stop(grace time.Duration) error {
	var errs []error
	if !p.exited() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("signal %s: %w", p.name, err))
		}
		timer := time.NewTimer(grace)
		select {
		case <-p.done:
			timer.Stop()
		case <-timer.C:
			if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
				errs = append(errs, fmt.Errorf("kill %s: %w", p.name, err))
			}
			<-p.done
		}
	}
	if err := os.Remove(p.pidPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := p.logFile.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// failure builds a start error that quotes the end of the process log.
func (p *process) failure(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if p.exited() {
		msg = fmt.Sprintf("%s (%s exited: %v)", msg, p.name, p.exitErr)
	}
	return fmt.Errorf("%s; last lines of %s:\n%s", msg, p.logPath, logTail(p.logPath))
}

func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	offset := max(info.Size()-logTailBytes, 0)
	buf, err := io.ReadAll(io.NewSectionReader(f, offset, info.Size()-offset))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	if offset > 0 {
		// Drop the partial first line.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	return string(buf)
}

// childEnv is this process's environment without proxy settings: the
// control plane only talks to itself, and a proxy would intercept the
// controller manager's calls to an API server on a non-loopback address.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(name) {
		case "http_proxy", "https_proxy", "no_proxy", "all_proxy":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// Cleanup kills every process recorded under dir by an earlier Start (for
// example after the program that started them crashed) and removes dir. A
// PID is only acted on while the process it names still refers to dir on its
// command line, so a PID reused by an unrelated process is left alone.
func Cleanup(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	pids, err := recordedProcesses(abs)
	if err != nil {
		return err
	}
	var errs []error
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("kill PID %d: %w", pid, err))
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for processAlive(pid) {
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("PID %d still running after SIGKILL", pid))
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(abs); err != nil {
		return fmt.Errorf("remove %s: %w", abs, err)
	}
	return nil
}

// recordedProcesses returns the PIDs recorded under dir whose processes are
// still running with dir on their command line.
func recordedProcesses(dir string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(dir, pidsDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".pid") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, pidsDir, e.Name()))
		if err != nil {
			return nil, err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 {
			continue
		}
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cmdline, []byte(dir)) || !processAlive(pid) {
			continue
		}
		pids = append(pids, pid)
	}
	return pids, nil
}

// processAlive reports whether pid names a process that has not exited. A
// zombie (exited, waiting for its parent to reap it) counts as gone.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}
