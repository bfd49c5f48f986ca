package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/bench/upgradebench"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// clusterName is the name of every benchmarked OpenBaoCluster, one per namespace.
const clusterName = "bao"

// Deadlines bound each wait; they are not expectations.
const (
	waitAvailable = 20 * time.Minute
	waitUpgraded  = 30 * time.Minute
)

// ClusterRuns are the figures of the modes that run OpenBao clusters on the local cluster.
type ClusterRuns struct {
	Clusters int    `json:"clusters"`
	Replicas int32  `json:"replicas"`
	From     string `json:"from"`
	To       string `json:"to"`
	// LoadAvg is /proc/loadavg at the start and the end of the cluster modes.
	LoadAvgStart string `json:"loadAvgStart"`
	LoadAvgEnd   string `json:"loadAvgEnd"`

	// One cluster alone, then Clusters at once.
	CreateOneSeconds  float64 `json:"createOneSeconds,omitempty"`
	UpgradeOneSeconds float64 `json:"upgradeOneSeconds,omitempty"`
	UpgradeOne        *Phase  `json:"upgradeOne,omitempty"`
	Many              *Phase  `json:"many,omitempty"`
	ManyUpgrade       *Phase  `json:"manyUpgrade,omitempty"`
	Steady            *Steady `json:"steady,omitempty"`
	// DeadUpgrade: Clusters-1 healthy clusters and one whose server is stopped (SIGSTOP: its
	// connections open but nothing answers), all upgraded at once; the figures are the
	// healthy ones'.
	DeadUpgrade *Phase `json:"deadUpgrade,omitempty"`
}

// Phase is Clusters clusters doing one thing at once.
type Phase struct {
	// Seconds per cluster, from the start until it was done, sorted.
	Seconds    []float64 `json:"seconds"`
	AllSeconds float64   `json:"allSeconds"`
	// MedianSeconds and MaxSeconds of Seconds.
	MedianSeconds float64 `json:"medianSeconds"`
	MaxSeconds    float64 `json:"maxSeconds"`
	// QueueWaitMaxSeconds is the upper bound of the highest bucket of controller-runtime's
	// workqueue_queue_duration_seconds histogram (OpenBaoCluster controller) that received
	// an item during the phase: no cluster waited longer in the work queue.
	QueueWaitMaxSeconds float64 `json:"queueWaitMaxSeconds"`
	QueueItems          float64 `json:"queueItems"`
	Logins              float64 `json:"openBaoLogins"`
	RSSMiB              float64 `json:"operatorRssMiB"`
	LoadAvg             string  `json:"loadAvgEnd"`
	Error               string  `json:"error,omitempty"`
	// Where an upgrade's time went, per cluster (sorted; whole seconds, from the pod's
	// timestamps): until the StatefulSet controller created the new server pod (the
	// operator's decision, the old pod's termination), from then until the pod was Ready
	// (the node starting the container, OpenBao unsealing), and from then until the
	// operator reported the upgrade done.
	UntilNewPodSeconds   []float64 `json:"untilNewPodSeconds,omitempty"`
	NewPodToReadySeconds []float64 `json:"newPodToReadySeconds,omitempty"`
	ReadyToDoneSeconds   []float64 `json:"readyToDoneSeconds,omitempty"`
	// What the CPU did during the phase: the CPU seconds of the local cluster (the
	// benchmark's process tree: control plane, node, OpenBao's servers, operator), of the
	// operator alone, and of the whole machine (/proc/stat, other work included) with the
	// share of the cores' time that was idle. MinSeconds is the local cluster's CPU seconds
	// spread over every core: no scheduler on this machine could have finished the phase's
	// work sooner.
	ClusterCPUSeconds  float64 `json:"localClusterCpuSeconds"`
	OperatorCPUSeconds float64 `json:"operatorCpuSeconds"`
	MachineCPUSeconds  float64 `json:"machineCpuSeconds"`
	MachineIdlePercent float64 `json:"machineIdlePercent"`
	MinSeconds         float64 `json:"cpuBoundMinSeconds"`
}

// Steady is the operator's cost with Clusters clusters and nothing to do.
type Steady struct {
	Seconds    float64 `json:"seconds"`
	CPUSeconds float64 `json:"operatorCpuSeconds"`
	RSSMiB     float64 `json:"operatorRssMiB"`
	PeakRSSMiB float64 `json:"operatorPeakRssMiB"`
	// API requests of the operator, from kube-apiserver's audit log.
	ReadsPerMinute  float64        `json:"apiReadsPerMinute"`
	WritesPerMinute float64        `json:"apiWritesPerMinute"`
	LeaseWrites     int            `json:"leaseWrites"`
	ByVerb          map[string]int `json:"byVerb"`
	WritesByRes     map[string]int `json:"writesByResource,omitempty"`
	StatusWrites    int            `json:"statusWrites"`
	// Logins and Renewals of the operator's OpenBao sessions (its metrics).
	Logins                float64 `json:"openBaoLogins"`
	Renewals              float64 `json:"openBaoRenewals"`
	LoginsPerClusterHour  float64 `json:"openBaoLoginsPerClusterHour"`
	LoginsPerMinute       float64 `json:"openBaoLoginsPerMinute"`
	ReconcilesPerMinute   float64 `json:"reconcilesPerMinute"`
	LoadAvg               string  `json:"loadAvgEnd"`
	CPUFractionOfOneCore  float64 `json:"cpuFractionOfOneCore"`
	SessionRenewalsCaveat string  `json:"note,omitempty"`
}

// clusterBench runs the cluster modes against a local cluster with the operator installed.
type clusterBench struct {
	env      *cluster.Cluster
	kube     kubernetes.Interface
	k8s      client.Client
	manager  string
	bridge   string
	auditLog string
	user     string
	from, to string
	n        int
	replicas int32
	// onDone, when set, is called as each cluster is seen done.
	onDone func(ns string, start, done time.Time)
}

func (b *clusterBench) progress(format string, args ...any) {
	fmt.Printf("%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func namespaceOf(prefix string, i int) string { return fmt.Sprintf("%s-%02d", prefix, i) }

// create makes the namespaces and their clusters, all at once.
func (b *clusterBench) create(ctx context.Context, namespaces []string, version string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(namespaces))
	for i, ns := range namespaces {
		wg.Go(func() {
			if _, err := b.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				errs[i] = err
				return
			}
			c := loadclient.AppCluster(loadclient.AppClusterOptions{Namespace: ns, Name: clusterName, Version: version, Replicas: b.replicas, Scope: "bench", TokenTTL: "30m"})
			if err := retry.OnError(retry.DefaultBackoff, func(error) bool { return true }, func() error { return b.k8s.Create(ctx, c) }); err != nil {
				errs[i] = fmt.Errorf("create OpenBaoCluster %s/%s: %w", ns, clusterName, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// wait polls every cluster until done says so and returns the seconds since start for each.
func (b *clusterBench) wait(ctx context.Context, namespaces []string, start time.Time, timeout time.Duration, what string, done func(*openbaov1alpha1.OpenBaoCluster) bool) (map[string]float64, error) {
	out := map[string]float64{}
	deadline := time.Now().Add(timeout)
	for len(out) < len(namespaces) {
		for _, ns := range namespaces {
			if _, ok := out[ns]; ok {
				continue
			}
			c := &openbaov1alpha1.OpenBaoCluster{}
			if err := b.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterName}, c); err == nil && done(c) {
				out[ns] = time.Since(start).Seconds()
				if b.onDone != nil {
					b.onDone(ns, start, time.Now())
				}
			}
		}
		if len(out) == len(namespaces) {
			break
		}
		if time.Now().After(deadline) {
			var missing []string
			for _, ns := range namespaces {
				if _, ok := out[ns]; !ok {
					missing = append(missing, ns)
				}
			}
			return out, fmt.Errorf("%s: %d of %d clusters not there within %s: %s", what, len(missing), len(namespaces), timeout, strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return out, nil
}

func (b *clusterBench) available(c *openbaov1alpha1.OpenBaoCluster) bool {
	return meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionAvailable) &&
		c.Status.Phase == openbaov1alpha1.PhaseRunning && c.Status.ReadyReplicas == b.replicas && c.Status.Leader != ""
}

func (b *clusterBench) upgraded(c *openbaov1alpha1.OpenBaoCluster) bool {
	return c.Status.CurrentVersion == b.to && c.Status.Upgrade == nil && b.available(c)
}

// upgrade sets spec.version of every cluster at once.
func (b *clusterBench) upgrade(ctx context.Context, namespaces []string) error {
	var wg sync.WaitGroup
	errs := make([]error, len(namespaces))
	for i, ns := range namespaces {
		wg.Go(func() {
			errs[i] = retry.RetryOnConflict(retry.DefaultRetry, func() error {
				c := &openbaov1alpha1.OpenBaoCluster{}
				if err := b.k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterName}, c); err != nil {
					return err
				}
				c.Spec.Version = b.to
				return b.k8s.Update(ctx, c)
			})
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// phase runs act on namespaces and waits for done, with the operator's metrics around it.
func (b *clusterBench) phase(ctx context.Context, what string, namespaces, measured []string, timeout time.Duration, act func() error, done func(*openbaov1alpha1.OpenBaoCluster) bool) *Phase {
	p := &Phase{}
	var mu sync.Mutex
	b.onDone = func(ns string, start, done time.Time) {
		if b.replicas != 1 {
			return // the breakdown follows the one server of a single-server cluster
		}
		pod, err := b.kube.CoreV1().Pods(ns).Get(ctx, clusterName+"-0", metav1.GetOptions{})
		if err != nil {
			return
		}
		ready := time.Time{}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = c.LastTransitionTime.Time
			}
		}
		created := pod.CreationTimestamp.Time
		if created.Before(start) || ready.IsZero() {
			return // the pod was not replaced (a creation phase)
		}
		mu.Lock()
		defer mu.Unlock()
		p.UntilNewPodSeconds = append(p.UntilNewPodSeconds, round1(created.Sub(start).Seconds()))
		p.NewPodToReadySeconds = append(p.NewPodToReadySeconds, round1(ready.Sub(created).Seconds()))
		p.ReadyToDoneSeconds = append(p.ReadyToDoneSeconds, round1(done.Sub(ready).Seconds()))
	}
	defer func() { b.onDone = nil }()
	before, _ := b.scrape(ctx)
	cpuBefore, opBefore, treeBefore := upgradebench.ReadMachineCPU(), b.operatorCPU(), upgradebench.TreeCPUSeconds(os.Getpid())
	start := time.Now()
	b.progress("%s: %d clusters", what, len(namespaces))
	if err := act(); err != nil {
		p.Error = err.Error()
		return p
	}
	times, err := b.wait(ctx, measured, start, timeout, what, done)
	p.AllSeconds = time.Since(start).Seconds()
	if err != nil {
		p.Error = err.Error()
	}
	for _, s := range times {
		p.Seconds = append(p.Seconds, round1(s))
	}
	sort.Float64s(p.Seconds)
	sort.Float64s(p.UntilNewPodSeconds)
	sort.Float64s(p.NewPodToReadySeconds)
	sort.Float64s(p.ReadyToDoneSeconds)
	if len(p.Seconds) > 0 {
		p.MedianSeconds = p.Seconds[len(p.Seconds)/2]
		p.MaxSeconds = p.Seconds[len(p.Seconds)-1]
		p.AllSeconds = round1(p.MaxSeconds)
	}
	cpuAfter := upgradebench.ReadMachineCPU()
	busy, idle := cpuAfter.Busy-cpuBefore.Busy, cpuAfter.Idle-cpuBefore.Idle
	p.MachineCPUSeconds = round1(busy)
	if busy+idle > 0 {
		p.MachineIdlePercent = round1(100 * idle / (busy + idle))
	}
	tree := upgradebench.TreeCPUSeconds(os.Getpid()) - treeBefore
	p.ClusterCPUSeconds = round1(tree)
	p.MinSeconds = round1(tree / float64(runtime.NumCPU()))
	p.OperatorCPUSeconds = round1(b.operatorCPU() - opBefore)
	after, _ := b.scrape(ctx)
	p.QueueWaitMaxSeconds, p.QueueItems = queueWait(before, after)
	p.Logins = after.value("openbao_operator_openbao_logins_total") - before.value("openbao_operator_openbao_logins_total")
	p.RSSMiB = b.rss()
	p.LoadAvg = upgradebench.LoadAvg()
	b.progress("%s: median %.1fs, all %.1fs, longest queue wait <= %gs, %.0f logins", what, p.MedianSeconds, p.AllSeconds, p.QueueWaitMaxSeconds, p.Logins)
	return p
}

func (b *clusterBench) deleteNamespaces(ctx context.Context, namespaces []string) {
	for _, ns := range namespaces {
		_ = b.kube.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, ns := range namespaces {
		for time.Now().Before(deadline) {
			if _, err := b.kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
				break
			}
			time.Sleep(time.Second)
		}
	}
}

// runClusterModes runs many, steady and dead, in that order, on the modes asked for.
func (b *clusterBench) run(ctx context.Context, modes map[string]bool, steady time.Duration) *ClusterRuns {
	res := &ClusterRuns{Clusters: b.n, Replicas: b.replicas, From: b.from, To: b.to, LoadAvgStart: upgradebench.LoadAvg()}
	defer func() { res.LoadAvgEnd = upgradebench.LoadAvg() }()
	var many []string
	for i := range b.n {
		many = append(many, namespaceOf("scale", i+1))
	}
	fail := func(p **Phase, err error) {
		*p = &Phase{Error: err.Error()}
	}
	if modes["many"] || modes["steady"] {
		if modes["many"] {
			solo := []string{"scale-solo"}
			one := b.phase(ctx, "one cluster created alone", solo, solo, waitAvailable, func() error { return b.create(ctx, solo, b.from) }, b.available)
			res.CreateOneSeconds = one.AllSeconds
			if one.Error == "" {
				res.UpgradeOne = b.phase(ctx, "one cluster upgraded alone", solo, solo, waitUpgraded, func() error { return b.upgrade(ctx, solo) }, b.upgraded)
				res.UpgradeOneSeconds = res.UpgradeOne.AllSeconds
			}
			b.deleteNamespaces(ctx, solo)
		}
		res.Many = b.phase(ctx, fmt.Sprintf("%d clusters created at once", b.n), many, many, waitAvailable, func() error { return b.create(ctx, many, b.from) }, b.available)
		if res.Many.Error != "" {
			return res
		}
		if modes["many"] {
			res.ManyUpgrade = b.phase(ctx, fmt.Sprintf("%d clusters upgraded at once", b.n), many, many, waitUpgraded, func() error { return b.upgrade(ctx, many) }, b.upgraded)
		}
		if modes["steady"] {
			res.Steady = b.steady(ctx, steady)
		}
		b.deleteNamespaces(ctx, many)
	}
	if modes["dead"] {
		var ns []string
		for i := range b.n {
			ns = append(ns, namespaceOf("dead", i+1))
		}
		dead, healthy := ns[0], ns[1:]
		formed := b.phase(ctx, fmt.Sprintf("%d clusters created at once (one to be stopped)", b.n), ns, ns, waitAvailable, func() error { return b.create(ctx, ns, b.from) }, b.available)
		if formed.Error != "" {
			fail(&res.DeadUpgrade, errors.New(formed.Error))
			return res
		}
		stop, err := b.stopServers(ctx, dead)
		if err != nil {
			fail(&res.DeadUpgrade, err)
			return res
		}
		res.DeadUpgrade = b.phase(ctx, fmt.Sprintf("%d healthy clusters and %s (stopped) upgraded at once", len(healthy), dead), ns, healthy, waitUpgraded, func() error { return b.upgrade(ctx, ns) }, b.upgraded)
		stop()
		b.deleteNamespaces(ctx, ns)
	}
	return res
}

// steady measures the operator with the clusters idle for d.
func (b *clusterBench) steady(ctx context.Context, d time.Duration) *Steady {
	b.progress("steady state with %d clusters for %s", b.n, d)
	pid := upgradebench.FindOperatorPid(b.manager)
	cpu0 := upgradebench.ProcessCPUSeconds(pid)
	m0, _ := b.scrape(ctx)
	start := time.Now()
	peak := 0.0
	for time.Since(start) < d && ctx.Err() == nil {
		peak = math.Max(peak, b.rss())
		time.Sleep(5 * time.Second)
	}
	end := time.Now()
	s := &Steady{Seconds: round1(end.Sub(start).Seconds())}
	s.CPUSeconds = round1(upgradebench.ProcessCPUSeconds(pid) - cpu0)
	s.CPUFractionOfOneCore = round3(s.CPUSeconds / s.Seconds)
	s.RSSMiB = b.rss()
	s.PeakRSSMiB = math.Max(peak, s.RSSMiB)
	m1, _ := b.scrape(ctx)
	minutes := s.Seconds / 60
	s.Logins = m1.value("openbao_operator_openbao_logins_total") - m0.value("openbao_operator_openbao_logins_total")
	s.Renewals = m1.value("openbao_operator_openbao_token_renewals_total") - m0.value("openbao_operator_openbao_token_renewals_total")
	s.LoginsPerMinute = round3(s.Logins / minutes)
	s.LoginsPerClusterHour = round3(s.Logins / float64(b.n) / (s.Seconds / 3600))
	s.ReconcilesPerMinute = round1((m1.sum("controller_runtime_reconcile_total", `controller="openbaocluster"`) - m0.sum("controller_runtime_reconcile_total", `controller="openbaocluster"`)) / minutes)
	// The audit log is written as requests complete; a second lets the last ones land.
	time.Sleep(time.Second)
	a, err := upgradebench.CountAuditLog(b.auditLog, b.user, "", cluster.OperatorNamespace, start, end)
	if err != nil {
		s.SessionRenewalsCaveat = "audit log: " + err.Error()
	}
	reads := 0
	for v, n := range a.ByVerb {
		if !isWriteVerb(v) {
			reads += n
		}
	}
	writes := a.Writes + a.OtherWrites
	s.ReadsPerMinute = round1(float64(reads) / minutes)
	s.WritesPerMinute = round1(float64(writes) / minutes)
	s.LeaseWrites = a.LeaseWrites
	s.ByVerb = a.ByVerb
	s.WritesByRes = map[string]int{}
	for k, v := range a.WritesByResource {
		s.WritesByRes[k] += v
	}
	for k, v := range a.OtherWritesByResource {
		s.WritesByRes[k] += v
	}
	for k, v := range s.WritesByRes {
		if strings.HasSuffix(k, "openbaoclusters/status") {
			s.StatusWrites += v
		}
	}
	s.LoadAvg = upgradebench.LoadAvg()
	b.progress("steady: %.1f CPU s in %.0f s, RSS %.1f MiB, %.1f reads/min, %.1f writes/min (+%d lease), %d status writes, %.0f logins, %.0f renewals",
		s.CPUSeconds, s.Seconds, s.RSSMiB, s.ReadsPerMinute, s.WritesPerMinute, s.LeaseWrites, s.StatusWrites, s.Logins, s.Renewals)
	return s
}

func isWriteVerb(v string) bool {
	switch v {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// stopServers SIGSTOPs the bao processes of a cluster's pods, again every second (a
// restarted container would bring them back), until the returned function is called; the
// servers keep their sockets, so calls to them time out instead of being refused.
func (b *clusterBench) stopServers(ctx context.Context, ns string) (func(), error) {
	pods, err := b.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + clusterName})
	if err != nil {
		return nil, err
	}
	var netnses []string
	for _, p := range pods.Items {
		if p.Status.PodIP == "" || strings.Contains(p.Name, "upgrade") {
			continue
		}
		nsName, err := upgradebench.PodNetns(b.bridge, p.Status.PodIP)
		if err != nil {
			return nil, err
		}
		netnses = append(netnses, nsName)
	}
	if len(netnses) == 0 {
		return nil, fmt.Errorf("no server pod of %s/%s found to stop", ns, clusterName)
	}
	stopped := map[int]bool{}
	signal := func(sig syscall.Signal) int {
		n := 0
		for _, netns := range netnses {
			for _, pid := range baoPids(netns) {
				if syscall.Kill(pid, sig) == nil {
					n++
					if sig == syscall.SIGSTOP {
						stopped[pid] = true
					}
				}
			}
		}
		return n
	}
	if signal(syscall.SIGSTOP) == 0 {
		return nil, fmt.Errorf("no bao process of %s/%s found to stop", ns, clusterName)
	}
	b.progress("%s: server stopped (SIGSTOP)", ns)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Second):
				signal(syscall.SIGSTOP)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		signal(syscall.SIGCONT)
	}, nil
}

// baoPids are the bao processes in a network namespace.
func baoPids(netns string) []int {
	out, err := exec.Command("ip", "netns", "pids", netns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for f := range strings.FieldsSeq(string(out)) {
		comm, err := os.ReadFile("/proc/" + f + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "bao" {
			continue
		}
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// rss is the operator's resident memory in MiB, 0 when its process is not found.
func (b *clusterBench) rss() float64 {
	pid := upgradebench.FindOperatorPid(b.manager)
	if pid == 0 {
		return 0
	}
	rss, _, err := upgradebench.ProcessMemory(pid)
	if err != nil {
		return 0
	}
	return round1(float64(rss) / (1 << 20))
}

// operatorCPU is the operator's CPU seconds so far, 0 when its process is not found.
func (b *clusterBench) operatorCPU() float64 {
	if pid := upgradebench.FindOperatorPid(b.manager); pid != 0 {
		return upgradebench.ProcessCPUSeconds(pid)
	}
	return 0
}

// metrics are the samples of one scrape of the manager's metrics endpoint, by the whole
// series line ("name{labels}").
type metrics map[string]float64

func (m metrics) value(name string) float64 { return m[name] }

// sum adds the series of name whose labels contain match.
func (m metrics) sum(name, match string) float64 {
	total := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, match) {
			total += v
		}
	}
	return total
}

// scrape reads the manager's metrics endpoint (plain HTTP on the pod's port 8080).
func (b *clusterBench) scrape(ctx context.Context) (metrics, error) {
	pods, err := b.kube.CoreV1().Pods(cluster.OperatorNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return metrics{}, err
	}
	ip := ""
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			ip = p.Status.PodIP
		}
	}
	if ip == "" {
		return metrics{}, errors.New("no running operator pod")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+":8080/metrics", nil)
	if err != nil {
		return metrics{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return metrics{}, err
	}
	defer resp.Body.Close() //nolint:errcheck
	return parseMetrics(resp.Body)
}

func parseMetrics(r io.Reader) (metrics, error) {
	out := metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// queueWait is the upper bound of the highest bucket of the OpenBaoCluster controller's
// work-queue wait histogram that grew between two scrapes, and how many items it counted.
func queueWait(before, after metrics) (maxSeconds, items float64) {
	const name = `workqueue_queue_duration_seconds_bucket{`
	type bucket struct{ le, n float64 }
	var buckets []bucket
	for k, v := range after {
		if !strings.HasPrefix(k, name) || !strings.Contains(k, `name="openbaocluster"`) {
			continue
		}
		_, le, ok := strings.Cut(k, `le="`)
		if !ok {
			continue
		}
		le, _, _ = strings.Cut(le, `"`)
		bound, err := strconv.ParseFloat(le, 64)
		if err != nil {
			continue
		}
		buckets = append(buckets, bucket{bound, v - before[k]})
	}
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].le < buckets[j].le })
	if len(buckets) == 0 {
		return 0, 0
	}
	items = buckets[len(buckets)-1].n
	for _, bk := range buckets {
		if bk.n >= items {
			return bk.le, items
		}
	}
	return math.Inf(1), items
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }
func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// writeClusterTable prints the cluster modes' figures.
func writeClusterTable(r *ClusterRuns) {
	fmt.Printf("\n%d OpenBao clusters of %d servers, %s -> %s; load average %s at the start, %s at the end\n", r.Clusters, r.Replicas, r.From, r.To, r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Printf("%-52s %9s %9s %9s %15s %7s %9s\n", "phase", "median s", "max s", "all s", "queue wait <= s", "logins", "RSS MiB")
	row := func(name string, p *Phase) {
		if p == nil {
			return
		}
		fmt.Printf("%-52s %9.1f %9.1f %9.1f %15g %7.0f %9.1f\n", name, p.MedianSeconds, p.MaxSeconds, p.AllSeconds, p.QueueWaitMaxSeconds, p.Logins, p.RSSMiB)
		if p.Error != "" {
			fmt.Printf("  error: %s\n", p.Error)
		}
		fmt.Printf("  CPU: local cluster %.1f s (%.1f s on %d cores at the least), operator %.1f s; machine %.1f s, %.0f %% idle\n",
			p.ClusterCPUSeconds, p.MinSeconds, runtime.NumCPU(), p.OperatorCPUSeconds, p.MachineCPUSeconds, p.MachineIdlePercent)
		if n := len(p.UntilNewPodSeconds); n > 0 {
			fmt.Printf("  median / max s: until the new pod %.0f / %.0f, new pod to Ready %.0f / %.0f, Ready to done %.0f / %.0f\n",
				p.UntilNewPodSeconds[n/2], p.UntilNewPodSeconds[n-1], p.NewPodToReadySeconds[n/2], p.NewPodToReadySeconds[n-1], p.ReadyToDoneSeconds[n/2], p.ReadyToDoneSeconds[n-1])
		}
	}
	if r.CreateOneSeconds > 0 {
		fmt.Printf("%-52s %9.1f\n", "one cluster created alone", r.CreateOneSeconds)
	}
	if r.UpgradeOneSeconds > 0 {
		fmt.Printf("%-52s %9.1f\n", "one cluster upgraded alone", r.UpgradeOneSeconds)
	}
	row("one cluster upgraded alone", r.UpgradeOne)
	row(fmt.Sprintf("%d created at once (until Available)", r.Clusters), r.Many)
	row(fmt.Sprintf("%d upgraded at once (until done)", r.Clusters), r.ManyUpgrade)
	row(fmt.Sprintf("%d healthy upgraded with 1 stopped cluster", r.Clusters-1), r.DeadUpgrade)
	if r.ManyUpgrade != nil && r.UpgradeOneSeconds > 0 && r.ManyUpgrade.MaxSeconds > 0 {
		fmt.Printf("%d at once / one alone: %.2f (target <= 1.5)\n", r.Clusters, r.ManyUpgrade.MaxSeconds/r.UpgradeOneSeconds)
	}
	if r.DeadUpgrade != nil && r.ManyUpgrade != nil && r.ManyUpgrade.MaxSeconds > 0 && r.DeadUpgrade.MaxSeconds > 0 {
		fmt.Printf("with a stopped cluster / without: median %.2f, max %.2f\n", r.DeadUpgrade.MedianSeconds/r.ManyUpgrade.MedianSeconds, r.DeadUpgrade.MaxSeconds/r.ManyUpgrade.MaxSeconds)
	}
	if s := r.Steady; s != nil {
		fmt.Printf("steady state, %d clusters, %.0f s: operator CPU %.1f s (%.1f %% of a core), RSS %.1f MiB (peak %.1f), API %.1f reads/min, %.1f writes/min (+%d lease renewals), status writes %d, OpenBao logins %.0f (%.2f per cluster and hour), renewals %.0f, reconciles %.1f/min; load %s\n",
			r.Clusters, s.Seconds, s.CPUSeconds, 100*s.CPUFractionOfOneCore, s.RSSMiB, s.PeakRSSMiB, s.ReadsPerMinute, s.WritesPerMinute, s.LeaseWrites, s.StatusWrites, s.Logins, s.LoginsPerClusterHour, s.Renewals, s.ReconcilesPerMinute, s.LoadAvg)
		if len(s.WritesByRes) > 0 {
			fmt.Printf("  writes: %v\n", s.WritesByRes)
		}
	}
}
