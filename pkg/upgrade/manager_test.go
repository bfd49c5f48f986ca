package upgrade

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

type recordingEnv struct{ events []string }

func (e *recordingEnv) Client() client.Client { return nil }
func (e *recordingEnv) OpenBao(context.Context, string) (openbao.Client, error) {
	return nil, nil
}
func (e *recordingEnv) Event(_, reason, _ string) { e.events = append(e.events, reason) }
func (e *recordingEnv) ApplyWorkload(context.Context) error {
	e.events = append(e.events, "(workload applied)")
	return nil
}

func noPersist(context.Context) error { return nil }

func cluster(version string) *openbaov1alpha1.OpenBaoCluster {
	return &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns"},
		Spec: openbaov1alpha1.OpenBaoClusterSpec{Version: version, Replicas: ptr.To[int32](3),
			Upgrade: openbaov1alpha1.UpgradeSpec{Strategy: waitingStrategyName}},
		Status: openbaov1alpha1.OpenBaoClusterStatus{CurrentVersion: "2.6.2", CurrentImage: "quay.io/openbao/openbao:2.6.2"},
	}
}

func TestNoDriftIsIdle(t *testing.T) {
	c := cluster("2.6.2")
	env := &recordingEnv{}
	res, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, env, noPersist)
	require.NoError(t, err)
	assert.Zero(t, res.RequeueAfter)
	assert.Nil(t, c.Status.Upgrade)
	assert.Empty(t, env.events)
}

func TestDowngradeIsBlockedUnlessAllowed(t *testing.T) {
	c := cluster("2.5.1")
	env := &recordingEnv{}
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, env, noPersist)
	require.NoError(t, err)
	cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.NotNil(t, cond)
	assert.Equal(t, openbaov1alpha1.ReasonDowngradeBlocked, cond.Reason)
	assert.Equal(t, []string{"UpgradeBlocked"}, env.events)

	c.Spec.Upgrade.AllowDowngrade = true
	_, err = testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, env, noPersist)
	require.NoError(t, err)
	cond = meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	assert.Equal(t, metav1.ConditionFalse, cond.Status, "allowed: no longer blocked")
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradePending, up.Reason, "then the pre-checks decide")
}

func TestFailedPreCheckNamesTheCheck(t *testing.T) {
	c := cluster("2.7.2")
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, &recordingEnv{}, noPersist)
	require.NoError(t, err)
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	require.NotNil(t, up)
	assert.Equal(t, metav1.ConditionFalse, up.Status)
	assert.Contains(t, up.Message, "pre-check AllPodsReady")
	assert.Contains(t, up.Message, "bao-0, bao-1, bao-2")
	assert.Nil(t, c.Status.Upgrade)
}

func TestRaftPreCheckTreatsUnknownAsUnhealthy(t *testing.T) {
	s := &State{Cluster: cluster("2.7.2"), Raft: &RaftState{RaftView: openbao.RaftView{Voters: map[string]bool{"bao-0": true, "bao-1": true, "bao-2": true}}}}
	assert.Contains(t, raftQuorumHealthy(s), "no verdict")
	s.Raft.AutopilotHealthy = ptr.To(true)
	assert.Empty(t, raftQuorumHealthy(s))
	delete(s.Raft.Voters, "bao-2")
	assert.Contains(t, raftQuorumHealthy(s), "2 voters, expected 3")
}

func TestPauseStopsTheStepDeadline(t *testing.T) {
	c := cluster("2.7.2")
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deadline := metav1.NewTime(start.Add(10 * time.Minute))
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2", Strategy: "NoSuchStrategy",
		Step: StepHalted, StepDeadline: &deadline,
	}
	Paused(c, start.Add(time.Minute))
	require.NotNil(t, c.Status.Upgrade.PausedAt)
	Paused(c, start.Add(2*time.Minute))
	assert.Equal(t, start.Add(time.Minute), c.Status.Upgrade.PausedAt.Time, "the first pause time is kept")

	// Unpaused an hour later: the deadline moves by the hour.
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: start.Add(61 * time.Minute)}, &recordingEnv{}, noPersist)
	require.NoError(t, err)
	assert.Nil(t, c.Status.Upgrade.PausedAt)
	assert.Equal(t, start.Add(70*time.Minute), c.Status.Upgrade.StepDeadline.Time)
}

func TestHaltedUpgradeTakesANewTarget(t *testing.T) {
	c := cluster("2.7.3")
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: waitingStrategyName, Step: StepHalted, LastError: "bao-2 did not become healthy", Revision: "r1",
		Rolling: &openbaov1alpha1.RollingStatus{Revision: "r1", PodsDone: []string{"bao-2"}},
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: openbaov1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: openbaov1alpha1.ReasonUpgradeFailed})
	env := &recordingEnv{}
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, env, noPersist)
	require.NoError(t, err)
	u := c.Status.Upgrade
	assert.Equal(t, "2.7.3", u.ToVersion)
	assert.Equal(t, StepStarted, u.Step)
	assert.NotEqual(t, "r1", u.Revision, "a new revision: the strategy's own fields start afresh")
	assert.Equal(t, "r1", u.Rolling.Revision, "the manager leaves the strategy's fields to the strategy")
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	assert.Equal(t, []string{"UpgradeRetargeted"}, env.events)
}

// waitingStrategy stands in for a real one: the manager's decisions do not depend on it.
type waitingStrategy struct{}

func (waitingStrategy) Plan(context.Context, *State) (Step, error) {
	return Step{Kind: StepWait, Name: "Waiting"}, nil
}
func (waitingStrategy) Apply(context.Context, *State, Step, Env) error    { return nil }
func (waitingStrategy) Workload(*openbaov1alpha1.OpenBaoCluster) Workload { return Workload{} }

const waitingStrategyName openbaov1alpha1.UpgradeStrategyType = "WaitingForTest"

// testManager knows only the stand-in strategies of these tests.
func testManager() *Manager {
	return &Manager{Strategies: Strategies{waitingStrategyName: waitingStrategy{}, abortableStrategyName: abortable{}}}
}

// The previous release kept the Rolling fields flat in status.upgrade: the manager moves
// them to status.upgrade.rolling before anything reads them, and clears the old ones.
func TestUpgradeStatusOfThePreviousReleaseIsConverted(t *testing.T) {
	c := cluster("2.7.2")
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: waitingStrategyName, Step: "Waiting", Revision: "r1",
		Partition: ptr.To[int32](1), CatchUpIndex: 42, PodsDone: []string{"bao-2"},
	}
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, &recordingEnv{}, noPersist)
	require.NoError(t, err)
	u := c.Status.Upgrade
	assert.Equal(t, &openbaov1alpha1.RollingStatus{Revision: "r1", Partition: ptr.To[int32](1), CatchUpIndex: 42, PodsDone: []string{"bao-2"}}, u.Rolling)
	assert.Nil(t, u.Partition)
	assert.Zero(t, u.CatchUpIndex)
	assert.Nil(t, u.PodsDone)
	assert.False(t, u.ConvertDeprecatedFields(), "converted once")
}

func halted() *openbaov1alpha1.OpenBaoCluster {
	c := cluster("2.7.2")
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
		FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
		Strategy: waitingStrategyName, Step: StepHalted, LastError: "bao-2 did not become healthy", Revision: "r1",
		Rolling: &openbaov1alpha1.RollingStatus{Revision: "r1", PodsDone: []string{"bao-2"}},
	}
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: openbaov1alpha1.ConditionDegraded, Status: metav1.ConditionTrue, Reason: openbaov1alpha1.ReasonUpgradeFailed})
	return c
}

func TestRetryTokenRetriesAHaltedUpgradeOnce(t *testing.T) {
	c := halted()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	env := &recordingEnv{}

	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
	assert.Equal(t, StepHalted, c.Status.Upgrade.Step, "no token: stays halted")
	assert.Empty(t, env.events)

	c.Spec.Upgrade.RetryToken = "1"
	_, err = testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
	u := c.Status.Upgrade
	assert.Equal(t, "Waiting", u.Step, "the strategy plans again in the same pass")
	assert.Equal(t, "r1", u.Revision, "same target, same revision: the strategy's progress is kept")
	assert.Equal(t, []string{"bao-2"}, u.Rolling.PodsDone)
	assert.Empty(t, u.LastError)
	require.NotNil(t, u.StepDeadline)
	assert.Equal(t, now.Add(DefaultStepTimeout), u.StepDeadline.Time, "a fresh deadline")
	assert.Equal(t, "1", c.Status.ObservedRetryToken)
	assert.True(t, meta.IsStatusConditionFalse(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	assert.Equal(t, openbaov1alpha1.ReasonUpgradeRunning, meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading).Reason)
	assert.Equal(t, []string{"UpgradeRetried"}, env.events)

	// It halts again: the same token does not retry a second time.
	testManager().halt(&State{Cluster: c, Now: now}, env, "still unhealthy.")
	env.events = nil
	_, err = testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
	assert.Equal(t, StepHalted, c.Status.Upgrade.Step)
	assert.Empty(t, env.events)

	// Cleared: nothing. A value used before, set again after clearing, is a new request.
	c.Spec.Upgrade.RetryToken = ""
	_, err = testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
	assert.Equal(t, StepHalted, c.Status.Upgrade.Step)
	c.Spec.Upgrade.RetryToken = "1"
	_, err = testManager().Reconcile(context.Background(), &State{Cluster: c, Now: now}, env, noPersist)
	require.NoError(t, err)
	assert.Equal(t, "Waiting", c.Status.Upgrade.Step)
	assert.Equal(t, []string{"UpgradeRetried"}, env.events)
}

func TestRetryTokenWithoutAHaltChangesNothing(t *testing.T) {
	c := cluster("2.6.2")
	c.Spec.Upgrade.RetryToken = "now"
	env := &recordingEnv{}
	_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, env, noPersist)
	require.NoError(t, err)
	assert.Nil(t, c.Status.Upgrade)
	assert.Equal(t, "now", c.Status.ObservedRetryToken, "recorded, so that a later halt is not retried by it")
	assert.Equal(t, []string{"UpgradeRetryIgnored"}, env.events)
}

// A new target set while an upgrade runs is announced as what will happen to it.
func TestANewTargetWhileRunningSaysWhatHappensToIt(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"2.7.3", "The upgrade to 2.7.2 finishes first; spec.version 2.7.3 is applied after it."},
		{"2.6.5", "The upgrade to 2.7.2 finishes first; spec.version 2.6.5 is lower than 2.7.2, so it is then refused as a downgrade."},
	} {
		c := cluster(tc.version)
		c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{
			FromVersion: "2.6.2", FromImage: "quay.io/openbao/openbao:2.6.2", ToVersion: "2.7.2", ToImage: "quay.io/openbao/openbao:2.7.2",
			Strategy: waitingStrategyName, Step: "Waiting", Revision: "r1",
		}
		_, err := testManager().Reconcile(context.Background(), &State{Cluster: c, Now: time.Now()}, &recordingEnv{}, noPersist)
		require.NoError(t, err)
		assert.Contains(t, c.Status.Upgrade.Message, tc.want)
		assert.Equal(t, "2.7.2", c.Status.Upgrade.ToVersion)
	}
}

// status.upgrade goes away when the upgrade completes; the Upgrading condition keeps where
// the pre-upgrade snapshot is, for the way back.
func TestCompletionKeepsThePreUpgradeSnapshotsLocation(t *testing.T) {
	c := cluster("2.7.2")
	done := metav1.Now()
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{FromVersion: "2.6.2", ToVersion: "2.7.2", Snapshot: &openbaov1alpha1.SnapshotStatus{
		Location: "s3://b/ns/bao/bao-pre-upgrade-2.6.2-r1.snap", SHA256: "abc", CompletionTime: &done,
	}}
	testManager().complete(&State{Cluster: c, Now: time.Now()}, &recordingEnv{})
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	require.NotNil(t, up)
	assert.Equal(t, "Upgraded from 2.6.2 to 2.7.2. The snapshot taken before it is at s3://b/ns/bao/bao-pre-upgrade-2.6.2-r1.snap (sha256 abc).", up.Message)
	assert.Nil(t, c.Status.Upgrade)
}
