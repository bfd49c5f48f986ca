package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// blueGreenCluster is a three-server cluster set up for BlueGreen upgrades.
func blueGreenCluster(t *testing.T, ns string, change func(*openbaov1alpha1.OpenBaoClusterSpec)) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	want := newCluster(ns, "bao", 3)
	want.Spec.Upgrade.Strategy = openbaov1alpha1.BlueGreenUpgrade
	want.Spec.Upgrade.BlueGreen = &openbaov1alpha1.BlueGreenSpec{VerificationPeriod: &metav1.Duration{Duration: 20 * time.Second}}
	if change != nil {
		change(&want.Spec)
	}
	if err := k8s.Create(context.Background(), want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	return waitFullyFormed(t, ns, "bao", 3)
}

func waitBlueGreenPhase(t *testing.T, ns string, phases ...openbaov1alpha1.BlueGreenPhase) *openbaov1alpha1.OpenBaoCluster {
	t.Helper()
	var c *openbaov1alpha1.OpenBaoCluster
	eventually(t, waitUpgrade, fmt.Sprintf("blue/green phase %v", phases), func() (bool, string) {
		c = getCluster(t, ns, "bao")
		if u := c.Status.Upgrade; u != nil && u.BlueGreen != nil {
			for _, p := range phases {
				if u.BlueGreen.Phase == p {
					return true, ""
				}
			}
		}
		return false, describeCluster(ns, c)
	})
	return c
}

// raftVoters reads the Raft configuration with the upgrade role, as an upgrade Job would.
func raftVoters(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) (voters, nonVoters []string) {
	t.Helper()
	ctx := context.Background()
	for _, pod := range serverPods(t, c) {
		if !podReady(&pod) {
			continue
		}
		cl := podClient(t, c, &pod)
		jwt := serviceAccountToken(t, c.Namespace, resources.NamesFor(c).UpgradeServiceAccount, resources.UpgradeAudience)
		if err := cl.LoginJWT(ctx, resources.JWTAuthMount, resources.DefaultUpgradeRole, jwt); err != nil {
			continue
		}
		servers, err := cl.RaftConfiguration(ctx)
		if err != nil {
			continue
		}
		for _, s := range servers {
			if s.Voter {
				voters = append(voters, s.NodeID)
			} else {
				nonVoters = append(nonVoters, s.NodeID)
			}
		}
		sort.Strings(voters)
		sort.Strings(nonVoters)
		return voters, nonVoters
	}
	t.Fatalf("no server answered the Raft configuration")
	return nil, nil
}

// checkOnlyStatefulSet checks the Raft configuration holds exactly the three servers of sts
// as voters, and that nothing of another StatefulSet is left: StatefulSets, data volumes, Jobs.
func checkOnlyStatefulSet(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, sts string) {
	t.Helper()
	ctx := context.Background()
	want := []string{sts + "-0", sts + "-1", sts + "-2"}
	eventually(t, waitShort, "Raft voters "+strings.Join(want, ","), func() (bool, string) {
		voters, nonVoters := raftVoters(t, c)
		return strings.Join(voters, ",") == strings.Join(want, ",") && len(nonVoters) == 0,
			fmt.Sprintf("voters %v, non-voters %v", voters, nonVoters)
	})
	eventually(t, waitShort, "no StatefulSet, volume or Job but "+sts+"'s", func() (bool, string) {
		sets, err := cs.AppsV1().StatefulSets(c.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var names []string
		for _, s := range sets.Items {
			names = append(names, s.Name)
		}
		pvcs, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		var stray []string
		for _, p := range pvcs.Items {
			if !strings.HasPrefix(p.Name, "data-"+sts+"-") && p.Name != resources.SnapshotClaimName(c) {
				stray = append(stray, p.Name)
			}
		}
		jobs, err := cs.BatchV1().Jobs(c.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err.Error()
		}
		ok := len(names) == 1 && names[0] == sts && len(stray) == 0 && len(jobs.Items) == 0
		return ok, fmt.Sprintf("StatefulSets %v, stray volumes %v, %d Jobs", names, stray, len(jobs.Items))
	})
	svc, err := cs.CoreV1().Services(c.Namespace).Get(ctx, resources.NamesFor(c).ClientService, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("client Service: %v", err)
	}
	if got := svc.Spec.Selector[resources.LabelStatefulSet]; got != sts {
		t.Errorf("the client Service selects StatefulSet %q, want %q", got, sts)
	}
}

// TestBlueGreenUpgrade: the happy path with a verification period, the operator killed
// during syncing, cutover and retirement, a pause during syncing, then a later upgrade of
// the servers that now carry Green's names.
func TestBlueGreenUpgrade(t *testing.T) {
	ns := newNamespace(t, "e2e-bluegreen")
	c := blueGreenCluster(t, ns, nil)
	load := startLoad(t, c, "bluegreen")
	watch := watchUpgrade(t, c)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })

	syncing := waitBlueGreenPhase(t, ns, openbaov1alpha1.BlueGreenSyncing)
	green := syncing.Status.Upgrade.BlueGreen.GreenStatefulSet
	killOperator(t)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Paused = true })
	eventually(t, waitShort, "Paused=True", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		return meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionPaused), describeCluster(ns, c)
	})
	paused := getCluster(t, ns, "bao").Status.Upgrade.BlueGreen.Phase
	time.Sleep(15 * time.Second)
	if now := getCluster(t, ns, "bao").Status.Upgrade.BlueGreen.Phase; now != paused {
		t.Errorf("the upgrade moved from %s to %s while paused", paused, now)
	}
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Paused = false })

	waitBlueGreenPhase(t, ns, openbaov1alpha1.BlueGreenCuttingOver, openbaov1alpha1.BlueGreenVerifying)
	killOperator(t)
	waitBlueGreenPhase(t, ns, openbaov1alpha1.BlueGreenRetiringBlue)
	killOperator(t)

	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	watch.Stop()
	if c.Status.StatefulSet != green {
		t.Fatalf("status.statefulSet %q, want Green %q", c.Status.StatefulSet, green)
	}
	checkAllOnVersion(t, c, upgradeVersion, 3)
	watch.checkLeadership(t, openBaoVersion, upgradeVersion)
	checkNoWriteLost(t, c, load)
	checkOnlyStatefulSet(t, c, green)

	// A later upgrade (an image change, Rolling) works on Green's pods.
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Upgrade.Strategy = openbaov1alpha1.RollingUpgrade
		s.Image = "docker.io/openbao/openbao:" + upgradeVersion
	})
	eventually(t, waitUpgrade, "the image change rolled out", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		return c.Status.Upgrade == nil && c.Status.CurrentImage == "docker.io/openbao/openbao:"+upgradeVersion, describeCluster(ns, c)
	})
	c = waitFullyFormed(t, ns, "bao", 3)
	for _, p := range serverPods(t, c) {
		if !strings.HasPrefix(p.Name, green+"-") || p.Spec.Containers[0].Image != "docker.io/openbao/openbao:"+upgradeVersion {
			t.Errorf("pod %s runs %s after the second upgrade", p.Name, p.Spec.Containers[0].Image)
		}
	}
}

// TestBlueGreenConfirmationAndAbort: with confirmation required the upgrade waits; setting
// the version back aborts it (traffic and Raft back on Blue, Green gone); confirming a new
// attempt lets it finish.
func TestBlueGreenConfirmationAndAbort(t *testing.T) {
	ns := newNamespace(t, "e2e-bg-confirm")
	c := blueGreenCluster(t, ns, func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Upgrade.BlueGreen.RequireConfirmation = true
		s.Upgrade.BlueGreen.VerificationPeriod = &metav1.Duration{Duration: 5 * time.Second}
	})
	load := startLoad(t, c, "bg-confirm")
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	waitBlueGreenPhase(t, ns, openbaov1alpha1.BlueGreenAwaitingConfirmation)
	time.Sleep(15 * time.Second)
	if u := getCluster(t, ns, "bao").Status.Upgrade; u == nil || u.BlueGreen.Phase != openbaov1alpha1.BlueGreenAwaitingConfirmation {
		t.Fatalf("the upgrade did not wait for the confirmation: %s", describeCluster(ns, getCluster(t, ns, "bao")))
	}

	// Abort: the version back to where it was.
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = openBaoVersion })
	eventually(t, waitUpgrade, "the upgrade aborted", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
		return c.Status.Upgrade == nil && cond != nil && cond.Reason == openbaov1alpha1.ReasonUpgradeAborted, describeCluster(ns, c)
	})
	c = waitFullyFormed(t, ns, "bao", 3)
	if c.Status.CurrentVersion != openBaoVersion || resources.ActiveStatefulSet(c) != "bao" {
		t.Fatalf("after the abort: version %s, StatefulSet %s", c.Status.CurrentVersion, resources.ActiveStatefulSet(c))
	}
	checkAllOnVersion(t, c, openBaoVersion, 3)
	checkOnlyStatefulSet(t, c, "bao")

	// Again, confirmed this time: it proceeds to the end.
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Version = upgradeVersion
		s.Upgrade.BlueGreen.ConfirmedVersion = upgradeVersion
	})
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	checkAllOnVersion(t, c, upgradeVersion, 3)
	checkNoWriteLost(t, c, load)
	checkOnlyStatefulSet(t, c, resources.ActiveStatefulSet(c))
}

// TestBlueGreenGreenCannotRun: Green's image cannot run: the upgrade halts, Blue keeps
// serving with its Raft configuration unchanged, and setting the version back removes Green.
func TestBlueGreenGreenCannotRun(t *testing.T) {
	ns := newNamespace(t, "e2e-bg-broken")
	c := blueGreenCluster(t, ns, func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Upgrade.StepTimeout = &metav1.Duration{Duration: 90 * time.Second}
	})
	load := startLoad(t, c, "bg-broken")
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Version = upgradeVersion
		s.Image = missingImage
	})
	waitUpgradeHalted(t, ns, "bao", "the upgrade halted")
	voters, _ := raftVoters(t, c)
	if strings.Join(voters, ",") != "bao-0,bao-1,bao-2" {
		t.Errorf("Raft voters %v while Green cannot run, want Blue's three", voters)
	}
	acked := load.Report().Acknowledged
	time.Sleep(5 * time.Second)
	if load.Report().Acknowledged <= acked {
		t.Errorf("Blue stopped accepting writes after the upgrade halted")
	}

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Version = openBaoVersion
		s.Image = ""
	})
	eventually(t, waitUpgrade, "the halted upgrade aborted", func() (bool, string) {
		c := getCluster(t, ns, "bao")
		return c.Status.Upgrade == nil && !meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionDegraded), describeCluster(ns, c)
	})
	c = waitFullyFormed(t, ns, "bao", 3)
	checkAllOnVersion(t, c, openBaoVersion, 3)
	checkNoWriteLost(t, c, load)
	checkOnlyStatefulSet(t, c, "bao")
}
