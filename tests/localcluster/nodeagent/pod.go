package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	initialBackoff = 10 * time.Second
	maxBackoff     = 5 * time.Minute
	// backoffReset: a container that ran this long restarts without delay
	// accumulated from earlier crashes.
	backoffReset = 10 * time.Minute
	// stopGrace bounds SIGTERM-to-SIGKILL when the agent itself stops.
	stopGrace = 5 * time.Second
)

// ctrState is the agent's view of one container of a pod.
type ctrState struct {
	name   string
	init   bool
	cmd    *exec.Cmd
	launch *launchSpec
	exited chan struct{}

	running   bool
	startedAt time.Time
	started   bool // startup probe passed (or none)
	ready     bool

	waitingReason, waitingMessage string
	lastTerm, prevTerm            *corev1.ContainerStateTerminated
	restartCount                  int32
	everStarted                   bool
	nextStart                     time.Time
	backoff                       time.Duration
	pullFailures                  int
	imageID                       string
	containerID                   string
	killReason                    string
	probeCancel                   context.CancelFunc
	// termFile is the host file the running container sees at its terminationMessagePath,
	// logFile its log.
	termFile, logFile string
	terminationPolicy corev1.TerminationMessagePolicy
}

// podWorker runs one pod: sandbox, volumes, containers, probes, status and
// graceful deletion.
type podWorker struct {
	agent  *agent
	uid    types.UID
	dir    string
	logDir string

	mu       sync.Mutex
	pod      *corev1.Pod
	gone     bool
	done     bool
	notify   chan struct{}
	hurry    chan struct{}
	ctrs     map[string]*ctrState
	tokens   map[string]projectedToken
	ipIdx    int
	sandbox  bool
	volumes  map[string]string
	mountErr string
	terminal corev1.PodPhase
	// initialized: every init container completed (sidecars started).
	initialized bool
	// frozen: the pod was already finished when this agent started; its
	// status stays as reported before.
	frozen   bool
	startAt  metav1.Time
	lastSent *corev1.PodStatus
}

type podRecord struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
	IPIndex   int    `json:"ipIndex"`
}

func newPodWorker(a *agent, pod *corev1.Pod) *podWorker {
	return &podWorker{
		agent:  a,
		uid:    pod.UID,
		pod:    pod,
		dir:    filepath.Join(a.cfg.StateDir, "pods", string(pod.UID)),
		logDir: filepath.Join(a.cfg.StateDir, "logs", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID)),
		notify: make(chan struct{}, 1),
		hurry:  make(chan struct{}),
		ctrs:   map[string]*ctrState{},
		tokens: map[string]projectedToken{},
	}
}

func (w *podWorker) update(pod *corev1.Pod) {
	w.mu.Lock()
	if pod.ResourceVersion != w.pod.ResourceVersion {
		old := w.pod.DeletionGracePeriodSeconds
		if old != nil && pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds < *old {
			// A second delete shortened the grace period: stop now.
			w.hurryUp()
		}
		w.pod = pod
	}
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) vanished() {
	w.mu.Lock()
	w.gone = true
	w.hurryUp()
	w.mu.Unlock()
	w.poke()
}

// hurryUp ends every graceful stop in progress (w.mu held).
func (w *podWorker) hurryUp() {
	select {
	case <-w.hurry:
	default:
		close(w.hurry)
	}
}

func (w *podWorker) finished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

func (w *podWorker) poke() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *podWorker) podIP() string {
	if w.ipIdx == 0 {
		return ""
	}
	return w.agent.net.addr(w.ipIdx).String()
}

func (w *podWorker) run(ctx context.Context) {
	defer func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	}()
	if p := w.current(); p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		// Finished before this agent started: nothing to run again.
		w.terminal = p.Status.Phase
		w.frozen = true
	} else {
		w.adoptStatus(p)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		pod := w.current()
		w.mu.Lock()
		gone := w.gone
		w.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			w.stopContainers(context.Background(), stopGrace, false)
			w.teardownSandbox(false)
			return
		case gone:
			w.stopContainers(ctx, 0, false)
			w.teardownSandbox(true)
			return
		case pod.DeletionTimestamp != nil:
			w.terminate(ctx, pod)
			return
		}
		w.sync(ctx, pod)
		select {
		case <-ctx.Done():
		case <-w.notify:
		case <-tick.C:
		}
	}
}

// adoptStatus continues from the status an earlier run of the agent
// reported: completed init containers are not run again, restart counts
// go on, and containers that were running count as terminated (the agent's
// stop killed them).
func (w *podWorker) adoptStatus(pod *corev1.Pod) {
	for i, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			s := &ctrState{name: cs.Name, init: i == 0, restartCount: cs.RestartCount, imageID: cs.ImageID, containerID: cs.ContainerID}
			switch {
			case cs.State.Terminated != nil:
				s.lastTerm = cs.State.Terminated.DeepCopy()
				s.prevTerm = cs.LastTerminationState.Terminated.DeepCopy()
			case cs.State.Running != nil:
				now := metav1.Now()
				s.lastTerm = &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown",
					Message: "the node agent restarted", StartedAt: cs.State.Running.StartedAt, FinishedAt: now, ContainerID: cs.ContainerID}
			default:
				continue
			}
			s.everStarted = true
			w.ctrs[cs.Name] = s
		}
	}
}

func (w *podWorker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

func (w *podWorker) state(c *corev1.Container, init bool) *ctrState {
	s := w.ctrs[c.Name]
	if s == nil {
		s = &ctrState{name: c.Name, init: init}
		w.ctrs[c.Name] = s
	}
	return s
}

// sync moves the pod one step towards its spec and reports status.
func (w *podWorker) sync(ctx context.Context, pod *corev1.Pod) {
	if w.terminal != "" {
		w.pushStatus(ctx, pod)
		return
	}
	if !w.sandbox {
		if err := w.setupSandbox(pod); err != nil {
			klog.InfoS("Pod sandbox setup failed", "pod", klog.KObj(pod), "err", err)
			w.mountErr = err.Error()
			w.pushStatus(ctx, pod)
			return
		}
	}
	vols, err := w.syncVolumes(ctx, pod)
	if err != nil {
		if w.mountErr != err.Error() {
			w.agent.events.Eventf(pod, corev1.EventTypeWarning, "FailedMount", "MountVolume.SetUp failed: %v", err)
		}
		w.mountErr = err.Error()
		w.pushStatus(ctx, pod)
		return
	}
	w.mountErr = ""
	w.volumes = vols

	w.mu.Lock()
	defer func() {
		w.mu.Unlock()
		w.pushStatus(ctx, pod)
	}()
	now := time.Now()
	policy := pod.Spec.RestartPolicy
	if !w.initialized {
		for i := range pod.Spec.InitContainers {
			c := &pod.Spec.InitContainers[i]
			s := w.state(c, true)
			if isSidecar(c) {
				// A sidecar only has to be running (and started) for the
				// next init container to run.
				if s.running && s.started {
					continue
				}
				if !s.running {
					w.startIfDue(ctx, pod, c, s, now)
				}
				return
			}
			if s.running {
				return
			}
			if s.lastTerm != nil && s.lastTerm.ExitCode == 0 {
				continue
			}
			if s.lastTerm != nil && policy == corev1.RestartPolicyNever {
				w.finish(corev1.PodFailed)
				return
			}
			w.startIfDue(ctx, pod, c, s, now)
			return
		}
		w.initialized = true
	}
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; isSidecar(c) {
			// Sidecars restart whatever the pod's restart policy.
			if s := w.state(c, true); !s.running {
				w.startIfDue(ctx, pod, c, s, now)
			}
		}
	}
	allDone, allSucceeded := true, true
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		s := w.state(c, false)
		switch {
		case s.running:
			allDone = false
		case s.lastTerm == nil:
			allDone = false
			w.startIfDue(ctx, pod, c, s, now)
		default:
			restart := policy == corev1.RestartPolicyAlways || policy == "" ||
				(policy == corev1.RestartPolicyOnFailure && s.lastTerm.ExitCode != 0)
			if restart {
				allDone = false
				w.startIfDue(ctx, pod, c, s, now)
			} else if s.lastTerm.ExitCode != 0 {
				allSucceeded = false
			}
		}
	}
	if allDone && len(pod.Spec.Containers) > 0 {
		if allSucceeded {
			w.finish(corev1.PodSucceeded)
		} else {
			w.finish(corev1.PodFailed)
		}
	}
}

// finish records a terminal phase and releases the sandbox (called with
// w.mu held; the sandbox teardown only kills what is left).
func (w *podWorker) finish(phase corev1.PodPhase) {
	w.terminal = phase
	for _, s := range w.ctrs {
		if s.probeCancel != nil {
			s.probeCancel()
		}
		s.ready = false
	}
	if w.sandbox {
		_ = w.agent.net.teardownPod(w.ipIdx)
		w.sandbox = false
	}
}

// startIfDue starts a container unless it is in back-off (w.mu held).
func (w *podWorker) startIfDue(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState, now time.Time) {
	if now.Before(s.nextStart) {
		switch {
		case s.pullFailures > 0:
			s.waitingReason = "ImagePullBackOff"
			s.waitingMessage = fmt.Sprintf("Back-off pulling image %q: %s", c.Image, strings.TrimPrefix(s.waitingMessage, fmt.Sprintf("Back-off pulling image %q: ", c.Image)))
		case s.lastTerm != nil:
			if s.waitingReason != "CrashLoopBackOff" {
				w.agent.events.Eventf(pod, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container %s in pod %s_%s(%s)", c.Name, pod.Name, pod.Namespace, pod.UID)
			}
			s.waitingReason = "CrashLoopBackOff"
			s.waitingMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", s.backoff, c.Name, pod.Name, pod.Namespace, pod.UID)
		}
		return
	}
	err := w.startContainer(ctx, pod, c, s)
	if err == nil {
		return
	}
	var pullErr *pullError
	var cfgErr *configError
	switch {
	case errors.As(err, &pullErr):
		w.agent.events.Eventf(pod, corev1.EventTypeWarning, "Failed", "%s", err)
		s.pullFailures++
		s.waitingReason = "ErrImagePull"
		s.waitingMessage = err.Error()
		s.nextStart = now.Add(nextBackoff(s))
	case errors.As(err, &cfgErr):
		if s.waitingMessage != err.Error() {
			w.agent.events.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: %s", err)
		}
		s.waitingReason = "CreateContainerConfigError"
		s.waitingMessage = err.Error()
		s.nextStart = now.Add(2 * time.Second)
	default:
		// The launcher failed (bad working directory, mount, exec): the
		// kubelet reports a terminated container with StartError.
		if s.lastTerm != nil {
			s.prevTerm = s.lastTerm
			s.restartCount++
		}
		t := metav1.NewTime(now)
		s.lastTerm = &corev1.ContainerStateTerminated{ExitCode: 128, Reason: "StartError", Message: err.Error(), StartedAt: t, FinishedAt: t}
		s.waitingReason, s.waitingMessage = "", ""
		s.everStarted = true
		s.nextStart = now.Add(nextBackoff(s))
		klog.InfoS("Container start failed", "pod", klog.KObj(pod), "container", c.Name, "err", err)
		w.agent.events.Eventf(pod, corev1.EventTypeWarning, "Failed", "Error: failed to start container %q: %v", c.Name, err)
	}
}

// nextBackoff returns the delay before the next start attempt: none the
// first time, then 10 s doubling up to 5 min, as the kubelet's back-off.
// isSidecar tells an init container that keeps running next to the
// regular containers (restartPolicy: Always).
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

func nextBackoff(s *ctrState) time.Duration {
	delay := s.backoff
	switch {
	case s.backoff == 0:
		s.backoff = initialBackoff
	case s.backoff < maxBackoff:
		s.backoff = min(2*s.backoff, maxBackoff)
	}
	return delay
}

type pullError struct{ msg string }

func (e *pullError) Error() string { return e.msg }

// setupSandbox allocates the pod's address, creates its network namespace
// and writes hosts, resolv.conf and hostname.
func (w *podWorker) setupSandbox(pod *corev1.Pod) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	var rec podRecord
	if data, err := os.ReadFile(filepath.Join(w.dir, "pod.json")); err == nil {
		_ = json.Unmarshal(data, &rec)
	}
	want := rec.IPIndex
	if want == 0 && pod.Status.PodIP != "" {
		// Keep the address a previous run reported.
		if w.agent.net.prefix.Contains(mustAddr(pod.Status.PodIP)) {
			want = int(mustAddr(pod.Status.PodIP).As4()[3])
		}
	}
	idx, err := w.agent.allocateIP(pod.UID, want)
	if err != nil {
		return err
	}
	w.ipIdx = idx
	rec = podRecord{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), IPIndex: idx}
	data, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(w.dir, "pod.json"), data, 0o644); err != nil {
		return err
	}
	for _, sub := range []string{"rootfs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(w.dir, sub), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(w.dir, "tmp"), 0o1777|os.ModeSticky); err != nil {
		return err
	}
	if err := w.writeNameFiles(pod); err != nil {
		return err
	}
	if err := w.agent.net.setupPod(idx); err != nil {
		return err
	}
	w.sandbox = true
	if w.startAt.IsZero() {
		w.startAt = metav1.Now()
		if pod.Status.StartTime != nil {
			w.startAt = *pod.Status.StartTime
		}
	}
	return nil
}

func podHostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	if len(pod.Name) > 63 {
		return strings.TrimRight(pod.Name[:63], "-.")
	}
	return pod.Name
}

// writeNameFiles writes the pod's /etc/hosts, /etc/resolv.conf and
// /etc/hostname as the kubelet does.
func (w *podWorker) writeNameFiles(pod *corev1.Pod) error {
	domain := w.agent.cfg.ClusterDomain
	host := podHostname(pod)
	ip := w.podIP()
	var hosts strings.Builder
	hosts.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if pod.Spec.Subdomain != "" {
		fmt.Fprintf(&hosts, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, host, pod.Spec.Subdomain, pod.Namespace, domain, host)
	} else {
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, host)
	}
	for _, ha := range pod.Spec.HostAliases {
		fmt.Fprintf(&hosts, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
	}
	resolv := fmt.Sprintf("search %s.svc.%s svc.%s %s\nnameserver %s\noptions ndots:5\n", pod.Namespace, domain, domain, domain, w.agent.hostIP())
	if dc := pod.Spec.DNSConfig; dc != nil && pod.Spec.DNSPolicy == corev1.DNSNone {
		resolv = ""
		if len(dc.Searches) > 0 {
			resolv += "search " + strings.Join(dc.Searches, " ") + "\n"
		}
		for _, ns := range dc.Nameservers {
			resolv += "nameserver " + ns + "\n"
		}
		var opts []string
		for _, o := range dc.Options {
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		if len(opts) > 0 {
			resolv += "options " + strings.Join(opts, " ") + "\n"
		}
	}
	files := map[string]string{"hosts": hosts.String(), "resolv.conf": resolv, "hostname": host + "\n"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(w.dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (w *podWorker) teardownSandbox(removeFolder bool) {
	w.mu.Lock()
	idx := w.ipIdx
	w.mu.Unlock()
	if idx != 0 {
		_ = w.agent.net.teardownPod(idx)
	}
	w.sandbox = false
	if removeFolder {
		if idx != 0 {
			w.agent.releaseIP(w.uid, idx)
		}
		_ = os.RemoveAll(w.dir)
	}
}

// securityIDs returns the uid, gid and supplementary groups of a container.
func securityIDs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64, groups []uint32, nonRoot bool) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		for _, g := range psc.SupplementalGroups {
			groups = append(groups, uint32(g))
		}
		if psc.FSGroup != nil {
			groups = append(groups, uint32(*psc.FSGroup))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
	}
	return uid, gid, groups, nonRoot
}

// buildLaunch computes the launch spec of a container: command line, env,
// mounts and credentials.
func (w *podWorker) buildLaunch(ctx context.Context, pod *corev1.Pod, c *corev1.Container, img Image) (*launchSpec, error) {
	env, err := w.agent.containerEnv(ctx, pod, c, img, w.podIP())
	if err != nil {
		return nil, err
	}
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(append(argv, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, img.Entrypoint...), c.Args...)
	default:
		argv = append(append(argv, img.Entrypoint...), img.Cmd...)
	}
	if len(argv) == 0 {
		return nil, &configError{fmt.Sprintf("image %q has no entrypoint and the container sets no command", c.Image)}
	}
	for i := range argv {
		argv[i] = expand(argv[i], env.lookup)
	}
	uid, gid, groups, nonRoot := securityIDs(pod, c)
	if uid == nil && img.User != nil {
		uid = img.User
		if gid == nil {
			gid = img.Group
		}
	}
	if nonRoot && (uid == nil || *uid == 0) {
		return nil, &configError{"container has runAsNonRoot and image will run as root"}
	}
	spec := &launchSpec{
		NetNS:    filepath.Join(netnsDir, w.agent.net.nsName(w.ipIdx)),
		Hostname: podHostname(pod),
		Root:     filepath.Join(w.dir, "rootfs"),
		Hide:     []string{w.agent.cfg.StateDir},
		Args:     argv,
		Env:      env.list(),
		Dir:      c.WorkingDir,
		Groups:   groups,
	}
	if uid != nil {
		spec.UID = ptr.To(uint32(*uid))
		g := uint32(0)
		if gid != nil {
			g = uint32(*gid)
		}
		spec.GID = &g
	} else if gid != nil {
		spec.GID = ptr.To(uint32(*gid))
	}
	if sc := c.SecurityContext; sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		spec.ReadOnlyRoot = true
	}
	targets := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		targets[filepath.Clean(vm.MountPath)] = true
	}
	if !spec.ReadOnlyRoot && !targets["/tmp"] {
		spec.Mounts = append(spec.Mounts, mountSpec{Source: filepath.Join(w.dir, "tmp"), Target: "/tmp"})
	}
	// The image's executable: its directory on this node, at a fixed path (first on
	// PATH), wherever the node keeps it and whatever the pod mounts over it.
	if len(img.Entrypoint) > 0 {
		spec.Mounts = append(spec.Mounts, mountSpec{Source: filepath.Dir(img.Entrypoint[0]), Target: ImageDir, ReadOnly: true})
	}
	for _, f := range []string{"hosts", "resolv.conf", "hostname"} {
		if !targets["/etc/"+f] {
			spec.Mounts = append(spec.Mounts, mountSpec{Source: filepath.Join(w.dir, f), Target: "/etc/" + f, ReadOnly: true})
		}
	}
	for _, vm := range c.VolumeMounts {
		src, ok := w.volumes[vm.Name]
		if !ok {
			return nil, &configError{fmt.Sprintf("volume %q not found", vm.Name)}
		}
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expand(vm.SubPathExpr, env.lookup)
		}
		if sub != "" {
			clean := filepath.Clean(sub)
			if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return nil, &configError{fmt.Sprintf("subPath %q must be a relative path inside the volume", sub)}
			}
			src = filepath.Join(src, clean)
			real, err := filepath.EvalSymlinks(src)
			if errors.Is(err, os.ErrNotExist) {
				if err := os.MkdirAll(src, 0o777); err != nil {
					return nil, err
				}
				real = src
			} else if err != nil {
				return nil, err
			}
			src = real
		}
		spec.Mounts = append(spec.Mounts, mountSpec{Source: src, Target: vm.MountPath, ReadOnly: vm.ReadOnly})
	}
	spec.view = containerView{mounts: spec.Mounts, root: img.Root, scratch: img.Scratch}
	// The image's files. FROM scratch they are the root itself (the launcher
	// builds it from them); otherwise they are laid over the node's tree.
	if img.Scratch {
		spec.Base = img.Root
	} else if img.Root != "" {
		others := make([]string, 0, len(spec.Mounts))
		for _, m := range spec.Mounts {
			others = append(others, m.Target)
		}
		files, err := imageMounts(img.Root, others)
		if err != nil {
			return nil, err
		}
		spec.Mounts = append(files, spec.Mounts...)
	}
	path, err := resolveExecutable(argv[0], img, env, spec.view)
	if err != nil {
		return nil, &configError{err.Error()}
	}
	spec.Path = path
	return spec, nil
}

// resolveExecutable finds argv[0] on the host: the image's entrypoint by its
// base name (an image's own command is often given as its absolute path in
// the image, such as /manager, which does not exist on the host), an
// absolute path where the container sees it (its volumes, its image's
// files, the node's tree), otherwise a PATH lookup in the same places.
func resolveExecutable(name string, img Image, env *envList, view containerView) (string, error) {
	entry := ""
	if len(img.Entrypoint) > 0 {
		entry = img.Entrypoint[0]
	}
	if entry != "" && name == entry {
		// The image's own entrypoint: a path on the node.
		return entry, nil
	}
	if filepath.IsAbs(name) {
		p, ok := view.hostPath(name)
		if !ok && entry != "" && name == "/"+filepath.Base(entry) {
			return entry, nil
		}
		return p, nil
	}
	if !strings.Contains(name, "/") {
		if entry != "" && filepath.Base(entry) == name {
			return entry, nil
		}
		path, _ := env.lookup("PATH")
		for _, dir := range filepath.SplitList(path) {
			p, ok := view.hostPath(filepath.Join(dir, name))
			if !ok {
				continue
			}
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("executable %q not found in the image or the node's PATH", name)
}

// startContainer launches one container (w.mu held).
func (w *podWorker) startContainer(ctx context.Context, pod *corev1.Pod, c *corev1.Container, s *ctrState) error {
	img, err := w.agent.cfg.Images.Resolve(c.Image)
	if err != nil {
		return &pullError{fmt.Sprintf("failed to pull image %q: %v", c.Image, err)}
	}
	s.pullFailures = 0
	spec, err := w.buildLaunch(ctx, pod, c, img)
	if err != nil {
		return err
	}
	restarts := s.restartCount
	if s.lastTerm != nil {
		restarts++
	}
	dir := filepath.Join(w.logDir, c.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(dir, strconv.Itoa(int(restarts))+".log")
	termFile, err := w.terminationFile(c, spec, restarts)
	if err != nil {
		return err
	}
	logFile, err := w.agent.logs.openContainerLog(logPath)
	if err != nil {
		return err
	}
	cmd, err := launch(spec, logFile)
	logFile.Close()
	if err != nil {
		return err
	}
	now := time.Now()
	if s.lastTerm != nil {
		s.prevTerm = s.lastTerm
		s.lastTerm = nil
		s.restartCount = restarts
		if !s.startedAt.IsZero() && now.Sub(s.startedAt) > backoffReset {
			s.backoff = 0
		}
	}
	s.cmd, s.launch = cmd, spec
	s.termFile, s.logFile, s.terminationPolicy = termFile, logPath, c.TerminationMessagePolicy
	s.running, s.everStarted = true, true
	s.startedAt = now
	s.waitingReason, s.waitingMessage, s.killReason = "", "", ""
	s.imageID = imageID(img)
	s.containerID = fmt.Sprintf("nodeagent://%s-%s-%d", pod.UID, c.Name, restarts)
	s.ready = c.ReadinessProbe == nil
	s.started = c.StartupProbe == nil
	s.exited = make(chan struct{})
	probeCtx, cancel := context.WithCancel(ctx)
	s.probeCancel = cancel
	klog.V(1).InfoS("Container started", "pod", klog.KObj(pod), "container", c.Name, "pid", cmd.Process.Pid)
	w.agent.events.Eventf(pod, corev1.EventTypeNormal, "Started", "Started container %s", c.Name)
	go w.wait(s, cmd, s.exited, cancel, logPath)
	if !s.init || isSidecar(c) {
		w.startProbes(probeCtx, pod, c, s)
	}
	return nil
}

// logDrainTimeout bounds the wait for the last of a container's output to reach its log
// after it exited (a process that left the container's process group may hold the pipe).
const logDrainTimeout = 2 * time.Second

// wait records the container's exit.
func (w *podWorker) wait(s *ctrState, cmd *exec.Cmd, exited chan struct{}, cancel context.CancelFunc, logPath string) {
	err := cmd.Wait()
	cancel()
	code := 0
	reason := "Completed"
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
				code = 128 + int(st.Signal())
			} else {
				code = ee.ExitCode()
			}
		} else {
			code = 128
		}
		reason = "Error"
	}
	// The container's own children die with it, as in a PID namespace.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	// Its output goes to the log through a pipe: the termination message may be read from
	// the log (FallbackToLogsOnError), so the log must hold everything it wrote first.
	select {
	case <-w.agent.logs.done(logPath):
	case <-time.After(logDrainTimeout):
	}
	w.mu.Lock()
	if s.cmd == cmd {
		if s.killReason != "" && code != 0 {
			reason = "Error"
		}
		s.running, s.ready = false, false
		s.lastTerm = &corev1.ContainerStateTerminated{
			ExitCode:    int32(code),
			Reason:      reason,
			Message:     terminationMessage(s, code),
			StartedAt:   metav1.NewTime(s.startedAt),
			FinishedAt:  metav1.Now(),
			ContainerID: s.containerID,
		}
		s.nextStart = time.Now().Add(nextBackoff(s))
	}
	w.mu.Unlock()
	close(exited)
	w.poke()
}

// Bounds of a termination message, as the kubelet's.
const (
	maxTerminationMessage    = 4096
	fallbackToLogsLines      = 80
	fallbackToLogsMaxMessage = 2048
)

// terminationFile creates, as the kubelet does, an empty file writable by any user and
// mounts it at the container's terminationMessagePath; it returns its host path ("" when the
// container has no such path or mounts a volume there).
func (w *podWorker) terminationFile(c *corev1.Container, spec *launchSpec, restarts int32) (string, error) {
	target := c.TerminationMessagePath
	if target == "" {
		return "", nil
	}
	for _, m := range spec.Mounts {
		if filepath.Clean(m.Target) == filepath.Clean(target) {
			return "", nil
		}
	}
	dir := filepath.Join(w.dir, "termination")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, fmt.Sprintf("%s-%d", c.Name, restarts))
	if err := os.WriteFile(p, nil, 0o666); err != nil {
		return "", err
	}
	// The mode regardless of the agent's umask.
	if err := os.Chmod(p, 0o666); err != nil {
		return "", err
	}
	spec.Mounts = append(spec.Mounts, mountSpec{Source: p, Target: target})
	return p, nil
}

// terminationMessage is what the container wrote to its termination-message file (at most
// 4096 bytes) or, when it wrote nothing, failed and asks for FallbackToLogsOnError, the end
// of its log.
func terminationMessage(s *ctrState, code int) string {
	if s.termFile != "" {
		if b, err := readAtMost(s.termFile, maxTerminationMessage); err == nil && len(b) > 0 {
			return string(b)
		}
	}
	if code == 0 || s.launch == nil || s.logFile == "" || s.terminationPolicy != corev1.TerminationMessageFallbackToLogsOnError {
		return ""
	}
	b, err := os.ReadFile(s.logFile)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	tail := strings.Join(lines[max(0, len(lines)-fallbackToLogsLines):], "\n")
	if len(tail) > fallbackToLogsMaxMessage {
		tail = tail[len(tail)-fallbackToLogsMaxMessage:]
	}
	return tail
}

func readAtMost(p string, n int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

// stopContainer sends SIGTERM, waits up to grace, then SIGKILLs the
// container's process group.
func stopProcess(s *ctrState, grace time.Duration) { stopProcessOrHurry(s, grace, nil) }

// stopProcessOrHurry is stopProcess that also SIGKILLs once hurry is
// closed (the pod was force-deleted meanwhile).
func stopProcessOrHurry(s *ctrState, grace time.Duration, hurry <-chan struct{}) {
	if s.cmd == nil || s.exited == nil {
		return
	}
	pid := s.cmd.Process.Pid
	select {
	case <-s.exited:
		return
	default:
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-s.exited:
	case <-hurry:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-s.exited
	case <-t.C:
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-s.exited
	}
}

// stopContainers stops every running container in parallel; withPreStop
// runs preStop hooks first. All of it fits in grace.
func (w *podWorker) stopContainers(ctx context.Context, grace time.Duration, withPreStop bool) {
	pod := w.current()
	deadline := time.Now().Add(grace)
	w.mu.Lock()
	var running []*ctrState
	for _, s := range w.ctrs {
		if s.running {
			running = append(running, s)
		}
		if s.probeCancel != nil {
			s.probeCancel()
		}
	}
	w.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := findContainer(pod, s.name)
			if withPreStop && c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				hookCtx, cancel := context.WithDeadline(ctx, deadline)
				go func() {
					select {
					case <-w.hurry:
						cancel()
					case <-hookCtx.Done():
					}
				}()
				if err := w.runHandler(hookCtx, pod, c, s, c.Lifecycle.PreStop); err != nil {
					klog.InfoS("PreStop hook failed", "pod", klog.KObj(pod), "container", s.name, "err", err)
				}
				cancel()
			}
			stopProcessOrHurry(s, time.Until(deadline), w.hurry)
		}()
	}
	wg.Wait()
}

// terminate runs the graceful deletion of the pod and removes it from the
// API server.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod) {
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	}
	klog.V(1).InfoS("Stopping pod", "pod", klog.KObj(pod), "gracePeriod", grace)
	for name, s := range w.ctrs {
		if s.running {
			w.agent.events.Eventf(pod, corev1.EventTypeNormal, "Killing", "Stopping container %s", name)
		}
	}
	w.stopContainers(ctx, time.Duration(grace)*time.Second, true)
	if ctx.Err() != nil {
		w.teardownSandbox(false)
		return
	}
	w.mu.Lock()
	if w.terminal == "" {
		phase := corev1.PodFailed
		if pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			phase = corev1.PodSucceeded
			for _, s := range w.ctrs {
				if !s.init && (s.lastTerm == nil || s.lastTerm.ExitCode != 0) {
					phase = corev1.PodFailed
				}
			}
		}
		w.finish(phase)
	}
	w.mu.Unlock()
	w.teardownSandbox(true)
	w.pushStatus(ctx, pod)
	err := w.agent.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	if err != nil && ctx.Err() == nil {
		klog.V(1).InfoS("Final pod delete", "pod", klog.KObj(pod), "err", err)
	}
}

func mustAddr(s string) netip.Addr {
	a, _ := netip.ParseAddr(s)
	return a
}
