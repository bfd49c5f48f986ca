package nodeagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/klog/v2"
)

// startProbes runs the container's startup probe, then its readiness and
// liveness probes, each until the container exits (ctx done).
func (w *podWorker) startProbes(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState) {
	if c.StartupProbe == nil && c.ReadinessProbe == nil && c.LivenessProbe == nil {
		return
	}
	startedAt := s.startedAt
	go func() {
		if c.StartupProbe != nil {
			ok := w.probeLoop(ctx, pod, c, s, c.StartupProbe, startedAt, func(ok bool) bool {
				if !ok {
					w.killForRestart(pod, c, s, c.StartupProbe, "startup")
				}
				return true
			})
			if !ok {
				return
			}
			w.mu.Lock()
			s.started = true
			w.mu.Unlock()
			w.poke()
		}
		if c.ReadinessProbe != nil {
			go w.probeLoop(ctx, pod, c, s, c.ReadinessProbe, startedAt, func(ok bool) bool {
				w.mu.Lock()
				changed := s.ready != ok
				s.ready = ok && s.running
				w.mu.Unlock()
				if changed {
					w.poke()
				}
				return false
			})
		}
		if c.LivenessProbe != nil {
			go w.probeLoop(ctx, pod, c, s, c.LivenessProbe, startedAt, func(ok bool) bool {
				if !ok {
					w.killForRestart(pod, c, s, c.LivenessProbe, "liveness")
					return true
				}
				return false
			})
		}
	}()
}

// probeLoop probes every period and calls report when a threshold is
// reached; it stops when report returns true (the returned value is the
// last result) or ctx is done (false).
func (w *podWorker) probeLoop(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState, p *corev1.Probe, startedAt time.Time, report func(bool) bool) bool {
	delay := time.Until(startedAt.Add(time.Duration(p.InitialDelaySeconds) * time.Second))
	if !sleepCtx(ctx, delay) {
		return false
	}
	period := time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	successNeeded, failureNeeded := max(p.SuccessThreshold, 1), max(p.FailureThreshold, 1)
	var successes, failures int32
	for {
		probeCtx, cancel := context.WithTimeout(ctx, timeout)
		ok, msg := w.probeOnce(probeCtx, pod, c, s, p)
		cancel()
		if ctx.Err() != nil {
			return false
		}
		if ok {
			successes, failures = successes+1, 0
			if successes >= successNeeded && report(true) {
				return true
			}
		} else {
			klog.V(2).InfoS("Probe failed", "pod", klog.KObj(pod), "container", c.Name, "msg", msg)
			w.agent.events.Eventf(pod, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", probeKind(c, p), strings.TrimSpace(msg))
			failures, successes = failures+1, 0
			if failures >= failureNeeded && report(false) {
				return false
			}
		}
		if !sleepCtx(ctx, period) {
			return false
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// killForRestart stops a container whose liveness or startup probe failed;
// the sync loop restarts it according to the restart policy.
func (w *podWorker) killForRestart(pod *corev1.Pod, c *corev1.Container, s *ctrState, p *corev1.Probe, kind string) {
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if p.TerminationGracePeriodSeconds != nil {
		grace = *p.TerminationGracePeriodSeconds
	}
	klog.InfoS("Container failed its probe, restarting", "pod", klog.KObj(pod), "container", c.Name, "probe", kind)
	w.agent.events.Eventf(pod, corev1.EventTypeNormal, "Killing", "Container %s failed %s probe, will be restarted", c.Name, kind)
	w.mu.Lock()
	s.killReason = kind
	snapshot := &ctrState{cmd: s.cmd, exited: s.exited}
	w.mu.Unlock()
	go stopProcess(snapshot, time.Duration(grace)*time.Second)
}

func (w *podWorker) probeOnce(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState, p *corev1.Probe) (bool, string) {
	switch {
	case p.Exec != nil:
		code, out, err := w.execIn(ctx, s, p.Exec.Command)
		if err != nil {
			return false, err.Error()
		}
		return code == 0, out
	case p.HTTPGet != nil:
		err := w.httpGet(ctx, pod, c, p.HTTPGet)
		return err == nil, fmt.Sprint(err)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return false, err.Error()
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = w.podIP()
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	return false, "probe type not supported on this node"
}

func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("port %q not found in container %s", p.StrVal, c.Name)
}

// probeTransport skips certificate verification, as the kubelet does.
var probeTransport = &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet probes do not verify
	DisableKeepAlives: true,
}

func (w *podWorker) httpGet(ctx context.Context, pod *corev1.Pod, c *corev1.Container, g *corev1.HTTPGetAction) error {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return err
	}
	host := g.Host
	if host == "" {
		host = w.podIP()
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	u, err = u.Parse(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.35")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "host") {
			req.Host = h.Value
		} else {
			req.Header.Add(h.Name, h.Value)
		}
	}
	resp, err := (&http.Client{Transport: probeTransport}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}

// execIn runs argv inside the container's namespaces and mounts, with its
// environment and user, and returns its exit code and output.
func (w *podWorker) execIn(ctx context.Context, s *ctrState, argv []string) (int, string, error) {
	w.mu.Lock()
	base := s.launch
	w.mu.Unlock()
	if base == nil || len(argv) == 0 {
		return -1, "", errors.New("container not running")
	}
	spec := *base
	env := &envList{}
	for _, kv := range base.Env {
		k, v, _ := strings.Cut(kv, "=")
		env.set(k, v)
	}
	path, err := resolveExecutable(argv[0], Image{Entrypoint: []string{base.Path}}, env, base.view)
	if err != nil {
		return -1, "", err
	}
	spec.Path, spec.Args = path, argv
	out, err := os.CreateTemp(w.dir, ".exec-*.out")
	if err != nil {
		return -1, "", err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	cmd, err := launch(&spec, out)
	if err != nil {
		return -1, "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return -1, "", fmt.Errorf("command timed out: %w", ctx.Err())
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	data, _ := os.ReadFile(out.Name())
	if len(data) > 10240 {
		data = data[:10240]
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), string(data), nil
		}
		return -1, string(data), err
	}
	return 0, string(data), nil
}

// runHandler runs a lifecycle hook (exec, httpGet or sleep).
func (w *podWorker) runHandler(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState, h *corev1.LifecycleHandler) error {
	switch {
	case h.Exec != nil:
		code, out, err := w.execIn(ctx, s, h.Exec.Command)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("exit code %d: %s", code, out)
		}
		return nil
	case h.HTTPGet != nil:
		return w.httpGet(ctx, pod, c, h.HTTPGet)
	case h.Sleep != nil:
		sleepCtx(ctx, time.Duration(h.Sleep.Seconds)*time.Second)
	}
	return nil
}

func probeKind(c *corev1.Container, p *corev1.Probe) string {
	switch p {
	case c.StartupProbe:
		return "Startup"
	case c.LivenessProbe:
		return "Liveness"
	}
	return "Readiness"
}
