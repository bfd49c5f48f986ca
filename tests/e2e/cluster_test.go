package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestThreeServerCluster creates a three-server cluster and checks it the way
// its users depend on it: formed without anyone initializing or unsealing
// it, the operator's status true to what OpenBao says, the upgrade identity
// able to move leadership and nobody else able to use it, and a lost pod
// replaced with its data.
func TestThreeServerCluster(t *testing.T) {
	ns := newNamespace(t, "e2e-three")
	want := newCluster(ns, "bao", 3)
	if err := k8s.Create(context.Background(), want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	start := time.Now()
	c := waitFullyFormed(t, ns, "bao", 3)
	t.Logf("three servers formed, Available, in %s", time.Since(start).Round(time.Second))

	t.Run("formed by self-init and auto-unsealed", func(t *testing.T) {
		checkFormed(t, c, 3)
	})
	t.Run("status matches OpenBao", func(t *testing.T) {
		checkStatusMatchesOpenBao(t, ns, "bao")
	})
	t.Run("upgrade identity may step down, others may not log in", func(t *testing.T) {
		checkUpgradeIdentity(t, getCluster(t, ns, "bao"))
	})
	t.Run("a deleted pod comes back with its data", func(t *testing.T) {
		checkPodReplaced(t, getCluster(t, ns, "bao"))
	})
}

// checkFormed asserts what OpenBao itself reports, pod by pod.
func checkFormed(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, replicas int) {
	ctx := context.Background()
	pods := serverPods(t, c)
	if len(pods) != replicas {
		t.Fatalf("%d server pods, want %d", len(pods), replicas)
	}
	var active []string
	clusterIDs := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != corev1.PodRunning || !podReady(p) {
			t.Errorf("pod %s: phase %s, ready %v; want Running and Ready", p.Name, p.Status.Phase, podReady(p))
		}
		h, err := podClient(t, c, p).Health(ctx)
		if err != nil {
			t.Errorf("health of %s: %v", p.Name, err)
			continue
		}
		if !h.Initialized || h.Sealed {
			t.Errorf("%s: initialized=%v sealed=%v; want initialized and unsealed", p.Name, h.Initialized, h.Sealed)
		}
		if h.Version != openBaoVersion {
			t.Errorf("%s runs %s, want %s", p.Name, h.Version, openBaoVersion)
		}
		if h.Active() {
			active = append(active, p.Name)
		}
		clusterIDs[h.ClusterID] = true
		// Nobody unsealed anything: the static seal did.
		seal, err := apiClient(t, c, p).Sys().SealStatus()
		if err != nil {
			t.Errorf("seal status of %s: %v", p.Name, err)
		} else if seal.Type != "static" || seal.Sealed {
			t.Errorf("%s: seal type %q sealed=%v; want the static seal, unsealed", p.Name, seal.Type, seal.Sealed)
		}
	}
	if len(active) != 1 {
		t.Errorf("active nodes %v; want exactly one", active)
	}
	if len(clusterIDs) != 1 {
		t.Errorf("the servers report %d cluster IDs; want one cluster", len(clusterIDs))
	}
	if t.Failed() {
		return
	}
	// Raft membership, read with the upgrade role (its policy allows it).
	leader, _ := activePod(t, c)
	cl := podClient(t, c, leader)
	if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole,
		serviceAccountToken(t, c.Namespace, resources.NamesFor(c).UpgradeServiceAccount, resources.UpgradeAudience)); err != nil {
		t.Fatalf("login with the upgrade role: %v", err)
	}
	servers, err := cl.RaftConfiguration(ctx)
	if err != nil {
		t.Fatalf("raft configuration: %v", err)
	}
	var voters []string
	for _, s := range servers {
		if s.Voter {
			voters = append(voters, s.NodeID)
		}
	}
	sort.Strings(voters)
	var podNames []string
	for _, p := range pods {
		podNames = append(podNames, p.Name)
	}
	if strings.Join(voters, ",") != strings.Join(podNames, ",") {
		t.Errorf("raft voters %v; want every pod %v", voters, podNames)
	}
	// The self-initialization requests of spec.selfInit ran: an application
	// logs in with its own service account and uses secret/.
	app := appLogin(t, c, leader)
	if _, err := app.KVv2("secret").Put(ctx, "e2e/formed", map[string]any{"ok": "yes"}); err != nil {
		t.Errorf("write secret/e2e/formed with the app role: %v", err)
	}
	if _, err := app.KVv2("secret").Put(ctx, "elsewhere/x", map[string]any{"ok": "no"}); err == nil {
		t.Errorf("the app role could write outside secret/e2e/")
	}
}

// checkStatusMatchesOpenBao compares the operator's status with what each
// server reports, once the status has caught up with OpenBao.
func checkStatusMatchesOpenBao(t *testing.T, ns, name string) {
	ctx := context.Background()
	eventually(t, waitShort, "status to match what the servers report", func() (bool, string) {
		c := getCluster(t, ns, name)
		pods := serverPods(t, c)
		var diffs []string
		if c.Status.Phase != openbaov1alpha1.PhaseRunning {
			diffs = append(diffs, fmt.Sprintf("phase %s, want Running", c.Status.Phase))
		}
		if !c.Status.Initialized {
			diffs = append(diffs, "status.initialized is false")
		}
		if int(c.Status.ReadyReplicas) != len(pods) || int(c.Status.Replicas) != len(pods) {
			diffs = append(diffs, fmt.Sprintf("replicas %d ready %d, want %d", c.Status.Replicas, c.Status.ReadyReplicas, len(pods)))
		}
		members := map[string]openbaov1alpha1.MemberStatus{}
		for _, m := range c.Status.Members {
			members[m.Pod] = m
		}
		if len(members) != len(pods) {
			diffs = append(diffs, fmt.Sprintf("%d members, want %d", len(members), len(pods)))
		}
		leader := ""
		for i := range pods {
			p := &pods[i]
			h, err := podClient(t, c, p).Health(ctx)
			if err != nil {
				diffs = append(diffs, fmt.Sprintf("health of %s: %v", p.Name, err))
				continue
			}
			if h.Active() {
				leader = p.Name
			}
			m, ok := members[p.Name]
			if !ok {
				diffs = append(diffs, "no member "+p.Name)
				continue
			}
			if m.Version != h.Version || m.Initialized != h.Initialized || m.Sealed != h.Sealed || m.Active != h.Active() {
				diffs = append(diffs, fmt.Sprintf("member %s: status says version=%s initialized=%v sealed=%v active=%v, the server says %s %v %v %v",
					p.Name, m.Version, m.Initialized, m.Sealed, m.Active, h.Version, h.Initialized, h.Sealed, h.Active()))
			}
			if h.Version != c.Status.CurrentVersion {
				diffs = append(diffs, fmt.Sprintf("%s runs %s, status.currentVersion is %s", p.Name, h.Version, c.Status.CurrentVersion))
			}
		}
		if leader == "" || c.Status.Leader != leader {
			diffs = append(diffs, fmt.Sprintf("status.leader %q, the active server is %q", c.Status.Leader, leader))
		}
		return len(diffs) == 0, strings.Join(diffs, "; ")
	})
}

// checkUpgradeIdentity: a token of <cluster>-upgrade-serviceaccount for the
// upgrade audience logs in to the upgrade role and may step the leader
// down; a token of any other service account, or for another audience, is
// refused.
func checkUpgradeIdentity(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) {
	ctx := context.Background()
	upgradeSA := resources.NamesFor(c).UpgradeServiceAccount
	oldLeader, active := activePod(t, c)
	if len(active) != 1 {
		t.Fatalf("active nodes %v; want exactly one", active)
	}

	// Refused: another service account, and the right one for the wrong audience.
	ensureServiceAccount(t, c.Namespace, "intruder")
	for _, tc := range []struct{ sa, audience string }{
		{"intruder", resources.UpgradeAudience},
		{appServiceAccount, resources.UpgradeAudience},
		{upgradeSA, resources.OperatorAudience},
	} {
		ensureServiceAccount(t, c.Namespace, tc.sa)
		err := podClient(t, c, oldLeader).LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole,
			serviceAccountToken(t, c.Namespace, tc.sa, tc.audience))
		if err == nil {
			t.Errorf("service account %s with audience %s logged in to the upgrade role", tc.sa, tc.audience)
		} else if !errors.Is(err, openbao.ErrLoginRefused) && !errors.Is(err, openbao.ErrPermissionDenied) && !errors.Is(err, openbao.ErrBadRequest) {
			t.Errorf("login of %s (audience %s): %v; want a refusal", tc.sa, tc.audience, err)
		}
	}

	// Accepted, through a standby (logins are forwarded to the active node).
	var standby *corev1.Pod
	pods := serverPods(t, c)
	for i := range pods {
		if pods[i].Name != oldLeader.Name {
			standby = &pods[i]
			break
		}
	}
	cl := podClient(t, c, standby)
	if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole,
		serviceAccountToken(t, c.Namespace, upgradeSA, resources.UpgradeAudience)); err != nil {
		t.Fatalf("login of %s to the upgrade role through %s: %v", upgradeSA, standby.Name, err)
	}
	asked := time.Now()
	if err := cl.StepDown(ctx); err != nil {
		t.Fatalf("step-down with the upgrade role: %v", err)
	}
	var newLeader string
	eventually(t, waitShort, "another server to become active after the step-down of "+oldLeader.Name, func() (bool, string) {
		_, active := activePod(t, c)
		if len(active) == 1 && active[0] != oldLeader.Name {
			newLeader = active[0]
			return true, ""
		}
		return false, fmt.Sprintf("active: %v", active)
	})
	t.Logf("leadership moved from %s to %s", oldLeader.Name, newLeader)
	moved := time.Since(asked)
	// No pod changes on a step-down: the operator's leader watch notices it.
	eventually(t, waitShort, "status.leader to follow to "+newLeader, func() (bool, string) {
		got := getCluster(t, c.Namespace, c.Name)
		return got.Status.Leader == newLeader, "status.leader " + got.Status.Leader
	})
	t.Logf("after the step-down: %s active in %s, status.leader followed in %s",
		newLeader, moved.Round(10*time.Millisecond), time.Since(asked).Round(10*time.Millisecond))
}

// checkPodReplaced deletes a server pod: the StatefulSet controller creates
// it again on the same volume, it rejoins as the same Raft node with its
// data, and the status recovers.
func checkPodReplaced(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) {
	ctx := context.Background()
	leader, _ := activePod(t, c)
	app := appLogin(t, c, leader)
	secret := map[string]any{"written": time.Now().UTC().Format(time.RFC3339Nano)}
	if _, err := app.KVv2("secret").Put(ctx, "e2e/before-delete", secret); err != nil {
		t.Fatalf("write secret/e2e/before-delete: %v", err)
	}

	// The victim is a standby, so that the write above is surely committed on
	// a majority that survives; its data must come back with it.
	var victim corev1.Pod
	for _, p := range serverPods(t, c) {
		if p.Name != leader.Name {
			victim = p
		}
	}
	h, err := podClient(t, c, &victim).Health(ctx)
	if err != nil {
		t.Fatalf("health of %s: %v", victim.Name, err)
	}
	clusterID := h.ClusterID
	claim := "data-" + victim.Name
	pvc, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("claim %s: %v", claim, err)
	}
	volume := pvc.Spec.VolumeName

	t.Logf("deleting pod %s (volume %s)", victim.Name, volume)
	if err := cs.CoreV1().Pods(c.Namespace).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete pod %s: %v", victim.Name, err)
	}
	var replacement *corev1.Pod
	eventually(t, waitFormed, "pod "+victim.Name+" recreated, Running and Ready", func() (bool, string) {
		p, err := cs.CoreV1().Pods(c.Namespace).Get(ctx, victim.Name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		replacement = p
		return p.UID != victim.UID && p.Status.Phase == corev1.PodRunning && podReady(p), fmt.Sprintf("uid %s phase %s ready %v", p.UID, p.Status.Phase, podReady(p))
	})
	if pvc, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, claim, metav1.GetOptions{}); err != nil || pvc.Spec.VolumeName != volume {
		t.Errorf("claim %s after the restart: %v, volume %q; want the same volume %s", claim, err, pvc.Spec.VolumeName, volume)
	}
	h, err = podClient(t, c, replacement).Health(ctx)
	if err != nil {
		t.Fatalf("health of the new %s: %v", victim.Name, err)
	}
	if h.ClusterID != clusterID || !h.Initialized || h.Sealed {
		t.Errorf("new %s: cluster %s initialized=%v sealed=%v; want cluster %s, initialized and unsealed", victim.Name, h.ClusterID, h.Initialized, h.Sealed, clusterID)
	}
	// Its Raft log has caught up with the leader's.
	eventually(t, waitShort, victim.Name+" caught up with the leader's Raft log", func() (bool, string) {
		cur, _ := activePod(t, c)
		if cur == nil {
			return false, "no active node"
		}
		l, err1 := podClient(t, c, cur).Leader(ctx)
		r, err2 := podClient(t, c, replacement).Leader(ctx)
		if err := errors.Join(err1, err2); err != nil {
			return false, err.Error()
		}
		return r.RaftAppliedIndex >= l.RaftCommittedIndex && r.RaftAppliedIndex > 0,
			fmt.Sprintf("%s applied %d, leader committed %d", victim.Name, r.RaftAppliedIndex, l.RaftCommittedIndex)
	})
	got, err := appLogin(t, c, replacement).KVv2("secret").Get(ctx, "e2e/before-delete")
	if err != nil {
		t.Fatalf("read secret/e2e/before-delete through the new %s: %v", victim.Name, err)
	}
	if got.Data["written"] != secret["written"] {
		t.Errorf("secret/e2e/before-delete through the new %s: %v, want %v", victim.Name, got.Data, secret)
	}
	waitFullyFormed(t, c.Namespace, c.Name, 3)
	checkStatusMatchesOpenBao(t, c.Namespace, c.Name)
}

// TestSingleServerClusterAndDeletion: one server is a working cluster; when
// its OpenBaoCluster is deleted, the garbage collector removes everything it
// owns, while the data volume and the seal key stay, as documented, and a
// cluster created again with the same name picks both up.
func TestSingleServerClusterAndDeletion(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-one")
	if err := k8s.Create(ctx, newCluster(ns, "solo", 1)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "solo", 1)
	checkFormed(t, c, 1)
	checkStatusMatchesOpenBao(t, ns, "solo")
	if t.Failed() {
		return
	}
	pod := serverPods(t, c)[0]
	h, err := podClient(t, c, &pod).Health(ctx)
	if err != nil {
		t.Fatalf("health of %s: %v", pod.Name, err)
	}
	clusterID := h.ClusterID
	secret := map[string]any{"written": time.Now().UTC().Format(time.RFC3339Nano)}
	if _, err := appLogin(t, c, &pod).KVv2("secret").Put(ctx, "e2e/kept", secret); err != nil {
		t.Fatalf("write secret/e2e/kept: %v", err)
	}

	names := resources.NamesFor(c)
	owned := []client.Object{
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: names.StatefulSet}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: names.HeadlessService}},
		&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: names.ClientService}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: names.ConfigMap}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.CASecret}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.TLSSecret}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: names.ServiceAccount}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: names.UpgradeServiceAccount}},
		&policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: names.PodDisruptionBudget}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: resources.PodName(names.StatefulSet, 0)}},
	}
	kept := []client.Object{
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: names.SealSecret}},
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-" + resources.PodName(names.StatefulSet, 0)}},
	}
	for _, o := range append(append([]client.Object{}, owned...), kept...) {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
			t.Fatalf("before deletion, %T %s: %v", o, o.GetName(), err)
		}
	}

	if err := k8s.Delete(ctx, c); err != nil {
		t.Fatalf("delete OpenBaoCluster: %v", err)
	}
	eventually(t, waitShort, "the garbage collector to remove what the cluster owned", func() (bool, string) {
		var left []string
		for _, o := range owned {
			err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o)
			if !apierrors.IsNotFound(err) {
				left = append(left, fmt.Sprintf("%T %s", o, o.GetName()))
			}
		}
		err := k8s.Get(ctx, client.ObjectKeyFromObject(c), &openbaov1alpha1.OpenBaoCluster{})
		if !apierrors.IsNotFound(err) {
			left = append(left, "the OpenBaoCluster")
		}
		return len(left) == 0, "still there: " + strings.Join(left, ", ")
	})
	for _, o := range kept {
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.GetName()}, o); err != nil {
			t.Errorf("%T %s must be kept when the cluster is deleted: %v", o, o.GetName(), err)
		}
	}
	if t.Failed() {
		return
	}

	// Created again with the same name, the cluster finds its data and its
	// seal key: the same OpenBao cluster, secrets included, not a new one.
	if err := k8s.Create(ctx, newCluster(ns, "solo", 1)); err != nil {
		t.Fatalf("create OpenBaoCluster again: %v", err)
	}
	c = waitFullyFormed(t, ns, "solo", 1)
	pod = serverPods(t, c)[0]
	if h, err := podClient(t, c, &pod).Health(ctx); err != nil || h.ClusterID != clusterID {
		t.Fatalf("re-created cluster: health %+v, %v; want the earlier cluster %s", h, err, clusterID)
	}
	got, err := appLogin(t, c, &pod).KVv2("secret").Get(ctx, "e2e/kept")
	if err != nil {
		t.Fatalf("read secret/e2e/kept in the re-created cluster: %v", err)
	}
	if got.Data["written"] != secret["written"] {
		t.Errorf("secret/e2e/kept in the re-created cluster: %v, want %v", got.Data, secret)
	}
	checkStatusMatchesOpenBao(t, ns, "solo")
}
