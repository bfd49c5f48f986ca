package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// waitKeys bounds how long the operator may take to notice new service-account keys: the
// issuer's keys are re-read every minute and a healthy cluster is looked at every 30 s; the
// API server's restart and the operator's reconnection come on top.
const waitKeys = 4 * time.Minute

// TestServiceAccountKeyRotation rotates the API server's service-account signing key the way
// an administrator does, in two restarts of kube-apiserver: first a new signing key with the
// old public key still accepted, then the old key removed. After the first restart the
// operator must give OpenBao both keys (a token signed by the new key logs in) and an upgrade
// must succeed (its Jobs log in with tokens of the new key); after the second OpenBao must
// trust the new key only and the operator must still observe the cluster with its own role.
func TestServiceAccountKeyRotation(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-sakeys")
	want := newCluster(ns, "bao", 3)
	want.Spec.Upgrade.PreUpgradeSnapshot = true
	if err := k8s.Create(ctx, want); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	waitFullyFormed(t, ns, "bao", 3)
	before := waitKeysSynced(t, ns, func(fps []string) bool { return len(fps) == 1 }, "the API server's one key")
	t.Logf("OpenBao trusts %v", before)

	// First half: a new signing key, the old one still accepted.
	start := time.Now()
	newPub, err := env.ControlPlane().RotateServiceAccountKey(ctx)
	if err != nil {
		t.Fatalf("restart kube-apiserver with a new signing key: %v", err)
	}
	newFP := fingerprint(t, newPub)
	t.Logf("kube-apiserver signs with %s (restart took %s)", newFP[:19], time.Since(start).Round(time.Second))
	both := waitKeysSynced(t, ns, func(fps []string) bool {
		return len(fps) == 2 && slices.Contains(fps, newFP) && slices.Contains(fps, before[0])
	}, "the old and the new key")
	t.Logf("the operator gave OpenBao %v %s after the restart began", both, time.Since(start).Round(time.Second))
	checkKeysEvent(t, ns, newFP)
	c := getCluster(t, ns, "bao")
	pod := serverPods(t, c)[0]
	appLogin(t, c, &pod) // a fresh token, signed by the new key

	// Tokens signed by the old key must be gone before it is retired, as on any cluster:
	// the operator's pod gets new ones when it is replaced (its kubelet would renew them at
	// 80% of their hour otherwise).
	restartOperator(t)

	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 3)
	checkAllOnVersion(t, c, upgradeVersion, 3)

	// Second half: the old key is no longer accepted.
	start = time.Now()
	if err := env.ControlPlane().RetireOldServiceAccountKeys(ctx); err != nil {
		t.Fatalf("restart kube-apiserver without the old key: %v", err)
	}
	after := waitKeysSynced(t, ns, func(fps []string) bool { return slices.Equal(fps, []string{newFP}) }, "the new key only")
	t.Logf("the operator gave OpenBao %v %s after the restart began", after, time.Since(start).Round(time.Second))
	// The operator still logs in: it reads Raft membership and autopilot's verdict again
	// after a fresh observation.
	// The operator still logs in: voters and autopilot's health in the status need its role;
	// a failed login would clear them on the next observation (every 30 s).
	time.Sleep(45 * time.Second)
	c = getCluster(t, ns, "bao")
	if !meta.IsStatusConditionTrue(c.Status.Conditions, openbaov1alpha1.ConditionAvailable) || c.Status.Leader == "" || len(c.Status.Members) != 3 {
		t.Errorf("after the old key was retired: %s", describeCluster(ns, c))
	}
	for _, m := range c.Status.Members {
		if !m.Voter || !m.Healthy || m.Error != "" {
			t.Errorf("after the old key was retired the operator reports %+v: it cannot read Raft state", m)
		}
	}
	pod = serverPods(t, c)[1]
	appLogin(t, c, &pod)
}

// waitKeysSynced waits for ServiceAccountKeysSynced=True with fingerprints that satisfy ok.
func waitKeysSynced(t *testing.T, ns string, ok func([]string) bool, what string) []string {
	t.Helper()
	var fps []string
	eventually(t, waitKeys, "OpenBao trusts "+what, func() (bool, string) {
		c := getCluster(t, ns, "bao")
		fps = c.Status.ServiceAccountKeys
		cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionServiceAccountKeysSynced)
		return cond != nil && cond.Status == metav1.ConditionTrue && ok(fps), fmt.Sprintf("keys %v, condition %+v", fps, cond)
	})
	return fps
}

func checkKeysEvent(t *testing.T, ns, added string) {
	t.Helper()
	waitEvent(t, ns, "a ServiceAccountKeysUpdated event naming the new key", func(e *eventsv1.Event) bool {
		return e.Reason == "ServiceAccountKeysUpdated" && strings.Contains(e.Note, "added "+added[:19])
	})
}

// restartOperator deletes the operator's pod and waits for its successor to be ready.
func restartOperator(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	pods := cs.CoreV1().Pods(cluster.OperatorNamespace)
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("find the operator pod: %v (%d found)", err, len(list.Items))
	}
	old := list.Items[0].Name
	if err := pods.Delete(ctx, old, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the operator pod: %v", err)
	}
	eventually(t, waitShort, "a new operator pod ready", func() (bool, string) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
		if err != nil {
			return false, err.Error()
		}
		for i := range list.Items {
			if list.Items[i].Name != old && podReady(&list.Items[i]) {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d operator pods", len(list.Items))
	})
}

// fingerprint is the operator's fingerprint of a PEM public key (sha256 of its DER).
func fingerprint(t *testing.T, pub []byte) string {
	t.Helper()
	block, _ := pem.Decode(pub)
	if block == nil {
		t.Fatalf("not a PEM key: %q", pub)
	}
	sum := sha256.Sum256(block.Bytes)
	return "sha256:" + hex.EncodeToString(sum[:])
}
