package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// activeWatch polls every server's health and records the longest stretch in which no
// server reported itself active: a Raft cluster that keeps its quorum elects a new active
// node within a couple of seconds.
type activeWatch struct {
	mu          sync.Mutex
	longestNone time.Duration
	samples     int
	stop, done  chan struct{}
}

func watchActive(t *testing.T, ns, name string) *activeWatch {
	w := &activeWatch{stop: make(chan struct{}), done: make(chan struct{})}
	c := getCluster(t, ns, name)
	ca := caPEM(t, c)
	go func() {
		defer close(w.done)
		var noneSince time.Time
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			pods, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{
				LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: resources.SelectorLabels(c)}),
			})
			if err != nil {
				continue
			}
			active := false
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Status.PodIP == "" || p.DeletionTimestamp != nil {
					continue
				}
				cl, err := newPodHealthClient(c, p, ca)
				if err != nil {
					continue
				}
				hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				h, err := cl.Health(hctx)
				cancel()
				if err == nil && h.Active() {
					active = true
					break
				}
			}
			w.mu.Lock()
			w.samples++
			switch {
			case active:
				noneSince = time.Time{}
			case noneSince.IsZero():
				noneSince = time.Now()
			default:
				w.longestNone = max(w.longestNone, time.Since(noneSince))
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *activeWatch) Stop() (longestNone time.Duration, samples int) {
	close(w.stop)
	<-w.done
	return w.longestNone, w.samples
}

// moveLeadershipTo kills the active node's pod (grace 0, as a crash would) until one of
// pods leads, at most a few times: the election among the others picks the new active node,
// not the caller (a step-down, on an idle cluster, hands leadership back to the lowest
// ordinal). Each killed server comes back on its own volume before the next try.
func moveLeadershipTo(t *testing.T, ns, name string, pods ...string) bool {
	t.Helper()
	for range 5 {
		c := waitFullyFormed(t, ns, name, 5)
		var p *corev1.Pod
		eventually(t, waitShort, "an active node", func() (bool, string) {
			found, active := activePod(t, c)
			p = found
			return found != nil, fmt.Sprintf("active: %v", active)
		})
		if slices.Contains(pods, p.Name) {
			return true
		}
		t.Logf("killing the active node's pod %s to move leadership", p.Name)
		if err := cs.CoreV1().Pods(ns).Delete(context.Background(), p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatalf("delete pod %s: %v", p.Name, err)
		}
		eventually(t, waitShort, "pod "+p.Name+" replaced", func() (bool, string) {
			cur, err := cs.CoreV1().Pods(ns).Get(context.Background(), p.Name, metav1.GetOptions{})
			return err == nil && cur.UID != p.UID, fmt.Sprint(err)
		})
	}
	return false
}

// claimUIDs are the UIDs of the cluster's data volumes, by name.
func claimUIDs(t *testing.T, ns string) map[string]types.UID {
	t.Helper()
	claims, err := cs.CoreV1().PersistentVolumeClaims(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list volumes: %v", err)
	}
	out := map[string]types.UID{}
	for _, pvc := range claims.Items {
		out[pvc.Name] = pvc.UID
	}
	return out
}

// TestScaleDownAndUpUnderLoad scales five servers down to three and back up to five while
// an application writes, with the active node among the servers that leave: leadership moves
// away first, each server leaves the Raft configuration before its pod goes, its volume is
// deleted, no acknowledged write is lost and the cluster always has an active node; the
// servers that come back start from empty volumes and join as voters.
func TestScaleDownAndUpUnderLoad(t *testing.T) {
	ns := newNamespace(t, "e2e-scale")
	if err := k8s.Create(context.Background(), newCluster(ns, "bao", 5)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	leaderLeaves := moveLeadershipTo(t, ns, "bao", "bao-3", "bao-4")
	c := waitFullyFormed(t, ns, "bao", 5)
	var leader *corev1.Pod
	eventually(t, waitShort, "an active node", func() (bool, string) {
		p, active := activePod(t, c)
		leader = p
		return p != nil, fmt.Sprintf("active: %v", active)
	})
	t.Logf("before scaling down, the active node is %s (it leaves: %v)", leader.Name, leaderLeaves)
	oldClaims := claimUIDs(t, ns)
	for _, name := range []string{"data-bao-3", "data-bao-4"} {
		if oldClaims[name] == "" {
			t.Fatalf("volume %s does not exist before the scale-down (volumes: %v)", name, oldClaims)
		}
	}

	load := startLoad(t, c, "scale")
	time.Sleep(3 * time.Second)
	watch := watchUpgrade(t, c)
	active := watchActive(t, ns, "bao")

	start := time.Now()
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Replicas = ptr.To[int32](3) })
	eventually(t, waitUpgrade, "scale-down to 3 servers", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionScalingDown)
		return c.Status.ScaleDown == nil && cond != nil && cond.Reason == openbaov1alpha1.ReasonScaleDownCompleted,
			fmt.Sprintf("%s scaleDown=%+v", describeCluster(ns, c), c.Status.ScaleDown)
	})
	down := time.Since(start)
	c = waitFullyFormed(t, ns, "bao", 3)
	t.Logf("scaled down 5 -> 3 in %s", down.Round(time.Second))

	voters, nonVoters := raftVoters(t, c)
	if !slices.Equal(voters, []string{"bao-0", "bao-1", "bao-2"}) || len(nonVoters) > 0 {
		t.Errorf("Raft configuration after the scale-down: voters %v, non-voters %v; want bao-0, bao-1, bao-2", voters, nonVoters)
	}
	if sts := statefulSet(t, c); *sts.Spec.Replicas != 3 || partitionOf(sts) != 3 {
		t.Errorf("StatefulSet has %d replicas and partition %d, want 3 and 3", *sts.Spec.Replicas, partitionOf(sts))
	}
	eventually(t, waitShort, "the removed servers' volumes deleted and the scale-down's Jobs gone", func() (bool, string) {
		claims := claimUIDs(t, ns)
		jobs, err := cs.BatchV1().Jobs(ns).List(context.Background(), metav1.ListOptions{})
		return claims["data-bao-3"] == "" && claims["data-bao-4"] == "" && err == nil && len(jobs.Items) == 0,
			fmt.Sprintf("volumes %v, jobs %d %v", claims, len(jobs.Items), err)
	})
	stepDowns := watch.stepDownJobs()
	if leaderLeaves && len(stepDowns) == 0 {
		t.Errorf("%s led and left the cluster without a step-down Job", leader.Name)
	}
	t.Logf("step-down Jobs: %v; leadership changes: %v", stepDowns, watch.leaderChanges)
	events, err := cs.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list events: %v", err)
	}
	reasons := map[string]int{}
	for _, e := range events.Items {
		reasons[e.Reason]++
	}
	for reason, n := range map[string]int{"ScaleDownStarted": 1, "PeerRemoved": 2, "VolumeDeleted": 2, "ScaleDownCompleted": 1} {
		if reasons[reason] < n {
			t.Errorf("%d %s events, want at least %d (events: %v)", reasons[reason], reason, n, reasons)
		}
	}

	// Back to five: bao-3 and bao-4 are created anew, on new volumes, and join as voters.
	start = time.Now()
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Replicas = ptr.To[int32](5) })
	c = waitFullyFormed(t, ns, "bao", 5)
	t.Logf("scaled up 3 -> 5 in %s", time.Since(start).Round(time.Second))
	watch.Stop()
	longestNone, samples := active.Stop()

	voters, nonVoters = raftVoters(t, c)
	if !slices.Equal(voters, []string{"bao-0", "bao-1", "bao-2", "bao-3", "bao-4"}) || len(nonVoters) > 0 {
		t.Errorf("Raft configuration after scaling up: voters %v, non-voters %v", voters, nonVoters)
	}
	newClaims := claimUIDs(t, ns)
	for _, name := range []string{"data-bao-3", "data-bao-4"} {
		if newClaims[name] == "" || newClaims[name] == oldClaims[name] {
			t.Errorf("volume %s: uid %q before, %q after; the server must come back on a new volume", name, oldClaims[name], newClaims[name])
		}
	}
	for _, name := range []string{"data-bao-0", "data-bao-1", "data-bao-2"} {
		if newClaims[name] != oldClaims[name] {
			t.Errorf("volume %s of a remaining server changed", name)
		}
	}
	for pod, uids := range watch.podUIDs {
		want := 1
		if pod == "bao-3" || pod == "bao-4" {
			want = 2
		}
		if len(uids) != want {
			t.Errorf("%s had %d incarnations, want %d", pod, len(uids), want)
		}
	}

	r := checkNoWriteLost(t, c, load)
	t.Logf("longest time without an active node: %s (%d samples)", longestNone.Round(time.Millisecond), samples)
	if longestNone > 10*time.Second {
		t.Errorf("no server was active for %s: the cluster lost its quorum or its leader for too long", longestNone)
	}
	if r.LongestWriteGap > 15*time.Second {
		t.Errorf("writes stopped for %s", r.LongestWriteGap)
	}
}
