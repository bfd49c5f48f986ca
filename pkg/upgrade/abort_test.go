package upgrade

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

const abortableStrategyName openbaov1alpha1.UpgradeStrategyType = "AbortableForTest"

// abortable stands in for a strategy that can undo its upgrade: it keeps its abort in
// status.upgrade.blueGreen.aborting, needs one pass to go back, and refuses to abort when
// refuse is set. Its forward steps are the ones the test puts into next.
type abortable struct{}

var (
	refuseAbort string
	nextStep    = Step{Kind: StepWait, Name: "Forward"}
)

func (abortable) Plan(_ context.Context, s *State) (Step, error) {
	bg := s.Upgrade().BlueGreen
	if bg != nil && bg.Aborting {
		if s.Upgrade().Step == "GoingBack" {
			return Step{Kind: StepAborted, Name: "Aborted"}, nil
		}
		return Step{Kind: StepWait, Name: "GoingBack", Message: "Going back."}, nil
	}
	return nextStep, nil
}
func (abortable) Apply(context.Context, *State, Step, Env) error    { return nil }
func (abortable) Workload(*openbaov1alpha1.OpenBaoCluster) Workload { return Workload{} }
func (abortable) Aborting(s *State) bool {
	bg := s.Upgrade().BlueGreen
	return bg != nil && bg.Aborting
}
func (abortable) Abort(s *State) string {
	if refuseAbort != "" {
		return refuseAbort
	}
	s.Upgrade().BlueGreen = &openbaov1alpha1.BlueGreenStatus{Aborting: true}
	return ""
}

func upgrading(version string) *openbaov1alpha1.OpenBaoCluster {
	c := cluster(version)
	start := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: abortableStrategyName, Step: "Forward", StartTime: &start,
	}
	return c
}

func reconcileAt(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, env *recordingEnv, now time.Time) {
	t.Helper()
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
}

func TestSettingTheVersionBackAbortsAnAborter(t *testing.T) {
	refuseAbort, nextStep = "", Step{Kind: StepWait, Name: "Forward"}
	c := upgrading("2.6.2")
	env := &recordingEnv{}
	now := time.Date(2026, 1, 1, 0, 5, 0, 0, time.UTC)

	reconcileAt(t, c, env, now)
	u := c.Status.Upgrade
	require.NotNil(t, u)
	assert.True(t, u.BlueGreen.Aborting, "the strategy recorded the abort")
	assert.Equal(t, "GoingBack", u.Step, "Plan drives the abort in the same pass")
	assert.Equal(t, []string{"UpgradeAborting"}, env.events)

	reconcileAt(t, c, env, now.Add(time.Second))
	assert.Nil(t, c.Status.Upgrade)
	assert.Equal(t, "2.6.2", c.Status.CurrentVersion, "the running version is unchanged")
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	require.NotNil(t, up)
	assert.Equal(t, metav1.ConditionFalse, up.Status)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradeAborted, up.Reason)
	assert.Contains(t, up.Message, "aborted 5m1s after it started")
	assert.Equal(t, []string{"UpgradeAborting", "UpgradeAborted"}, env.events)

	// Back where it started: nothing to do.
	reconcileAt(t, c, env, now.Add(2*time.Second))
	assert.Nil(t, c.Status.Upgrade)
	assert.Len(t, env.events, 2)
}

func TestARefusedAbortFinishesTheUpgradeFirst(t *testing.T) {
	refuseAbort, nextStep = "the old servers are gone", Step{Kind: StepWait, Name: "Forward", Message: "Going on."}
	defer func() { refuseAbort = "" }()
	c := upgrading("2.6.2")
	env := &recordingEnv{}
	reconcileAt(t, c, env, time.Now())
	u := c.Status.Upgrade
	require.NotNil(t, u)
	assert.Equal(t, "Forward", u.Step)
	assert.Contains(t, u.Message, "can no longer be undone (the old servers are gone)")
	assert.Contains(t, u.Message, "Going on.", "the step's own message follows")
	assert.Empty(t, env.events)
}

func TestAHaltedUpgradeCanBeAborted(t *testing.T) {
	refuseAbort, nextStep = "", Step{Kind: StepWait, Name: "Forward"}
	c := upgrading("2.6.2")
	c.Status.Upgrade.Step, c.Status.Upgrade.LastError = StepHalted, "the new servers do not start"
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: openbaov1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: openbaov1alpha1.ReasonUpgradeFailed})
	env := &recordingEnv{}
	reconcileAt(t, c, env, time.Now())
	u := c.Status.Upgrade
	require.NotNil(t, u)
	assert.Equal(t, "GoingBack", u.Step, "the halted upgrade runs again, backwards")
	assert.Empty(t, u.LastError)
	assert.NotNil(t, u.StepDeadline, "the abort's steps have deadlines of their own")
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	assert.Equal(t, "2.7.2", u.ToVersion, "the target stays: the strategy undoes the upgrade to it")
}

func TestAnotherTargetWaitsForTheAbort(t *testing.T) {
	refuseAbort, nextStep = "", Step{Kind: StepWait, Name: "Forward"}
	c := upgrading("2.6.2")
	env := &recordingEnv{}
	reconcileAt(t, c, env, time.Now())
	c.Spec.Version = "2.8.0"
	reconcileAt(t, c, env, time.Now())
	// The abort finished in this pass; its notice was shown on the way.
	assert.Nil(t, c.Status.Upgrade)
	assert.Equal(t, "2.6.2", c.Status.CurrentVersion)
	// The next pass starts the upgrade to 2.8.0 (here it waits for the pre-checks).
	reconcileAt(t, c, env, time.Now())
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradePending, up.Reason)
	assert.Contains(t, up.Message, "to 2.8.0")
}

func TestAbortNoticeWhileGoingBack(t *testing.T) {
	refuseAbort, nextStep = "", Step{Kind: StepWait, Name: "Forward"}
	c := upgrading("2.8.0")
	c.Status.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenStatus{Aborting: true}
	reconcileAt(t, c, &recordingEnv{}, time.Now())
	require.NotNil(t, c.Status.Upgrade)
	assert.Contains(t, c.Status.Upgrade.Message, "is being aborted; spec.version 2.8.0 is applied after the abort")
}

func TestStepsThatWaitForAPersonHaveNoDeadline(t *testing.T) {
	refuseAbort = ""
	defer func() { nextStep = Step{Kind: StepWait, Name: "Forward"} }()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := upgrading("2.7.2")

	nextStep = Step{Kind: StepWait, Name: "Confirm", WaitsForUser: true}
	env := &recordingEnv{}
	reconcileAt(t, c, env, start)
	assert.Nil(t, c.Status.Upgrade.StepDeadline)
	reconcileAt(t, c, env, start.Add(48*time.Hour))
	assert.Equal(t, "Confirm", c.Status.Upgrade.Step, "still waiting, not halted")

	nextStep = Step{Kind: StepWait, Name: "Verify", Timeout: time.Hour}
	reconcileAt(t, c, env, start.Add(49*time.Hour))
	require.NotNil(t, c.Status.Upgrade.StepDeadline)
	assert.Equal(t, start.Add(50*time.Hour), c.Status.Upgrade.StepDeadline.Time, "the step's own timeout")
	reconcileAt(t, c, env, start.Add(50*time.Hour+time.Second))
	assert.Equal(t, StepHalted, c.Status.Upgrade.Step)
	assert.Contains(t, c.Status.Upgrade.LastError, "did not finish within 1h0m0s")
}

// meddler writes what plan tells it to: its own part of status.upgrade, or more.
type meddler struct{ plan func(s *State) }

func (m meddler) Plan(_ context.Context, s *State) (Step, error) {
	m.plan(s)
	return Step{Kind: StepWait, Name: "Forward", Message: "Waiting."}, nil
}
func (meddler) Apply(context.Context, *State, Step, Env) error    { return nil }
func (meddler) Workload(*openbaov1alpha1.OpenBaoCluster) Workload { return Workload{} }

// A strategy's decision keeps what it wrote into its own part of status.upgrade; one that
// changes anything else of the cluster halts the upgrade, and nothing of it is kept.
func TestPlanKeepsOnlyTheStrategysOwnPart(t *testing.T) {
	const name openbaov1alpha1.UpgradeStrategyType = "MeddlerForTest"
	run := func(plan func(s *State)) *openbaov1alpha1.OpenBaoCluster {
		c := upgrading("2.7.2")
		c.Status.Upgrade.Strategy = name
		m := &Manager{Strategies: Strategies{name: meddler{plan: plan}}}
		_, err := m.Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, &recordingEnv{}, noPersist)
		require.NoError(t, err)
		return c
	}

	c := run(func(s *State) { s.Upgrade().Rolling = &openbaov1alpha1.RollingStatus{PodsDone: []string{"bao-2"}} })
	require.NotNil(t, c.Status.Upgrade.Rolling)
	assert.Equal(t, []string{"bao-2"}, c.Status.Upgrade.Rolling.PodsDone, "its own part is kept")
	assert.Equal(t, "Forward", c.Status.Upgrade.Step)

	for what, plan := range map[string]func(s *State){
		"status.statefulSet":     func(s *State) { s.Cluster.Status.StatefulSet = "bao-green" },
		"status.upgrade.step":    func(s *State) { s.Upgrade().Step = "Elsewhere" },
		"spec.version":           func(s *State) { s.Cluster.Spec.Version = "2.8.0" },
		"status.upgrade removed": func(s *State) { s.Cluster.Status.Upgrade = nil },
	} {
		c := run(func(s *State) {
			s.Upgrade().Rolling = &openbaov1alpha1.RollingStatus{PodsDone: []string{"bao-2"}}
			plan(s)
		})
		require.NotNil(t, c.Status.Upgrade, what)
		assert.Equal(t, StepHalted, c.Status.Upgrade.Step, what)
		assert.Contains(t, c.Status.Upgrade.LastError, "MeddlerForTest", what)
		assert.Nil(t, c.Status.Upgrade.Rolling, "%s: nothing of the decision is kept", what)
		assert.Empty(t, c.Status.StatefulSet, what)
		assert.Equal(t, "2.7.2", c.Spec.Version, what)
	}
}
