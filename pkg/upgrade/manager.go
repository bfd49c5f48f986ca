package upgrade

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/blang/semver/v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// Step names the manager itself records.
const (
	StepStarted = "Started"
	StepHalted  = "Halted"
)

// Pacing of the manager.
const (
	// DefaultStepTimeout bounds a step when spec.upgrade.stepTimeout is not set.
	DefaultStepTimeout = 10 * time.Minute
	// maxApplyAttempts of one step's side effect before the upgrade halts.
	maxApplyAttempts = 5
	requeueWaiting   = 2 * time.Second
	requeueActed     = 500 * time.Millisecond
	preCheckMinDelay = 5 * time.Second
	preCheckMaxDelay = 60 * time.Second
)

// Result tells the controller when to look again.
type Result struct {
	RequeueAfter time.Duration
}

// Manager detects version drift and drives the chosen strategy.
type Manager struct {
	// ImageRepository is used for spec.version when spec.image is empty.
	ImageRepository string
	// Strategies are the strategies this operator knows, by spec.upgrade.strategy name.
	Strategies Strategies
}

// PersistFunc writes the cluster's status now, so that intent is recorded before a side effect.
type PersistFunc func(ctx context.Context) error

// Reconcile runs one pass of the upgrade manager on a cluster that is not paused. It changes
// s.Cluster.Status (upgrade progress, Upgrading and Degraded conditions); the caller writes it.
func (m *Manager) Reconcile(ctx context.Context, s *State, env Env, persist PersistFunc) (Result, error) {
	c := s.Cluster
	desiredVersion := c.Spec.Version
	desiredImage := resources.DesiredImage(c, m.ImageRepository)
	u := c.Status.Upgrade
	if u.ConvertDeprecatedFields() {
		log.FromContext(ctx).Info("Moved the upgrade status written by a previous release to status.upgrade.rolling")
	}

	retry := takeRetryRequest(c)

	if u == nil {
		if retry {
			m.retryIgnored(ctx, s, env, "no upgrade is in progress")
		}
		if desiredImage == c.Status.CurrentImage && desiredVersion == c.Status.CurrentVersion {
			m.idle(s)
			return Result{}, nil
		}
		return m.start(ctx, s, env, desiredVersion, desiredImage)
	}

	if u.PausedAt != nil {
		// Deadlines do not run while the cluster is paused.
		if u.StepDeadline != nil {
			u.StepDeadline = &metav1.Time{Time: u.StepDeadline.Add(s.Now.Sub(u.PausedAt.Time))}
		}
		u.PausedAt = nil
	}

	// notice says why a changed target is not applied yet; it prefixes the step's message.
	notice := ""
	if desiredImage != u.ToImage {
		r, done, why := m.retarget(ctx, s, env, desiredVersion, desiredImage)
		if done {
			if retry && u.Step == StepHalted {
				m.retryIgnored(ctx, s, env, fmt.Sprintf("spec.version %s is not the halted upgrade's target %s and cannot be taken (see the Degraded condition)", desiredVersion, u.ToVersion))
			}
			return r, nil
		}
		notice = why
	}
	switch {
	case u.Step == StepHalted && retry:
		m.retry(ctx, s, env)
	case u.Step == StepHalted:
		// Halted: nothing moves until the user retries or changes the target (see the README).
		return Result{}, nil
	case retry:
		m.retryIgnored(ctx, s, env, fmt.Sprintf("the upgrade to %s is not halted", u.ToVersion))
	}

	strategy, ok := m.Strategies[u.Strategy]
	if !ok {
		m.halt(s, env, fmt.Sprintf("The upgrade strategy %q is not known to this operator (known: %v).", u.Strategy, m.Strategies.Names()))
		return Result{}, nil
	}
	step, err := decide(s, u.Strategy, func(view *State) (Step, error) { return strategy.Plan(ctx, view) })
	if errors.Is(err, errOutsideItsPart) {
		m.halt(s, env, err.Error())
		return Result{}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("plan %s upgrade: %w", u.Strategy, err)
	}
	m.record(s, step)
	if notice != "" {
		u.Message = notice + " " + u.Message
	}
	return m.execute(ctx, s, strategy, step, env, persist)
}

// execute carries out the step a strategy decided: completion, abort, halt, a wait (halted
// when its deadline has passed), or a side effect after the intent is persisted (halted
// after maxApplyAttempts failures).
func (m *Manager) execute(ctx context.Context, s *State, strategy Strategy, step Step, env Env, persist PersistFunc) (Result, error) {
	c, u := s.Cluster, s.Cluster.Status.Upgrade
	switch step.Kind {
	case StepComplete:
		m.complete(s, env)
		return Result{}, nil
	case StepAborted:
		m.aborted(s, env)
		return Result{}, nil
	case StepHalt:
		m.halt(s, env, step.Message)
		return Result{}, nil
	case StepWait:
		if !step.WaitsForUser && u.StepDeadline != nil && s.Now.After(u.StepDeadline.Time) {
			took := StepTimeout(c)
			if u.StepStartTime != nil {
				took = u.StepDeadline.Sub(u.StepStartTime.Time)
			}
			m.halt(s, env, fmt.Sprintf("Step %s%s did not finish within %s: %s", step.Name, onPod(step.Pod), took, step.Message))
			return Result{}, nil
		}
		if step.PollAfter > 0 {
			return Result{RequeueAfter: step.PollAfter}, nil
		}
		return Result{RequeueAfter: requeueWaiting}, nil
	case StepAct:
		if err := persist(ctx); err != nil {
			return Result{}, fmt.Errorf("record upgrade intent: %w", err)
		}
		log.FromContext(ctx).Info("Upgrade step", "step", step.Name, "pod", step.Pod, "message", step.Message)
		if err := strategy.Apply(ctx, s, step, env); err != nil {
			u.Attempts++
			u.LastError = err.Error()
			if u.Attempts >= maxApplyAttempts {
				m.halt(s, env, fmt.Sprintf("Step %s%s failed %d times: %v", step.Name, onPod(step.Pod), u.Attempts, err))
				return Result{}, nil
			}
			return Result{RequeueAfter: backoff(int(u.Attempts))}, nil
		}
		return Result{RequeueAfter: requeueActed}, nil
	default:
		return Result{}, fmt.Errorf("strategy %s returned an unknown step kind %q", u.Strategy, step.Kind)
	}
}

// Workload is what the controller applies: the active StatefulSet on the running image,
// serving the clients, unless the strategy of an upgrade in flight declares otherwise. The
// controller never asks which strategy runs.
func (m *Manager) Workload(c *openbaov1alpha1.OpenBaoCluster) Workload {
	active := resources.ActiveStatefulSet(c)
	idle := Workload{Sets: []resources.ServerSet{{Name: active, Image: c.Status.CurrentImage}}, Serving: active}
	u := c.Status.Upgrade
	if u == nil || u.ToImage == "" {
		return idle
	}
	strategy, ok := m.Strategies[u.Strategy]
	if !ok {
		return idle
	}
	return strategy.Workload(c)
}

// errOutsideItsPart: a strategy's decision changed what the manager owns. The upgrade halts
// with it (a defect of the operator, to be reported), and nothing of the decision is kept.
var errOutsideItsPart = errors.New("the upgrade strategy changed what it does not own")

// decide runs one of a strategy's decisions (Plan, Abort) on a copy of the cluster and
// keeps, of what the decision wrote, only the strategy's own part of status.upgrade: the
// pre-upgrade snapshot's record and status.upgrade.rolling or .blueGreen. A decision that
// changed anything else of the cluster is a defect of the strategy: it is reported as an
// error and nothing of it is kept.
func decide[T any](s *State, strategy openbaov1alpha1.UpgradeStrategyType, f func(view *State) (T, error)) (T, error) {
	view := *s
	view.Cluster = s.Cluster.DeepCopy()
	out, err := f(&view)
	if err != nil {
		return out, err
	}
	planned := view.Cluster.Status.Upgrade
	if planned == nil {
		var zero T
		return zero, fmt.Errorf("%w: strategy %s removed status.upgrade", errOutsideItsPart, strategy)
	}
	u := s.Cluster.Status.Upgrade
	rest := view.Cluster.DeepCopy()
	rest.Status.Upgrade.Snapshot, rest.Status.Upgrade.Rolling, rest.Status.Upgrade.BlueGreen = u.Snapshot, u.Rolling, u.BlueGreen
	if !equality.Semantic.DeepEqual(s.Cluster, rest) {
		var zero T
		return zero, fmt.Errorf("%w: strategy %s changed the cluster outside its part of status.upgrade", errOutsideItsPart, strategy)
	}
	u.Snapshot, u.Rolling, u.BlueGreen = planned.Snapshot, planned.Rolling, planned.BlueGreen
	return out, nil
}

// Paused records when a cluster with an upgrade in flight was paused, so that the step's
// deadline is moved forward by the pause when it resumes.
func Paused(c *openbaov1alpha1.OpenBaoCluster, now time.Time) {
	if u := c.Status.Upgrade; u != nil && u.PausedAt == nil {
		u.PausedAt = &metav1.Time{Time: now}
	}
}

func onPod(pod string) string {
	if pod == "" {
		return ""
	}
	return " on " + pod
}

// idle: no drift. Clears what an earlier blocked attempt reported.
func (m *Manager) idle(s *State) {
	c := s.Cluster
	if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading); cond == nil ||
		cond.Reason == openbaov1alpha1.ReasonUpgradePending || cond.Reason == openbaov1alpha1.ReasonDowngradeBlocked {
		setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonNoUpgrade, "No upgrade is in progress.")
	}
	clearDegraded(c, openbaov1alpha1.ReasonDowngradeBlocked)
}

// start validates the drift, runs the pre-checks and, when they pass, records the upgrade.
func (m *Manager) start(ctx context.Context, s *State, env Env, version, image string) (Result, error) {
	c := s.Cluster
	if msg := m.validateTarget(c, c.Status.CurrentVersion, version); msg != "" {
		if setCondition(c, openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonDowngradeBlocked, msg) {
			env.Event(corev1.EventTypeWarning, "UpgradeBlocked", msg)
		}
		setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonDowngradeBlocked, msg)
		return Result{}, nil
	}
	clearDegraded(c, openbaov1alpha1.ReasonDowngradeBlocked)

	strategy := c.Spec.Upgrade.Strategy
	if strategy == "" {
		strategy = openbaov1alpha1.RollingUpgrade
	}
	if _, ok := m.Strategies[strategy]; !ok {
		msg := fmt.Sprintf("The upgrade strategy %q is not known to this operator (known: %v). Set spec.upgrade.strategy.", strategy, m.Strategies.Names())
		setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonUpgradePending, msg)
		return Result{}, nil
	}

	if name, reason := RunPreChecks(s); name != "" {
		msg := fmt.Sprintf("The upgrade from %s to %s waits for pre-check %s: %s", c.Status.CurrentVersion, version, name, reason)
		changed := setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonUpgradePending, msg)
		if changed {
			log.FromContext(ctx).Info("Upgrade pre-check failed", "check", name, "reason", reason)
		}
		return Result{RequeueAfter: preCheckBackoff(c, s.Now)}, nil
	}

	now := metav1.NewTime(s.Now)
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: c.Status.CurrentVersion,
		ToVersion:   version,
		FromImage:   c.Status.CurrentImage,
		ToImage:     image,
		Strategy:    strategy,
		Revision:    revision(string(c.UID), c.Status.CurrentImage, image),
		Step:        StepStarted,
		StartTime:   &now,
		Message:     fmt.Sprintf("Upgrading from %s to %s with the %s strategy.", c.Status.CurrentVersion, version, strategy),
	}
	msg := fmt.Sprintf("Upgrading from %s to %s with the %s strategy.", c.Status.CurrentVersion, version, strategy)
	setCondition(c, openbaov1alpha1.ConditionUpgrading, true, openbaov1alpha1.ReasonUpgradeRunning, msg)
	env.Event(corev1.EventTypeNormal, "UpgradeStarted", msg)
	log.FromContext(ctx).Info("Upgrade started", "fromVersion", c.Status.CurrentVersion, "toVersion", version, "strategy", strategy)
	return Result{RequeueAfter: requeueActed}, nil
}

// validateTarget returns why a target version may not be used, or "".
func (m *Manager) validateTarget(c *openbaov1alpha1.OpenBaoCluster, from, to string) string {
	// The controller rejects a spec.version that is not a semantic version before the
	// manager runs; a from version that is not one cannot be compared with.
	target, err1 := semver.ParseTolerant(to)
	current, err2 := semver.ParseTolerant(from)
	if err1 != nil || err2 != nil {
		return ""
	}
	if target.LT(current) && !c.Spec.Upgrade.AllowDowngrade {
		return fmt.Sprintf("spec.version %s is lower than the running version %s: downgrades are blocked because an older release may not read data written by a newer one. Set spec.version back to %s, or set spec.upgrade.allowDowngrade to true if you are sure.", to, from, from)
	}
	return ""
}

// retarget handles a spec target that differs from the upgrade in flight. A strategy that
// can undo its upgrade (Aborter) aborts when the target is set back to where the upgrade
// started. Otherwise setting the target back goes back when that is safe for the data (see
// goingBackUnsafe), running or halted; a halted upgrade also takes any other valid target
// (a fixed image), and a running one finishes first. It returns done=true when the pass
// should end, and otherwise a notice for the user when the new target waits.
func (m *Manager) retarget(ctx context.Context, s *State, env Env, version, image string) (Result, bool, string) {
	c := s.Cluster
	u := c.Status.Upgrade
	back := version == u.FromVersion && image == u.FromImage
	if strategy, ok := m.Strategies[u.Strategy]; ok {
		if aborter, ok := strategy.(Aborter); ok {
			switch {
			case aborter.Aborting(s):
				if !back {
					return Result{}, false, fmt.Sprintf("The upgrade to %s is being aborted; spec.version %s is applied after the abort.", u.ToVersion, version)
				}
				return Result{}, false, ""
			case back:
				why, err := decide(s, u.Strategy, func(view *State) (string, error) { return aborter.Abort(view), nil })
				if err != nil {
					m.halt(s, env, err.Error())
					return Result{}, true, ""
				}
				if why == "" {
					m.abort(s, env)
					return Result{}, false, ""
				}
				if u.Step != StepHalted {
					return Result{}, false, fmt.Sprintf("The upgrade to %s can no longer be undone (%s); it finishes first, and spec.version %s is then refused as a downgrade: to return to %s, restore the pre-upgrade snapshot on a cluster of that release.", u.ToVersion, why, version, version)
				}
			}
		}
	}
	if back {
		unsafe, known := m.goingBackUnsafe(ctx, s, env)
		switch {
		case !known:
			u.Message = fmt.Sprintf("spec.version is %s again: no server moves until the operator has read the cluster's version history from the active node, which tells whether %s has served as the active node (%s).", version, u.ToVersion, unsafe)
			return Result{RequeueAfter: requeueWaiting}, true, ""
		case unsafe != "" && u.Step == StepHalted:
			msg := fmt.Sprintf("spec.version %s cannot be taken back: %s. Set spec.version to %s (or another target that works), or restore the pre-upgrade snapshot on a cluster of %s.", version, unsafe, u.ToVersion, version)
			setCondition(c, openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonUpgradeFailed, u.LastError+" "+msg)
			return Result{}, true, ""
		case unsafe != "":
			return Result{}, false, fmt.Sprintf("spec.version %s is not taken: %s. The upgrade to %s finishes, and %s is then refused as a downgrade; to return to %s, restore the pre-upgrade snapshot on a cluster of that release.", version, unsafe, u.ToVersion, version, version)
		}
		msg := fmt.Sprintf("Going back to %s: no server on %s has been the active node, so every server holds only data that %s wrote; the servers already on %s are moved back one at a time.", version, u.ToVersion, version, u.ToVersion)
		return m.takeTarget(s, env, version, image, "UpgradeGoingBack", msg), true, ""
	}
	if u.Step != StepHalted {
		if why := m.validateTarget(c, u.ToVersion, version); why != "" {
			return Result{}, false, fmt.Sprintf("The upgrade to %s finishes first; spec.version %s is lower than %s, so it is then refused as a downgrade.", u.ToVersion, version, u.ToVersion)
		}
		return Result{}, false, fmt.Sprintf("The upgrade to %s finishes first; spec.version %s is applied after it.", u.ToVersion, version)
	}
	if msg := m.validateTarget(c, u.FromVersion, version); msg != "" {
		setCondition(c, openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonUpgradeFailed, u.LastError+" "+msg)
		return Result{}, true, ""
	}
	return m.takeTarget(s, env, version, image, "UpgradeRetargeted", fmt.Sprintf("The halted upgrade to %s now targets %s.", u.ToVersion, version)), true, ""
}

// takeTarget makes the upgrade in flight target version and image from where it stands: a
// new revision, so the strategy starts its own bookkeeping afresh from the live objects.
func (m *Manager) takeTarget(s *State, env Env, version, image, reason, msg string) Result {
	c := s.Cluster
	u := c.Status.Upgrade
	u.ToVersion, u.ToImage = version, image
	u.Revision = revision(string(c.UID), u.FromImage, image)
	u.Step, u.LastError, u.Attempts = StepStarted, "", 0
	u.StepStartTime, u.StepDeadline = nil, nil
	u.Message = msg
	clearDegraded(c, openbaov1alpha1.ReasonUpgradeFailed)
	setCondition(c, openbaov1alpha1.ConditionUpgrading, true, openbaov1alpha1.ReasonUpgradeRunning, msg)
	env.Event(corev1.EventTypeNormal, reason, msg)
	return Result{RequeueAfter: requeueActed}
}

// goingBackUnsafe says why setting the target back to the version the upgrade started
// from would put the cluster's data at risk, or "". OpenBao upgrades its stored data when a
// server of a new release becomes the active node (measured: 2.6.2 does not start on data
// that 2.7.2 wrote), and its upgrade guide forbids moving leadership from a newer release to
// an older one. A server of the target release that only ever followed has replicated what
// the old release wrote. So going back to an older release is refused once a server of the
// target has been the active node in this upgrade: observed now, or listed in
// sys/version-history, which OpenBao writes when a server of a release that has not run
// before completes becoming active. Going back to the same or a newer release (undoing a
// downgrade or an image change) moves leadership, if at all, towards the newer release and
// is always taken. known is false when the history could not be read; the reason is then
// in unsafe.
func (m *Manager) goingBackUnsafe(ctx context.Context, s *State, env Env) (unsafe string, known bool) {
	u := s.Upgrade()
	from, err1 := semver.ParseTolerant(u.FromVersion)
	to, err2 := semver.ParseTolerant(u.ToVersion)
	if err1 != nil || err2 != nil || !to.GT(from) {
		return "", true
	}
	if s.Leader != "" && SameVersion(s.Servers[s.Leader].Version, u.ToVersion) {
		return fmt.Sprintf("%s, on %s, is the active node and may have written data that %s cannot read, and leadership must never move from %s back to %s", s.Leader, u.ToVersion, u.FromVersion, u.ToVersion, u.FromVersion), true
	}
	if s.Leader == "" {
		return "no server is the active node", false
	}
	cl, err := env.OpenBao(ctx, s.Leader)
	if err != nil {
		return fmt.Sprintf("log in to %s: %v", s.Leader, err), false
	}
	history, err := cl.VersionHistory(ctx)
	if err != nil {
		return fmt.Sprintf("read the version history from %s: %v", s.Leader, err), false
	}
	for _, h := range history {
		if SameVersion(h.Version, u.ToVersion) && (u.StartTime == nil || !h.InstalledAt.Before(u.StartTime.Time)) {
			return fmt.Sprintf("a server on %s became the active node at %s (sys/version-history) and may have written data that %s cannot read", u.ToVersion, h.InstalledAt.UTC().Format(time.RFC3339), u.FromVersion), true
		}
	}
	return "", true
}

// takeRetryRequest records spec.upgrade.retryToken as seen and says whether it is a new,
// non-empty value: a request to retry a halted upgrade. Each value acts once; clearing the
// field requests nothing.
func takeRetryRequest(c *openbaov1alpha1.OpenBaoCluster) bool {
	token := c.Spec.Upgrade.RetryToken
	if token == c.Status.ObservedRetryToken {
		return false
	}
	c.Status.ObservedRetryToken = token
	return token != ""
}

// retry clears the halt of the upgrade in flight on the same target: the strategy plans
// the failed step again in this pass, with a fresh deadline and attempts. Its own progress
// (same revision) is kept, so servers already done are not touched again.
func (m *Manager) retry(ctx context.Context, s *State, env Env) {
	c := s.Cluster
	u := c.Status.Upgrade
	msg := fmt.Sprintf("Retrying the halted upgrade to %s (spec.upgrade.retryToken %q); it had stopped with: %s", u.ToVersion, c.Spec.Upgrade.RetryToken, u.LastError)
	log.FromContext(ctx).Info("Retrying a halted upgrade", "toVersion", u.ToVersion, "retryToken", c.Spec.Upgrade.RetryToken)
	u.Step, u.LastError, u.Attempts = StepStarted, "", 0
	u.StepStartTime, u.StepDeadline = nil, nil
	u.Message = msg
	clearDegraded(c, openbaov1alpha1.ReasonUpgradeFailed)
	setCondition(c, openbaov1alpha1.ConditionUpgrading, true, openbaov1alpha1.ReasonUpgradeRunning, msg)
	env.Event(corev1.EventTypeNormal, "UpgradeRetried", msg)
}

// retryIgnored tells the user that a new spec.upgrade.retryToken had nothing to retry.
func (m *Manager) retryIgnored(ctx context.Context, s *State, env Env, why string) {
	msg := fmt.Sprintf("spec.upgrade.retryToken %q changed, but %s: nothing to retry. The value is recorded and changes nothing.", s.Cluster.Spec.Upgrade.RetryToken, why)
	log.FromContext(ctx).Info("Retry request ignored", "reason", why)
	env.Event(corev1.EventTypeNormal, "UpgradeRetryIgnored", msg)
}

// abort records that the strategy undoes the upgrade: a halted upgrade runs again, with
// fresh deadlines, and Plan drives the way back in this same pass.
func (m *Manager) abort(s *State, env Env) {
	c := s.Cluster
	u := c.Status.Upgrade
	msg := fmt.Sprintf("Aborting the upgrade to %s: spec.version is %s again, so the cluster returns to it.", u.ToVersion, u.FromVersion)
	u.Step, u.LastError, u.Attempts = StepStarted, "", 0
	u.StepStartTime, u.StepDeadline = nil, nil
	u.Message = msg
	clearDegraded(c, openbaov1alpha1.ReasonUpgradeFailed)
	setCondition(c, openbaov1alpha1.ConditionUpgrading, true, openbaov1alpha1.ReasonUpgradeRunning, msg)
	env.Event(corev1.EventTypeNormal, "UpgradeAborting", msg)
}

// aborted records that an abort took the cluster back: the running version is unchanged.
func (m *Manager) aborted(s *State, env Env) {
	c := s.Cluster
	u := c.Status.Upgrade
	took := ""
	if u.StartTime != nil {
		took = fmt.Sprintf(" %s after it started", s.Now.Sub(u.StartTime.Time).Round(time.Second))
	}
	msg := fmt.Sprintf("The upgrade to %s was aborted%s; the cluster runs %s as before.", u.ToVersion, took, u.FromVersion)
	c.Status.Upgrade = nil
	setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonUpgradeAborted, msg)
	clearDegraded(c, openbaov1alpha1.ReasonUpgradeFailed)
	env.Event(corev1.EventTypeNormal, "UpgradeAborted", msg)
}

// record keeps the step's bookkeeping: a new step gets a fresh start time and deadline (none
// for a step that waits for a person).
func (m *Manager) record(s *State, step Step) {
	u := s.Cluster.Status.Upgrade
	if step.NewStep || step.Name != u.Step || step.Pod != u.CurrentPod || u.StepStartTime == nil {
		start := metav1.NewTime(s.Now)
		timeout := StepTimeout(s.Cluster)
		if step.Timeout > 0 {
			timeout = step.Timeout
		}
		deadline := metav1.NewTime(s.Now.Add(timeout))
		u.StepStartTime, u.StepDeadline = &start, &deadline
		if step.WaitsForUser {
			u.StepDeadline = nil
		}
		u.Attempts, u.LastError = 0, ""
	}
	u.Step, u.CurrentPod = step.Name, step.Pod
	if step.Message != "" {
		u.Message = step.Message
	}
}

// StepTimeout bounds each step of an upgrade of c: spec.upgrade.stepTimeout or the default.
func StepTimeout(c *openbaov1alpha1.OpenBaoCluster) time.Duration {
	if t := c.Spec.Upgrade.StepTimeout; t != nil && t.Duration > 0 {
		return t.Duration
	}
	return DefaultStepTimeout
}

// complete records the new version and clears the upgrade.
func (m *Manager) complete(s *State, env Env) {
	c := s.Cluster
	u := c.Status.Upgrade
	took := ""
	if u.StartTime != nil {
		took = fmt.Sprintf(" in %s", s.Now.Sub(u.StartTime.Time).Round(time.Second))
	}
	msg := fmt.Sprintf("Upgraded from %s to %s%s.", u.FromVersion, u.ToVersion, took)
	if u.ToVersion == u.FromVersion && u.ToImage == u.FromImage {
		msg = fmt.Sprintf("Back on %s%s: every server runs it again.", u.FromVersion, took)
	}
	if snap := u.Snapshot; snap != nil && snap.CompletionTime != nil && snap.Location != "" {
		// status.upgrade goes away now: the way back must stay readable.
		msg += fmt.Sprintf(" The snapshot taken before it is at %s", snap.Location)
		if snap.SHA256 != "" {
			msg += fmt.Sprintf(" (sha256 %s)", snap.SHA256)
		}
		msg += "."
	}
	c.Status.CurrentVersion, c.Status.CurrentImage = u.ToVersion, u.ToImage
	c.Status.Upgrade = nil
	setCondition(c, openbaov1alpha1.ConditionUpgrading, false, openbaov1alpha1.ReasonUpgradeCompleted, msg)
	clearDegraded(c, openbaov1alpha1.ReasonUpgradeFailed)
	env.Event(corev1.EventTypeNormal, "UpgradeCompleted", msg)
}

// halt stops the upgrade where it is: no further pod is touched, nothing is rolled back.
func (m *Manager) halt(s *State, env Env, reason string) {
	c := s.Cluster
	u := c.Status.Upgrade
	u.Step = StepHalted
	u.LastError = reason
	msg := fmt.Sprintf("The upgrade to %s is halted: %s No further server is touched and nothing is rolled back. Fix the cause, then set spec.upgrade.retryToken to a new value to retry the step, or set spec.version (or spec.image) to a target that works, or back to %s; see \"Failure and recovering from a halted upgrade\" in the README.", u.ToVersion, reason, u.FromVersion)
	u.Message = msg
	setCondition(c, openbaov1alpha1.ConditionDegraded, true, openbaov1alpha1.ReasonUpgradeFailed, msg)
	setCondition(c, openbaov1alpha1.ConditionUpgrading, true, openbaov1alpha1.ReasonUpgradeHalted, msg)
	env.Event(corev1.EventTypeWarning, "UpgradeHalted", msg)
}

// setCondition sets a condition and says whether its status or reason changed.
func setCondition(c *openbaov1alpha1.OpenBaoCluster, t string, status bool, reason, msg string) bool {
	before := meta.FindStatusCondition(c.Status.Conditions, t)
	changed := before == nil || (before.Status == metav1.ConditionTrue) != status || before.Reason != reason
	s := metav1.ConditionFalse
	if status {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: c.Generation})
	return changed
}

// clearDegraded sets Degraded=False when it is True for reason.
func clearDegraded(c *openbaov1alpha1.OpenBaoCluster, reason string) {
	if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded); cond != nil && cond.Reason == reason {
		setCondition(c, openbaov1alpha1.ConditionDegraded, false, openbaov1alpha1.ReasonAsExpected, "Nothing needs attention.")
	}
}

// preCheckBackoff grows with how long the pre-checks have been failing.
func preCheckBackoff(c *openbaov1alpha1.OpenBaoCluster, now time.Time) time.Duration {
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	if cond == nil || cond.Reason != openbaov1alpha1.ReasonUpgradePending {
		return preCheckMinDelay
	}
	d := now.Sub(cond.LastTransitionTime.Time) / 4
	return min(max(d, preCheckMinDelay), preCheckMaxDelay)
}

func backoff(attempt int) time.Duration {
	d := time.Second << min(attempt, 5)
	return min(d, 30*time.Second)
}

// revision is a short, deterministic name for one upgrade, used in the names of its Jobs.
func revision(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:8]
}
