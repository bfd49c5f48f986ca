package rolling

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/internal/steptrace"
)

var update = flag.Bool("update", false, "rewrite the golden step traces under testdata")

const (
	oldVersion = "2.6.2"
	newVersion = "2.7.2"
	oldImage   = "quay.io/openbao/openbao:2.6.2"
	newImage   = "quay.io/openbao/openbao:2.7.2"
	// brokenImage cannot run: its pods never become ready.
	brokenImage = "quay.io/openbao/openbao:0.0.0-missing"
)

// sim plays the StatefulSet controller, the Job controller and the OpenBao servers, with
// the behaviours the strategy relies on. It records what a user would care about.
type sim struct {
	t        *testing.T
	client   client.Client
	cluster  *openbaov1alpha1.OpenBaoCluster
	replicas int
	servers  map[string]*upgrade.ServerState
	leader   string
	commit   uint64
	now      time.Time
	rng      *rand.Rand

	// What happened.
	stepDowns []string
	// stepDownsAt holds, for each step-down, how many servers had been replaced before it.
	stepDownsAt []int
	// failedHandOvers counts step-downs after which no server could win the election.
	failedHandOvers int
	leaderChanges   []string // "from(version)->to(version)"
	updateOrder     []string
	crashes         int
	lostWrites      int
	persists        int
	events          []string
	// history is what sys/version-history answers: a release is listed once a server of it
	// has become the active node.
	history []openbao.VersionEntry
	// trace, when set, records the steps and events for a golden file.
	trace *steptrace.Recorder
}

func newSim(t *testing.T, replicas int, seed uint64) *sim {
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, openbaov1alpha1.AddToScheme(scheme))
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "uid-1"},
		Spec:       openbaov1alpha1.OpenBaoClusterSpec{Version: newVersion, Replicas: ptr.To(int32(replicas))},
		Status:     openbaov1alpha1.OpenBaoClusterStatus{CurrentVersion: oldVersion, CurrentImage: oldImage},
	}
	sts := resources.StatefulSet(c, resources.StatefulSetParams{Name: "bao", Image: oldImage, Replicas: int32(replicas), Partition: int32(replicas)})
	sts.Generation = 1
	sts.Status = appsv1.StatefulSetStatus{ObservedGeneration: 1, CurrentRevision: "rev-old", UpdateRevision: "rev-old"}
	s := &sim{
		t: t, cluster: c, replicas: replicas, servers: map[string]*upgrade.ServerState{}, commit: 1000,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, seed)),
		client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(sts).WithStatusSubresource(sts, &corev1.Pod{}, &batchv1.Job{}).Build(),
	}
	for i := range replicas {
		name := resources.PodName("bao", i)
		s.servers[name] = &upgrade.ServerState{Reachable: true, Initialized: true, Version: oldVersion, AppliedIndex: s.commit}
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{appsv1.ControllerRevisionHashLabelKey: "rev-old"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "openbao", Image: oldImage}}},
			Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
		}
		status := pod.Status
		require.NoError(t, s.client.Create(context.Background(), pod))
		pod.Status = status
		require.NoError(t, s.client.Status().Update(context.Background(), pod))
	}
	s.history = []openbao.VersionEntry{{Version: oldVersion, InstalledAt: s.now.Add(-time.Hour)}}
	// Leadership starts on a random server.
	s.setLeader(resources.PodName("bao", s.rng.IntN(replicas)))
	return s
}

func (s *sim) setLeader(name string) {
	if s.leader != "" && s.leader != name {
		s.leaderChanges = append(s.leaderChanges, fmt.Sprintf("%s(%s)->%s(%s)", s.leader, s.servers[s.leader].Version, name, s.servers[name].Version))
	}
	for n, srv := range s.servers {
		srv.Active = n == name
	}
	s.leader = name
	if s.history != nil && !slices.ContainsFunc(s.history, func(h openbao.VersionEntry) bool { return h.Version == s.servers[name].Version }) {
		s.history = append(s.history, openbao.VersionEntry{Version: s.servers[name].Version, InstalledAt: s.now})
	}
}

// revisionOf names the StatefulSet revision of a template image; the same template has the
// same revision, as a StatefulSet's ControllerRevisions do.
func revisionOf(image string) string {
	if image == oldImage {
		return "rev-old"
	}
	return "rev-" + image
}

// versionOf is the release an image runs.
func versionOf(image string) string {
	if image == oldImage {
		return oldVersion
	}
	return newVersion
}

// tick advances the simulated controllers and servers by one step.
func (s *sim) tick(ctx context.Context) {
	s.now = s.now.Add(3 * time.Second)
	s.commit += 10
	if s.leader == "" {
		// Raft's timeouts ran out: an ordinary election among the serving servers.
		s.electExcept("")
	}
	sts := &appsv1.StatefulSet{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))

	// The provisioning controller applies the Workload at the start of its pass; a new
	// template is observed by the StatefulSet controller at once.
	if s.applyWorkload(ctx) {
		return
	}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))

	// The StatefulSet controller re-creates a deleted pod, and replaces one ready pod at or
	// above the partition at a time; it waits forever for an unready one.
	for i := s.replicas - 1; i >= int(currentPartition(sts)); i-- {
		name := resources.PodName("bao", i)
		pod := &corev1.Pod{}
		err := s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: name}, pod)
		if apierrors.IsNotFound(err) {
			pod = &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Labels: map[string]string{}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "openbao"}}},
			}
			require.NoError(s.t, s.client.Create(ctx, pod))
		} else {
			require.NoError(s.t, err)
			if pod.Labels[appsv1.ControllerRevisionHashLabelKey] == sts.Status.UpdateRevision {
				continue
			}
			if !upgrade.PodReady(pod) {
				break
			}
		}
		// Replacing a pod stops its server; if it was active, OpenBao elects another.
		if s.leader == name {
			s.electExcept(name)
		}
		s.updateOrder = append(s.updateOrder, name)
		pod.Labels[appsv1.ControllerRevisionHashLabelKey] = sts.Status.UpdateRevision
		pod.Spec.Containers[0].Image = upgrade.TemplateImage(sts)
		ready := upgrade.TemplateImage(sts) != brokenImage
		require.NoError(s.t, s.client.Update(ctx, pod))
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: map[bool]corev1.ConditionStatus{true: corev1.ConditionTrue, false: corev1.ConditionFalse}[ready]}}
		require.NoError(s.t, s.client.Status().Update(ctx, pod))
		srv := s.servers[name]
		srv.Reachable = ready
		srv.Version = versionOf(upgrade.TemplateImage(sts))
		srv.Active = false
		srv.AppliedIndex = s.commit - 50 // catches up on a later tick
		break
	}
	// Under write load a follower trails the leader's latest committed index by a few
	// entries; the leader has applied everything it committed.
	for name, srv := range s.servers {
		caughtUp := s.commit - 3
		if name == s.leader {
			caughtUp = s.commit
		}
		if srv.Reachable && srv.AppliedIndex < caughtUp {
			srv.AppliedIndex = caughtUp
		}
	}

	// The Job controller runs step-down Jobs: leadership moves to another healthy voter.
	jobs := &batchv1.JobList{}
	require.NoError(s.t, s.client.List(ctx, jobs, client.InNamespace("ns")))
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Status.Succeeded > 0 {
			continue
		}
		if hasArg(j, "step-down") {
			target := argAfter(j, "--node-id")
			s.stepDowns = append(s.stepDowns, fmt.Sprintf("%s(%s)", target, s.servers[target].Version))
			s.stepDownsAt = append(s.stepDownsAt, len(s.updateOrder))
			if s.leader == target {
				s.handOver(target)
			}
		}
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &metav1.Time{Time: s.now}
		require.NoError(s.t, s.client.Status().Update(ctx, j))
	}
}

// applyWorkload plays the controller's applyWorkload: the declared template image and
// partition of the one StatefulSet. It says whether the template changed.
func (s *sim) applyWorkload(ctx context.Context) bool {
	set := newManager().Workload(s.cluster).Active()
	sts := &appsv1.StatefulSet{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: set.Name}, sts))
	partition := int32(s.replicas)
	if set.Partition != nil {
		partition = *set.Partition
	}
	templateChanged := upgrade.TemplateImage(sts) != set.Image
	if !templateChanged && currentPartition(sts) == partition {
		return false
	}
	sts.Spec.Template.Spec.Containers[0].Image = set.Image
	sts.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(partition)
	if templateChanged {
		sts.Generation++
	}
	require.NoError(s.t, s.client.Update(ctx, sts))
	if templateChanged {
		sts.Status.ObservedGeneration = sts.Generation
		sts.Status.UpdateRevision = revisionOf(set.Image)
		require.NoError(s.t, s.client.Status().Update(ctx, sts))
	}
	return templateChanged
}

// handOver plays OpenBao's step-down: leadership goes to the most up-to-date follower, the
// first in the Raft configuration (the lowest ordinal) when they are level, as here. A
// follower on the old version cannot win once the new version holds a majority (measured:
// the new servers reject its vote requests); the cluster then has no active node until a
// later election.
func (s *sim) handOver(old string) {
	newServers := 0
	for _, srv := range s.servers {
		if srv.Version == newVersion {
			newServers++
		}
	}
	for i := range s.replicas {
		n := resources.PodName("bao", i)
		if n == old || !s.servers[n].Serving() {
			continue
		}
		if s.servers[n].Version == oldVersion && newServers > s.replicas/2 {
			s.failedHandOvers++
			for _, srv := range s.servers {
				srv.Active = false
			}
			s.leader = ""
			return
		}
		s.setLeader(n)
		return
	}
}

// electExcept makes a random other serving server active, as a Raft election would.
func (s *sim) electExcept(old string) {
	var candidates []string
	for i := range s.replicas {
		n := resources.PodName("bao", i)
		if n != old && s.servers[n].Serving() {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return
	}
	s.setLeader(candidates[s.rng.IntN(len(candidates))])
}

func hasArg(j *batchv1.Job, a string) bool {
	for _, x := range j.Spec.Template.Spec.Containers[0].Args {
		if x == a {
			return true
		}
	}
	return false
}

func argAfter(j *batchv1.Job, flag string) string {
	args := j.Spec.Template.Spec.Containers[0].Args
	for i := range args[:len(args)-1] {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

// state builds what the controller would observe.
func (s *sim) state(ctx context.Context) *upgrade.State {
	st := &upgrade.State{
		Cluster: s.cluster, Pods: map[string]*corev1.Pod{}, Jobs: map[string]*batchv1.Job{},
		Servers: map[string]upgrade.ServerState{}, Now: s.now, ExecutorImage: "operator:1", Leader: s.leader,
		Raft: &upgrade.RaftState{RaftView: openbao.RaftView{Voters: map[string]bool{}, Healthy: map[string]bool{}}, LeaderCommittedIndex: s.commit},
	}
	sts := &appsv1.StatefulSet{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))
	st.StatefulSet = sts
	pods := &corev1.PodList{}
	require.NoError(s.t, s.client.List(ctx, pods, client.InNamespace("ns")))
	for i := range pods.Items {
		st.Pods[pods.Items[i].Name] = &pods.Items[i]
	}
	jobs := &batchv1.JobList{}
	require.NoError(s.t, s.client.List(ctx, jobs, client.InNamespace("ns")))
	for i := range jobs.Items {
		st.Jobs[jobs.Items[i].Name] = &jobs.Items[i]
	}
	// Autopilot's verdict on the cluster derives from its verdicts on the servers, as in
	// OpenBao (pkg/openbao/fake documents the measurements): false while any is unhealthy.
	healthy := true
	for n, srv := range s.servers {
		st.Servers[n] = *srv
		st.Raft.Voters[n] = true
		st.Raft.Healthy[n] = srv.Serving()
		healthy = healthy && srv.Serving()
	}
	st.Raft.AutopilotHealthy = &healthy
	return st
}

type simEnv struct{ s *sim }

func (e simEnv) Client() client.Client { return e.s.client }
func (e simEnv) OpenBao(_ context.Context, pod string) (openbao.Client, error) {
	if pod != e.s.leader {
		return nil, fmt.Errorf("only the active node is asked, not %s", pod)
	}
	return historyClient{history: e.s.history}, nil
}

// historyClient answers sys/version-history, the one call the upgrade manager makes (when
// the target is set back); the Rolling strategy calls OpenBao only through its Jobs.
type historyClient struct {
	openbao.Client
	history []openbao.VersionEntry
}

func (c historyClient) VersionHistory(context.Context) ([]openbao.VersionEntry, error) {
	return append([]openbao.VersionEntry(nil), c.history...), nil
}
func (e simEnv) Event(_, reason, _ string) { e.s.events = append(e.s.events, reason) }
func (e simEnv) ApplyWorkload(ctx context.Context) error {
	e.s.applyWorkload(ctx)
	return nil
}

// run drives the manager until the upgrade completes or halts. With crash, the operator
// dies between recording its intent and performing every side effect once: the restarted
// operator must finish from the persisted status and the live objects alone.
func (s *sim) run(t *testing.T, crash bool) {
	ctx := context.Background()
	m := newManager()
	for i := range 400 {
		st := s.state(ctx)
		persisted := s.cluster.DeepCopy()
		crashed, lost := false, false
		persist := func(context.Context) error {
			s.persists++
			persisted = s.cluster.DeepCopy()
			if crash && s.persists%2 == 1 {
				crashed = true
				return fmt.Errorf("operator killed")
			}
			return nil
		}
		_, err := m.Reconcile(ctx, st, simEnv{s}, persist)
		switch {
		case crashed:
			s.crashes++
			// A restarted operator sees only what was persisted.
			s.cluster.Status = persisted.Status
		case crash && i%3 == 2:
			// The pass's final status write fails: what it decided after its last
			// persisted intent, waiting passes included, is lost.
			require.NoError(t, err)
			s.lostWrites++
			s.cluster.Status = persisted.Status
			lost = true
		default:
			require.NoError(t, err)
		}
		if s.trace != nil {
			s.trace.Pass(s.cluster.Status.Upgrade, s.events)
		}
		if s.cluster.Status.Upgrade == nil && i > 0 {
			return
		}
		if u := s.cluster.Status.Upgrade; u != nil && u.Step == upgrade.StepHalted && !crashed && !lost {
			return // halted by this pass (a halt the pass did not write is looked at again)
		}
		s.tick(ctx)
	}
	t.Fatalf("the upgrade did not finish in 400 passes: %+v", s.cluster.Status.Upgrade)
}

func TestRollingUpgradeSequences(t *testing.T) {
	for _, replicas := range []int{1, 3, 5} {
		for seed := range uint64(20) {
			for _, crash := range []bool{false, true} {
				t.Run(fmt.Sprintf("replicas=%d/seed=%d/crash=%v", replicas, seed, crash), func(t *testing.T) {
					s := newSim(t, replicas, seed)
					s.run(t, crash)

					c := s.cluster
					require.Nil(t, c.Status.Upgrade, "upgrade finished")
					assert.Equal(t, newVersion, c.Status.CurrentVersion)
					assert.Equal(t, newImage, c.Status.CurrentImage)
					assert.Equal(t, openbaov1alpha1.ReasonUpgradeCompleted, meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading).Reason)

					// Highest ordinal first, each pod once.
					var want []string
					for i := replicas - 1; i >= 0; i-- {
						want = append(want, resources.PodName("bao", i))
					}
					assert.Equal(t, want, s.updateOrder)

					// Step-downs only on old servers, at most once per server, none for one replica.
					seen := map[string]bool{}
					for _, sd := range s.stepDowns {
						assert.Contains(t, sd, "("+oldVersion+")", "a step-down was sent to a new server: %v", s.stepDowns)
						assert.False(t, seen[sd], "second step-down of %s", sd)
						seen[sd] = true
					}
					assert.Zero(t, s.failedHandOvers, "a step-down left the cluster without an active node: %v", s.stepDowns)
					if replicas == 1 {
						assert.Empty(t, s.stepDowns)
					} else {
						assert.NotEmpty(t, s.stepDowns, "the active node was stepped down before it was replaced")
					}
					if crash {
						assert.Positive(t, s.crashes, "the operator was killed at least once")
						assert.Positive(t, s.lostWrites, "a final status write was lost at least once")
					}
					// No server was replaced while it was the active node.
					for _, lc := range s.leaderChanges {
						assert.NotRegexp(t, `\(`+newVersion+`\)->.*\(`+oldVersion+`\)`, lc, "leadership moved new -> old: %v", s.leaderChanges)
					}
					jobs := &batchv1.JobList{}
					require.NoError(t, s.client.List(context.Background(), jobs))
					assert.Empty(t, jobs.Items, "the upgrade's Jobs are removed")
				})
			}
		}
	}
}

// An upgrade that the previous release of the operator left mid-way, with the Rolling
// fields flat in status.upgrade, finishes under this release in the same order, without
// replacing a server twice.
func TestRollingResumesAnUpgradeOfThePreviousRelease(t *testing.T) {
	for _, replicas := range []int{3, 5} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("replicas=%d/crash=%v", replicas, crash), func(t *testing.T) {
				s := newSim(t, replicas, 3)
				ctx := context.Background()
				m := newManager()
				noPersist := func(context.Context) error { return nil }
				// Run until one server is done and the next one is being replaced and waited for.
				for i := 0; ; i++ {
					require.Less(t, i, 200, "the upgrade never reached its second server")
					_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, noPersist)
					require.NoError(t, err)
					u := s.cluster.Status.Upgrade
					if u != nil && u.Rolling != nil && len(u.Rolling.PodsDone) == 1 && u.Step == StepWaitPodHealthy && u.Rolling.CatchUpIndex > 0 {
						break
					}
					s.tick(ctx)
				}
				u := s.cluster.Status.Upgrade
				done, partition, catchUp := u.Rolling.PodsDone, u.Rolling.Partition, u.Rolling.CatchUpIndex
				// What the previous release persisted: the same progress, in the flat fields.
				u.Partition, u.CatchUpIndex, u.PodsDone, u.Rolling = partition, catchUp, done, nil

				st := s.state(ctx)
				_, err := m.Reconcile(ctx, st, simEnv{s}, noPersist)
				require.NoError(t, err)
				u = s.cluster.Status.Upgrade
				require.NotNil(t, u.Rolling, "the old fields were moved")
				assert.Equal(t, done, u.Rolling.PodsDone)
				assert.Equal(t, catchUp, u.Rolling.CatchUpIndex, "the recorded catch-up index is kept")
				assert.Nil(t, u.Partition)
				assert.Zero(t, u.CatchUpIndex)
				assert.Empty(t, u.PodsDone, "the old fields are not written again")

				s.tick(ctx)
				s.run(t, crash)
				c := s.cluster
				require.Nil(t, c.Status.Upgrade, "upgrade finished")
				assert.Equal(t, newVersion, c.Status.CurrentVersion)
				var want []string
				for i := replicas - 1; i >= 0; i-- {
					want = append(want, resources.PodName("bao", i))
				}
				assert.Equal(t, want, s.updateOrder, "each server replaced once, highest ordinal first")
				for _, lc := range s.leaderChanges {
					assert.NotRegexp(t, `\(`+newVersion+`\)->.*\(`+oldVersion+`\)`, lc, "leadership moved new -> old: %v", s.leaderChanges)
				}
			})
		}
	}
}

// A halted upgrade given a new target starts the Rolling fields afresh: the servers done
// for the old target are not done for the new one.
func TestRollingStartsAfreshForANewRevision(t *testing.T) {
	u := &openbaov1alpha1.UpgradeStatus{Revision: "r2", Rolling: &openbaov1alpha1.RollingStatus{Revision: "r1", PodsDone: []string{"bao-2"}, CatchUpIndex: 7}}
	assert.Equal(t, &openbaov1alpha1.RollingStatus{Revision: "r2"}, status(u))
	u.Rolling.PodsDone = []string{"bao-2"}
	assert.Equal(t, []string{"bao-2"}, status(u).PodsDone, "same revision: kept")
}

// The steps and events of a Rolling upgrade of 1, 3 and 5 servers, the active node on
// ordinal 1 (it moves at its turn among three servers, and first among five), pinned in
// testdata/rolling-<replicas>.golden.
func TestRollingStepTraces(t *testing.T) {
	for _, replicas := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			s := newSim(t, replicas, 1)
			if replicas > 1 {
				s.setLeader("bao-1")
			}
			s.trace = &steptrace.Recorder{}
			s.run(t, false)
			require.Nil(t, s.cluster.Status.Upgrade, "upgrade finished")
			s.trace.Check(t, fmt.Sprintf("testdata/rolling-%d.golden", replicas), *update)
		})
	}
}

func TestRollingHaltsWhenTheNewImageCannotRun(t *testing.T) {
	s := newSim(t, 3, 7)
	s.cluster.Spec.Image = brokenImage
	timeout := metav1.Duration{Duration: time.Minute}
	s.cluster.Spec.Upgrade.StepTimeout = &timeout
	s.run(t, false)

	u := s.cluster.Status.Upgrade
	require.NotNil(t, u)
	assert.Equal(t, upgrade.StepHalted, u.Step)
	assert.Contains(t, u.LastError, "bao-2")
	assert.Equal(t, []string{"bao-2"}, s.updateOrder, "no further pod is touched after the failure")
	cond := meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.NotNil(t, cond)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradeFailed, cond.Reason)
	assert.Contains(t, s.events, "UpgradeHalted")
	sts := &appsv1.StatefulSet{}
	require.NoError(t, s.client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))
	assert.Equal(t, int32(2), currentPartition(sts), "the partition stays where the failure happened")
}

func TestRollingWaitsWhileNoSuccessorExists(t *testing.T) {
	s := newSim(t, 3, 1)
	s.setLeader("bao-2")
	// bao-1 and bao-0 are unhealthy: stepping bao-2 down would leave nobody to lead.
	for _, n := range []string{"bao-0", "bao-1"} {
		s.servers[n].Sealed = true
	}
	ctx := context.Background()
	m := newManager()
	// Start the upgrade while healthy, then break the others.
	s.servers["bao-0"].Sealed, s.servers["bao-1"].Sealed = false, false
	_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
	require.NoError(t, err)
	require.NotNil(t, s.cluster.Status.Upgrade)
	s.tick(ctx) // template applied
	s.servers["bao-0"].Sealed, s.servers["bao-1"].Sealed = true, true
	for range 3 {
		_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
		require.NoError(t, err)
	}
	u := s.cluster.Status.Upgrade
	assert.Equal(t, StepStepDown, u.Step)
	// Autopilot's verdict follows its verdicts on the servers: with two of them sealed the
	// cluster is unhealthy, which is the first reason Successors gives.
	assert.Contains(t, u.Message, "No other server could take over from bao-2 (autopilot reports the cluster unhealthy)")
	jobs := &batchv1.JobList{}
	require.NoError(t, s.client.List(ctx, jobs))
	assert.Empty(t, jobs.Items, "no step-down without a successor")
}

func TestSnapshotRunsBeforeAnyPodMoves(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testSnapshotRunsBeforeAnyPodMoves(t, crash) })
	}
}

func testSnapshotRunsBeforeAnyPodMoves(t *testing.T, crash bool) {
	s := newSim(t, 3, 3)
	s.cluster.Spec.Upgrade.PreUpgradeSnapshot = true
	ctx := context.Background()
	m := newManager()
	noPersist := func(context.Context) error { return nil }
	_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, noPersist) // start
	require.NoError(t, err)
	_, err = m.Reconcile(ctx, s.state(ctx), simEnv{s}, noPersist) // snapshot Job
	require.NoError(t, err)
	u := s.cluster.Status.Upgrade
	require.NotNil(t, u.Snapshot)
	assert.Equal(t, upgrade.StepSnapshot, u.Step)
	job := &batchv1.Job{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: u.Snapshot.JobName}, job))
	assert.Contains(t, job.Spec.Template.Spec.Containers[0].Args, "snapshot")
	pvc := &corev1.PersistentVolumeClaim{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao-snapshots"}, pvc))
	sts := &appsv1.StatefulSet{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))
	assert.Equal(t, int32(3), currentPartition(sts), "no pod moves before the snapshot")

	s.run(t, crash)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
}

func TestFailedSnapshotBlocksTheUpgrade(t *testing.T) {
	s := newSim(t, 3, 4)
	s.cluster.Spec.Upgrade.PreUpgradeSnapshot = true
	ctx := context.Background()
	m := newManager()
	noPersist := func(context.Context) error { return nil }
	for range 2 {
		_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, noPersist)
		require.NoError(t, err)
	}
	u := s.cluster.Status.Upgrade
	job := &batchv1.Job{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: u.Snapshot.JobName}, job))
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
	require.NoError(t, s.client.Status().Update(ctx, job))
	_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, noPersist)
	require.NoError(t, err)
	assert.Equal(t, upgrade.StepHalted, s.cluster.Status.Upgrade.Step)
	assert.Contains(t, s.cluster.Status.Upgrade.LastError, "snapshot")
	assert.True(t, meta.IsStatusConditionTrue(s.cluster.Status.Conditions, openbaov1alpha1.ConditionDegraded))
}

func TestRollingRecoversWhenTheTargetIsFixed(t *testing.T) {
	s := newSim(t, 3, 7)
	s.cluster.Spec.Image = brokenImage
	s.cluster.Spec.Upgrade.StepTimeout = &metav1.Duration{Duration: time.Minute}
	s.run(t, false)
	require.Equal(t, upgrade.StepHalted, s.cluster.Status.Upgrade.Step)

	// Fix forward, as the README says: the working image of the target version.
	s.cluster.Spec.Image = ""
	s.run(t, true)
	require.Nil(t, s.cluster.Status.Upgrade, "the upgrade completes on the fixed target")
	assert.Equal(t, newImage, s.cluster.Status.CurrentImage)
	assert.Equal(t, []string{"bao-2", "bao-2", "bao-1", "bao-0"}, s.updateOrder, "the failed server first, then the others once")
	assert.Contains(t, s.events, "PodReplaced", "the stuck pod was deleted for the StatefulSet controller to re-create")
	for i := range 3 {
		pod := &corev1.Pod{}
		require.NoError(t, s.client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: resources.PodName("bao", i)}, pod))
		assert.Equal(t, newImage, upgrade.PodImage(pod))
		assert.True(t, upgrade.PodReady(pod))
	}
}

// A leader whose turn would come when the old version is a minority (ordinal 1 of 5) is
// stepped down before any server moves; one whose turn is safe (ordinal 2 of 5) waits for it.
func TestRollingPlacesLeadershipBeforeTheFirstServerMoves(t *testing.T) {
	for _, tc := range []struct {
		leader      string
		firstAt     int
		stepDownsTo []string
	}{
		{leader: "bao-1", firstAt: 0, stepDownsTo: []string{"bao-1(" + oldVersion + ")", "bao-0(" + oldVersion + ")"}},
		{leader: "bao-2", firstAt: 2, stepDownsTo: []string{"bao-2(" + oldVersion + ")", "bao-0(" + oldVersion + ")"}},
	} {
		t.Run(tc.leader, func(t *testing.T) {
			s := newSim(t, 5, 1)
			s.setLeader(tc.leader)
			s.run(t, false)
			require.Nil(t, s.cluster.Status.Upgrade, "upgrade finished")
			assert.Equal(t, tc.stepDownsTo, s.stepDowns)
			require.NotEmpty(t, s.stepDownsAt)
			assert.Equal(t, tc.firstAt, s.stepDownsAt[0], "servers replaced before the first step-down")
			assert.Zero(t, s.failedHandOvers)
			assert.Equal(t, []string{"bao-4", "bao-3", "bao-2", "bao-1", "bao-0"}, s.updateOrder)
		})
	}
}

// Waiting for a replaced server to catch up holds the next one back: it is looked at again
// sooner than other waits.
func TestRollingPollsCatchUpQuickly(t *testing.T) {
	s := newSim(t, 3, 2)
	ctx := context.Background()
	m := newManager()
	waits := 0
	for range 200 {
		res, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
		require.NoError(t, err)
		u := s.cluster.Status.Upgrade
		if u == nil {
			break
		}
		if u.Step == StepWaitPodHealthy {
			waits++
			assert.Equal(t, upgrade.QuickPoll, res.RequeueAfter)
		}
		s.tick(ctx)
	}
	require.Nil(t, s.cluster.Status.Upgrade, "upgrade finished")
	assert.Positive(t, waits)
}

// A replaced server counts as caught up once it applied the leader's committed index as
// recorded when it was first seen healthy; the record does not move while it catches up.
func TestCaughtUpUsesTheRecordedIndex(t *testing.T) {
	c := &openbaov1alpha1.OpenBaoCluster{Status: openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{
		Step: StepUpdatePod, CurrentPod: "bao-2",
	}}}
	s := &upgrade.State{Cluster: c, Raft: &upgrade.RaftState{LeaderCommittedIndex: 100}, Servers: map[string]upgrade.ServerState{}}
	caughtUp := func(pod string, applied uint64) string {
		s.Servers[pod] = upgrade.ServerState{AppliedIndex: applied}
		return upgrade.NotCaughtUp(s, pod, catchUpIndex(s, pod))
	}
	assert.Contains(t, caughtUp("bao-2", 90), "applied 90 of the leader's committed index 100")
	assert.Equal(t, int64(100), c.Status.Upgrade.Rolling.CatchUpIndex)

	// The next pass: the leader moved on, the record stays.
	c.Status.Upgrade.Step = StepWaitPodHealthy
	s.Raft.LeaderCommittedIndex = 130
	assert.Contains(t, caughtUp("bao-2", 99), "applied 99 of the leader's committed index 100")
	assert.Empty(t, caughtUp("bao-2", 100))

	// Already at the leader's index when first seen: done on that pass.
	c.Status.Upgrade.Step, c.Status.Upgrade.CurrentPod, c.Status.Upgrade.Rolling.CatchUpIndex = StepUpdatePod, "bao-1", 0
	assert.Empty(t, caughtUp("bao-1", 130))
}

// After the early step-down, no server moves until another server reports itself active.
func TestNoServerMovesWhileTheEarlyStepDownHasNoSuccessorYet(t *testing.T) {
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns"},
		Status:     openbaov1alpha1.OpenBaoClusterStatus{Upgrade: &openbaov1alpha1.UpgradeStatus{Revision: "r1", Step: StepWaitLeadershipMoved}},
	}
	s := &upgrade.State{
		Cluster: c, StatefulSet: &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "bao"}},
		Jobs: map[string]*batchv1.Job{"bao-stepdown-r1-1-early": {Status: batchv1.JobStatus{Succeeded: 1}}},
	}
	for _, leader := range []string{"", "bao-1"} {
		s.Leader = leader
		step, ok := placeLeadership(s, 5, 5)
		require.True(t, ok, "leader %q", leader)
		assert.Equal(t, upgrade.StepWait, step.Kind)
		assert.Equal(t, StepWaitLeadershipMoved, step.Name)
	}
	s.Leader = "bao-0"
	_, ok := placeLeadership(s, 5, 5)
	assert.False(t, ok, "leadership placed: the servers move")
}

// newManager runs this package's strategy and no other.
func newManager() *upgrade.Manager {
	return &upgrade.Manager{Strategies: upgrade.Strategies{openbaov1alpha1.RollingUpgrade: Strategy{}}}
}

// runUntil drives the manager and the simulated cluster until done says so.
func (s *sim) runUntil(t *testing.T, what string, done func() bool) {
	t.Helper()
	ctx := context.Background()
	m := newManager()
	for range 200 {
		_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
		require.NoError(t, err)
		if done() {
			return
		}
		s.tick(ctx)
	}
	t.Fatalf("never reached: %s (%+v)", what, s.cluster.Status.Upgrade)
}

// Setting the version back while no server on the new version has led: every server holds
// only data the old version wrote, so the replaced servers are moved back, one at a time,
// and the servers never replaced are not restarted (the old leader keeps leading).
func TestRollingGoesBackWhileTheNewVersionNeverLed(t *testing.T) {
	for _, replicas := range []int{3, 5} {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("replicas=%d/crash=%v", replicas, crash), func(t *testing.T) {
				s := newSim(t, replicas, 1)
				s.setLeader("bao-0")
				s.runUntil(t, "one server done", func() bool {
					u := s.cluster.Status.Upgrade
					return u != nil && u.Rolling != nil && len(u.Rolling.PodsDone) == 1
				})
				require.Equal(t, []string{resources.PodName("bao", replicas-1)}, s.updateOrder)

				s.cluster.Spec.Version = oldVersion
				s.run(t, crash)
				c := s.cluster
				require.Nil(t, c.Status.Upgrade, "the way back finished")
				assert.Equal(t, oldVersion, c.Status.CurrentVersion)
				assert.Equal(t, oldImage, c.Status.CurrentImage)
				assert.Contains(t, s.events, "UpgradeGoingBack")
				up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
				assert.Equal(t, "Back on "+oldVersion, up.Message[:len("Back on "+oldVersion)])
				top := resources.PodName("bao", replicas-1)
				assert.Equal(t, []string{top, top}, s.updateOrder, "only the replaced server moves, back")
				assert.Empty(t, s.stepDowns, "the old leader runs the version gone back to: never stepped down")
				assert.Equal(t, "bao-0", s.leader)
				for name, srv := range s.servers {
					assert.Equal(t, oldVersion, srv.Version, name)
				}
				for i := range replicas {
					pod := &corev1.Pod{}
					require.NoError(t, s.client.Get(context.Background(), client.ObjectKey{Namespace: "ns", Name: resources.PodName("bao", i)}, pod))
					assert.Equal(t, oldImage, upgrade.PodImage(pod))
				}
			})
		}
	}
}

// Once a server on the new version has been the active node, it may have written data the
// old version cannot read, and leadership would have to move from new to old: the version
// set back is not taken, the status says so, the upgrade finishes, and the old version is
// then refused as a downgrade, as the message announced.
func TestRollingDoesNotGoBackOnceTheNewVersionLed(t *testing.T) {
	s := newSim(t, 3, 1)
	s.setLeader("bao-0")
	s.runUntil(t, "a server on the new version leads", func() bool {
		return s.leader != "" && s.servers[s.leader].Version == newVersion
	})
	s.cluster.Spec.Version = oldVersion
	ctx := context.Background()
	m := newManager()
	_, err := m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
	require.NoError(t, err)
	u := s.cluster.Status.Upgrade
	require.NotNil(t, u)
	assert.Equal(t, newVersion, u.ToVersion, "the target stays")
	assert.Contains(t, u.Message, "spec.version "+oldVersion+" is not taken")
	assert.Contains(t, u.Message, "refused as a downgrade")
	assert.Contains(t, u.Message, "restore the pre-upgrade snapshot")
	assert.NotContains(t, u.Message, "is applied after it")

	s.tick(ctx)
	s.run(t, false)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
	_, err = m.Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
	require.NoError(t, err)
	degraded := meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.NotNil(t, degraded)
	assert.Equal(t, openbaov1alpha1.ReasonDowngradeBlocked, degraded.Reason)
	for _, lc := range s.leaderChanges {
		assert.NotRegexp(t, `\(`+newVersion+`\)->.*\(`+oldVersion+`\)`, lc)
	}
}

// The history tells what polling cannot: a server on the new version that led between two
// observations and no longer does.
func TestRollingDoesNotGoBackWhenTheHistoryListsTheNewVersion(t *testing.T) {
	s := newSim(t, 3, 1)
	s.setLeader("bao-0")
	s.runUntil(t, "one server done", func() bool {
		u := s.cluster.Status.Upgrade
		return u != nil && u.Rolling != nil && len(u.Rolling.PodsDone) == 1
	})
	s.history = append(s.history, openbao.VersionEntry{Version: newVersion, InstalledAt: s.now})
	s.cluster.Spec.Version = oldVersion
	ctx := context.Background()
	_, err := newManager().Reconcile(ctx, s.state(ctx), simEnv{s}, func(context.Context) error { return nil })
	require.NoError(t, err)
	u := s.cluster.Status.Upgrade
	assert.Equal(t, newVersion, u.ToVersion)
	assert.Contains(t, u.Message, "became the active node at")
}

// Step messages name what is awaited: after a partition change, the partition; after the
// leader's step-down, a server already done is not "waited for" as if it were being replaced.
func TestRollingStepMessagesNameWhatIsAwaited(t *testing.T) {
	s := newSim(t, 3, 1)
	s.setLeader("bao-0")
	ctx := context.Background()
	s.runUntil(t, "bao-1 released", func() bool {
		u := s.cluster.Status.Upgrade
		return u != nil && u.Step == StepUpdatePod && u.CurrentPod == "bao-1"
	})
	sts := &appsv1.StatefulSet{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))
	require.Equal(t, int32(1), currentPartition(sts))
	// The StatefulSet controller has not observed the partition change yet.
	sts.Status.ObservedGeneration = sts.Generation - 1
	require.NoError(t, s.client.Status().Update(ctx, sts))
	step, err := Strategy{}.Plan(ctx, s.state(ctx))
	require.NoError(t, err)
	assert.Equal(t, StepWaitPartition, step.Name)
	assert.Equal(t, "Waiting for the StatefulSet controller to observe partition 1, which releases bao-1.", step.Message)

	sts.Status.ObservedGeneration = sts.Generation
	require.NoError(t, s.client.Status().Update(ctx, sts))
	s.runUntil(t, "bao-0 stepped down", func() bool {
		return s.leader != "bao-0"
	})
	// Right after leadership moved, the new active node's autopilot does not call bao-2
	// healthy yet.
	st := s.state(ctx)
	st.Raft.Healthy["bao-2"] = false
	step, err = Strategy{}.Plan(ctx, st)
	require.NoError(t, err)
	assert.Equal(t, StepWaitDoneHealthy, step.Name)
	assert.NotContains(t, step.Message, "Waiting for autopilot to report bao-2 healthy")
	assert.Contains(t, step.Message, "bao-2 is done")
	assert.Contains(t, step.Message, "No other server moves until it does")
}
