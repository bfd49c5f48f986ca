package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/openbao/openbao/api/v2"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestDisasterRecoveryFromObjectStorage loses a cluster with its volumes, keeps its seal-key
// Secret, re-creates it and restores the last backup from object storage; the operator is
// killed while the restore restarts the servers. Every write acknowledged before the backup
// is back on every server; what was written after it is not.
func TestDisasterRecoveryFromObjectStorage(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-dr")
	store := startObjectStore(t, ns)
	want := newCluster(ns, "bao", 3)
	want.Spec.Backup = s3Backup(store, "dr/")
	if err := k8s.Create(ctx, want.DeepCopy()); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 3)
	before := writeMarkers(t, c, "before", 10)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Backup.RequestID = "before-the-disaster" })
	backup := waitBackup(t, ns, "bao", "the backup before the disaster", func(b *openbaov1alpha1.BackupStatus) bool {
		return b.LastRequestID == "before-the-disaster" && b.Running == nil && b.LastSuccessful != nil
	})
	after := writeMarkers(t, c, "after", 3)

	// The disaster: the cluster and every volume of it are gone; the seal-key Secret is kept.
	if err := k8s.Delete(ctx, c); err != nil {
		t.Fatalf("delete the cluster: %v", err)
	}
	eventually(t, waitShort, "the cluster's pods gone", func() (bool, string) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: resources.SelectorLabels(c)})})
		return err == nil && len(pods.Items) == 0, fmt.Sprintf("%v, %d pods", err, len(pods.Items))
	})
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pvcs.Items {
		if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("delete volume %s: %v", p.Name, err)
		}
	}
	eventually(t, waitShort, "every volume gone", func() (bool, string) {
		left, err := cs.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(left.Items) == 0, fmt.Sprint(err)
	})
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, resources.NamesFor(c).SealSecret, metav1.GetOptions{}); err != nil {
		t.Fatalf("the seal-key Secret did not outlive the cluster: %v", err)
	}

	// The way back: the same cluster again (it finds its seal key), then the backup.
	if err := k8s.Create(ctx, want.DeepCopy()); err != nil {
		t.Fatalf("re-create the cluster: %v", err)
	}
	c = waitFullyFormed(t, ns, "bao", 3)
	if _, err := appLogin(t, c, firstReady(t, c)).KVv2("secret").Get(ctx, before[0]); !errors.Is(err, api.ErrSecretNotFound) {
		t.Fatalf("the re-created cluster should start empty; reading %s gave %v", before[0], err)
	}
	r := newRestore(ns, "dr", "bao", openbaov1alpha1.RestoreSource{Location: backup.Location})
	if err := k8s.Create(ctx, r); err != nil {
		t.Fatalf("create OpenBaoRestore: %v", err)
	}
	waitRestorePhase(t, ns, "dr", "the servers restarting", openbaov1alpha1.RestoreRestarting, openbaov1alpha1.RestoreVerifying, openbaov1alpha1.RestoreSucceeded)
	killOperator(t)
	done := waitRestoreDone(t, ns, "dr")
	if done.Status.Phase != openbaov1alpha1.RestoreSucceeded {
		t.Fatalf("the restore ended %s: %s", done.Status.Phase, done.Status.Message)
	}
	if done.Status.SHA256 != backup.SHA256 {
		t.Errorf("the restore installed SHA-256 %s, the backup has %s", done.Status.SHA256, backup.SHA256)
	}
	c = waitFullyFormed(t, ns, "bao", 3)
	if got := getCluster(t, ns, "bao").Status.Restore; got != nil {
		t.Errorf("the cluster still holds the restore lock %+v", got)
	}
	checkEveryServer(t, c, before, after)
}

// TestRollbackAfterAnUpgradeThatServed goes back to the release before an upgrade after the
// upgraded cluster took writes: a new cluster on the old release, with the first cluster's
// seal key, restores the snapshot the upgrade took to the backup bucket before it changed a
// server; every server of it serves exactly that snapshot's data. A restore asked for while
// the upgrade runs is refused without touching anything, and a cluster with another seal key
// refuses the snapshot and is left as it was.
func TestRollbackAfterAnUpgradeThatServed(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-rollback")
	store := startObjectStore(t, ns)
	old := newCluster(ns, "bao", 1)
	old.Spec.Backup = s3Backup(store, "rollback/")
	old.Spec.Upgrade.PreUpgradeSnapshot = true
	if err := k8s.Create(ctx, old); err != nil {
		t.Fatalf("create OpenBaoCluster: %v", err)
	}
	c := waitFullyFormed(t, ns, "bao", 1)
	before := writeMarkers(t, c, "before-upgrade", 10)
	updateSpec(t, ns, "bao", func(s *openbaov1alpha1.OpenBaoClusterSpec) { s.Version = upgradeVersion })

	// The upgrade records where its snapshot goes before the Job runs: a restore asked for
	// now is refused, with the upgrade as the reason, and changes nothing.
	var intent *openbaov1alpha1.SnapshotStatus
	eventually(t, waitShort, "the upgrade recording its snapshot", func() (bool, string) {
		cur := getCluster(t, ns, "bao")
		if u := cur.Status.Upgrade; u != nil && u.Snapshot != nil {
			intent = u.Snapshot.DeepCopy()
			return true, ""
		}
		if cur.Status.CurrentVersion == upgradeVersion {
			t.Fatalf("the upgrade ended before its snapshot was seen in status.upgrade")
		}
		return false, describeCluster(ns, cur)
	})
	wantKey := "rollback/" + ns + "/bao/bao-pre-upgrade-" + openBaoVersion + "-"
	if !strings.HasPrefix(intent.Location, "s3://"+s3Bucket+"/"+wantKey) || intent.PersistentVolumeClaim != "" {
		t.Fatalf("the pre-upgrade snapshot goes to %q (volume %q), want s3://%s/%s<revision>.snap", intent.Location, intent.PersistentVolumeClaim, s3Bucket, wantKey)
	}
	during := newRestore(ns, "during-upgrade", "bao", openbaov1alpha1.RestoreSource{Location: intent.Location})
	if err := k8s.Create(ctx, during); err != nil {
		t.Fatalf("create OpenBaoRestore: %v", err)
	}
	refusedDuring := waitRestoreDone(t, ns, "during-upgrade")
	if refusedDuring.Status.Phase != openbaov1alpha1.RestoreRefused || conditionReason(refusedDuring) != openbaov1alpha1.ReasonRestoreUpgradeInProgress {
		t.Errorf("a restore during the upgrade: phase %s, reason %s, message %s; want Refused, %s",
			refusedDuring.Status.Phase, conditionReason(refusedDuring), refusedDuring.Status.Message, openbaov1alpha1.ReasonRestoreUpgradeInProgress)
	}
	waitEvent(t, ns, "a Warning RestoreRefused event of the refused restore naming "+openbaov1alpha1.ReasonRestoreUpgradeInProgress, func(e *eventsv1.Event) bool {
		return e.Regarding.Kind == "OpenBaoRestore" && e.Regarding.Name == "during-upgrade" && e.Type == corev1.EventTypeWarning &&
			e.Reason == "RestoreRefused" && strings.Contains(e.Note, openbaov1alpha1.ReasonRestoreUpgradeInProgress)
	})
	jobs, err := cs.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: resources.LabelRestoreName + "=during-upgrade"})
	if err != nil || len(jobs.Items) != 0 {
		t.Errorf("the refused restore has Jobs: %v, %v", jobs, err)
	}
	if l := getCluster(t, ns, "bao").Status.Restore; l != nil {
		t.Errorf("the refused restore holds the cluster's operation lock: %+v", l)
	}

	// The snapshot completes before the first server moves; the upgrade then finishes.
	var snap *openbaov1alpha1.SnapshotStatus
	eventually(t, waitUpgrade, "the pre-upgrade snapshot recorded", func() (bool, string) {
		cur := getCluster(t, ns, "bao")
		u := cur.Status.Upgrade
		if u == nil {
			t.Fatalf("the upgrade ended before its completed snapshot was seen in status.upgrade: %s", describeCluster(ns, cur))
		}
		if u.Snapshot != nil && u.Snapshot.CompletionTime != nil {
			snap = u.Snapshot.DeepCopy()
			return true, ""
		}
		return false, describeCluster(ns, cur)
	})
	c = waitUpgraded(t, ns, "bao", upgradeVersion, 1)
	t.Logf("pre-upgrade snapshot: %s, %d bytes, sha256 %s", snap.Location, snap.Size, snap.SHA256)
	if snap.Location != intent.Location || snap.Size <= 0 || len(snap.SHA256) != 64 {
		t.Fatalf("the completed snapshot is recorded as %+v; want the location %s with its size and SHA-256", snap, intent.Location)
	}
	if _, sum := downloadObject(t, store, strings.TrimPrefix(snap.Location, "s3://"+s3Bucket+"/")); sum != snap.SHA256 {
		t.Errorf("the object %s has SHA-256 %s, status.upgrade.snapshot says %s", snap.Location, sum, snap.SHA256)
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionUpgrading); cond == nil || !strings.Contains(cond.Message, snap.Location) {
		t.Errorf("the Upgrading condition after the upgrade does not name the snapshot %s: %+v", snap.Location, cond)
	}
	after := writeMarkers(t, c, "after-upgrade", 3)

	// The new cluster on the release before the upgrade, with the first cluster's seal key.
	back := newCluster(ns, "bao-back", 3)
	back.Spec.Seal = &openbaov1alpha1.SealSpec{ExistingSecret: resources.NamesFor(c).SealSecret}
	// A cluster of its own key, which must refuse the snapshot.
	other := newCluster(ns, "bao-other", 1)
	for _, obj := range []client.Object{back, other} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("create OpenBaoCluster %s: %v", obj.GetName(), err)
		}
	}
	source := openbaov1alpha1.RestoreSource{Location: snap.Location, SHA256: snap.SHA256, S3: &openbaov1alpha1.RestoreS3Source{
		Endpoint: store.Endpoint, Region: s3Region, PathStyle: true, CredentialsSecret: store.CredentialsSecret,
		CABundle: &openbaov1alpha1.CABundleSource{ConfigMapName: store.CAConfigMap},
	}}

	o := waitFullyFormed(t, ns, "bao-other", 1)
	otherMarkers := writeMarkers(t, o, "other", 2)
	refused := newRestore(ns, "wrong-key", "bao-other", source)
	refused.Spec.Force = true
	if err := k8s.Create(ctx, refused); err != nil {
		t.Fatalf("create OpenBaoRestore: %v", err)
	}
	if r := waitRestoreDone(t, ns, "wrong-key"); r.Status.Phase != openbaov1alpha1.RestoreRefused ||
		!strings.Contains(conditionReason(r), openbaov1alpha1.ReasonRestoreSealKeyMismatch) {
		t.Errorf("a snapshot sealed with another key: phase %s, reason %s, message %s; want Refused, SealKeyMismatch",
			r.Status.Phase, conditionReason(r), r.Status.Message)
	}
	checkEveryServer(t, waitFullyFormed(t, ns, "bao-other", 1), otherMarkers, before[:1])

	b := waitFullyFormed(t, ns, "bao-back", 3)
	checkAllOnVersion(t, b, openBaoVersion, 3)
	rb := newRestore(ns, "rollback", "bao-back", source)
	rb.Spec.Force = true
	if err := k8s.Create(ctx, rb); err != nil {
		t.Fatalf("create OpenBaoRestore: %v", err)
	}
	if r := waitRestoreDone(t, ns, "rollback"); r.Status.Phase != openbaov1alpha1.RestoreSucceeded {
		t.Fatalf("the rollback restore ended %s: %s", r.Status.Phase, r.Status.Message)
	}
	b = waitFullyFormed(t, ns, "bao-back", 3)
	checkAllOnVersion(t, b, openBaoVersion, 3)
	checkEveryServer(t, b, before, after)

	// The restored data holds the first cluster's Job roles; the new cluster's own Jobs still
	// log in to them (they accept the Job accounts of the namespace): a backup succeeds.
	updateSpec(t, ns, "bao-back", func(s *openbaov1alpha1.OpenBaoClusterSpec) {
		s.Backup = s3Backup(store, "rolled-back/")
		s.Backup.RequestID = "after-rollback"
	})
	waitBackup(t, ns, "bao-back", "a backup of the rolled-back cluster", func(b *openbaov1alpha1.BackupStatus) bool {
		return b.LastRequestID == "after-rollback" && b.Running == nil && b.LastSuccessful != nil
	})
}

// s3Backup is a backup spec for the object store under prefix, on request (and once a year).
func s3Backup(store *objectStore, prefix string) *openbaov1alpha1.BackupSpec {
	return &openbaov1alpha1.BackupSpec{Schedule: "@yearly", Target: openbaov1alpha1.BackupTarget{S3: &openbaov1alpha1.S3Target{
		Endpoint: store.Endpoint, Bucket: s3Bucket, Prefix: prefix, Region: s3Region, PathStyle: true,
		CredentialsSecret: store.CredentialsSecret,
		CABundle:          &openbaov1alpha1.CABundleSource{ConfigMapName: store.CAConfigMap},
	}}}
}

func newRestore(ns, name, cluster string, source openbaov1alpha1.RestoreSource) *openbaov1alpha1.OpenBaoRestore {
	return &openbaov1alpha1.OpenBaoRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       openbaov1alpha1.OpenBaoRestoreSpec{Cluster: openbaov1alpha1.RestoreClusterReference{Name: cluster}, Source: source},
	}
}

func getRestore(t *testing.T, ns, name string) *openbaov1alpha1.OpenBaoRestore {
	t.Helper()
	r := &openbaov1alpha1.OpenBaoRestore{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
		if apierrors.IsNotFound(err) {
			t.Fatalf("OpenBaoRestore %s/%s is gone", ns, name)
		}
		t.Fatalf("get OpenBaoRestore %s/%s: %v", ns, name, err)
	}
	return r
}

func conditionReason(r *openbaov1alpha1.OpenBaoRestore) string {
	for _, c := range r.Status.Conditions {
		if c.Type == openbaov1alpha1.ConditionRestored {
			return c.Reason
		}
	}
	return ""
}

// waitRestorePhase waits until the restore is in one of phases.
func waitRestorePhase(t *testing.T, ns, name, what string, phases ...openbaov1alpha1.RestorePhase) {
	t.Helper()
	eventually(t, waitUpgrade, what, func() (bool, string) {
		r := getRestore(t, ns, name)
		for _, p := range phases {
			if r.Status.Phase == p {
				return true, ""
			}
		}
		return false, fmt.Sprintf("phase %s: %s", r.Status.Phase, r.Status.Message)
	})
}

// waitRestoreDone waits until the restore succeeded, failed or was refused.
func waitRestoreDone(t *testing.T, ns, name string) *openbaov1alpha1.OpenBaoRestore {
	t.Helper()
	var r *openbaov1alpha1.OpenBaoRestore
	eventually(t, waitUpgrade, "restore "+name+" done", func() (bool, string) {
		r = getRestore(t, ns, name)
		return r.Status.Phase.Done(), fmt.Sprintf("phase %s: %s", r.Status.Phase, r.Status.Message)
	})
	t.Logf("restore %s: %s (%s) %s", name, r.Status.Phase, conditionReason(r), r.Status.Message)
	return r
}

// writeMarkers writes n keys e2e/markers/<name>-<i> through the active server and returns
// them.
func writeMarkers(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, name string, n int) []string {
	t.Helper()
	leader, active := activePod(t, c)
	if leader == nil {
		t.Fatalf("no single active server: %v", active)
	}
	kv := appLogin(t, c, leader).KVv2("secret")
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("e2e/markers/%s-%d", name, i)
		if _, err := kv.Put(context.Background(), keys[i], map[string]any{"v": keys[i]}); err != nil {
			t.Fatalf("write %s: %v", keys[i], err)
		}
	}
	return keys
}

// checkEveryServer reads through every server: each key of present holds its own name, no
// key of absent exists.
func checkEveryServer(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, present, absent []string) {
	t.Helper()
	ctx := context.Background()
	pods := serverPods(t, c)
	if len(pods) == 0 {
		t.Fatal("no server pods")
	}
	for i := range pods {
		kv := appLogin(t, c, &pods[i]).KVv2("secret")
		for _, k := range present {
			got, err := kv.Get(ctx, k)
			if err != nil || got.Data["v"] != k {
				t.Errorf("%s: %s reads %v, %v; want its value", pods[i].Name, k, got, err)
			}
		}
		for _, k := range absent {
			if _, err := kv.Get(ctx, k); !errors.Is(err, api.ErrSecretNotFound) {
				t.Errorf("%s: %s was written after the snapshot and should be gone; reading it gave %v", pods[i].Name, k, err)
			}
		}
	}
}

// firstReady is a Ready server pod.
func firstReady(t *testing.T, c *openbaov1alpha1.OpenBaoCluster) *corev1.Pod {
	t.Helper()
	for _, p := range serverPods(t, c) {
		if podReady(&p) {
			return &p
		}
	}
	t.Fatal("no Ready server pod")
	return nil
}
