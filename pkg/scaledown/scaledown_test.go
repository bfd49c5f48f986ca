package scaledown

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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
	ctrlfake "sigs.k8s.io/controller-runtime/pkg/client/fake"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

const (
	version = "2.7.2"
	// finalizer keeps pods and volumes terminating for a tick, as kubelets and the
	// pvc-protection controller do.
	finalizer = "test/terminating"
	// staleData marks a volume whose server was removed from the Raft configuration.
	staleData = "test/removed-peer-data"
)

// sim plays the StatefulSet and Job controllers, the kubelet and the OpenBao servers (the
// fake of pkg/openbao), and records what a user would care about.
type sim struct {
	t       *testing.T
	client  client.Client
	ob      *fake.Cluster
	cluster *openbaov1alpha1.OpenBaoCluster
	now     time.Time
	rng     *rand.Rand
	// joined counts the servers created by a scale-up, by pod name.
	generation map[string]int

	stepDowns []string
	// removedLeaders are servers removed from Raft while they were the active node.
	removedLeaders []string
	// deletedMembers are pods stopped while their server was still a Raft peer.
	deletedMembers []string
	events         []string
	crashes        int
	quorumLost     []string
	staleStarts    []string
}

func newSim(t *testing.T, replicas int, seed uint64) *sim {
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, openbaov1alpha1.AddToScheme(scheme))
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: "ns", UID: "uid-1", Generation: 1},
		Spec:       openbaov1alpha1.OpenBaoClusterSpec{Version: version, Replicas: ptr.To(int32(replicas))},
		Status:     openbaov1alpha1.OpenBaoClusterStatus{CurrentVersion: version},
	}
	sts := resources.StatefulSet(c, resources.StatefulSetParams{Name: "bao", Image: "openbao:" + version, Replicas: int32(replicas), Partition: int32(replicas)})
	s := &sim{
		t: t, cluster: c, ob: fake.NewCluster(), generation: map[string]int{},
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, seed)),
		client: ctrlfake.NewClientBuilder().WithScheme(scheme).WithObjects(sts).WithStatusSubresource(&corev1.Pod{}, &batchv1.Job{}).Build(),
	}
	for i := range replicas {
		s.createServer(context.Background(), i, true)
	}
	s.ob.SetLeader(resources.PodName("bao", s.rng.IntN(replicas)))
	return s
}

// createServer plays the StatefulSet controller creating a pod (and its volume when missing)
// and the server starting on it: from the volume's data, or joining as a new server.
func (s *sim) createServer(ctx context.Context, ordinal int, member bool) {
	name := resources.PodName("bao", ordinal)
	claim := &corev1.PersistentVolumeClaim{}
	err := s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "data-" + name}, claim)
	switch {
	case apierrors.IsNotFound(err):
		claim = &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{
			Name: "data-" + name, Namespace: "ns", Finalizers: []string{finalizer},
			Labels: map[string]string{resources.LabelCluster: "bao", resources.LabelStatefulSet: "bao"},
		}}
		require.NoError(s.t, s.client.Create(ctx, claim))
	case err != nil:
		require.NoError(s.t, err)
	case claim.DeletionTimestamp != nil:
		return // the StatefulSet controller waits for a volume being deleted
	case claim.Annotations[staleData] != "":
		s.staleStarts = append(s.staleStarts, name)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Finalizers: []string{finalizer}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "openbao"}}},
	}
	require.NoError(s.t, s.client.Create(ctx, pod))
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	require.NoError(s.t, s.client.Status().Update(ctx, pod))
	s.generation[name]++
	if _, ok := s.ob.Node(name); ok {
		s.ob.Update(name, func(n *fake.Node) {
			*n = fake.Node{ID: name, Address: "https://" + name + ":8200", Version: version, Initialized: true, Member: true, Voter: member, AppliedIndex: appliedIndex(member)}
		})
		return
	}
	s.ob.AddNode(fake.Node{ID: name, Address: "https://" + name + ":8200", Version: version, Initialized: true, Member: true, Voter: member, AppliedIndex: appliedIndex(member)})
}

// appliedIndex is where a server starts: a member restarted on its volume has the log
// (the fake's commit index), a new server has sent autopilot no statistics yet.
func appliedIndex(member bool) uint64 {
	if member {
		return 100
	}
	return 0
}

// tick advances the simulated controllers and servers by one step.
func (s *sim) tick(ctx context.Context) {
	s.now = s.now.Add(2 * time.Second)
	c := s.cluster
	sts := &appsv1.StatefulSet{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))

	// The provisioning controller: the StatefulSet's count follows status.scaleDown.replicas
	// during a scale-down, and is never lowered otherwise (controllers.statefulSetReplicas).
	want := *sts.Spec.Replicas
	switch {
	case c.Status.ScaleDown != nil:
		want = c.Status.ScaleDown.Replicas
	case c.Spec.ReplicaCount() > want:
		want = c.Spec.ReplicaCount()
	}
	if want != *sts.Spec.Replicas {
		sts.Spec.Replicas = ptr.To(want)
		require.NoError(s.t, s.client.Update(ctx, sts))
	}

	// New servers catch up and become voters after a tick (autopilot's promotion).
	for i := range int(want) {
		name := resources.PodName("bao", i)
		if n, ok := s.ob.Node(name); ok && n.Member && !n.Voter {
			s.ob.Update(name, func(n *fake.Node) { n.Voter, n.AppliedIndex = true, appliedIndex(true) })
		}
	}

	// A server removed from the Raft configuration: its volume holds stale data from now on.
	claims := &corev1.PersistentVolumeClaimList{}
	require.NoError(s.t, s.client.List(ctx, claims, client.InNamespace("ns")))
	for i := range claims.Items {
		cl := &claims.Items[i]
		pod := strings.TrimPrefix(cl.Name, "data-")
		if n, ok := s.ob.Node(pod); ok && !n.Member && cl.Annotations[staleData] == "" {
			cl.Annotations = map[string]string{staleData: "true"}
			require.NoError(s.t, s.client.Update(ctx, cl))
		}
	}

	// The StatefulSet controller deletes pods at or above the count, highest first, one at a
	// time; the kubelet stops them a tick later. It creates missing pods below the count, one
	// at a time, in order.
	pods := map[string]*corev1.Pod{}
	list := &corev1.PodList{}
	require.NoError(s.t, s.client.List(ctx, list, client.InNamespace("ns")))
	for i := range list.Items {
		pods[list.Items[i].Name] = &list.Items[i]
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			// Stopped: the server is gone.
			if n, _ := s.ob.Node(p.Name); n.Member {
				s.deletedMembers = append(s.deletedMembers, p.Name)
			}
			s.ob.Update(p.Name, func(n *fake.Node) { n.Down = true })
			p.Finalizers = nil
			require.NoError(s.t, s.client.Update(ctx, p))
			delete(pods, p.Name)
		}
	}
	for i := 9; i >= int(want); i-- {
		if p := pods[resources.PodName("bao", i)]; p != nil {
			require.NoError(s.t, s.client.Delete(ctx, p))
			break
		}
	}
	for i := range int(want) {
		if pods[resources.PodName("bao", i)] == nil {
			s.createServer(ctx, i, false)
			break
		}
	}
	// The pvc-protection controller lets a volume go once no pod uses it.
	for i := range claims.Items {
		cl := &claims.Items[i]
		if cl.DeletionTimestamp != nil && pods[strings.TrimPrefix(cl.Name, "data-")] == nil {
			latest := &corev1.PersistentVolumeClaim{}
			require.NoError(s.t, s.client.Get(ctx, client.ObjectKeyFromObject(cl), latest))
			latest.Finalizers = nil
			require.NoError(s.t, s.client.Update(ctx, latest))
		}
	}

	// The Job controller runs step-down Jobs with the executor's own rule.
	jobs := &batchv1.JobList{}
	require.NoError(s.t, s.client.List(ctx, jobs, client.InNamespace("ns")))
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Status.Succeeded > 0 {
			continue
		}
		target := argAfter(j, "--node-id")
		s.stepDowns = append(s.stepDowns, target)
		if s.ob.Leader() == target {
			cl := s.login(target)
			require.NoError(s.t, cl.StepDown(ctx))
		}
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &metav1.Time{Time: s.now}
		require.NoError(s.t, s.client.Status().Update(ctx, j))
	}
	s.checkQuorum()
}

// checkQuorum records a moment when fewer than a majority of the Raft voters run.
func (s *sim) checkQuorum() {
	voters, up := 0, 0
	for i := range 10 {
		n, ok := s.ob.Node(resources.PodName("bao", i))
		if !ok || !n.Member || !n.Voter {
			continue
		}
		voters++
		if !n.Down {
			up++
		}
	}
	if up < voters/2+1 {
		s.quorumLost = append(s.quorumLost, fmt.Sprintf("%d of %d voters up at %s", up, voters, s.now))
	}
}

func (s *sim) login(pod string) openbao.Client {
	cl, err := s.ob.NewClient(openbao.Config{Address: "https://" + pod + ":8200"})
	require.NoError(s.t, err)
	require.NoError(s.t, cl.LoginJWT(context.Background(), "jwt", "openbao-operator", "token"))
	return cl
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

// state builds what the controller observes in a pass.
func (s *sim) state(ctx context.Context) *upgrade.State {
	st := &upgrade.State{
		Cluster: s.cluster, Pods: map[string]*corev1.Pod{}, Jobs: map[string]*batchv1.Job{},
		Claims: map[string]*corev1.PersistentVolumeClaim{}, Servers: map[string]upgrade.ServerState{},
		Now: s.now, ExecutorImage: "operator:1", Leader: s.ob.Leader(),
		Raft: &upgrade.RaftState{},
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
	claims := &corev1.PersistentVolumeClaimList{}
	require.NoError(s.t, s.client.List(ctx, claims, client.InNamespace("ns")))
	for i := range claims.Items {
		st.Claims[claims.Items[i].Name] = &claims.Items[i]
	}
	// The Raft configuration and autopilot's verdicts, which the fake derives from its
	// servers' state.
	var servers []openbao.RaftServer
	for i := range 10 {
		name := resources.PodName("bao", i)
		n, ok := s.ob.Node(name)
		if !ok {
			continue
		}
		if n.Member {
			servers = append(servers, openbao.RaftServer{NodeID: name, Voter: n.Voter, Leader: s.ob.Leader() == name})
		}
		if !n.Down {
			st.Servers[name] = upgrade.ServerState{Reachable: true, Initialized: n.Initialized, Sealed: n.Sealed, Active: s.ob.Leader() == name, Version: n.Version}
		}
	}
	st.Raft.RaftView = openbao.NewRaftView(servers, s.ob.Autopilot())
	return st
}

type simEnv struct{ s *sim }

func (e simEnv) Client() client.Client { return e.s.client }
func (e simEnv) OpenBao(_ context.Context, pod string) (openbao.Client, error) {
	return e.s.login(pod), nil
}
func (e simEnv) Event(_, reason, _ string) { e.s.events = append(e.s.events, reason) }

// ApplyWorkload: a scale-down changes the StatefulSet's count through the status
// (statefulSetReplicas), never through an upgrade's Workload.
func (e simEnv) ApplyWorkload(context.Context) error {
	return errors.New("the scale-down asked for an upgrade's workload to be applied")
}

// run plays the controller's passes (reconcileScaleDown) until the StatefulSet has the
// spec's count and no scale-down is in flight. With crash, the operator is killed at random
// points: before writing its intent, after writing it and before the side effect, after the
// side effect, or before the end-of-pass status write; the restarted operator knows only the
// persisted status.
func (s *sim) run(t *testing.T, crash bool) {
	ctx := context.Background()
	persisted := s.cluster.Status.DeepCopy()
	for range 300 {
		st := s.state(ctx)
		step := Plan(st)
		if a, ok := step.Action.(removePeer); ok && a.Pod == s.ob.Leader() {
			s.removedLeaders = append(s.removedLeaders, a.Pod)
		}
		switch {
		case step.Kind == Act && crash && s.rng.IntN(4) == 0:
			s.crashes++ // before the intent was written: the pass' status is lost
		case step.Kind == Act:
			persisted = s.cluster.Status.DeepCopy() // intent before the side effect
			if crash && s.rng.IntN(3) == 0 {
				s.crashes++
				break
			}
			if crash && s.rng.IntN(3) == 0 {
				require.NoError(t, Apply(ctx, st, step, simEnv{s}))
				s.crashes++ // after the side effect, before the end-of-pass write
				break
			}
			require.NoError(t, Apply(ctx, st, step, simEnv{s}))
			persisted = s.cluster.Status.DeepCopy()
		case crash && s.rng.IntN(4) == 0:
			s.crashes++ // the pass' status is lost
		default:
			persisted = s.cluster.Status.DeepCopy()
		}
		s.cluster.Status = *persisted.DeepCopy()
		s.tick(ctx)
		sts := &appsv1.StatefulSet{}
		require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: "ns", Name: "bao"}, sts))
		if s.cluster.Status.ScaleDown == nil && *sts.Spec.Replicas == s.cluster.Spec.ReplicaCount() && step.Kind != Act && s.settled(ctx) {
			return
		}
	}
	t.Fatalf("the scale-down did not finish in 300 passes: %+v", s.cluster.Status.ScaleDown)
}

// settled: every pod below the count runs as a voter, nothing above it is left.
func (s *sim) settled(ctx context.Context) bool {
	st := s.state(ctx)
	n := int(s.cluster.Spec.ReplicaCount())
	if len(st.Pods) != n || len(st.Raft.Voters) != n {
		return false
	}
	for name := range st.Claims {
		if ord, _ := ordinalOf("bao", strings.TrimPrefix(name, "data-")); ord >= n {
			return false
		}
	}
	return true
}

// removals are the servers the operator asked OpenBao to remove, in order.
func (s *sim) removals() []string {
	var out []string
	for _, c := range s.ob.CallsTo("RemovePeer") {
		out = append(out, c.Args...)
	}
	return out
}

func (s *sim) setReplicas(n int32) { s.cluster.Spec.Replicas = ptr.To(n); s.cluster.Generation++ }

func TestScaleDownSequences(t *testing.T) {
	for _, tc := range []struct{ from, to int32 }{{5, 3}, {3, 1}, {5, 1}, {7, 3}} {
		for seed := range uint64(8) {
			for _, crash := range []bool{false, true} {
				t.Run(fmt.Sprintf("%d-to-%d/seed=%d/crash=%v", tc.from, tc.to, seed, crash), func(t *testing.T) {
					ctx := context.Background()
					s := newSim(t, int(tc.from), seed)
					s.setReplicas(tc.to)
					s.run(t, crash)

					// Highest ordinal first, each server removed once.
					var want []string
					for i := tc.from - 1; i >= tc.to; i-- {
						want = append(want, resources.PodName("bao", int(i)))
					}
					assert.Equal(t, want, s.removals(), "servers removed from the Raft configuration, in order, each once")
					assert.Empty(t, s.quorumLost, "a majority of the voters ran at every moment")
					assert.Empty(t, s.removedLeaders, "the active node is stepped down before it is removed")
					assert.Empty(t, s.deletedMembers, "no pod is deleted while its server is a Raft peer")
					assert.Empty(t, s.staleStarts)
					for _, sd := range s.stepDowns {
						ord, _ := ordinalOf("bao", sd)
						assert.GreaterOrEqual(t, ord, int(tc.to), "only a server that leaves is stepped down: %v", s.stepDowns)
					}
					if crash {
						assert.Positive(t, s.crashes)
					}
					cond := meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionScalingDown)
					require.NotNil(t, cond)
					assert.Equal(t, openbaov1alpha1.ReasonScaleDownCompleted, cond.Reason, cond.Message)
					jobs := &batchv1.JobList{}
					require.NoError(t, s.client.List(ctx, jobs))
					assert.Empty(t, jobs.Items, "the step-down Jobs are removed")
					leader := s.ob.Leader()
					ord, _ := ordinalOf("bao", leader)
					assert.Less(t, ord, int(tc.to), "a remaining server leads (%q)", leader)

					// Scale up again: the new servers start with empty volumes.
					s.setReplicas(tc.from)
					s.run(t, crash)
					assert.Empty(t, s.staleStarts, "a removed server started again from its old data")
					for i := tc.to; i < tc.from; i++ {
						assert.Equal(t, 2, s.generation[resources.PodName("bao", int(i))], "server %d was created anew", i)
					}
				})
			}
		}
	}
}

// The leader is stepped down first when it leaves, through a Job, and only when another
// healthy voter can take over.
func TestLeaderLeavesLast(t *testing.T) {
	ctx := context.Background()
	s := newSim(t, 5, 1)
	s.ob.SetLeader("bao-4")
	s.setReplicas(3)
	require.Equal(t, Act, Plan(s.state(ctx)).Kind) // started
	step := Plan(s.state(ctx))
	require.Equal(t, Act, step.Kind)
	assert.Equal(t, StepStepDown, step.Name)
	assert.Equal(t, "bao-4", step.Pod)
	job := step.Action.(createJob).Job
	assert.Equal(t, "bao-scaledown-stepdown-4", job.Name)
	assert.Contains(t, job.Spec.Template.Spec.Containers[0].Args, "step-down")

	// With no healthy voter to take over, nothing happens.
	s2 := newSim(t, 3, 1)
	s2.ob.SetLeader("bao-2")
	s2.setReplicas(1)
	require.Equal(t, Act, Plan(s2.state(ctx)).Kind)
	st := s2.state(ctx)
	st.Raft.Healthy["bao-0"], st.Raft.Healthy["bao-1"] = false, false
	step = Plan(st)
	assert.Equal(t, Wait, step.Kind)
	assert.Contains(t, step.Message, "No other server could take over from bao-2")
}

// A lower spec.replicas is refused, with nothing changed, while an upgrade runs or a server
// that would remain is not healthy.
func TestScaleDownBlocked(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, want string
		change     func(s *sim, st *upgrade.State)
	}{
		{"upgrade in flight", "waits for the upgrade to 2.8.0 to finish", func(s *sim, st *upgrade.State) {
			s.cluster.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{ToVersion: "2.8.0"}
		}},
		{"remaining server unhealthy", "bao-1 (not healthy for autopilot)", func(_ *sim, st *upgrade.State) { st.Raft.Healthy["bao-1"] = false }},
		{"remaining server not ready", "bao-0 (not ready)", func(_ *sim, st *upgrade.State) { st.Pods["bao-0"].Status.Conditions = nil }},
		{"remaining server a non-voter", "bao-2 (not a Raft voter)", func(_ *sim, st *upgrade.State) {
			delete(st.Raft.Voters, "bao-2")
			st.Raft.NonVoters["bao-2"] = true
		}},
		{"autopilot unhealthy", "autopilot does not report", func(_ *sim, st *upgrade.State) { st.Raft.AutopilotHealthy = ptr.To(false) }},
		{"raft unreadable", "could not be read", func(_ *sim, st *upgrade.State) { st.Raft = nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSim(t, 5, 2)
			s.setReplicas(3)
			st := s.state(ctx)
			tc.change(s, st)
			step := Plan(st)
			assert.Equal(t, Blocked, step.Kind)
			assert.Contains(t, step.Message, tc.want)
			assert.Equal(t, "Blocked", step.Name, "the first refusal is announced")
			assert.Nil(t, s.cluster.Status.ScaleDown, "nothing recorded")
			cond := meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionScalingDown)
			require.NotNil(t, cond)
			assert.Equal(t, openbaov1alpha1.ReasonScaleDownBlocked, cond.Reason)
			assert.Equal(t, metav1.ConditionFalse, cond.Status)
			assert.Equal(t, "", Plan(st).Name, "a refusal is announced once")

			// Setting spec.replicas back clears it.
			s.setReplicas(5)
			assert.Equal(t, Idle, Plan(s.state(ctx)).Kind)
			assert.Equal(t, openbaov1alpha1.ReasonNoScaleDown, meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionScalingDown).Reason)
		})
	}
}

// spec.replicas set back up while a server was being removed: the server that already left
// the Raft configuration is deleted with its volume and re-created empty.
func TestScaleUpDuringRemoval(t *testing.T) {
	ctx := context.Background()
	s := newSim(t, 5, 3)
	s.ob.SetLeader("bao-0")
	s.setReplicas(3)
	require.Equal(t, Act, Plan(s.state(ctx)).Kind)
	step := Plan(s.state(ctx))
	require.Equal(t, StepRemovePeer, step.Name)
	require.NoError(t, Apply(ctx, s.state(ctx), step, simEnv{s}))
	s.setReplicas(5)
	s.run(t, false)
	assert.Empty(t, s.staleStarts)
	assert.Equal(t, 2, s.generation["bao-4"], "bao-4 was created anew")
	assert.Equal(t, 1, s.generation["bao-3"], "bao-3 was never touched")
	assert.Contains(t, meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionScalingDown).Message, "spec.replicas is 5 again")
}
