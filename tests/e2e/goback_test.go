package e2e

import (
	"context"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// TestGoingBackMidUpgrade: three servers under load, the Rolling upgrade to the newer
// release has replaced bao-2, and the version is set back while the active node still runs
// the older release. No server on the newer release has led (sys/version-history does not
// list it), so the operator goes back: the replaced servers return to the older release,
// the active node is neither restarted nor stepped down, and no acknowledged write is lost.
func TestGoingBackMidUpgrade(t *testing.T) {
	ns := newNamespace(t, "e2e-goback")
	if err := k8s.Create(context.Background(), newCluster(ns, "bao", 3)); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	leader, _ := activePod(t, c)
	if leader.Name == "bao-2" {
		t.Fatalf("the cluster bootstrapped on %s, which moves first: this test needs a leader that moves last", leader.Name)
	}
	load := startLoad(t, c, "goback")
	watch := watchUpgrade(t, c)

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	waitForStep(t, ns, "bao", "bao-2 replaced and done on "+upgradeVersion, func(u *openbaov1alpha1.UpgradeStatus) bool {
		return u.Rolling != nil && slices.Contains(u.Rolling.PodsDone, "bao-2")
	})
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = openBaoVersion })
	eventually(t, waitShort, "the status to announce going back", func() (bool, string) {
		got := getCluster(t, ns, "bao")
		return got.Status.Upgrade == nil || strings.HasPrefix(got.Status.Upgrade.Message, "Going back to "+openBaoVersion) ||
			got.Status.Upgrade.ToVersion == openBaoVersion, describeCluster(ns, got)
	})

	c = waitUpgraded(t, ns, "bao", openBaoVersion, 3)
	watch.Stop()
	checkAllOnVersion(t, c, openBaoVersion, 3)
	up := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading)
	if up == nil || !strings.HasPrefix(up.Message, "Back on "+openBaoVersion) {
		t.Errorf("Upgrading condition after going back: %+v", up)
	}
	if jobs := watch.stepDownJobs(); len(jobs) > 0 {
		t.Errorf("a server was stepped down: %v", jobs)
	}
	watch.checkLeadership(t, openBaoVersion, upgradeVersion)
	watch.checkLeadership(t, upgradeVersion, openBaoVersion)
	if now, _ := activePod(t, c); now.Name != leader.Name || now.UID != leader.UID {
		t.Errorf("the active node changed or was restarted: %s (%s) before, %s (%s) after", leader.Name, leader.UID, now.Name, now.UID)
	}
	checkNoWriteLost(t, c, load)
}
