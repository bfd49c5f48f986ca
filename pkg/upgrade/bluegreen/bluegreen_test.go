package bluegreen

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	k8sfake "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	baofake "github.com/openbao-operator/openbao-operator/pkg/openbao/fake"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade/internal/steptrace"
)

var update = flag.Bool("update", false, "rewrite the golden step traces under testdata")

const (
	oldVersion   = "2.6.2"
	newVersion   = "2.7.2"
	thirdVersion = "2.8.0"
	ns           = "ns"
)

func image(version string) string { return resources.DefaultImage("", version) }

// sim plays the provisioning controller (client Service selector, the active StatefulSet),
// the StatefulSet controller (pods, volumes, garbage collection), the Job controller
// (step-down Jobs) and the OpenBao servers (pkg/openbao/fake: Raft membership, promote,
// remove-peer, step-down). It checks the safety invariants after every pass and records what
// a user would care about.
type sim struct {
	t        *testing.T
	client   client.Client
	bao      *baofake.Cluster
	observer *upgrade.Observer
	cluster  *openbaov1alpha1.OpenBaoCluster
	replicas int
	now      time.Time
	rng      *rand.Rand
	nextIP   int
	commit   uint64

	// Behaviours.
	brokenImage   string
	paused        bool
	failStepDowns bool
	promotes      int

	// What happened.
	crashes, persists int
	// passes counts the operator's passes; lostWrites, those whose final status write failed.
	passes, lostWrites int
	events             []string
	// trace, when set, records the steps and events for a golden file.
	trace            *steptrace.Recorder
	stepDowns        []string // "pod(version)"
	leaderChanges    []string // "from(version)->to(version)"
	leader           string
	removeCalls      int
	removed          []string
	firstBlueRemoval time.Time
	cutoverAt        time.Time
	selector         string
	maxVoters        int
	nodes            []string
	applied          map[string]bool // StatefulSets the provisioning controller has applied
	firstPromote     time.Time
	greenCaughtUp    time.Time // when the last Green server caught up (before any promotion)
}

func newSim(t *testing.T, replicas int, seed uint64) *sim {
	scheme := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(scheme))
	require.NoError(t, openbaov1alpha1.AddToScheme(scheme))
	c := &openbaov1alpha1.OpenBaoCluster{
		ObjectMeta: metav1.ObjectMeta{Name: "bao", Namespace: ns, UID: "uid-1"},
		Spec: openbaov1alpha1.OpenBaoClusterSpec{Version: newVersion, Replicas: ptr.To(int32(replicas)),
			Upgrade: openbaov1alpha1.UpgradeSpec{
				Strategy:  openbaov1alpha1.BlueGreenUpgrade,
				BlueGreen: &openbaov1alpha1.BlueGreenSpec{VerificationPeriod: &metav1.Duration{Duration: 2 * time.Minute}},
			}},
		Status: openbaov1alpha1.OpenBaoClusterStatus{CurrentVersion: oldVersion, CurrentImage: image(oldVersion), Initialized: true},
	}
	token := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(token, []byte("operator-jwt\n"), 0o600))
	s := &sim{
		t: t, cluster: c, replicas: replicas, bao: baofake.NewCluster(), commit: 100,
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), rng: rand.New(rand.NewPCG(seed, seed)),
		client:  k8sfake.NewClientBuilder().WithScheme(scheme).Build(),
		applied: map[string]bool{"bao": true},
	}
	s.bao.Clock = func() time.Time { return s.now }
	s.observer = &upgrade.Observer{NewClient: s.bao.NewClient, TokenFile: token}
	ctx := context.Background()
	sts := resources.StatefulSet(c, resources.StatefulSetParams{Name: "bao", Image: image(oldVersion), Replicas: int32(replicas), Partition: int32(replicas)})
	require.NoError(t, s.client.Create(ctx, sts))
	config, err := resources.RenderConfig(s.configParams())
	require.NoError(t, err)
	require.NoError(t, s.client.Create(ctx, resources.ConfigMap(c, "bao", config, "")))
	require.NoError(t, s.client.Create(ctx, resources.ClientService(c, resources.StatefulSetSelector(c, "bao"))))
	s.selector = "bao"
	for i := range replicas {
		pod := s.createPod(ctx, sts, i)
		s.addNode(baofake.Node{ID: pod.Name, Address: openbao.PodAddress(pod.Status.PodIP, resources.APIPort), Version: oldVersion,
			Initialized: true, Member: true, Voter: true, AppliedIndex: 100})
		s.setReady(ctx, pod.Name, true)
	}
	s.bao.SetLeader(resources.PodName("bao", s.rng.IntN(replicas)))
	s.leader = s.bao.Leader()
	return s
}

func (s *sim) configParams() resources.ConfigParams {
	return resources.ClusterConfigParams(s.cluster, resources.ClusterConfigInputs{
		Issuer: "https://kubernetes.default.svc", OperatorNamespace: "openbao-operator-system", OperatorServiceAccount: "openbao-operator",
	})
}

// createPod plays the StatefulSet controller creating a pod and its volume.
func (s *sim) createPod(ctx context.Context, sts *appsv1.StatefulSet, ordinal int) *corev1.Pod {
	s.nextIP++
	name := resources.PodName(sts.Name, ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: sts.Spec.Template.Labels},
		Spec:       *sts.Spec.Template.Spec.DeepCopy(),
	}
	require.NoError(s.t, s.client.Create(ctx, pod))
	pod.Status.PodIP = fmt.Sprintf("10.0.%d.%d", s.nextIP/200, s.nextIP%200+1)
	require.NoError(s.t, s.client.Status().Update(ctx, pod))
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-" + name, Namespace: ns, Labels: sts.Spec.VolumeClaimTemplates[0].Labels}}
	if err := s.client.Create(ctx, claim); err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(s.t, err)
	}
	return pod
}

func (s *sim) setReady(ctx context.Context, name string, ready bool) {
	pod := &corev1.Pod{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod))
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	if len(pod.Status.Conditions) == 1 && pod.Status.Conditions[0].Status == status {
		return
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	require.NoError(s.t, s.client.Status().Update(ctx, pod))
}

func versionOf(img string) string { return img[strings.LastIndex(img, ":")+1:] }

// tick advances the simulated controllers and servers by one step.
func (s *sim) tick(ctx context.Context) {
	t := s.t
	s.now = s.now.Add(3 * time.Second)

	// The provisioning controller applies the declared workload at the start of its pass.
	s.applyWorkload(ctx)
	s.observeSelector(ctx)

	// Clients write all the time: the leader commits, and at any instant its followers
	// trail it by a few entries. Servers that started on an earlier tick become healthy
	// and catch up.
	s.commit += 10
	s.bao.SetCommitIndex(s.commit)
	pods := &corev1.PodList{}
	require.NoError(t, s.client.List(ctx, pods, client.InNamespace(ns)))
	for _, p := range pods.Items {
		n, ok := s.bao.Node(p.Name)
		if !ok || n.Down {
			continue
		}
		applied := s.commit - 1 - uint64(s.rng.IntN(3))
		switch {
		case p.Name == s.bao.Leader():
			applied = s.commit
		case n.AppliedIndex == 0: // autopilot has no statistics from it yet: unhealthy
			applied = s.commit - 40 // still catching up
			if s.firstPromote.IsZero() {
				s.greenCaughtUp = s.now
			}
		}
		s.bao.Update(p.Name, func(n *baofake.Node) { n.AppliedIndex = applied })
		s.setReady(ctx, p.Name, true)
	}

	// The StatefulSet controller and the garbage collector.
	sets := &appsv1.StatefulSetList{}
	require.NoError(t, s.client.List(ctx, sets, client.InNamespace(ns)))
	exists := map[string]*appsv1.StatefulSet{}
	for i := range sets.Items {
		exists[sets.Items[i].Name] = &sets.Items[i]
	}
	for _, p := range pods.Items {
		if _, ok := exists[p.Labels[resources.LabelStatefulSet]]; ok {
			continue
		}
		if n, ok := s.bao.Node(p.Name); ok {
			if n.Member {
				t.Errorf("pod %s was deleted while its server was still in the Raft configuration", p.Name)
			}
			s.bao.Update(p.Name, func(n *baofake.Node) { n.Down = true })
		}
		require.NoError(t, s.client.Delete(ctx, &p))
	}
	for _, sts := range exists {
		for i := range int(*sts.Spec.Replicas) {
			name := resources.PodName(sts.Name, i)
			pod := &corev1.Pod{}
			err := s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod)
			if err == nil {
				if !upgrade.PodReady(pod) {
					break // OrderedReady
				}
				continue
			}
			require.True(t, apierrors.IsNotFound(err))
			pod = s.createPod(ctx, sts, i)
			s.startServer(ctx, sts, pod)
			break
		}
	}

	// The Job controller runs step-down Jobs.
	jobs := &batchv1.JobList{}
	require.NoError(t, s.client.List(ctx, jobs, client.InNamespace(ns)))
	for i := range jobs.Items {
		j := &jobs.Items[i]
		if j.Status.Succeeded > 0 {
			continue
		}
		if s.failStepDowns {
			j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobFailed, Status: corev1.ConditionTrue}}
			require.NoError(t, s.client.Status().Update(ctx, j))
			continue
		}
		if upgrade.JobFailed(j) {
			continue
		}
		if args := j.Spec.Template.Spec.Containers[0].Args; args[1] == string(resources.ActionStepDown) {
			target := argAfter(args, "--node-id")
			n, _ := s.bao.Node(target)
			s.stepDowns = append(s.stepDowns, fmt.Sprintf("%s(%s)", target, n.Version))
			cl, err := s.bao.NewClient(openbao.Config{Address: n.Address})
			require.NoError(t, err)
			require.NoError(t, cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, "upgrade-jwt"))
			require.NoError(t, cl.StepDown(ctx))
		}
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &metav1.Time{Time: s.now}
		require.NoError(t, s.client.Status().Update(ctx, j))
	}
	s.check()
}

// applyWorkload plays the controller's applyWorkload with the objects it builds: every
// declared StatefulSet and its ConfigMap, the client Service's selection and the active
// StatefulSet in the status. A StatefulSet that the strategy deleted must never be declared
// again: the controller would create it anew.
func (s *sim) applyWorkload(ctx context.Context) {
	t, c := s.t, s.cluster
	w := newManager().Workload(c)
	if resources.ActiveStatefulSet(c) != w.Active().Name {
		c.Status.StatefulSet = w.Active().Name
	}
	for i, set := range w.Sets {
		selfInit := ""
		if i == 0 && !c.Status.Initialized {
			selfInit = "self-init"
		}
		cm, desired, err := resources.ServerSetObjects(c, set, resources.ServerSetParams{Config: s.configParams(), SelfInit: selfInit, Replicas: int32(s.replicas)})
		require.NoError(t, err)
		sts := &appsv1.StatefulSet{}
		err = s.client.Get(ctx, client.ObjectKeyFromObject(desired), sts)
		switch {
		case apierrors.IsNotFound(err):
			if s.applied[set.Name] {
				t.Errorf("the workload declares StatefulSet %s again after it was deleted", set.Name)
			}
			s.applied[set.Name] = true
			require.NoError(t, controllerutil.SetControllerReference(c, cm, s.client.Scheme()))
			require.NoError(t, controllerutil.SetControllerReference(c, desired, s.client.Scheme()))
			require.NoError(t, s.client.Create(ctx, cm))
			require.NoError(t, s.client.Create(ctx, desired))
			s.events = append(s.events, "(created "+set.Name+")")
		case err != nil:
			require.NoError(t, err)
		default:
			// Written only when it differs, as the controller's ensure does.
			if !equality.Semantic.DeepEqual(sts.Spec.Template, desired.Spec.Template) || *sts.Spec.Replicas != *desired.Spec.Replicas ||
				!equality.Semantic.DeepEqual(sts.Spec.UpdateStrategy, desired.Spec.UpdateStrategy) {
				sts.Spec.Replicas, sts.Spec.UpdateStrategy, sts.Spec.Template = desired.Spec.Replicas, desired.Spec.UpdateStrategy, desired.Spec.Template
				require.NoError(t, s.client.Update(ctx, sts))
			}
			existing := &corev1.ConfigMap{}
			require.NoError(t, s.client.Get(ctx, client.ObjectKeyFromObject(cm), existing))
			if !equality.Semantic.DeepEqual(existing.Data, cm.Data) {
				existing.Data = cm.Data
				require.NoError(t, s.client.Update(ctx, existing))
			}
		}
	}
	svc := &corev1.Service{}
	require.NoError(t, s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bao"}, svc))
	if svc.Spec.Selector[resources.LabelStatefulSet] != w.Serving {
		svc.Spec.Selector = resources.StatefulSetSelector(c, w.Serving)
		require.NoError(t, s.client.Update(ctx, svc))
	}
}

// startServer starts OpenBao in a new pod: it joins the cluster with the configuration of
// its ConfigMap, as a non-voter when the configuration says so.
func (s *sim) startServer(ctx context.Context, sts *appsv1.StatefulSet, pod *corev1.Pod) {
	img := pod.Spec.Containers[0].Image
	if img == s.brokenImage {
		pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "openbao", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting failed container"}}}}
		require.NoError(s.t, s.client.Status().Update(ctx, pod))
		return
	}
	cm := &corev1.ConfigMap{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: resources.ConfigMapName(sts.Name)}, cm), "a server's ConfigMap exists before it starts")
	config := cm.Data[resources.ConfigFile]
	nonVoter := strings.Contains(config, "retry_join_as_non_voter = true")
	if s.cluster.Status.Upgrade != nil && sts.Name != resources.ActiveStatefulSet(s.cluster) {
		assert.True(s.t, nonVoter, "Green's servers join as non-voters")
		assert.Contains(s.t, config, "https://"+resources.PodName(resources.ActiveStatefulSet(s.cluster), 0)+".bao-internal.ns.svc:8200", "Green joins Blue's servers")
		assert.Empty(s.t, cm.Data[resources.SelfInitConfigFile], "no self-initialization for Green")
	}
	s.addNode(baofake.Node{ID: pod.Name, Address: openbao.PodAddress(pod.Status.PodIP, resources.APIPort), Version: versionOf(img),
		Initialized: true, Member: true, Voter: !nonVoter, AppliedIndex: 0})
}

func argAfter(args []string, flag string) string {
	for i := range args[:len(args)-1] {
		if args[i] == flag {
			return args[i+1]
		}
	}
	return ""
}

func (s *sim) observeSelector(ctx context.Context) {
	svc := &corev1.Service{}
	require.NoError(s.t, s.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "bao"}, svc))
	sel := svc.Spec.Selector[resources.LabelStatefulSet]
	if sel != s.selector {
		if u := s.cluster.Status.Upgrade; u != nil && u.BlueGreen != nil && sel == u.BlueGreen.GreenStatefulSet && s.cutoverAt.IsZero() {
			s.cutoverAt = s.now
		}
		s.selector = sel
	}
}

// check asserts the safety invariants.
func (s *sim) check() {
	t := s.t
	// Calls since the last check were made while s.leader led: one side effect per pass.
	calls := s.bao.CallsTo("RemovePeer")
	for _, call := range calls[s.removeCalls:] {
		id := call.Args[0]
		if id == s.leader {
			t.Errorf("remove-peer of %s while it was the active node", id)
		}
		s.removed = append(s.removed, id)
		if ownedBy("bao", id) && s.firstBlueRemoval.IsZero() {
			s.firstBlueRemoval = s.now
		}
	}
	s.removeCalls = len(calls)
	promotes := s.bao.CallsTo("Promote")
	if len(promotes) > 0 && s.firstPromote.IsZero() {
		s.firstPromote = s.now
	}
	s.promotes = len(promotes)
	voters, members := 0, 0
	for _, id := range s.nodeIDs() {
		n, _ := s.bao.Node(id)
		if n.Member {
			members++
			if n.Voter {
				voters++
			}
		}
	}
	s.maxVoters = max(s.maxVoters, voters)
	if voters < s.replicas {
		t.Errorf("the Raft configuration has %d voters, fewer than the %d the cluster had", voters, s.replicas)
	}
	if leader := s.bao.Leader(); leader != s.leader {
		from, _ := s.bao.Node(s.leader)
		to, _ := s.bao.Node(leader)
		change := fmt.Sprintf("%s(%s)->%s(%s)", s.leader, from.Version, leader, to.Version)
		s.leaderChanges = append(s.leaderChanges, change)
		if from.Version > to.Version && to.Version != "" {
			t.Errorf("leadership moved from a newer version to an older one: %s", change)
		}
		s.leader = leader
	}
}

func (s *sim) addNode(n baofake.Node) {
	s.bao.AddNode(n)
	s.nodes = append(s.nodes, n.ID)
}

func (s *sim) nodeIDs() []string { return s.nodes }

// state builds what the controller observes, with the real Observer against the fake servers.
func (s *sim) state(ctx context.Context) *upgrade.State {
	c := s.cluster
	st := &upgrade.State{
		Cluster: c, Pods: map[string]*corev1.Pod{}, Jobs: map[string]*batchv1.Job{},
		StatefulSets: map[string]*appsv1.StatefulSet{}, Claims: map[string]*corev1.PersistentVolumeClaim{},
		ConfigMaps: map[string]*corev1.ConfigMap{}, Now: s.now, ExecutorImage: "operator:1",
	}
	sets := &appsv1.StatefulSetList{}
	require.NoError(s.t, s.client.List(ctx, sets, client.InNamespace(ns)))
	for i := range sets.Items {
		st.StatefulSets[sets.Items[i].Name] = &sets.Items[i]
	}
	st.StatefulSet = st.StatefulSets[resources.ActiveStatefulSet(c)]
	pods := &corev1.PodList{}
	require.NoError(s.t, s.client.List(ctx, pods, client.InNamespace(ns)))
	for i := range pods.Items {
		st.Pods[pods.Items[i].Name] = &pods.Items[i]
	}
	jobs := &batchv1.JobList{}
	require.NoError(s.t, s.client.List(ctx, jobs, client.InNamespace(ns)))
	for i := range jobs.Items {
		st.Jobs[jobs.Items[i].Name] = &jobs.Items[i]
	}
	claims := &corev1.PersistentVolumeClaimList{}
	require.NoError(s.t, s.client.List(ctx, claims, client.InNamespace(ns)))
	for i := range claims.Items {
		st.Claims[claims.Items[i].Name] = &claims.Items[i]
	}
	cms := &corev1.ConfigMapList{}
	require.NoError(s.t, s.client.List(ctx, cms, client.InNamespace(ns)))
	for i := range cms.Items {
		st.ConfigMaps[cms.Items[i].Name] = &cms.Items[i]
	}
	o := s.observer.Observe(ctx, c, pods.Items, nil)
	st.Servers, st.Leader, st.Raft = o.Servers, o.Leader, o.Raft
	return st
}

type simEnv struct {
	s  *sim
	st *upgrade.State
}

func (e simEnv) Client() client.Client { return e.s.client }
func (e simEnv) OpenBao(ctx context.Context, pod string) (openbao.Client, error) {
	p, ok := e.st.Pods[pod]
	if !ok {
		return nil, fmt.Errorf("pod %s not found", pod)
	}
	return e.s.observer.Client(ctx, e.s.cluster, p, nil)
}
func (e simEnv) Event(_, reason, _ string) { e.s.events = append(e.s.events, reason) }
func (e simEnv) ApplyWorkload(ctx context.Context) error {
	e.s.applyWorkload(ctx)
	return nil
}

// run drives the manager until the upgrade completes, is aborted or halts, or until stop
// says so. before runs ahead of every pass (a user changing the spec). With crash, the
// operator dies between recording its intent and performing every other side effect: the
// restarted operator must go on from the persisted status and the live objects alone.
func (s *sim) run(crash bool, before func(), stop func() bool) {
	t := s.t
	ctx := context.Background()
	m := newManager()
	started := false
	for range 1500 {
		if before != nil {
			before()
		}
		if stop != nil && stop() {
			return
		}
		if s.paused {
			upgrade.Paused(s.cluster, s.now)
			s.tick(ctx)
			continue
		}
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
		_, err := m.Reconcile(ctx, st, simEnv{s, st}, persist)
		s.passes++
		switch {
		case crashed:
			s.crashes++
			s.cluster.Status = persisted.Status
		case crash && s.passes%3 == 2:
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
		s.check()
		u := s.cluster.Status.Upgrade
		if u != nil {
			started = true
		}
		if started && u == nil {
			return
		}
		if u != nil && u.Step == upgrade.StepHalted && !crashed && !lost {
			return // halted by this pass (a halt the pass did not write is looked at again)
		}
		s.tick(ctx)
	}
	t.Fatalf("the upgrade did not finish in 1500 passes: %+v", s.cluster.Status.Upgrade)
}

func (s *sim) upgradeStatus() *openbaov1alpha1.UpgradeStatus { return s.cluster.Status.Upgrade }

func (s *sim) phase() openbaov1alpha1.BlueGreenPhase {
	if u := s.cluster.Status.Upgrade; u != nil && u.BlueGreen != nil {
		return u.BlueGreen.Phase
	}
	return ""
}

// members returns the Raft members as "id(voter)".
func (s *sim) members() (voters, nonVoters []string) {
	for _, id := range s.nodeIDs() {
		n, _ := s.bao.Node(id)
		switch {
		case n.Member && n.Voter:
			voters = append(voters, id)
		case n.Member:
			nonVoters = append(nonVoters, id)
		}
	}
	sort.Strings(voters)
	sort.Strings(nonVoters)
	return voters, nonVoters
}

func (s *sim) objects(list client.ObjectList) []string {
	require.NoError(s.t, s.client.List(context.Background(), list, client.InNamespace(ns)))
	items, err := meta.ExtractList(list)
	require.NoError(s.t, err)
	var out []string
	for _, o := range items {
		out = append(out, o.(client.Object).GetName())
	}
	sort.Strings(out)
	return out
}

func podsOf(sts string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, resources.PodName(sts, i))
	}
	sort.Strings(out)
	return out
}

func claimsOf(sts string, n int) []string {
	var out []string
	for _, p := range podsOf(sts, n) {
		out = append(out, "data-"+p)
	}
	return out
}

// assertOnlyServers checks that sts is the cluster's only StatefulSet, with its pods,
// volumes and ConfigMap, and that its pods are the Raft cluster's voters.
func (s *sim) assertOnlyServers(sts string) {
	t := s.t
	assert.Equal(t, []string{sts}, s.objects(&appsv1.StatefulSetList{}), "StatefulSets")
	assert.Equal(t, podsOf(sts, s.replicas), s.objects(&corev1.PodList{}), "pods")
	assert.Equal(t, claimsOf(sts, s.replicas), s.objects(&corev1.PersistentVolumeClaimList{}), "volumes")
	assert.Equal(t, []string{resources.ConfigMapName(sts)}, s.objects(&corev1.ConfigMapList{}), "ConfigMaps")
	assert.Empty(t, s.objects(&batchv1.JobList{}), "Jobs")
	voters, nonVoters := s.members()
	assert.Equal(t, podsOf(sts, s.replicas), voters, "Raft voters")
	assert.Empty(t, nonVoters, "Raft non-voters")
	assert.True(t, ownedBy(sts, s.bao.Leader()), "the leader %s is one of %s's servers", s.bao.Leader(), sts)
	assert.Equal(t, sts, s.selector, "the client Service selects %s", sts)
}

func TestBlueGreenUpgradeSequences(t *testing.T) {
	for _, replicas := range []int{1, 3, 5} {
		for seed := range uint64(4) {
			for _, crash := range []bool{false, true} {
				t.Run(fmt.Sprintf("replicas=%d/seed=%d/crash=%v", replicas, seed, crash), func(t *testing.T) {
					s := newSim(t, replicas, seed)
					s.bao.PromotionDelay = 12 * time.Second // autopilot applies a promotion on its next cycle
					s.run(crash, nil, nil)

					c := s.cluster
					require.Nil(t, c.Status.Upgrade, "upgrade finished")
					assert.Equal(t, newVersion, c.Status.CurrentVersion)
					assert.Equal(t, image(newVersion), c.Status.CurrentImage)
					assert.Equal(t, openbaov1alpha1.ReasonUpgradeCompleted, meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading).Reason)
					green := GreenName(c, revisionOf(t, s))
					assert.Equal(t, green, c.Status.StatefulSet, "Green is the active StatefulSet")
					s.assertOnlyServers(green)

					// Green was promoted only after staying caught up for the minimum sync time.
					assert.GreaterOrEqual(t, s.firstPromote.Sub(s.greenCaughtUp), MinSyncTime, "promotion after the minimum sync time")
					// A promotion that takes a while is not asked again in a tight loop.
					perPod := map[string]int{}
					for _, call := range s.bao.CallsTo("Promote") {
						perPod[call.Args[0]]++
					}
					assert.Len(t, perPod, replicas)
					for pod, n := range perPod {
						assert.LessOrEqual(t, n, 2, "promote calls for %s", pod)
					}
					// Green ran alongside Blue as voters before Blue left.
					assert.Equal(t, 2*replicas, s.maxVoters, "every Green server was promoted before Blue left")
					// Blue's servers left only after the verification period on Green.
					require.False(t, s.cutoverAt.IsZero(), "the client Service was switched to Green")
					assert.GreaterOrEqual(t, s.firstBlueRemoval.Sub(s.cutoverAt), 2*time.Minute-3*time.Second, "Blue retired after the verification period")
					// One step-down, of the last Blue server, to Green.
					require.Len(t, s.stepDowns, 1, "leadership moves once: %v", s.stepDowns)
					assert.Contains(t, s.stepDowns[0], "("+oldVersion+")")
					require.NotEmpty(t, s.leaderChanges)
					assert.Contains(t, s.leaderChanges[len(s.leaderChanges)-1], "("+newVersion+")")
					for _, r := range []string{"UpgradeStarted", "GreenCreated", "ServerPromoted", "ServiceCutover", "PeerRemoved", "JobCreated", "StatefulSetDeleted", "VolumesDeleted", "UpgradeCompleted"} {
						if !crash || r == "UpgradeStarted" || r == "UpgradeCompleted" {
							assert.Contains(t, s.events, r)
						}
					}
					if crash {
						assert.Positive(t, s.crashes)
						assert.Positive(t, s.lostWrites)
					}
					// Green's objects belong to the cluster, so the provisioning controller
					// manages them from now on.
					sts := &appsv1.StatefulSet{}
					require.NoError(t, s.client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: green}, sts))
					assert.True(t, metav1.IsControlledBy(sts, c))
					assert.Equal(t, int32(replicas), *sts.Spec.UpdateStrategy.RollingUpdate.Partition, "Green's pods never roll on a template change")
				})
			}
		}
	}
}

// revisionOf is the revision of the upgrade the sim ran, from Green's StatefulSet.
// The steps and events of a BlueGreen upgrade of 1, 3 and 5 servers, pinned in
// testdata/bluegreen-<replicas>.golden.
func TestBlueGreenStepTraces(t *testing.T) {
	for _, replicas := range []int{1, 3, 5} {
		t.Run(fmt.Sprintf("replicas=%d", replicas), func(t *testing.T) {
			s := newSim(t, replicas, 1)
			s.bao.PromotionDelay = 12 * time.Second // autopilot applies a promotion on its next cycle
			s.trace = &steptrace.Recorder{}
			s.run(false, nil, nil)
			require.Nil(t, s.cluster.Status.Upgrade, "upgrade finished")
			s.trace.Check(t, fmt.Sprintf("testdata/bluegreen-%d.golden", replicas), *update)
		})
	}
}

func revisionOf(t *testing.T, s *sim) string {
	for _, name := range s.objects(&appsv1.StatefulSetList{}) {
		if rest, ok := strings.CutPrefix(name, "bao-"); ok {
			return rest
		}
	}
	t.Fatal("no Green StatefulSet")
	return ""
}

func TestBlueGreenWaitsForConfirmation(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			s := newSim(t, 3, 11)
			s.cluster.Spec.Upgrade.BlueGreen.RequireConfirmation = true
			s.cluster.Spec.Upgrade.BlueGreen.ConfirmedVersion = oldVersion // an earlier upgrade's confirmation does not count
			waited := 0
			s.run(crash, nil, func() bool {
				if s.phase() == openbaov1alpha1.BlueGreenAwaitingConfirmation {
					waited++
				}
				return waited > 400 // 20 minutes, twice the step timeout
			})
			u := s.upgradeStatus()
			require.NotNil(t, u)
			assert.Equal(t, StepAwaitConfirmation, u.Step)
			assert.Nil(t, u.StepDeadline, "waiting for a person has no deadline")
			assert.Contains(t, u.Message, "confirmedVersion to "+newVersion)
			assert.Empty(t, s.removed, "no server left the Raft cluster before the confirmation")
			assert.Equal(t, 2*3, len(first(s.members())), "Blue and Green are voters")
			assert.Equal(t, u.BlueGreen.GreenStatefulSet, s.selector, "Green serves")

			s.cluster.Spec.Upgrade.BlueGreen.ConfirmedVersion = "v" + newVersion
			s.run(crash, nil, nil)
			require.Nil(t, s.cluster.Status.Upgrade)
			assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
			s.assertOnlyServers(s.cluster.Status.StatefulSet)
		})
	}
}

func first(a, _ []string) []string { return a }

func TestBlueGreenAbortReturnsToBlue(t *testing.T) {
	phases := []openbaov1alpha1.BlueGreenPhase{
		openbaov1alpha1.BlueGreenDeployingGreen, openbaov1alpha1.BlueGreenJoiningNonVoters, openbaov1alpha1.BlueGreenSyncing,
		openbaov1alpha1.BlueGreenPromoting, openbaov1alpha1.BlueGreenVerifying, openbaov1alpha1.BlueGreenAwaitingConfirmation,
	}
	for _, phase := range phases {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", phase, crash), func(t *testing.T) {
				s := newSim(t, 3, 5)
				s.cluster.Spec.Upgrade.BlueGreen.RequireConfirmation = phase == openbaov1alpha1.BlueGreenAwaitingConfirmation
				seen := false
				s.run(crash, func() {
					voters, _ := s.members()
					// In Promoting: once a Green server votes.
					if !seen && s.phase() == phase && (phase != openbaov1alpha1.BlueGreenPromoting || len(voters) > 3) {
						seen = true
						s.cluster.Spec.Version = oldVersion
					}
				}, nil)

				c := s.cluster
				require.Nil(t, c.Status.Upgrade, "the abort finished")
				require.True(t, seen, "the upgrade reached %s", phase)
				up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
				assert.Equal(t, openbaov1alpha1.ReasonUpgradeAborted, up.Reason, up.Message)
				assert.False(t, meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionDegraded))
				assert.Equal(t, oldVersion, c.Status.CurrentVersion)
				assert.Equal(t, image(oldVersion), c.Status.CurrentImage)
				assert.Empty(t, c.Status.StatefulSet, "Blue stays the active StatefulSet")
				s.assertOnlyServers("bao")
				assert.Empty(t, s.stepDowns, "leadership never moved")
				if !crash {
					assert.Contains(t, s.events, "UpgradeAborting")
					assert.Contains(t, s.events, "UpgradeAborted")
				}
				for _, id := range s.removed {
					assert.False(t, ownedBy("bao", id), "only Green's servers left the Raft cluster: %v", s.removed)
				}
			})
		}
	}
}

func TestBlueGreenNoAbortOnceBlueRetires(t *testing.T) {
	s := newSim(t, 3, 2)
	s.run(false, func() {
		if s.phase() == openbaov1alpha1.BlueGreenRetiringBlue && len(s.removed) > 0 {
			s.cluster.Spec.Version = oldVersion
		}
	}, func() bool { return s.cluster.Spec.Version == oldVersion })
	u := s.upgradeStatus()
	require.NotNil(t, u)
	st := s.state(context.Background())
	_, err := (newManager()).Reconcile(context.Background(), st, simEnv{s, st}, func(context.Context) error { return nil })
	require.NoError(t, err)
	require.NotNil(t, s.cluster.Status.Upgrade)
	assert.Contains(t, s.cluster.Status.Upgrade.Message, "can no longer be undone")
	assert.False(t, s.cluster.Status.Upgrade.BlueGreen.Aborting)

	// The retirement finishes; the older version is then a downgrade, which is blocked.
	s.run(false, nil, nil)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
	s.assertOnlyServers(s.cluster.Status.StatefulSet)
}

func TestBlueGreenPauseWhileSyncing(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testBlueGreenPauseWhileSyncing(t, crash) })
	}
}

func testBlueGreenPauseWhileSyncing(t *testing.T, crash bool) {
	s := newSim(t, 3, 9)
	pausedPasses := 0
	s.run(crash, func() {
		if s.phase() == openbaov1alpha1.BlueGreenSyncing && pausedPasses == 0 {
			s.paused = true
		}
		if s.paused {
			pausedPasses++
			if pausedPasses > 300 { // 15 minutes, longer than the step timeout
				s.paused = false
			}
		}
	}, nil)
	require.Nil(t, s.cluster.Status.Upgrade, "the upgrade finished after the pause")
	assert.Greater(t, pausedPasses, 300)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
	s.assertOnlyServers(s.cluster.Status.StatefulSet)
}

func TestBlueGreenHaltsWhenGreenCannotRun(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testBlueGreenHaltsWhenGreenCannotRun(t, crash) })
	}
}

func testBlueGreenHaltsWhenGreenCannotRun(t *testing.T, crash bool) {
	s := newSim(t, 3, 4)
	s.brokenImage = image(newVersion)
	s.run(false, nil, nil)

	u := s.upgradeStatus()
	require.NotNil(t, u)
	assert.Equal(t, upgrade.StepHalted, u.Step)
	green := u.BlueGreen.GreenStatefulSet
	assert.Contains(t, u.LastError, resources.PodName(green, 0))
	assert.Contains(t, u.LastError, "CrashLoopBackOff")
	cond := meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionDegraded)
	require.NotNil(t, cond)
	assert.Equal(t, metav1.ConditionTrue, cond.Status)
	assert.Contains(t, cond.Message, "set spec.version")
	assert.Contains(t, s.events, "UpgradeHalted")
	// Blue serves, the Raft configuration is as before.
	assert.Equal(t, "bao", s.selector)
	voters, nonVoters := s.members()
	assert.Equal(t, podsOf("bao", 3), voters)
	assert.Empty(t, nonVoters)
	assert.Empty(t, s.removed)

	// Setting the version back removes Green.
	s.cluster.Spec.Version = oldVersion
	s.run(crash, nil, nil)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, openbaov1alpha1.ReasonUpgradeAborted, meta.FindStatusCondition(s.cluster.Status.Conditions, openbaov1alpha1.ConditionUpgrading).Reason)
	assert.False(t, meta.IsStatusConditionTrue(s.cluster.Status.Conditions, openbaov1alpha1.ConditionDegraded))
	s.assertOnlyServers("bao")
}

func TestBlueGreenHaltedUpgradeTakesAFixedImage(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testBlueGreenHaltedUpgradeTakesAFixedImage(t, crash) })
	}
}

func testBlueGreenHaltedUpgradeTakesAFixedImage(t *testing.T, crash bool) {
	s := newSim(t, 3, 6)
	s.brokenImage = image(newVersion)
	s.run(false, nil, nil)
	require.Equal(t, upgrade.StepHalted, s.upgradeStatus().Step)
	broken := s.upgradeStatus().BlueGreen.GreenStatefulSet

	s.cluster.Spec.Version = thirdVersion
	s.run(crash, nil, nil)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, thirdVersion, s.cluster.Status.CurrentVersion)
	assert.NotEqual(t, broken, s.cluster.Status.StatefulSet)
	s.assertOnlyServers(s.cluster.Status.StatefulSet)
}

func TestBlueGreenUpgradeOfAGreenCluster(t *testing.T) {
	s := newSim(t, 3, 8)
	s.run(true, nil, nil)
	require.Nil(t, s.cluster.Status.Upgrade)
	first := s.cluster.Status.StatefulSet

	// A later upgrade starts from the pods with Green's names.
	s.cluster.Spec.Version = thirdVersion
	s.run(true, nil, nil)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, thirdVersion, s.cluster.Status.CurrentVersion)
	second := s.cluster.Status.StatefulSet
	assert.NotEqual(t, first, second)
	s.assertOnlyServers(second)
}

func TestBlueGreenNoAbortWhileGreenLeads(t *testing.T) {
	s := newSim(t, 3, 3)
	s.run(false, nil, func() bool { return s.phase() == openbaov1alpha1.BlueGreenVerifying })
	// The Blue leader fails over on its own to a Green voter.
	green := s.upgradeStatus().BlueGreen.GreenStatefulSet
	s.bao.SetLeader(resources.PodName(green, 1))
	s.check()
	s.cluster.Spec.Version = oldVersion
	st := s.state(context.Background())
	_, err := (newManager()).Reconcile(context.Background(), st, simEnv{s, st}, func(context.Context) error { return nil })
	require.NoError(t, err)
	u := s.upgradeStatus()
	require.NotNil(t, u)
	assert.False(t, u.BlueGreen.Aborting)
	assert.Contains(t, u.Message, resources.PodName(green, 1)+", a server on the new version, is the active node")
	assert.Equal(t, green, s.selector, "Green keeps the clients")

	// The upgrade finishes without any step-down: leadership is on Green already.
	s.run(false, nil, nil)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
	assert.Empty(t, s.stepDowns)
	s.assertOnlyServers(green)
}

func TestBlueGreenHaltedRetirementFinishesWithItsTarget(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) { testBlueGreenHaltedRetirementFinishesWithItsTarget(t, crash) })
	}
}

func testBlueGreenHaltedRetirementFinishesWithItsTarget(t *testing.T, crash bool) {
	s := newSim(t, 3, 12)
	s.failStepDowns = true
	s.run(false, nil, nil)
	u := s.upgradeStatus()
	require.NotNil(t, u)
	require.Equal(t, upgrade.StepHalted, u.Step)
	assert.Equal(t, openbaov1alpha1.BlueGreenRetiringBlue, u.BlueGreen.Phase)
	assert.Contains(t, u.LastError, "step-down Job")
	green := u.BlueGreen.GreenStatefulSet

	// Neither going back nor another target can replace a Green that holds the data now.
	s.cluster.Spec.Version = thirdVersion
	s.run(false, nil, nil)
	u = s.upgradeStatus()
	require.Equal(t, upgrade.StepHalted, u.Step)
	assert.Contains(t, u.LastError, "Set spec.version (and spec.image) back to "+image(newVersion))
	assert.Equal(t, green, u.BlueGreen.GreenStatefulSet)
	assert.Contains(t, s.objects(&appsv1.StatefulSetList{}), green, "Green is kept")

	// Back to the target: the failed Job is replaced and the retirement finishes.
	s.failStepDowns = false
	s.cluster.Spec.Version = newVersion
	s.run(crash, nil, nil)
	require.Nil(t, s.cluster.Status.Upgrade)
	assert.Equal(t, newVersion, s.cluster.Status.CurrentVersion)
	s.assertOnlyServers(green)
}

// newManager runs this package's strategy and no other.
func newManager() *upgrade.Manager {
	return &upgrade.Manager{Strategies: upgrade.Strategies{openbaov1alpha1.BlueGreenUpgrade: Strategy{}}}
}
