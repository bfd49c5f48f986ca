package upgradebench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// Faults of a failover run: what happens to the active server.
const (
	// FaultKill SIGKILLs the active server's process; the pod stays and the container
	// restarts, as after a crash.
	FaultKill = "kill"
	// FaultDelete force-deletes the active server's pod (grace period 0); the StatefulSet
	// creates it again.
	FaultDelete = "delete"
	// FaultNetCut takes the active server's pod network link down for NetCut, then up.
	FaultNetCut = "netcut"
)

const (
	// NetCut is how long FaultNetCut keeps the link down.
	NetCut = 30 * time.Second
	// failoverRequestTimeout bounds each request of the failover load: a request to a
	// server whose network is cut waits this long before the client tries another.
	failoverRequestTimeout = 2 * time.Second
	// failoverProbe is how often the failover probes ask every server for sys/health, and
	// how often the OpenBaoCluster is read.
	failoverProbe = 100 * time.Millisecond
	waitRecovered = 5 * time.Minute
)

// FailoverRun is one fault injected into the active server of a cluster under load.
type FailoverRun struct {
	Fault     string    `json:"fault"`
	Replicas  int       `json:"replicas"`
	Version   string    `json:"version"`
	Namespace string    `json:"namespace"`
	Victim    string    `json:"victim"`
	At        time.Time `json:"at"`
	Error     string    `json:"error,omitempty"`
	// NewActive is the first other server that reported itself active, NewActiveSeconds
	// after the fault (the probes ask every server every 100 ms).
	NewActive        string   `json:"newActive,omitempty"`
	NewActiveSeconds *float64 `json:"newActiveSeconds,omitempty"`
	// OperatorLeaderSeconds is when status.leader first named NewActive.
	OperatorLeaderSeconds *float64 `json:"operatorLeaderSeconds,omitempty"`
	// OperatorSaw lists the changes of status.leader and of the conditions after the
	// fault, as "+1.2s leader=bao-1".
	OperatorSaw []string `json:"operatorSaw,omitempty"`
	// RecoveredSeconds is when every server was Ready again and the operator reported the
	// cluster Available with every server a healthy voter.
	RecoveredSeconds *float64 `json:"recoveredSeconds,omitempty"`
	// RequestTimeoutSeconds bounds each request of the load.
	RequestTimeoutSeconds float64 `json:"requestTimeoutSeconds"`
	Load                  Load    `json:"load"`
	// Timeline is what the run's picture is drawn from.
	Timeline *Timeline `json:"timeline,omitempty"`
}

func failoverName(r *FailoverRun) string { return fmt.Sprintf("failover-%s/%d", r.Fault, r.Replicas) }

// Failover forms one cluster of replicas servers on cfg.To and injects each fault in turn
// into its active server, each under a fresh load, waiting for full recovery in between.
func (b *Bench) Failover(ctx context.Context, faults []string, replicas int) []*FailoverRun {
	ns := fmt.Sprintf("bench-failover-%d", replicas)
	var runs []*FailoverRun
	fail := func(err error) []*FailoverRun {
		b.cfg.progress("%s: FAILED: %v", ns, err)
		for _, f := range faults[len(runs):] {
			runs = append(runs, &FailoverRun{Fault: f, Replicas: replicas, Version: b.cfg.To, Namespace: ns, Error: err.Error()})
		}
		return runs
	}
	b.cfg.progress("%s: creating namespace and a %d-server OpenBaoCluster on %s", ns, replicas, b.cfg.To)
	if err := b.createNamespace(ctx, ns); err != nil {
		return fail(err)
	}
	defer b.deleteNamespace(ns)
	if err := b.cfg.Client.Create(ctx, newCluster(ns, b.cfg.To, int32(replicas))); err != nil {
		return fail(fmt.Errorf("create OpenBaoCluster: %w", err))
	}
	c, err := b.waitFormed(ctx, ns, replicas)
	if err != nil {
		return fail(err)
	}
	ca, err := caPEM(ctx, b.cfg.Kube, c)
	if err != nil {
		return fail(err)
	}
	if err := ensureServiceAccount(ctx, b.cfg.Kube, ns); err != nil {
		return fail(err)
	}
	for _, f := range faults {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		r := &FailoverRun{Fault: f, Replicas: replicas, Version: b.cfg.To, Namespace: ns, RequestTimeoutSeconds: failoverRequestTimeout.Seconds()}
		if err := b.failover(ctx, r, c, ca); err != nil {
			r.Error = err.Error()
			b.cfg.progress("%s: %s: FAILED: %v", ns, f, err)
		}
		runs = append(runs, r)
		if r.Error != "" && r.RecoveredSeconds == nil {
			return fail(errors.New("the cluster did not recover from the fault before"))
		}
	}
	return runs
}

func (b *Bench) failover(ctx context.Context, r *FailoverRun, c *openbaov1alpha1.OpenBaoCluster, ca []byte) error {
	cfg := b.cfg
	victim, err := b.activeServer(ctx, c, ca)
	if err != nil {
		return err
	}
	r.Victim = victim
	pod, err := cfg.Kube.CoreV1().Pods(c.Namespace).Get(ctx, victim, metav1.GetOptions{})
	if err != nil {
		return err
	}
	rec := startRecorder(ctx, cfg.Kube, c, ca)
	defer rec.stop()
	load := loadclient.Start(ctx, loadclient.Config{
		Kube: cfg.Kube, Namespace: c.Namespace, Service: resources.NamesFor(c).ClientService, CAPEM: ca,
		Login: func(ctx context.Context) (string, error) { return token(ctx, cfg.Kube, c.Namespace) },
		Role:  appRole, KeyPrefix: "secret/data/bench/" + c.Namespace + "/" + r.Fault + "/", Rate: cfg.Rate,
		RequestTimeout: failoverRequestTimeout,
	})
	loadStopped := false
	defer func() {
		if !loadStopped {
			load.Stop()
		}
	}()
	time.Sleep(warmUp)
	if load.Report().Acknowledged == 0 {
		return fmt.Errorf("the load got no write acknowledged before the fault: %v", load.Report().FirstErrors)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	w := &failoverWatch{bench: b, cluster: c, victim: victim, rec: rec}
	var watchers sync.WaitGroup
	r.At = time.Now()
	watchers.Go(func() { w.probeServers(watchCtx, r.At) })
	watchers.Go(func() { w.watchOperator(watchCtx, r.At) })
	cfg.progress("%s: %s of the active server %s", c.Namespace, r.Fault, victim)
	faultErr := b.inject(ctx, r.Fault, pod)
	injected := time.Now() // for a network cut: the link is up again
	if faultErr == nil {
		faultErr = b.waitRecovered(ctx, c, r, pod, w)
	}
	stopWatch()
	watchers.Wait()
	w.fill(r)
	time.Sleep(tail)
	load.Stop()
	loadStopped = true
	r.Load = loadFigures(load, r.At)
	r.Timeline = failoverTimeline(r, rec, load.Requests(), w, injected)
	if faultErr != nil {
		return faultErr
	}
	lost, verr := b.verify(ctx, c, ca, load)
	r.Load.Lost = lost
	if verr != nil {
		r.Load.VerifyError = verr.Error()
	}
	cfg.progress("%s: %s: new active %s after %ss, operator after %ss; longest write gap %.2fs, %d failed requests, %d/%d acknowledged writes lost",
		c.Namespace, r.Fault, r.NewActive, secs(r.NewActiveSeconds), secs(r.OperatorLeaderSeconds),
		r.Load.LongestWriteGapSecs, r.Load.FailedRequests, r.Load.Lost, r.Load.Acknowledged)
	return nil
}

// inject does the fault to pod; for FaultNetCut it returns once the link is up again.
func (b *Bench) inject(ctx context.Context, fault string, pod *corev1.Pod) error {
	switch fault {
	case FaultDelete:
		return b.cfg.Kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	case FaultKill, FaultNetCut:
	default:
		return fmt.Errorf("unknown fault %q", fault)
	}
	netns, err := podNetns(b.cfg.Bridge, pod.Status.PodIP)
	if err != nil {
		return err
	}
	if fault == FaultKill {
		return killServer(netns)
	}
	// The host side of the pod's veth pair carries the namespace's name.
	if out, err := exec.Command("ip", "link", "set", "dev", netns, "down").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s down: %v: %s", netns, err, out)
	}
	select {
	case <-ctx.Done():
	case <-time.After(NetCut):
	}
	if out, err := exec.Command("ip", "link", "set", "dev", netns, "up").CombinedOutput(); err != nil {
		return fmt.Errorf("ip link set %s up: %v: %s", netns, err, out)
	}
	return ctx.Err()
}

// podNetns finds the network namespace of the local cluster's pod with address ip: the
// node agent names them <bridge>-<n>.
func podNetns(bridge, ip string) (string, error) {
	if ip == "" {
		return "", errors.New("the pod has no address")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return "", fmt.Errorf("ip netns list: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, bridge+"-") {
			continue
		}
		addrs, err := exec.Command("ip", "-n", name, "-4", "-o", "addr", "show", "dev", "eth0").Output()
		if err == nil && strings.Contains(string(addrs), " "+ip+"/") {
			return name, nil
		}
	}
	return "", fmt.Errorf("no network namespace %s-* holds %s", bridge, ip)
}

// killServer SIGKILLs the bao processes of a pod's network namespace.
func killServer(netns string) error {
	out, err := exec.Command("ip", "netns", "pids", netns).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", netns, err)
	}
	killed := 0
	for f := range strings.FieldsSeq(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + f + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "bao" {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err == nil {
			killed++
		}
	}
	if killed == 0 {
		return fmt.Errorf("no bao process in network namespace %s", netns)
	}
	return nil
}

// waitRecovered waits until another server is active, the victim has come back (its
// container restarted after a kill, a new pod after a delete), every server is Ready
// again and the operator reports the cluster Available with every server a healthy voter.
func (b *Bench) waitRecovered(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, r *FailoverRun, victim *corev1.Pod, w *failoverWatch) error {
	err := poll(ctx, waitRecovered, "another server active, the victim back, every server Ready and the cluster Available again", func() (bool, error) {
		if !w.found() {
			return false, nil
		}
		back, err := b.cfg.Kube.CoreV1().Pods(c.Namespace).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		switch r.Fault {
		case FaultKill:
			if back.UID == victim.UID && restarts(back) <= restarts(victim) {
				return false, nil
			}
		case FaultDelete:
			if back.UID == victim.UID {
				return false, nil
			}
		}
		pods, err := b.cfg.Kube.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{
			LabelSelector: resources.LabelInstance + "=" + c.Name + "," + resources.LabelComponent + "=" + resources.ComponentServer,
		})
		if err != nil {
			return false, nil
		}
		ready := 0
		for i := range pods.Items {
			if pods.Items[i].DeletionTimestamp == nil && podReady(&pods.Items[i]) {
				ready++
			}
		}
		if ready != r.Replicas {
			return false, nil
		}
		cur := &openbaov1alpha1.OpenBaoCluster{}
		if err := b.cfg.Client.Get(ctx, types.NamespacedName{Namespace: c.Namespace, Name: c.Name}, cur); err != nil {
			return false, nil
		}
		voters := 0
		for _, m := range cur.Status.Members {
			if m.Voter && m.Healthy && !m.Sealed {
				voters++
			}
		}
		return voters == r.Replicas && meta.IsStatusConditionTrue(cur.Status.Conditions, openbaov1alpha1.ConditionAvailable), nil
	})
	if err == nil {
		r.RecoveredSeconds = ptr.To(round3(time.Since(r.At).Seconds()))
	}
	return err
}

// restarts is the restart count of a pod's OpenBao container.
func restarts(p *corev1.Pod) int32 {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == "openbao" {
			return st.RestartCount
		}
	}
	return 0
}

// failoverWatch records, after a fault, the first other server to report itself active
// and what the operator wrote to the OpenBaoCluster's status.
type failoverWatch struct {
	bench   *Bench
	cluster *openbaov1alpha1.OpenBaoCluster
	victim  string
	rec     *recorder

	mu             sync.Mutex
	newActive      string
	newActiveAt    time.Time
	operatorLeader map[string]time.Time // status.leader value -> first seen
	saw            []string
	// leaders are the changes of status.leader, for the run's picture.
	leaders []activeObs
}

// probeServers asks every server for sys/health every failoverProbe, each probe on its
// own so that a server that does not answer delays nobody, until another server than the
// victim reports itself active.
func (w *failoverWatch) probeServers(ctx context.Context, fault time.Time) {
	t := time.NewTicker(failoverProbe)
	defer t.Stop()
	for {
		if w.found() {
			return
		}
		for _, obj := range w.rec.podStore.List() {
			p := obj.(*corev1.Pod)
			if !isServer(p) || p.Name == w.victim || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
				continue
			}
			cl, err := w.rec.client(p)
			if err != nil {
				continue
			}
			go func() {
				pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
				if h, err := cl.Health(pctx); err == nil && h.Active() {
					now := time.Now()
					w.mu.Lock()
					if w.newActive == "" && now.After(fault) {
						w.newActive, w.newActiveAt = p.Name, now
					}
					w.mu.Unlock()
				}
			}()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// watchOperator reads the OpenBaoCluster every failoverProbe and records the changes of
// status.leader and of the conditions.
func (w *failoverWatch) watchOperator(ctx context.Context, fault time.Time) {
	t := time.NewTicker(failoverProbe)
	defer t.Stop()
	leader := ""
	conds := map[string]string{}
	first := true
	w.operatorLeader = map[string]time.Time{}
	for {
		// The last read, after the watch was stopped, sees the status the recovery was
		// declared on.
		stopping := ctx.Err() != nil
		cur := &openbaov1alpha1.OpenBaoCluster{}
		if err := w.bench.cfg.Client.Get(context.WithoutCancel(ctx), types.NamespacedName{Namespace: w.cluster.Namespace, Name: w.cluster.Name}, cur); err == nil {
			at := fmt.Sprintf("+%.1fs", time.Since(fault).Seconds())
			w.mu.Lock()
			if cur.Status.Leader != leader {
				leader = cur.Status.Leader
				if _, seen := w.operatorLeader[leader]; !seen {
					w.operatorLeader[leader] = time.Now()
				}
				w.leaders = append(w.leaders, activeObs{At: time.Now(), Pod: leader})
				if !first {
					w.saw = append(w.saw, at+" leader="+orDash(leader))
				}
			}
			for _, cond := range cur.Status.Conditions {
				v := string(cond.Status) + " " + cond.Reason
				if conds[cond.Type] != v {
					conds[cond.Type] = v
					if !first {
						w.saw = append(w.saw, fmt.Sprintf("%s %s=%s", at, cond.Type, v))
					}
				}
			}
			first = false
			w.mu.Unlock()
		}
		if stopping {
			return
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
	}
}

func (w *failoverWatch) found() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.newActive != ""
}

func (w *failoverWatch) fill(r *FailoverRun) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.OperatorSaw = append([]string(nil), w.saw...)
	if w.newActive == "" {
		return
	}
	r.NewActive = w.newActive
	r.NewActiveSeconds = ptr.To(round3(w.newActiveAt.Sub(r.At).Seconds()))
	if at, ok := w.operatorLeader[w.newActive]; ok {
		r.OperatorLeaderSeconds = ptr.To(round3(max(0, at.Sub(r.At).Seconds())))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// failoverTimeline is the picture of a failover run: status.leader as the operator's
// lane, and the fault, the first new active server and the recovery as events.
func failoverTimeline(r *FailoverRun, rec *recorder, reqs []loadclient.Request, w *failoverWatch, injected time.Time) *Timeline {
	tl := newTimeline(r.At, time.Now(), rec, reqs)
	w.mu.Lock()
	for _, l := range w.leaders {
		tl.Steps = append(tl.Steps, StepChange{At: round3(l.At.Sub(r.At).Seconds()), Step: "leader=" + orDash(l.Pod)})
	}
	w.mu.Unlock()
	fault := Event{At: 0, What: r.Fault + " " + r.Victim}
	if r.Fault == FaultNetCut {
		fault.Until = ptr.To(round3(injected.Sub(r.At).Seconds()))
	}
	tl.Events = append(tl.Events, fault)
	if r.NewActiveSeconds != nil {
		tl.Events = append(tl.Events, Event{At: *r.NewActiveSeconds, What: r.NewActive + " active"})
	}
	if r.RecoveredSeconds != nil {
		tl.Events = append(tl.Events, Event{At: *r.RecoveredSeconds, What: "recovered"})
	}
	return tl
}
