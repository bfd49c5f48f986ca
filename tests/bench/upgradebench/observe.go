package upgradebench

import (
	"context"
	"net/url"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// pollInterval is how often every server is asked for sys/health and sys/leader.
const pollInterval = 250 * time.Millisecond

// podLife is what the recorder saw of one pod incarnation (one UID). Times are when the
// bench observed the event on its own clock: the API's timestamps have one-second
// resolution, too coarse for a step that takes a few seconds.
type podLife struct {
	Name    string
	UID     types.UID
	Version string // from the image tag

	Seen     time.Time // first seen (created)
	Stop     time.Time // deletionTimestamp first seen
	Gone     time.Time // removed from the API
	Ready    time.Time // Ready condition first seen true
	CaughtUp time.Time // applied index first reached the leader's committed index
	// Serving is the version the server itself reported, once.
	Serving string
	// ReadyChanges are the changes of the Ready condition (the first one included), for
	// the run's picture: a server that crashes keeps its pod and only loses Ready.
	ReadyChanges []readyChange
}

// readyChange is the Ready condition of a pod seen changing to Ready.
type readyChange struct {
	At    time.Time
	Ready bool
}

// activeObs is a change of the active server seen by the poller; Pod is empty when a
// round found no server reporting itself active.
type activeObs struct {
	At           time.Time
	Pod, Version string
}

// jobLife is what the recorder saw of one of the cluster's Jobs.
type jobLife struct {
	Name, Action, Target string
	Seen, End            time.Time
	Failed               bool
}

// leaderChange is one change of the active server.
type leaderChange struct {
	At          time.Time
	From, To    string // pod names
	FromVersion string
	ToVersion   string
}

// recorder watches the pods and Jobs of one OpenBaoCluster and polls its servers.
type recorder struct {
	cluster *openbaov1alpha1.OpenBaoCluster
	ca      []byte

	mu       sync.Mutex
	pods     map[types.UID]*podLife
	stepDown map[string]time.Time // target pod -> Job first seen
	changes  []leaderChange
	// active and jobs are kept for the run's picture only.
	active []activeObs
	jobs   map[string]*jobLife
	// lastActive is the active server of the latest round that found one.
	lastActive, lastActiveVersion string
	lastActiveAt                  time.Time
	// leaderless is the longest time between two rounds that found an active server.
	leaderless time.Duration
	rounds     int
	// prevCommitted is the leader's committed index read in the previous round.
	prevCommitted uint64

	clients map[types.UID]openbao.Client
	started time.Time

	podStore cache.Store
	cancel   context.CancelFunc
	done     sync.WaitGroup
}

func startRecorder(ctx context.Context, cs kubernetes.Interface, c *openbaov1alpha1.OpenBaoCluster, ca []byte) *recorder {
	ctx, cancel := context.WithCancel(ctx)
	r := &recorder{
		cluster: c, ca: ca, cancel: cancel, started: time.Now(),
		pods: map[types.UID]*podLife{}, stepDown: map[string]time.Time{}, jobs: map[string]*jobLife{}, clients: map[types.UID]openbao.Client{},
	}
	selector := resources.LabelInstance + "=" + c.Name
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(c.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	podInf := f.Core().V1().Pods().Informer()
	_, _ = podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.onPod(obj, false) },
		UpdateFunc: func(_, obj any) { r.onPod(obj, false) },
		DeleteFunc: func(obj any) { r.onPod(obj, true) },
	})
	jobInf := f.Batch().V1().Jobs().Informer()
	_, _ = jobInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.onJob,
		UpdateFunc: func(_, obj any) { r.onJob(obj) },
		DeleteFunc: r.onJobDeleted,
	})
	r.podStore = podInf.GetStore()
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	r.done.Go(func() { r.poll(ctx) })
	r.done.Go(func() { <-ctx.Done(); f.Shutdown() })
	return r
}

func (r *recorder) stop() {
	r.cancel()
	r.done.Wait()
}

func isServer(p *corev1.Pod) bool {
	return p.Labels[resources.LabelComponent] == resources.ComponentServer
}

// imageVersion is the tag of an OpenBao image ("quay.io/openbao/openbao:2.7.2" -> "2.7.2").
func imageVersion(p *corev1.Pod) string {
	for _, c := range p.Spec.Containers {
		if c.Name == "openbao" {
			img := c.Image
			if i := strings.Index(img, "@"); i >= 0 {
				img = img[:i]
			}
			if i := strings.LastIndex(img, ":"); i >= 0 && !strings.Contains(img[i:], "/") {
				return strings.TrimPrefix(img[i+1:], "v")
			}
		}
	}
	return ""
}

func (r *recorder) onPod(obj any, deleted bool) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	if !ok || !isServer(p) {
		return
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.pods[p.UID]
	if l == nil {
		l = &podLife{Name: p.Name, UID: p.UID, Version: imageVersion(p), Seen: now}
		r.pods[p.UID] = l
	}
	if p.DeletionTimestamp != nil && l.Stop.IsZero() {
		l.Stop = now
	}
	if deleted {
		if l.Stop.IsZero() {
			l.Stop = now
		}
		l.Gone = now
		return
	}
	ready := podReady(p)
	if l.Ready.IsZero() && p.DeletionTimestamp == nil && ready {
		l.Ready = now
	}
	if n := len(l.ReadyChanges); (n == 0 && ready) || (n > 0 && l.ReadyChanges[n-1].Ready != ready) {
		l.ReadyChanges = append(l.ReadyChanges, readyChange{At: now, Ready: ready})
	}
}

// onJob records the first step-down Job for each target pod; the target is the first
// label of the --address host the Job is given.
// Every Job of the cluster is also kept, with its action and when it ended, for the
// run's picture.
func (r *recorder) onJob(obj any) {
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	now := time.Now()
	action, target := "", ""
	for _, c := range j.Spec.Template.Spec.Containers {
		for i, a := range c.Args {
			if i+1 >= len(c.Args) {
				continue
			}
			switch a {
			case "executor":
				action = c.Args[i+1]
			case "--address":
				if u, err := url.Parse(c.Args[i+1]); err == nil {
					target, _, _ = strings.Cut(u.Hostname(), ".")
				}
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.jobs[j.Name]
	if l == nil {
		l = &jobLife{Name: j.Name, Action: action, Target: target, Seen: now}
		r.jobs[j.Name] = l
	}
	if l.End.IsZero() {
		for _, cond := range j.Status.Conditions {
			if cond.Status == corev1.ConditionTrue && (cond.Type == batchv1.JobComplete || cond.Type == batchv1.JobFailed) {
				l.End, l.Failed = now, cond.Type == batchv1.JobFailed
			}
		}
	}
	if !strings.Contains(j.Name, "-stepdown-") || target == "" {
		return
	}
	if _, seen := r.stepDown[target]; !seen {
		r.stepDown[target] = now
	}
}

// onJobDeleted ends a Job removed before the recorder saw it finish.
func (r *recorder) onJobDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	j, ok := obj.(*batchv1.Job)
	if !ok {
		return
	}
	r.mu.Lock()
	if l := r.jobs[j.Name]; l != nil && l.End.IsZero() {
		l.End = time.Now()
	}
	r.mu.Unlock()
}

func (r *recorder) client(p *corev1.Pod) (openbao.Client, error) {
	r.mu.Lock()
	cl := r.clients[p.UID]
	r.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	cl, err := openbao.New(openbao.Config{
		Address:       openbao.PodAddress(p.Status.PodIP, resources.APIPort),
		CACertPEM:     r.ca,
		TLSServerName: resources.PodDNSName(r.cluster, p.Name),
		Timeout:       time.Second,
	})
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.clients[p.UID] = cl
	r.mu.Unlock()
	return cl, nil
}

type probe struct {
	pod    *corev1.Pod
	cl     openbao.Client
	health *openbao.HealthStatus
}

func (r *recorder) poll(ctx context.Context) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.round(ctx)
	}
}

// round asks every running server for sys/health, then the active server for its
// committed index, then every other server for its applied index.
func (r *recorder) round(ctx context.Context) {
	probes := r.probeHealth(ctx)
	active := r.recordHealth(probes, time.Now())
	if active == nil {
		return
	}
	r.recordCaughtUp(ctx, probes, active)
}

// probeHealth asks every running server of the cluster for sys/health, all at once; a
// server that did not answer has no health.
func (r *recorder) probeHealth(ctx context.Context) []*probe {
	var probes []*probe
	for _, obj := range r.podStore.List() {
		p := obj.(*corev1.Pod)
		if !isServer(p) || p.Status.PodIP == "" || p.DeletionTimestamp != nil {
			continue
		}
		cl, err := r.client(p)
		if err != nil {
			continue
		}
		probes = append(probes, &probe{pod: p, cl: cl})
	}
	var wg sync.WaitGroup
	for _, pr := range probes {
		wg.Go(func() {
			if h, err := pr.cl.Health(ctx); err == nil {
				pr.health = h
			}
		})
	}
	wg.Wait()
	return probes
}

// recordHealth records what the answers of a round, at now, show: the active server (and
// a change of it, and how long the cluster went without one) and the first version each
// pod served. It returns the active server's probe, nil when none was active.
func (r *recorder) recordHealth(probes []*probe, now time.Time) *probe {
	var active *probe
	for _, pr := range probes {
		if pr.health != nil && pr.health.Active() {
			active = pr
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rounds++
	cur := activeObs{At: now}
	if active != nil {
		cur.Pod, cur.Version = active.pod.Name, active.health.Version
	}
	if n := len(r.active); n == 0 || r.active[n-1].Pod != cur.Pod || r.active[n-1].Version != cur.Version {
		r.active = append(r.active, cur)
	}
	for _, pr := range probes {
		if l := r.pods[pr.pod.UID]; l != nil && pr.health != nil && l.Serving == "" && pr.health.Serving() {
			l.Serving = pr.health.Version
		}
	}
	if active != nil {
		if !r.lastActiveAt.IsZero() {
			r.leaderless = max(r.leaderless, now.Sub(r.lastActiveAt))
		}
		if r.lastActive != "" && (r.lastActive != active.pod.Name || r.lastActiveVersion != active.health.Version) {
			r.changes = append(r.changes, leaderChange{
				At: now, From: r.lastActive, FromVersion: r.lastActiveVersion,
				To: active.pod.Name, ToVersion: active.health.Version,
			})
		}
		r.lastActive, r.lastActiveVersion, r.lastActiveAt = active.pod.Name, active.health.Version, now
	}
	return active
}

// recordCaughtUp reads the active server's committed index, then the applied index of
// every serving server not yet caught up, all at once, and records when each caught up.
func (r *recorder) recordCaughtUp(ctx context.Context, probes []*probe, active *probe) {
	ls, err := active.cl.Leader(ctx)
	if err != nil {
		return
	}
	// The committed index of the round before: a server counts as caught up once it has
	// applied everything the leader had committed one poll interval earlier. Comparing
	// with the index read a few milliseconds before would, under a steady load, depend on
	// how fast this poller is rather than on the server.
	r.mu.Lock()
	committed := r.prevCommitted
	r.prevCommitted = ls.RaftCommittedIndex
	r.mu.Unlock()
	if committed == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, pr := range probes {
		if pr.health == nil || !pr.health.Serving() {
			continue
		}
		r.mu.Lock()
		l := r.pods[pr.pod.UID]
		need := l != nil && l.CaughtUp.IsZero()
		r.mu.Unlock()
		if !need {
			continue
		}
		wg.Go(func() {
			applied := ls.RaftAppliedIndex
			if pr != active {
				s, err := pr.cl.Leader(ctx)
				if err != nil {
					return
				}
				applied = s.RaftAppliedIndex
			}
			if applied >= committed {
				r.mu.Lock()
				if l.CaughtUp.IsZero() {
					l.CaughtUp = time.Now()
				}
				r.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// pollRate is the number of completed polling rounds per second so far.
func (r *recorder) pollRate() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return float64(r.rounds) / time.Since(r.started).Seconds()
}

// snapshot returns copies of what was recorded.
func (r *recorder) snapshot() (pods []podLife, stepDown map[string]time.Time, changes []leaderChange, leaderless time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.pods {
		pods = append(pods, *l)
	}
	stepDown = map[string]time.Time{}
	for k, v := range r.stepDown {
		stepDown[k] = v
	}
	return pods, stepDown, append([]leaderChange(nil), r.changes...), r.leaderless
}

// pictureSnapshot returns copies of what is kept for the run's picture.
func (r *recorder) pictureSnapshot() (pods []podLife, active []activeObs, jobs []jobLife) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.pods {
		c := *l
		c.ReadyChanges = append([]readyChange(nil), l.ReadyChanges...)
		pods = append(pods, c)
	}
	for _, j := range r.jobs {
		jobs = append(jobs, *j)
	}
	return pods, append([]activeObs(nil), r.active...), jobs
}
