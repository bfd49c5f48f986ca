// Package upgradebench measures what the users of an OpenBao cluster feel while it is
// upgraded: with this operator's strategies, and with a naive roll of the same StatefulSet
// (RollingUpdate, no partition control, no step-down) as a baseline. It runs on the local
// cluster (tests/localcluster) with real OpenBao servers and the load client of
// tests/loadclient.
package upgradebench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// Modes of a run.
const (
	ModeRolling   = "Rolling"
	ModeBlueGreen = "BlueGreen"
	// ModeNaive pauses the operator and lets the StatefulSet controller roll every pod:
	// partition 0 and the new image, as a plain StatefulSet or a leader-blind operator would.
	ModeNaive = "naive"
)

// The application the load runs as: a JWT role granted to a service account of the
// cluster's namespace through spec.selfInit.
const (
	appRole           = loadclient.AppRole
	appAudience       = loadclient.AppAudience
	appServiceAccount = loadclient.AppServiceAccount
	clusterName       = "bao"
)

// Deadlines bound each wait; they are not expectations.
const (
	waitFormed   = 10 * time.Minute
	waitUpgraded = 20 * time.Minute
	// warmUp is how long the load runs before the upgrade starts, and tail after it ended.
	warmUp = 5 * time.Second
	tail   = 3 * time.Second
	// notStarted bounds the operator's pre-checks before it records an upgrade.
	notStarted = 5 * time.Minute
)

// Config is shared by every run.
type Config struct {
	Kube    kubernetes.Interface
	Client  client.Client
	Manager string // the operator's binary, to find its process
	// AuditLog is kube-apiserver's audit log of OperatorUser's requests.
	AuditLog          string
	OperatorUser      string
	OperatorNamespace string
	From, To          string
	// Rate of load requests per second (four writes for every read).
	Rate float64
	// Settle is how long after the operator reports the upgrade done the steady-state
	// window starts; Steady is its length.
	Settle, Steady time.Duration
	// BlueGreenVerification is spec.upgrade.blueGreen.verificationPeriod.
	BlueGreenVerification time.Duration
	// LeaderNotLast moves leadership, before each upgrade, away from ordinal 0: the server
	// a StatefulSet replaces last, and where the cluster puts its leader when it forms
	// (ordinal 0 bootstraps it). The naive roll then replaces the leader before the other
	// servers run the new version.
	LeaderNotLast bool
	// Bridge is the local cluster's pod network bridge; pods' network namespaces and
	// host-side veths are named after it (failover runs cut and kill through them).
	Bridge   string
	Progress io.Writer
}

// Run is one benchmark run.
type Run struct {
	Mode      string    `json:"mode"`
	Replicas  int       `json:"replicas"`
	From      string    `json:"from"`
	To        string    `json:"to"`
	Namespace string    `json:"namespace"`
	Start     time.Time `json:"start"`
	// LeaderBefore is the active server when the upgrade started.
	LeaderBefore string `json:"leaderBefore"`
	Error        string `json:"error,omitempty"`

	// TotalSeconds: from the version change until every server runs the new version, is
	// Ready and caught up, and no old server is left.
	TotalSeconds float64 `json:"totalSeconds"`
	// OperatorDoneSeconds: until the operator reported the upgrade complete (operator runs).
	OperatorDoneSeconds float64 `json:"operatorDoneSeconds,omitempty"`
	// LeadSeconds: from the version change until the first server started to move.
	LeadSeconds float64 `json:"leadSeconds"`
	Pods        []Pod   `json:"pods"`
	// OperatorOverheadSeconds sums, over consecutive servers, the time between one being
	// caught up and the next starting to move (its step-down or its stop).
	OperatorOverheadSeconds float64 `json:"operatorOverheadSeconds"`
	OverheadFraction        float64 `json:"overheadFraction"`

	LeaderChanges []LeaderChange `json:"leaderChanges"`
	// NewToOld counts leadership changes from a server on the new version to one on the old.
	NewToOld int `json:"newToOld"`
	// MaxChangesPerOldLeader is the largest number of changes away from one old-version
	// leader.
	MaxChangesPerOldLeader int     `json:"maxChangesPerOldLeader"`
	LongestLeaderlessSecs  float64 `json:"longestLeaderlessSeconds"`
	// PollRoundsPerSecond is how often every server was actually asked for its health
	// and Raft indexes (the resolution of leadership changes and catch-up times).
	PollRoundsPerSecond float64 `json:"pollRoundsPerSecond"`

	Load Load `json:"load"`

	// APIUpgrade counts the operator's requests from the version change until it reported
	// done (until the end of the roll for the naive runs, when it is paused).
	APIUpgrade APIRequests `json:"apiUpgrade"`
	// APISettle and APISteady: Settle then Steady after done (operator runs).
	APISettle     *APIRequests `json:"apiSettle,omitempty"`
	APISteady     *APIRequests `json:"apiSteady,omitempty"`
	SteadySeconds float64      `json:"steadySeconds,omitempty"`

	// OperatorPeakRSSMiB is the operator's peak resident memory during this run's upgrade;
	// OperatorHWMMiB its peak since it started (VmHWM), read at the end of the run.
	OperatorPeakRSSMiB float64 `json:"operatorPeakRSSMiB"`
	OperatorHWMMiB     float64 `json:"operatorHWMMiB"`

	// Timeline is what the run's picture is drawn from.
	Timeline *Timeline `json:"timeline,omitempty"`
}

// Pod is one server's timeline, in seconds since the version change; nil when not seen.
type Pod struct {
	Name        string   `json:"name"`
	OldVersion  string   `json:"oldVersion,omitempty"`
	NewVersion  string   `json:"newVersion,omitempty"`
	StepDown    *float64 `json:"stepDown,omitempty"`
	Stop        *float64 `json:"stop,omitempty"`
	Gone        *float64 `json:"gone,omitempty"`
	Start       *float64 `json:"start,omitempty"`
	Ready       *float64 `json:"ready,omitempty"`
	CaughtUp    *float64 `json:"caughtUp,omitempty"`
	OverheadPre *float64 `json:"overheadBefore,omitempty"`
}

// LeaderChange is one change of the active server.
type LeaderChange struct {
	AtSeconds   float64 `json:"at"`
	From        string  `json:"from"`
	FromVersion string  `json:"fromVersion"`
	To          string  `json:"to"`
	ToVersion   string  `json:"toVersion"`
}

// Load is what the application saw.
type Load struct {
	Requests       int     `json:"requests"`
	Writes         int     `json:"writes"`
	FailedRequests int     `json:"failedRequests"`
	FailedWrites   int     `json:"failedWrites"`
	Acknowledged   int     `json:"acknowledged"`
	Lost           int     `json:"lost"`
	VerifyError    string  `json:"verifyError,omitempty"`
	DurationSecs   float64 `json:"durationSeconds"`
	// LongestWriteGapSecs is the longest time without a successful write; it started
	// WriteGapAtSecs after the version change.
	LongestWriteGapSecs float64  `json:"longestWriteGapSeconds"`
	WriteGapAtSecs      float64  `json:"writeGapAt"`
	FirstErrors         []string `json:"firstErrors,omitempty"`
	// Failures are the failed requests (at most maxFailures), in seconds since the version
	// change (negative: during the warm-up).
	Failures []Failure `json:"failures,omitempty"`
}

// Failure is one failed request of the load.
type Failure struct {
	AtSeconds float64 `json:"at"`
	Write     bool    `json:"write"`
	Endpoint  string  `json:"endpoint"`
	Err       string  `json:"error"`
}

const maxFailures = 100

func (c *Config) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
}

// Bench runs the benchmark; steady-state windows of earlier runs go on in the background
// while later runs proceed (requests are attributed to each run's namespace).
type Bench struct {
	cfg Config
	mem *memorySampler
	wg  sync.WaitGroup
}

// New starts a benchmark; Close it when done.
func New(cfg Config) *Bench {
	return &Bench{cfg: cfg, mem: startMemorySampler(cfg.Manager)}
}

// Wait waits for the background steady-state windows.
func (b *Bench) Wait() { b.wg.Wait() }

// Close stops the memory sampler.
func (b *Bench) Close() { b.mem.stop() }

// Run performs one run and returns its result; on error the result holds what was measured
// and Error says what went wrong. The returned *Run is completed later by the steady-state
// window (see Wait).
func (b *Bench) Run(ctx context.Context, mode string, replicas int) *Run {
	r := &Run{Mode: mode, Replicas: replicas, From: b.cfg.From, To: b.cfg.To,
		Namespace: strings.ToLower(fmt.Sprintf("bench-%s-%d", mode, replicas))}
	if b.cfg.LeaderNotLast {
		r.Namespace += "-moved"
	}
	if err := b.run(ctx, r); err != nil {
		r.Error = err.Error()
		b.cfg.progress("%s: FAILED: %v", r.Namespace, err)
	}
	return r
}

func (b *Bench) run(ctx context.Context, r *Run) error {
	cfg := b.cfg
	c, err := b.createCluster(ctx, r)
	if err != nil {
		return err
	}
	ca, err := b.prepare(ctx, r, c)
	if err != nil {
		return err
	}
	rec := startRecorder(ctx, cfg.Kube, c, ca)
	defer rec.stop()
	load := b.startLoad(ctx, c, ca)
	loadStopped := false
	defer func() {
		if !loadStopped {
			load.Stop()
		}
	}()
	time.Sleep(warmUp)
	if load.Report().Acknowledged == 0 {
		return fmt.Errorf("the load got no write acknowledged before the upgrade: %v", load.Report().FirstErrors)
	}

	end, operatorDone, waitErr, err := b.upgrade(ctx, r, c, rec)
	if err != nil {
		return err
	}
	time.Sleep(tail)
	load.Stop()
	loadStopped = true
	rec.stop()
	b.collect(ctx, r, c, ca, rec, load, end, operatorDone, waitErr)
	if waitErr != nil {
		return waitErr
	}

	if r.Mode == ModeNaive {
		b.deleteNamespace(r.Namespace)
		return nil
	}
	// The steady-state window runs in the background; the namespace goes afterwards.
	b.wg.Go(func() { b.steadyState(r, operatorDone) })
	return nil
}

// createCluster creates the run's namespace and cluster and waits until it has formed; a
// naive run pauses the operator, which then leaves the cluster to the naive roll.
func (b *Bench) createCluster(ctx context.Context, r *Run) (*openbaov1alpha1.OpenBaoCluster, error) {
	cfg := b.cfg
	ns := r.Namespace
	cfg.progress("%s: creating namespace and a %d-server OpenBaoCluster on %s", ns, r.Replicas, cfg.From)
	if err := b.createNamespace(ctx, ns); err != nil {
		return nil, err
	}
	want := newCluster(ns, cfg.From, int32(r.Replicas))
	if r.Mode == ModeBlueGreen {
		want.Spec.Upgrade.Strategy = openbaov1alpha1.BlueGreenUpgrade
		want.Spec.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenSpec{VerificationPeriod: &metav1.Duration{Duration: cfg.BlueGreenVerification}}
	}
	if err := cfg.Client.Create(ctx, want); err != nil {
		return nil, fmt.Errorf("create OpenBaoCluster: %w", err)
	}
	formedAt := time.Now()
	c, err := b.waitFormed(ctx, ns, r.Replicas)
	if err != nil {
		return nil, err
	}
	cfg.progress("%s: formed in %s", ns, time.Since(formedAt).Round(time.Second))

	if r.Mode == ModeNaive {
		if err := updateSpec(ctx, cfg.Client, ns, func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Paused = true }); err != nil {
			return nil, err
		}
		if err := poll(ctx, 2*time.Minute, "Paused=True", func() (bool, error) {
			cur := &openbaov1alpha1.OpenBaoCluster{}
			if err := cfg.Client.Get(ctx, client.ObjectKeyFromObject(c), cur); err != nil {
				return false, nil
			}
			return meta.IsStatusConditionTrue(cur.Status.Conditions, openbaov1alpha1.ConditionPaused), nil
		}); err != nil {
			return nil, err
		}
		time.Sleep(2 * time.Second) // a reconcile that started before the pause may finish
	}
	return c, nil
}

// prepare reads the cluster's CA, creates the load's service account, places leadership
// as the run asks and records who leads before the upgrade.
func (b *Bench) prepare(ctx context.Context, r *Run, c *openbaov1alpha1.OpenBaoCluster) ([]byte, error) {
	cfg := b.cfg
	ca, err := caPEM(ctx, cfg.Kube, c)
	if err != nil {
		return nil, err
	}
	if err := ensureServiceAccount(ctx, cfg.Kube, r.Namespace); err != nil {
		return nil, err
	}
	if cfg.LeaderNotLast {
		last := resources.PodName(resources.ActiveStatefulSet(c), 0)
		to, err := b.moveLeadershipFrom(ctx, c, ca, last)
		if err != nil {
			return nil, err
		}
		cfg.progress("%s: leadership moved from %s to %s", r.Namespace, last, to)
	}
	if r.LeaderBefore, err = b.activeServer(ctx, c, ca); err != nil {
		return nil, err
	}
	return ca, nil
}

// startLoad starts the application load through the cluster's client Service.
func (b *Bench) startLoad(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, ca []byte) *loadclient.Client {
	cfg, ns := b.cfg, c.Namespace
	return loadclient.Start(ctx, loadclient.Config{
		Kube: cfg.Kube, Namespace: ns, Service: resources.NamesFor(c).ClientService, CAPEM: ca,
		Login: func(ctx context.Context) (string, error) { return token(ctx, cfg.Kube, ns) },
		Role:  appRole, KeyPrefix: "secret/data/bench/" + ns + "/", Rate: cfg.Rate,
	})
}

// upgrade starts the upgrade (the naive roll, or a new spec.version) and waits until it is
// over. It returns when every server was rolled (end), when the operator reported the
// upgrade done (operatorDone), and why the wait failed, if it did (waitErr); err is a
// failure to start.
func (b *Bench) upgrade(ctx context.Context, r *Run, c *openbaov1alpha1.OpenBaoCluster, rec *recorder) (end, operatorDone time.Time, waitErr, err error) {
	cfg := b.cfg
	_, _ = b.mem.resetPeak()
	r.Start = time.Now()
	r.Timeline = &Timeline{} // waitRolled records the operator's steps in it
	cfg.progress("%s: upgrading %s -> %s (%s)", r.Namespace, cfg.From, cfg.To, r.Mode)
	if r.Mode == ModeNaive {
		err = naiveRoll(ctx, cfg.Kube, c, cfg.To)
	} else {
		err = updateSpec(ctx, cfg.Client, r.Namespace, func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = cfg.To })
	}
	if err != nil {
		return end, operatorDone, nil, err
	}
	end, waitErr = b.waitRolled(ctx, r, c, rec, &operatorDone)
	peak, _ := b.mem.resetPeak()
	r.OperatorPeakRSSMiB = mib(peak)
	return end, operatorDone, waitErr, nil
}

// collect fills the run's figures once the load has stopped: durations, the per-pod
// analysis, the load's figures and whether any acknowledged write was lost, the operator's
// memory and its API requests during the upgrade.
func (b *Bench) collect(ctx context.Context, r *Run, c *openbaov1alpha1.OpenBaoCluster, ca []byte, rec *recorder, load *loadclient.Client, end, operatorDone time.Time, waitErr error) {
	cfg := b.cfg
	if !end.IsZero() {
		r.TotalSeconds = end.Sub(r.Start).Seconds()
	}
	if !operatorDone.IsZero() {
		r.OperatorDoneSeconds = operatorDone.Sub(r.Start).Seconds()
	}
	analyze(r, rec, cfg.From, cfg.To)
	r.Load = loadFigures(load, r.Start)
	r.Timeline = upgradeTimeline(r, rec, load.Requests())
	if waitErr == nil {
		lost, verr := b.verify(ctx, c, ca, load)
		r.Load.Lost = lost
		if verr != nil {
			r.Load.VerifyError = verr.Error()
		}
	}
	_, hwm := b.mem.resetPeak()
	r.OperatorHWMMiB = mib(hwm)

	upgradeEnd := end
	if r.Mode != ModeNaive {
		upgradeEnd = operatorDone
	}
	if upgradeEnd.IsZero() {
		upgradeEnd = time.Now()
	}
	ns := r.Namespace
	if a, err := CountAuditLog(cfg.AuditLog, cfg.OperatorUser, ns, cfg.OperatorNamespace, r.Start, upgradeEnd); err == nil {
		r.APIUpgrade = a
	} else {
		cfg.progress("%s: audit log: %v", ns, err)
	}
	cfg.progress("%s: done in %.1fs; longest write gap %.2fs, %d failed requests, %d/%d acknowledged writes lost",
		ns, r.TotalSeconds, r.Load.LongestWriteGapSecs, r.Load.FailedRequests, r.Load.Lost, r.Load.Acknowledged)
}

// steadyState counts the operator's API requests while the upgraded cluster settles and
// then in the steady-state window, and deletes the run's namespace.
func (b *Bench) steadyState(r *Run, operatorDone time.Time) {
	cfg, ns := b.cfg, r.Namespace
	settleEnd := operatorDone.Add(cfg.Settle)
	steadyEnd := settleEnd.Add(cfg.Steady)
	time.Sleep(time.Until(steadyEnd) + time.Second) // the audit log is written at once
	if a, err := CountAuditLog(cfg.AuditLog, cfg.OperatorUser, ns, cfg.OperatorNamespace, operatorDone, settleEnd); err == nil {
		r.APISettle = &a
	}
	if a, err := CountAuditLog(cfg.AuditLog, cfg.OperatorUser, ns, cfg.OperatorNamespace, settleEnd, steadyEnd); err == nil {
		r.APISteady = &a
		r.SteadySeconds = cfg.Steady.Seconds()
	}
	if r.APISteady != nil {
		cfg.progress("%s: steady state %s: %d operator API requests, %d writes to the cluster's namespace",
			ns, cfg.Steady, r.APISteady.Total, r.APISteady.Writes)
	}
	b.deleteNamespace(ns)
}

// waitRolled waits until every server runs the new version, is Ready and caught up, and
// no old server is left; for operator runs also until the operator reports the upgrade
// done (its time goes to operatorDone).
func (b *Bench) waitRolled(ctx context.Context, r *Run, c *openbaov1alpha1.OpenBaoCluster, rec *recorder, operatorDone *time.Time) (time.Time, error) {
	var end time.Time
	deadline := time.Now().Add(waitUpgraded)
	last := ""
	for {
		if end.IsZero() && rolled(rec, r.Replicas, b.cfg.To) {
			end = time.Now()
			b.cfg.progress("%s: every server on %s, Ready and caught up after %.1fs", r.Namespace, b.cfg.To, end.Sub(r.Start).Seconds())
		}
		if r.Mode != ModeNaive && operatorDone.IsZero() {
			cur := &openbaov1alpha1.OpenBaoCluster{}
			if err := b.cfg.Client.Get(ctx, client.ObjectKeyFromObject(c), cur); err == nil {
				if cur.Status.CurrentVersion == b.cfg.To && cur.Status.Upgrade == nil {
					*operatorDone = time.Now()
					r.Timeline.Steps = append(r.Timeline.Steps, StepChange{At: round3(operatorDone.Sub(r.Start).Seconds())})
					b.cfg.progress("%s: the operator reports the upgrade done after %.1fs", r.Namespace, operatorDone.Sub(r.Start).Seconds())
				} else if cur.Status.Upgrade == nil {
					// The upgrade has not started: pre-checks pending, or a strategy this
					// operator build does not know.
					cond := meta.FindStatusCondition(cur.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
					if cond != nil && (strings.Contains(cond.Message, "not known to this operator") || time.Since(r.Start) > notStarted) {
						return end, fmt.Errorf("the upgrade did not start: %s: %s", cond.Reason, cond.Message)
					}
				} else {
					if s := cur.Status.Upgrade.Step + " " + cur.Status.Upgrade.CurrentPod; s != last {
						last = s
						r.Timeline.Steps = append(r.Timeline.Steps, StepChange{
							At: round3(time.Since(r.Start).Seconds()), Step: cur.Status.Upgrade.Step, Pod: cur.Status.Upgrade.CurrentPod})
						b.cfg.progress("%s:   step %s", r.Namespace, s)
					}
					if meta.IsStatusConditionTrue(cur.Status.Conditions, openbaov1alpha1.ConditionDegraded) {
						cond := meta.FindStatusCondition(cur.Status.Conditions, openbaov1alpha1.ConditionDegraded)
						return end, fmt.Errorf("the upgrade halted: %s: %s", cond.Reason, cond.Message)
					}
				}
			}
		}
		if !end.IsZero() && (r.Mode == ModeNaive || !operatorDone.IsZero()) {
			return end, nil
		}
		if time.Now().After(deadline) {
			return end, fmt.Errorf("the upgrade did not finish within %s", waitUpgraded)
		}
		select {
		case <-ctx.Done():
			return end, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rolled says whether exactly replicas servers exist, all on version to, Ready and caught
// up, and none is terminating.
func rolled(rec *recorder, replicas int, to string) bool {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	live := 0
	for _, l := range rec.pods {
		if !l.Gone.IsZero() {
			continue
		}
		if !l.Stop.IsZero() || l.Version != to || l.Ready.IsZero() || l.CaughtUp.IsZero() {
			return false
		}
		live++
	}
	return live == replicas
}

// naiveRoll does what a plain StatefulSet does with a new image: partition 0 and the new
// image in the template, and the StatefulSet controller replaces every pod by itself.
func naiveRoll(ctx context.Context, cs kubernetes.Interface, c *openbaov1alpha1.OpenBaoCluster, to string) error {
	name := resources.ActiveStatefulSet(c)
	image := resources.DefaultImage(resources.DefaultImageRepository, to)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts, err := cs.AppsV1().StatefulSets(c.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if sts.Spec.UpdateStrategy.RollingUpdate != nil {
			sts.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To[int32](0)
		}
		found := false
		for i := range sts.Spec.Template.Spec.Containers {
			if sts.Spec.Template.Spec.Containers[i].Name == "openbao" {
				sts.Spec.Template.Spec.Containers[i].Image = image
				found = true
			}
		}
		if !found {
			return errors.New("the StatefulSet has no openbao container")
		}
		_, err = cs.AppsV1().StatefulSets(c.Namespace).Update(ctx, sts, metav1.UpdateOptions{})
		return err
	})
}

// analyze turns the recorder's observations into the run's figures.
func analyze(r *Run, rec *recorder, from, to string) {
	lives, stepDowns, changes, leaderless := rec.snapshot()
	analyzePods(r, lives, stepDowns, from, to)
	analyzeOverhead(r)
	analyzeLeaderChanges(r, changes, from, to)
	r.LongestLeaderlessSecs = round3(leaderless.Seconds())
	if !rec.started.IsZero() {
		r.PollRoundsPerSecond = round3(rec.pollRate())
	}
}

// analyzePods records each pod's life on the old and the new version, relative to the start.
func analyzePods(r *Run, lives []podLife, stepDowns map[string]time.Time, from, to string) {
	rel := func(t time.Time) *float64 {
		if t.IsZero() {
			return nil
		}
		return ptr.To(round3(t.Sub(r.Start).Seconds()))
	}
	byName := map[string]*Pod{}
	var names []string
	for _, l := range lives {
		p := byName[l.Name]
		if p == nil {
			p = &Pod{Name: l.Name}
			byName[l.Name] = p
			names = append(names, l.Name)
		}
		switch {
		case l.Version == from:
			p.OldVersion = from
			p.Stop, p.Gone = rel(l.Stop), rel(l.Gone)
		case l.Version == to && l.Seen.After(r.Start):
			p.NewVersion = to
			p.Start, p.Ready, p.CaughtUp = rel(l.Seen), rel(l.Ready), rel(l.CaughtUp)
		}
		if t, ok := stepDowns[l.Name]; ok && t.After(r.Start) {
			p.StepDown = rel(t)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		r.Pods = append(r.Pods, *byName[n])
	}
}

// analyzeOverhead finds when each server started to move and the operator's overhead
// between servers.
func analyzeOverhead(r *Run) {
	// Servers in the order they stopped. A server starts to move at its stop, or at its own
	// step-down when that came after the previous server stopped: a step-down that placed
	// leadership before any server moved belongs to no server's turn. The overhead before
	// each server is the time since the previous one caught up, none when it started to move
	// before the poller saw the previous one caught up (the operator judges catch-up from its
	// own reading of the leader's index) (servers replaced in place only: BlueGreen adds
	// servers instead).
	var order []*Pod
	for i := range r.Pods {
		if r.Pods[i].Stop != nil {
			order = append(order, &r.Pods[i])
		}
	}
	sort.Slice(order, func(i, j int) bool { return *order[i].Stop < *order[j].Stop })
	starts := make([]float64, len(order))
	for i, p := range order {
		starts[i] = *p.Stop
		if sd := p.StepDown; sd != nil && *sd < *p.Stop && (i == 0 || *sd >= *order[i-1].Stop) {
			starts[i] = *sd
		}
	}
	if len(order) > 0 {
		r.LeadSeconds = starts[0]
		for _, p := range r.Pods {
			if p.StepDown != nil && *p.StepDown < r.LeadSeconds {
				r.LeadSeconds = *p.StepDown
			}
		}
	}
	if r.Mode != ModeBlueGreen {
		for i := 1; i < len(order); i++ {
			prev := order[i-1]
			if prev.CaughtUp == nil {
				continue
			}
			gap := max(0, starts[i]-*prev.CaughtUp)
			order[i].OverheadPre = ptr.To(round3(gap))
			r.OperatorOverheadSeconds += gap
		}
		r.OperatorOverheadSeconds = round3(r.OperatorOverheadSeconds)
		if r.TotalSeconds > 0 {
			r.OverheadFraction = round3(r.OperatorOverheadSeconds / r.TotalSeconds)
		}
	}
}

// analyzeLeaderChanges records the leader changes after the start and counts those from
// new to old and per old leader.
func analyzeLeaderChanges(r *Run, changes []leaderChange, from, to string) {
	perOld := map[string]int{}
	for _, ch := range changes {
		if ch.At.Before(r.Start) {
			continue
		}
		r.LeaderChanges = append(r.LeaderChanges, LeaderChange{
			AtSeconds: round3(ch.At.Sub(r.Start).Seconds()), From: ch.From, FromVersion: ch.FromVersion, To: ch.To, ToVersion: ch.ToVersion,
		})
		if ch.FromVersion == to && ch.ToVersion == from {
			r.NewToOld++
		}
		if ch.FromVersion == from {
			perOld[ch.From]++
			r.MaxChangesPerOldLeader = max(r.MaxChangesPerOldLeader, perOld[ch.From])
		}
	}
}

// loadFigures summarizes the load's recorded requests.
func loadFigures(load *loadclient.Client, start time.Time) Load {
	rep := load.Report()
	l := Load{Requests: rep.Requests, Writes: rep.Writes, FailedRequests: rep.FailedRequests,
		Acknowledged: rep.Acknowledged, DurationSecs: round3(rep.Duration.Seconds()), FirstErrors: rep.FirstErrors}
	gap, at := longestWriteGap(load.Requests())
	l.LongestWriteGapSecs = round3(gap.Seconds())
	if !at.IsZero() {
		l.WriteGapAtSecs = round3(at.Sub(start).Seconds())
	}
	for _, q := range load.Requests() {
		if q.Err == "" {
			continue
		}
		if q.Write {
			l.FailedWrites++
		}
		if len(l.Failures) < maxFailures {
			l.Failures = append(l.Failures, Failure{AtSeconds: round3(q.Start.Sub(start).Seconds()), Write: q.Write, Endpoint: q.Endpoint, Err: q.Err})
		}
	}
	return l
}

// longestWriteGap is the longest time between the completions of two successful writes,
// and when it started.
func longestWriteGap(reqs []loadclient.Request) (time.Duration, time.Time) {
	var lastOK, at time.Time
	var gap time.Duration
	var ends []time.Time
	for _, q := range reqs {
		if q.Write && q.Err == "" {
			ends = append(ends, q.Start.Add(q.Duration))
		}
	}
	sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
	for _, e := range ends {
		if !lastOK.IsZero() && e.Sub(lastOK) > gap {
			gap, at = e.Sub(lastOK), lastOK
		}
		lastOK = e
	}
	return gap, at
}

// verify reads every acknowledged write back through a Ready server (a standby forwards
// to the active one) and returns how many are missing or hold another value.
func (b *Bench) verify(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, ca []byte, load *loadclient.Client) (int, error) {
	pods, err := b.cfg.Kube.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: resources.LabelInstance + "=" + c.Name + "," + resources.LabelComponent + "=" + resources.ComponentServer,
	})
	if err != nil {
		return 0, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !podReady(&p) {
			continue
		}
		cl, err := loadclient.NewAPIClient(openbao.PodAddress(p.Status.PodIP, resources.APIPort), ca, resources.PodDNSName(c, p.Name), 15*time.Second)
		if err != nil {
			return 0, err
		}
		jwt, err := token(ctx, b.cfg.Kube, c.Namespace)
		if err != nil {
			return 0, err
		}
		s, err := cl.Logical().WriteWithContext(ctx, "auth/jwt/login", map[string]any{"role": appRole, "jwt": jwt})
		if err != nil || s == nil || s.Auth == nil {
			return 0, fmt.Errorf("log in through %s: %v", p.Name, err)
		}
		cl.SetToken(s.Auth.ClientToken)
		lost, err := load.Verify(ctx, cl)
		return len(lost), err
	}
	return 0, errors.New("no Ready server to read the writes back through")
}

func podReady(p *corev1.Pod) bool {
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newCluster is an OpenBaoCluster whose self-initialization enables a kv-v2 engine at
// secret/ and a JWT role for the app service account of its namespace.
func newCluster(ns, version string, replicas int32) *openbaov1alpha1.OpenBaoCluster {
	return loadclient.AppCluster(loadclient.AppClusterOptions{
		Namespace: ns, Name: clusterName, Version: version, Replicas: replicas, Scope: "bench", TokenTTL: "30m",
		// The bench also steps the leader down to place leadership before an upgrade
		// (Config.LeaderNotLast).
		ExtraPolicy: "path \"sys/step-down\" {\n  capabilities = [\"update\", \"sudo\"]\n}\n",
	})
}

func (b *Bench) createNamespace(ctx context.Context, ns string) error {
	cs := b.cfg.Kube
	// A namespace left by an earlier run is removed first.
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err == nil {
		b.cfg.progress("%s: removing the namespace left by an earlier run", ns)
	}
	if err := poll(ctx, 5*time.Minute, "namespace "+ns+" gone", func() (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		return err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create namespace %s: %w", ns, err)
	}
	return poll(ctx, 2*time.Minute, "service account default in "+ns, func() (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func (b *Bench) deleteNamespace(ns string) {
	_ = b.cfg.Kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
}

func ensureServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: appServiceAccount}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create service account %s/%s: %w", ns, appServiceAccount, err)
	}
	return nil
}

// token issues a token of the app service account through the TokenRequest API, as a
// projected volume would.
func token(ctx context.Context, cs kubernetes.Interface, ns string) (string, error) {
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, appServiceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{appAudience}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", ns, appServiceAccount, err)
	}
	return tr.Status.Token, nil
}

func caPEM(ctx context.Context, cs kubernetes.Interface, c *openbaov1alpha1.OpenBaoCluster) ([]byte, error) {
	s, err := cs.CoreV1().Secrets(c.Namespace).Get(ctx, resources.TLSSecretName(c), metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read the TLS secret: %w", err)
	}
	if len(s.Data["ca.crt"]) == 0 {
		return nil, fmt.Errorf("secret %s has no ca.crt", s.Name)
	}
	return s.Data["ca.crt"], nil
}

// waitFormed waits until the operator reports the cluster Available with every server a
// ready, healthy voter and one leader.
func (b *Bench) waitFormed(ctx context.Context, ns string, replicas int) (*openbaov1alpha1.OpenBaoCluster, error) {
	var c *openbaov1alpha1.OpenBaoCluster
	err := poll(ctx, waitFormed, fmt.Sprintf("OpenBaoCluster %s/%s Available with %d ready voters", ns, clusterName, replicas), func() (bool, error) {
		c = &openbaov1alpha1.OpenBaoCluster{}
		if err := b.cfg.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterName}, c); err != nil {
			return false, nil
		}
		voters := 0
		for _, m := range c.Status.Members {
			if m.Initialized && !m.Sealed && m.Voter && m.Healthy {
				voters++
			}
		}
		return meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionAvailable) &&
			int(c.Status.ReadyReplicas) == replicas && voters == replicas && c.Status.Leader != "" &&
			c.Status.Phase == openbaov1alpha1.PhaseRunning, nil
	})
	return c, err
}

func updateSpec(ctx context.Context, k8s client.Client, ns string, change func(*openbaov1alpha1.OpenBaoClusterSpec)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := &openbaov1alpha1.OpenBaoCluster{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: clusterName}, c); err != nil {
			return err
		}
		change(&c.Spec)
		return k8s.Update(ctx, c)
	})
	if err != nil {
		return fmt.Errorf("update OpenBaoCluster %s/%s: %w", ns, clusterName, err)
	}
	return nil
}

func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s", what, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func mib(b uint64) float64 { return round3(float64(b) / (1 << 20)) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

// serverClients returns an OpenBao client for every running server pod, by pod name.
func (b *Bench) serverClients(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, ca []byte) (map[string]openbao.Client, error) {
	pods, err := b.cfg.Kube.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: resources.LabelInstance + "=" + c.Name + "," + resources.LabelComponent + "=" + resources.ComponentServer,
	})
	if err != nil {
		return nil, err
	}
	out := map[string]openbao.Client{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		cl, err := openbao.New(openbao.Config{
			Address: openbao.PodAddress(p.Status.PodIP, resources.APIPort), CACertPEM: ca,
			TLSServerName: resources.PodDNSName(c, p.Name), Timeout: 5 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		out[p.Name] = cl
	}
	return out, nil
}

// activeServer returns the pod whose server reports itself active.
func (b *Bench) activeServer(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, ca []byte) (string, error) {
	clients, err := b.serverClients(ctx, c, ca)
	if err != nil {
		return "", err
	}
	for name, cl := range clients {
		if h, err := cl.Health(ctx); err == nil && h.Active() {
			return name, nil
		}
	}
	return "", errors.New("no server reports itself active")
}

// moveLeadershipFrom steps the active server down until another server than from is
// the active one, and returns it. OpenBao does not let a step-down choose the next
// leader.
func (b *Bench) moveLeadershipFrom(ctx context.Context, c *openbaov1alpha1.OpenBaoCluster, ca []byte, from string) (string, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		active, err := b.activeServer(ctx, c, ca)
		switch {
		case err != nil:
			// No active server right now: an election is going on.
		case active != from:
			// Let autopilot see every server healthy again before the upgrade's pre-checks.
			time.Sleep(10 * time.Second)
			return active, nil
		default:
			clients, err := b.serverClients(ctx, c, ca)
			if err != nil {
				return "", err
			}
			cl := clients[active]
			jwt, err := token(ctx, b.cfg.Kube, c.Namespace)
			if err != nil {
				return "", err
			}
			if err := cl.LoginJWT(ctx, resources.JWTAuthMount, appRole, jwt); err != nil {
				return "", fmt.Errorf("log in to step %s down: %w", active, err)
			}
			if err := cl.StepDown(ctx); err != nil {
				return "", fmt.Errorf("step %s down: %w", active, err)
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return "", fmt.Errorf("leadership did not move away from %s within 3 minutes", from)
}
