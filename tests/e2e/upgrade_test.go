package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/openbao/baotest"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// upgradeVersion is the release the suite upgrades to; it must be in OPENBAO_VERSIONS.
const upgradeVersion = "2.7.2"

const waitUpgrade = 12 * time.Minute

// upgradeWatch records, while an upgrade runs, what users care about: every change of the
// active node with the versions on both sides, every pod incarnation and every upgrade Job.
type upgradeWatch struct {
	mu            sync.Mutex
	leaderChanges []string
	podUIDs       map[string]map[string]bool
	jobs          map[string]bool
	steps         []string
	snapshot      *openbaov1alpha1.SnapshotStatus
	stop          chan struct{}
	done          chan struct{}
}

func watchUpgrade(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) *upgradeWatch {
	w := &upgradeWatch{podUIDs: map[string]map[string]bool{}, jobs: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	ca := caPEM(t, c)
	go func() {
		defer close(w.done)
		ctx := context.Background()
		last := ""
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			pods, err := cs.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: resources.LabelInstance + "=" + c.Name + "," + resources.LabelComponent + "=" + resources.ComponentServer})
			if err != nil {
				continue
			}
			active := ""
			for i := range pods.Items {
				p := &pods.Items[i]
				w.mu.Lock()
				if w.podUIDs[p.Name] == nil {
					w.podUIDs[p.Name] = map[string]bool{}
				}
				w.podUIDs[p.Name][string(p.UID)] = true
				w.mu.Unlock()
				if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
					continue
				}
				cl, err := newPodHealthClient(c, p, ca)
				if err != nil {
					continue
				}
				hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				h, err := cl.Health(hctx)
				cancel()
				if err == nil && h.Active() {
					active = fmt.Sprintf("%s(%s)", p.Name, h.Version)
				}
			}
			if active != "" && active != last {
				w.mu.Lock()
				if last != "" {
					w.leaderChanges = append(w.leaderChanges, last+"->"+active)
				}
				w.mu.Unlock()
				last = active
			}
			jobs, err := cs.BatchV1().Jobs(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: resources.LabelCluster + "=" + c.Name})
			if err == nil {
				w.mu.Lock()
				for _, j := range jobs.Items {
					w.jobs[j.Name+"/"+string(j.UID)] = true
				}
				w.mu.Unlock()
			}
			cur := &openbaov1alpha1.OpenBaoCluster{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(c), cur); err == nil && cur.Status.Upgrade != nil {
				u := cur.Status.Upgrade
				step := u.Step + " " + u.CurrentPod
				w.mu.Lock()
				if len(w.steps) == 0 || w.steps[len(w.steps)-1] != step {
					w.steps = append(w.steps, step)
				}
				if u.Snapshot != nil && u.Snapshot.CompletionTime != nil {
					w.snapshot = u.Snapshot.DeepCopy()
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *upgradeWatch) Stop() {
	close(w.stop)
	<-w.done
}

// checkLeadership fails when leadership ever moved from the new version to the old one.
func (w *upgradeWatch) checkLeadership(t *testing.T, from, to string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("leadership changes: %v", w.leaderChanges)
	for _, ch := range w.leaderChanges {
		parts := strings.Split(ch, "->")
		if strings.Contains(parts[0], "("+to+")") && strings.Contains(parts[1], "("+from+")") {
			t.Errorf("leadership moved from the new version to the old one: %s (all: %v)", ch, w.leaderChanges)
		}
	}
}

// stepDownJobs are the step-down Jobs seen (name/uid).
func (w *upgradeWatch) stepDownJobs() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for j := range w.jobs {
		if strings.Contains(j, "-stepdown-") {
			out = append(out, j)
		}
	}
	return out
}

// startLoad writes and reads secrets through the client Service during the test.
func startLoad(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, prefix string) *loadclient.Client {
	t.Helper()
	ensureServiceAccount(t, c.Namespace, appServiceAccount)
	load := loadclient.Start(context.Background(), loadclient.Config{
		Kube: cs, Namespace: c.Namespace, Service: resources.NamesFor(c).ClientService, CAPEM: caPEM(t, c),
		Login: func(ctx context.Context) (string, error) {
			return serviceAccountToken(t, c.Namespace, appServiceAccount, appAudience), nil
		},
		Role: appRole, KeyPrefix: "secret/data/e2e/" + prefix + "/", Rate: 20,
	})
	t.Cleanup(load.Stop)
	return load
}

// checkNoWriteLost stops the load and reads every acknowledged write back through every
// server.
func checkNoWriteLost(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, load *loadclient.Client) loadclient.Report {
	t.Helper()
	load.Stop()
	r := load.Report()
	t.Logf("load: %d requests, %d writes acknowledged, %d failed requests, %d stale reads, longest write gap %s; first errors: %v",
		r.Requests, r.Acknowledged, r.FailedRequests, r.StaleReads, r.LongestWriteGap.Round(time.Millisecond), r.FirstErrors)
	if r.Acknowledged == 0 {
		t.Fatalf("the load client got no write acknowledged")
	}
	for _, pod := range serverPods(t, c) {
		if !podReady(&pod) {
			continue
		}
		cl := appLogin(t, c, &pod)
		lost, err := load.Verify(context.Background(), cl)
		if err != nil {
			t.Fatalf("read back the acknowledged writes through %s: %v", pod.Name, err)
		}
		if len(lost) > 0 {
			t.Errorf("%d acknowledged writes lost, read through %s: %v", len(lost), pod.Name, lost[:min(len(lost), 10)])
		}
	}
	return r
}

// updateSpec changes the cluster's spec, retrying on conflicts.
func updateSpec(t *testing.T, ns, name string, change func(*openbaov1alpha1.OpenBaoClusterSpec)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		c := getCluster(t, ns, name)
		change(&c.Spec)
		return k8s.Update(context.Background(), c)
	})
	if err != nil {
		t.Fatalf("update OpenBaoCluster %s/%s: %v", ns, name, err)
	}
}

// waitUpgraded waits until the operator reports the upgrade to version complete and the
// cluster fully formed again.
func waitUpgraded(t *testing.T, ns, name, version string, replicas int) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	eventually(t, waitUpgrade, fmt.Sprintf("upgrade of %s/%s to %s", ns, name, version), func() (bool, string) {
		c := &openbaov1alpha1.OpenBaoCluster{}
		if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, c); err != nil {
			return false, err.Error()
		}
		// A Degraded condition of an earlier generation (a blocked downgrade, a halted
		// upgrade) is what the spec change being waited for answers.
		if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded); cond != nil &&
			cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == c.Generation {
			t.Fatalf("the upgrade halted: %s", describeCluster(ns, c))
		}
		return c.Status.CurrentVersion == version && c.Status.Upgrade == nil, describeCluster(ns, c)
	})
	return waitFullyFormed(t, ns, name, replicas)
}

// checkAllOnVersion asks every server which version it runs.
func checkAllOnVersion(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, version string, replicas int) {
	t.Helper()
	pods := serverPods(t, c)
	if len(pods) != replicas {
		t.Fatalf("%d server pods, want %d", len(pods), replicas)
	}
	for i := range pods {
		h, err := podClient(t, c, &pods[i]).Health(context.Background())
		if err != nil {
			t.Fatalf("health of %s: %v", pods[i].Name, err)
		}
		if h.Version != version {
			t.Errorf("%s runs %s, want %s", pods[i].Name, h.Version, version)
		}
	}
}

func statefulSet(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) *appsv1.StatefulSet {
	t.Helper()
	sts, err := cs.AppsV1().StatefulSets(c.Namespace).Get(context.Background(), resources.ActiveStatefulSet(c), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get StatefulSet: %v", err)
	}
	return sts
}

func partitionOf(sts *appsv1.StatefulSet) int32 {
	if ru := sts.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		return *ru.Partition
	}
	return 0
}

// killOperator deletes the operator's pod at once, as a crash would; its Deployment starts
// a new one.
func killOperator(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	pods, err := cs.CoreV1().Pods("openbao-operator-system").List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	if err != nil || len(pods.Items) == 0 {
		t.Fatalf("find the operator pod: %v (%d found)", err, len(pods.Items))
	}
	for _, p := range pods.Items {
		if err := cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatalf("kill the operator pod %s: %v", p.Name, err)
		}
		t.Logf("killed the operator pod %s", p.Name)
	}
}

func waitForStep(t *testing.T, ns, name, what string, cond func(u *openbaov1alpha1.UpgradeStatus) bool) {
	t.Helper()
	eventually(t, waitUpgrade, what, func() (bool, string) {
		c := getCluster(t, ns, name)
		return c.Status.Upgrade != nil && cond(c.Status.Upgrade), describeCluster(ns, c)
	})
}

// TestRollingUpgrade upgrades three servers from the older to the newer release under a
// steady load, with a pre-upgrade snapshot.
func TestRollingUpgrade(t *testing.T) {
	ns := newNamespace(t, "e2e-rolling")
	want := newCluster(ns, "bao", 3)
	want.Spec.Upgrade.PreUpgradeSnapshot = true
	allowVersionHistory(want)
	if err := k8s.Create(context.Background(), want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	load := startLoad(t, c, "rolling")
	time.Sleep(3 * time.Second)

	watch := watchUpgrade(t, c)
	start := time.Now()
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	watch.Stop()
	t.Logf("upgraded %s -> %s in %s; steps: %v", openBaoVersion, upgradeVersion, time.Since(start).Round(time.Second), watch.steps)

	checkAllOnVersion(t, c, upgradeVersion, 3)
	watch.checkLeadership(t, openBaoVersion, upgradeVersion)
	r := checkNoWriteLost(t, c, load)
	if r.LongestWriteGap > time.Minute {
		t.Errorf("writes stopped for %s", r.LongestWriteGap)
	}
	for pod, uids := range watch.podUIDs {
		if len(uids) > 2 {
			t.Errorf("%s was replaced %d times; an upgrade replaces each server once", pod, len(uids)-1)
		}
	}

	t.Run("version history lists both releases", func(t *testing.T) {
		pod := serverPods(t, c)[0]
		cl := appLogin(t, c, &pod)
		s, err := cl.Logical().List("sys/version-history")
		if err != nil {
			t.Fatalf("read sys/version-history: %v", err)
		}
		data, _ := json.Marshal(s.Data)
		for _, v := range []string{openBaoVersion, upgradeVersion} {
			if !strings.Contains(string(data), v) {
				t.Errorf("sys/version-history does not list %s: %s", v, data)
			}
		}
	})
	t.Run("the upgrade's Jobs are gone", func(t *testing.T) {
		eventually(t, waitShort, "no upgrade Jobs left", func() (bool, string) {
			jobs, err := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
			return err == nil && len(jobs.Items) == 0, fmt.Sprint(jobs, err)
		})
	})
	t.Run("the snapshot restores on a scratch server", func(t *testing.T) {
		checkSnapshot(t, c, watch.snapshot)
	})
}

// allowVersionHistory lets the suite's app role read sys/version-history.
func allowVersionHistory(c *openbaov1alpha1.OpenBaoCluster) {
	for i, r := range c.Spec.SelfInit {
		if r.Name == "app-policy" {
			data := map[string]any{}
			_ = json.Unmarshal(r.Data.Raw, &data)
			data["policy"] = data["policy"].(string) + "path \"sys/version-history\" {\n  capabilities = [\"list\", \"read\"]\n}\n"
			raw, _ := json.Marshal(data)
			c.Spec.SelfInit[i].Data = &runtime.RawExtension{Raw: raw}
		}
	}
}

// checkSnapshot finds the snapshot file on the snapshot volume, checks it is not empty and
// restores it on a scratch server with the cluster's seal key; the restored server must
// accept the application's login and serve its secrets.
func checkSnapshot(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, snap *openbaov1alpha1.SnapshotStatus) {
	t.Helper()
	if snap == nil || snap.Path == "" {
		t.Fatalf("the upgrade never recorded a completed snapshot in status.upgrade.snapshot")
	}
	ctx := context.Background()
	pvc, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).Get(ctx, snap.PersistentVolumeClaim, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("snapshot volume %s: %v", snap.PersistentVolumeClaim, err)
	}
	pv, err := cs.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil || pv.Spec.HostPath == nil {
		t.Fatalf("the snapshot volume's PersistentVolume %s has no host path: %v", pvc.Spec.VolumeName, err)
	}
	file := filepath.Join(pv.Spec.HostPath.Path, strings.TrimPrefix(snap.Path, resources.SnapshotDir+"/"))
	st, err := os.Stat(file)
	if err != nil || st.Size() == 0 {
		t.Fatalf("snapshot file %s (status path %s): %v, size %d", file, snap.Path, err, sizeOf(st))
	}
	t.Logf("snapshot %s: %d bytes", snap.Path, st.Size())

	seal, err := cs.CoreV1().Secrets(c.Namespace).Get(ctx, resources.NamesFor(c).SealSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("read the seal key: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "seal-key")
	if err := os.WriteFile(keyFile, seal.Data[resources.SealKeyFile], 0o600); err != nil {
		t.Fatal(err)
	}
	restored := baotest.RestoreOnScratchServer(t, file, keyFile, resources.SealKeyID)
	jwt := serviceAccountToken(t, c.Namespace, appServiceAccount, appAudience)
	if err := restored.LoginJWT(ctx, resources.JWTAuthMount, appRole, jwt); err != nil {
		t.Fatalf("the restored server refuses the application's login: %v", err)
	}
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}

// TestRollingUpgradeSurvivesOperatorRestarts kills the operator twice mid-upgrade: while a
// step is in flight on the first server and after the first server is done.
func TestRollingUpgradeSurvivesOperatorRestarts(t *testing.T) {
	ns := newNamespace(t, "e2e-resume")
	if err := k8s.Create(context.Background(), newCluster(ns, "bao", 3)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	load := startLoad(t, c, "resume")
	watch := watchUpgrade(t, c)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })

	waitForStep(t, ns, "bao", "a step in flight on bao-2", func(u *openbaov1alpha1.UpgradeStatus) bool {
		return u.CurrentPod == "bao-2" && u.Step != "" && u.Step != "Started"
	})
	killOperator(t)
	waitForStep(t, ns, "bao", "bao-2 done", func(u *openbaov1alpha1.UpgradeStatus) bool { return u.Rolling != nil && len(u.Rolling.PodsDone) >= 1 })
	killOperator(t)

	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	watch.Stop()
	checkAllOnVersion(t, c, upgradeVersion, 3)
	watch.checkLeadership(t, openBaoVersion, upgradeVersion)
	checkNoWriteLost(t, c, load)
	for pod, uids := range watch.podUIDs {
		if len(uids) != 2 {
			t.Errorf("%s had %d incarnations during the upgrade; each server is replaced exactly once", pod, len(uids))
		}
	}
	seen := map[string]int{}
	for _, j := range watch.stepDownJobs() {
		seen[strings.Split(j, "/")[0]]++
	}
	for name, n := range seen {
		if n > 1 {
			t.Errorf("step-down Job %s was created %d times", name, n)
		}
	}
	t.Logf("steps: %v; step-down jobs: %v", watch.steps, watch.stepDownJobs())
}

// TestPausedUpgrade pauses mid-upgrade: nothing moves while paused, the upgrade completes
// after unpausing.
func TestPausedUpgrade(t *testing.T) {
	ns := newNamespace(t, "e2e-pause")
	if err := k8s.Create(context.Background(), newCluster(ns, "bao", 3)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	waitForStep(t, ns, "bao", "bao-2 done", func(u *openbaov1alpha1.UpgradeStatus) bool { return u.Rolling != nil && len(u.Rolling.PodsDone) >= 1 })
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Paused = true })
	eventually(t, waitShort, "Paused=True", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		return meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionPaused), describeCluster(ns, c)
	})
	time.Sleep(2 * time.Second) // a reconcile that started before the pause may finish
	before := statefulSet(t, c)
	pausedCluster := getCluster(t, ns, "bao")
	podsBefore := serverPods(t, c)
	jobsBefore, _ := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})

	time.Sleep(20 * time.Second)
	after := statefulSet(t, c)
	if partitionOf(after) != partitionOf(before) || after.Generation != before.Generation {
		t.Errorf("the StatefulSet changed while paused: partition %d -> %d, generation %d -> %d", partitionOf(before), partitionOf(after), before.Generation, after.Generation)
	}
	for i, p := range serverPods(t, c) {
		if i < len(podsBefore) && p.UID != podsBefore[i].UID {
			t.Errorf("pod %s was replaced while paused", p.Name)
		}
	}
	jobsAfter, _ := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
	if len(jobsAfter.Items) > len(jobsBefore.Items) {
		t.Errorf("a Job was created while paused")
	}
	now := getCluster(t, ns, "bao")
	if now.Status.Upgrade == nil || pausedCluster.Status.Upgrade == nil {
		t.Fatalf("the upgrade's state was not kept while paused: %s", describeCluster(ns, now))
	}
	if now.Status.Upgrade.PausedAt == nil {
		t.Errorf("status.upgrade.pausedAt not recorded")
	}

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Paused = false })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	checkAllOnVersion(t, c, upgradeVersion, 3)
}

// TestDowngrade: a lower version is blocked with a condition and nothing changes. With
// allowDowngrade the operator proceeds and replaces the server with the older release; OpenBao
// 2.6 does not start on data written by 2.7, so the step times out and the upgrade halts.
// Setting the version back recovers (the unready pod is replaced). One server: no step-down.
func TestDowngrade(t *testing.T) {
	ns := newNamespace(t, "e2e-downgrade")
	want := newCluster(ns, "bao", 1)
	want.Spec.Version = upgradeVersion
	want.Spec.Upgrade.StepTimeout = &metav1.Duration{Duration: 90 * time.Second}
	if err := k8s.Create(context.Background(), want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 1)
	load := startLoad(t, c, "downgrade")
	before := statefulSet(t, c)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = openBaoVersion })
	eventually(t, waitShort, "Degraded=True DowngradeBlocked", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionDegraded)
		return cond != nil && cond.Status == metav1.ConditionTrue && cond.Reason == openbaov1alpha1.ReasonDowngradeBlocked, describeCluster(ns, c)
	})
	time.Sleep(5 * time.Second)
	after := statefulSet(t, c)
	if after.Generation != before.Generation {
		t.Errorf("the StatefulSet changed although the downgrade is blocked")
	}
	if getCluster(t, ns, "bao").Status.Upgrade != nil {
		t.Errorf("an upgrade started although the downgrade is blocked")
	}

	watch := watchUpgrade(t, c)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Upgrade.AllowDowngrade = true })
	olderImage := resources.DefaultImage("", openBaoVersion)
	eventually(t, waitUpgrade, "the server replaced with "+olderImage, func() (bool, string) {
		pods := serverPods(t, c)
		return len(pods) == 1 && pods[0].Spec.Containers[0].Image == olderImage && pods[0].DeletionTimestamp == nil, describeCluster(ns, getCluster(t, ns, "bao"))
	})
	waitUpgradeHalted(t, ns, "bao", "the downgrade halted (OpenBao 2.6 refuses data written by 2.7)")

	// Back to the version the cluster ran: the server that cannot start is replaced.
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 1)
	watch.Stop()
	checkAllOnVersion(t, c, upgradeVersion, 1)
	checkNoWriteLost(t, c, load)
	if jobs := watch.stepDownJobs(); len(jobs) > 0 {
		t.Errorf("a single server was stepped down: %v", jobs)
	}
}

// TestBrokenTargetImageHalts: a target image that cannot run halts the upgrade with
// Degraded, leaves the other servers untouched and the cluster serving; setting a working
// target resumes it.
func TestBrokenTargetImageHalts(t *testing.T) {
	ns := newNamespace(t, "e2e-broken")
	want := newCluster(ns, "bao", 3)
	want.Spec.Upgrade.StepTimeout = &metav1.Duration{Duration: 90 * time.Second}
	if err := k8s.Create(context.Background(), want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	load := startLoad(t, c, "broken")
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Version = upgradeVersion
		s.Image = missingImage
	})
	waitUpgradeHalted(t, ns, "bao", "the upgrade halted")
	halted := getCluster(t, ns, "bao")
	t.Logf("halted: %s", meta.FindStatusCondition(halted.Status.Conditions, openbaov1alpha1.ConditionDegraded).Message)
	sts := statefulSet(t, c)
	if p := partitionOf(sts); p != 2 {
		t.Errorf("partition %d after the failure on bao-2, want 2: no further server is touched", p)
	}
	for _, p := range serverPods(t, c) {
		if p.Name == "bao-2" {
			continue
		}
		if p.Labels[appsv1.ControllerRevisionHashLabelKey] != sts.Status.CurrentRevision || !podReady(&p) {
			t.Errorf("%s was touched by the halted upgrade (revision %s, ready %v)", p.Name, p.Labels[appsv1.ControllerRevisionHashLabelKey], podReady(&p))
		}
	}
	// Still serving: writes keep succeeding with two of three servers.
	acked := load.Report().Acknowledged
	time.Sleep(5 * time.Second)
	if load.Report().Acknowledged <= acked {
		t.Errorf("the cluster stopped accepting writes after the upgrade halted")
	}

	// Recovery as the README describes it: point the upgrade at a target that works.
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Image = "" })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	checkAllOnVersion(t, c, upgradeVersion, 3)
	checkNoWriteLost(t, c, load)
	jobs := &batchv1.JobList{}
	_ = k8s.List(context.Background(), jobs, client.InNamespace(ns))
	if len(jobs.Items) > 0 {
		t.Errorf("%d upgrade Jobs left after completion", len(jobs.Items))
	}
}

// newPodHealthClient is podClient without a test, for watchers running beside the test.
func newPodHealthClient(c *openbaov1alpha1.OpenBaoCluster, p *corev1.Pod, ca []byte) (openbao.Client, error) {
	return openbao.New(openbao.Config{
		Address:       openbao.PodAddress(p.Status.PodIP, resources.APIPort),
		CACertPEM:     ca,
		TLSServerName: resources.PodDNSName(c, p.Name),
		Timeout:       2 * time.Second,
	})
}
