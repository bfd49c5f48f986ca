package restore

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

const sum = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func testCluster() *openbaov1alpha1.OpenBaoCluster {
	return &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "cluster-uid"},
		Spec:       openbaov1alpha1.OpenBaoClusterSpec{Version: "2.6.2", Replicas: ptr.To[int32](3)},
		Status: openbaov1alpha1.OpenBaoClusterStatus{
			Initialized: true, Leader: "bao-0",
			Backup: &openbaov1alpha1.BackupStatus{LastSuccessful: &openbaov1alpha1.BackupRecord{
				Location: "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap", SHA256: sum,
			}},
		},
	}
}

func testRestore() *openbaov1alpha1.OpenBaoRestore {
	return &openbaov1alpha1.OpenBaoRestore{
		ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: "ns", UID: "restore-uid", Generation: 1},
		Spec: openbaov1alpha1.OpenBaoRestoreSpec{
			Cluster: openbaov1alpha1.RestoreClusterReference{Name: "bao"},
			Source:  openbaov1alpha1.RestoreSource{Backup: "latest"},
		},
	}
}

func reason(r *openbaov1alpha1.OpenBaoRestore) string {
	c := meta.FindStatusCondition(r.Status.Conditions, openbaov1alpha1.ConditionRestored)
	if c == nil {
		return ""
	}
	return c.Reason
}

// Each refusal ends the restore as Refused, with its reason, before anything is changed
// (the only step is Finish: no lock, no Job).
func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster
		reason string
	}{
		{"cluster missing", func(*openbaov1alpha1.OpenBaoCluster, *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			return nil
		}, openbaov1alpha1.ReasonRestoreClusterNotFound},
		{"upgrade in flight", func(c *openbaov1alpha1.OpenBaoCluster, _ *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{FromVersion: "2.6.2", ToVersion: "2.7.2"}
			return c
		}, openbaov1alpha1.ReasonRestoreUpgradeInProgress},
		{"another restore", func(c *openbaov1alpha1.OpenBaoCluster, _ *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			c.Status.Restore = &openbaov1alpha1.RestoreLock{Name: "other", UID: "other-uid"}
			return c
		}, openbaov1alpha1.ReasonRestoreAnotherRestore},
		{"scale-down in flight", func(c *openbaov1alpha1.OpenBaoCluster, _ *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			c.Status.ScaleDown = &openbaov1alpha1.ScaleDownStatus{FromReplicas: 5, ToReplicas: 3}
			return c
		}, openbaov1alpha1.ReasonRestoreScaleDownInProgress},
		{"not initialized", func(c *openbaov1alpha1.OpenBaoCluster, _ *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			c.Status.Initialized = false
			return c
		}, openbaov1alpha1.ReasonRestoreClusterNotReady},
		{"no backup recorded", func(c *openbaov1alpha1.OpenBaoCluster, _ *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			c.Status.Backup = nil
			return c
		}, openbaov1alpha1.ReasonRestoreUnknownSource},
		{"backup not the recorded one", func(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			r.Spec.Source.Backup = "pvc://bao-snapshots/backups/older.snap"
			return c
		}, openbaov1alpha1.ReasonRestoreUnknownSource},
		{"s3 location without settings", func(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			r.Spec.Source = openbaov1alpha1.RestoreSource{Location: "s3://bucket/key.snap"}
			return c
		}, openbaov1alpha1.ReasonRestoreUnknownSource},
		{"checksum differs from the backup's", func(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) *openbaov1alpha1.OpenBaoCluster {
			r.Spec.Source.SHA256 = strings.Repeat("f", 64)
			return c
		}, openbaov1alpha1.ReasonRestoreUnknownSource},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRestore()
			c := tt.mutate(testCluster(), r)
			step := Plan(&State{Restore: r, Cluster: c, Now: time.Unix(100, 0)})
			assert.Equal(t, Finish, step.Kind)
			assert.Equal(t, corev1.EventTypeWarning, step.EventType)
			assert.Equal(t, openbaov1alpha1.RestoreRefused, r.Status.Phase)
			assert.Equal(t, tt.reason, reason(r))
			assert.Contains(t, r.Status.Message, "Nothing was changed")
			assert.Empty(t, r.Status.JobName, "no Job was named")
			assert.Equal(t, Idle, Plan(&State{Restore: r, Cluster: c}).Kind, "a refused restore stays refused")
		})
	}
}

func TestPausedOrBusyClusterWaits(t *testing.T) {
	for name, mutate := range map[string]func(c *openbaov1alpha1.OpenBaoCluster){
		"paused": func(c *openbaov1alpha1.OpenBaoCluster) { c.Spec.Paused = true },
		"backup running": func(c *openbaov1alpha1.OpenBaoCluster) {
			c.Status.Backup.Running = &openbaov1alpha1.BackupRecord{JobName: "bao-backup-1"}
		},
		"no leader": func(c *openbaov1alpha1.OpenBaoCluster) { c.Status.Leader = "" },
	} {
		t.Run(name, func(t *testing.T) {
			c, r := testCluster(), testRestore()
			mutate(c)
			assert.Equal(t, Record, Plan(&State{Restore: r, Cluster: c}).Kind)
			assert.Equal(t, openbaov1alpha1.RestorePending, r.Status.Phase)
			assert.Equal(t, openbaov1alpha1.ReasonRestoreWaiting, reason(r))
			assert.Equal(t, Wait, Plan(&State{Restore: r, Cluster: c}).Kind, "the same wait is not written twice")
		})
	}
}

// world simulates the cluster the controller acts on: pods that come back after a
// deletion, Jobs that complete, leadership that moves on a step-down or when the active
// server stops.
type world struct {
	t        *testing.T
	cluster  *openbaov1alpha1.OpenBaoCluster
	restore  *openbaov1alpha1.OpenBaoRestore // as persisted
	pods     map[string]*corev1.Pod
	down     map[string]int // ticks until a deleted pod is back
	leader   string
	jobs     map[string]*batchv1.Job
	result   Result
	index    uint64
	uidSeq   int
	deleted  []string
	created  []string
	order    []string // trace
	maxDown  int
	leaderAt map[string]string // who led when each pod was deleted
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, cluster: testCluster(), restore: testRestore(), pods: map[string]*corev1.Pod{}, down: map[string]int{},
		leader: "bao-0", jobs: map[string]*batchv1.Job{}, index: 100, leaderAt: map[string]string{},
		result: Result{Location: "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap", Size: 4096, SHA256: sum}}
	for i := range 3 {
		name := fmt.Sprintf("bao-%d", i)
		w.pods[name] = w.newPod(name)
	}
	return w
}

func (w *world) newPod(name string) *corev1.Pod {
	w.uidSeq++
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(fmt.Sprintf("uid-%d", w.uidSeq))},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

func (w *world) state() *State {
	s := &State{Restore: w.restore.DeepCopy(), Cluster: w.cluster.DeepCopy(), Pods: map[string]*corev1.Pod{},
		Servers: map[string]upgrade.ServerState{}, Leader: w.leader, Now: time.Unix(1000, 0),
		Raft: &upgrade.RaftState{RaftView: openbao.RaftView{Voters: map[string]bool{}}, LeaderCommittedIndex: w.index}}
	for n, p := range w.pods {
		s.Pods[n] = p.DeepCopy()
		s.Servers[n] = upgrade.ServerState{Reachable: true, Initialized: true, Active: n == w.leader, AppliedIndex: w.index}
		s.Raft.Voters[n] = true
	}
	name := s.Restore.Status.JobName
	if j := w.jobs[name]; j != nil && name != "" {
		s.Job = j.DeepCopy()
		if len(j.Status.Conditions) > 0 {
			res := w.result
			s.JobResult = &res
		}
	}
	if n := s.Restore.Status.StepDownJob; n != "" && w.jobs[n] != nil {
		s.StepDownJob = w.jobs[n].DeepCopy()
	}
	return s
}

// tick lets time pass: Jobs complete, stopped pods come back, leadership moves.
func (w *world) tick() {
	w.index += 3 // writes go on
	for name, j := range w.jobs {
		if len(j.Status.Conditions) == 0 {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
			if strings.Contains(name, "-rsd-") {
				w.moveLeader()
			}
		}
	}
	for name, n := range w.down {
		if n > 1 {
			w.down[name] = n - 1
			continue
		}
		delete(w.down, name)
		w.pods[name] = w.newPod(name)
	}
	if w.leader == "" {
		w.moveLeader()
	}
}

func (w *world) moveLeader() {
	old := w.leader
	w.leader = ""
	for i := range 3 {
		n := fmt.Sprintf("bao-%d", i)
		if n != old && w.pods[n] != nil {
			w.leader = n
			return
		}
	}
}

// apply is the controller: it persists the restore's status, then applies the side effect.
// crashBefore drops the decision (the operator died before writing it); crashAfter writes
// it and dies before the side effect.
func (w *world) apply(s *State, step Step, crashBefore, crashAfter bool) {
	if crashBefore {
		w.order = append(w.order, "crash before "+string(step.Kind))
		return
	}
	switch step.Kind {
	case Idle:
		// As the controller: a finished restore that still holds the lock (the operator
		// stopped between the status write and the release) releases it.
		if HoldsLock(w.cluster, w.restore) {
			w.cluster.Status.Restore = nil
		}
		return
	case Wait:
		return
	case TakeLock:
		w.cluster.Status.Restore = &openbaov1alpha1.RestoreLock{Name: w.restore.Name, UID: string(w.restore.UID)}
	}
	w.restore = s.Restore.DeepCopy()
	if crashAfter {
		w.order = append(w.order, "crash after "+string(step.Kind))
		return
	}
	switch step.Kind {
	case CreateJob:
		name := w.restore.Status.JobName
		if w.jobs[name] == nil {
			w.jobs[name] = &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}}
			w.created = append(w.created, name)
		}
		require.Equal(w.t, w.leader, step.Pod, "the restore goes through the active server")
	case CreateStepDownJob:
		name := w.restore.Status.StepDownJob
		require.Equal(w.t, w.leader, step.Pod)
		if w.jobs[name] == nil {
			w.jobs[name] = &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}}
			w.created = append(w.created, name)
		}
	case DeletePod:
		p := w.pods[step.Pod]
		require.NotNil(w.t, p)
		require.Equal(w.t, w.restore.Status.CurrentPodUID, string(p.UID), "the UID is recorded before the deletion")
		w.deleted = append(w.deleted, step.Pod)
		w.leaderAt[step.Pod] = w.leader
		delete(w.pods, step.Pod)
		w.down[step.Pod] = 2
		if len(w.down) > w.maxDown {
			w.maxDown = len(w.down)
		}
		if w.leader == step.Pod {
			w.leader = ""
		}
	case Finish:
		if HoldsLock(w.cluster, w.restore) {
			w.cluster.Status.Restore = nil
		}
	}
	w.order = append(w.order, fmt.Sprintf("%s %s %s", w.restore.Status.Phase, step.Kind, step.Pod))
}

func (w *world) run(crashAt int, after bool) {
	for i := 0; i < 200; i++ {
		s := w.state()
		step := Plan(s)
		w.apply(s, step, i == crashAt && !after, i == crashAt && after)
		if step.Kind == Idle {
			return
		}
		w.tick()
	}
	w.t.Fatalf("the restore did not finish: %v", w.order)
}

// A restore runs to the end from any crash: before or after the status write of any step,
// the operator restarts from the persisted status only, and no step is done twice.
func TestRestoreSequenceWithCrashes(t *testing.T) {
	for crashAt := -1; crashAt < 40; crashAt++ {
		for _, after := range []bool{false, true} {
			t.Run(fmt.Sprintf("crash %d after=%v", crashAt, after), func(t *testing.T) {
				w := newWorld(t)
				w.run(crashAt, after)
				st := w.restore.Status
				require.Equal(t, openbaov1alpha1.RestoreSucceeded, st.Phase, "%s\n%v", st.Message, w.order)
				assert.Equal(t, openbaov1alpha1.ReasonRestoreSucceeded, reason(w.restore))
				assert.Nil(t, w.cluster.Status.Restore, "the lock is released")
				assert.ElementsMatch(t, []string{"bao-0", "bao-1", "bao-2"}, w.deleted, "each server restarted exactly once: %v", w.order)
				assert.Equal(t, w.deleted, st.RestartedPods)
				assert.Equal(t, "bao-0", w.deleted[2], "the active server goes last")
				assert.Equal(t, "bao-2", w.deleted[0], "followers first, highest ordinal first")
				assert.NotEqual(t, "bao-0", w.leaderAt["bao-0"], "the active server was stepped down before it was deleted")
				assert.Equal(t, 1, w.maxDown, "never more than one server down")
				assert.Equal(t, []string{resources.RestoreJobName(w.cluster, w.restore), resources.RestoreStepDownJobName(w.cluster, w.restore, "bao-0")}, w.created, "each Job created once")
				assert.Equal(t, sum, st.SHA256)
				assert.Equal(t, int64(4096), st.Size)
				assert.NotNil(t, st.StartTime)
				assert.NotNil(t, st.CompletionTime)
				assert.Empty(t, st.CurrentPod)
			})
		}
	}
}

func TestRefusedByTheJobReleasesTheLock(t *testing.T) {
	w := newWorld(t)
	w.result = Result{Refused: true, Reason: openbaov1alpha1.ReasonRestoreSealKeyMismatch, Message: "the cluster's seal key does not decrypt the snapshot"}
	w.run(-1, false)
	st := w.restore.Status
	assert.Equal(t, openbaov1alpha1.RestoreRefused, st.Phase)
	assert.Equal(t, openbaov1alpha1.ReasonRestoreSealKeyMismatch, reason(w.restore))
	assert.Contains(t, st.Message, "Nothing was changed")
	assert.Empty(t, w.deleted, "no server restarted")
	assert.Nil(t, w.cluster.Status.Restore)
}

func TestFailedJobFailsTheRestore(t *testing.T) {
	w := newWorld(t)
	w.result = Result{Message: "connection refused"}
	w.run(-1, false)
	assert.Equal(t, openbaov1alpha1.RestoreFailed, w.restore.Status.Phase)
	assert.Contains(t, w.restore.Status.Message, "connection refused")
	assert.Empty(t, w.deleted)
	assert.Nil(t, w.cluster.Status.Restore)
}

// While the cluster is paused, a restore that holds the lock changes nothing.
func TestPausedMidRestoreWaits(t *testing.T) {
	w := newWorld(t)
	for i := 0; i < 200 && w.restore.Status.Phase != openbaov1alpha1.RestoreRestarting; i++ {
		s := w.state()
		w.apply(s, Plan(s), false, false)
		w.tick()
	}
	require.Equal(t, openbaov1alpha1.RestoreRestarting, w.restore.Status.Phase)
	w.cluster.Spec.Paused = true
	for range 5 {
		s := w.state()
		step := Plan(s)
		assert.Contains(t, []Kind{Record, Wait}, step.Kind)
		w.apply(s, step, false, false)
		w.tick()
	}
	assert.Empty(t, w.deleted, "nothing restarted while paused")
	assert.Equal(t, openbaov1alpha1.ReasonRestoreWaiting, reason(w.restore))
	w.cluster.Spec.Paused = false
	w.run(-1, false)
	assert.Equal(t, openbaov1alpha1.RestoreSucceeded, w.restore.Status.Phase)
}

// A server that does not come back holds the restart: the next one is not touched.
func TestNextRestartWaitsForTheServersToBeReady(t *testing.T) {
	c, r := testCluster(), testRestore()
	c.Status.Restore = &openbaov1alpha1.RestoreLock{Name: r.Name, UID: string(r.UID)}
	r.Status.Phase = openbaov1alpha1.RestoreRestarting
	r.Status.RestartedPods = []string{"bao-2"}
	s := &State{Restore: r, Cluster: c, Leader: "bao-0", Pods: map[string]*corev1.Pod{},
		Servers: map[string]upgrade.ServerState{}, Raft: &upgrade.RaftState{RaftView: openbao.RaftView{Voters: map[string]bool{"bao-0": true, "bao-1": true, "bao-2": true}}}}
	for i := range 3 {
		n := fmt.Sprintf("bao-%d", i)
		s.Pods[n] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: n, UID: types.UID(n)}, Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
		s.Servers[n] = upgrade.ServerState{Reachable: true, Initialized: true}
	}
	s.Servers["bao-2"] = upgrade.ServerState{Reachable: true, Initialized: true, Sealed: true}
	step := Plan(s)
	assert.Equal(t, Record, step.Kind)
	assert.Empty(t, r.Status.CurrentPod)
	assert.Contains(t, r.Status.Message, "bao-2 is not unsealed")
}

func TestRefusalReasonIsTheExecutors(t *testing.T) {
	assert.Equal(t, "SealKeyMismatch", refusalReason("SealKeyMismatch"))
	assert.Equal(t, "CorruptSnapshot", refusalReason("CorruptSnapshot"))
	assert.Equal(t, "RestoreRefused", refusalReason(""))
	assert.Equal(t, "RestoreRefused", refusalReason("not a reason"))
}
