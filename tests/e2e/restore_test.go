package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// TestRestoreOnDemandBackup takes a backup to the snapshot volume on request, writes more,
// and restores that backup with an OpenBaoRestore, all under a steady write load through
// the client Service: afterwards every server, restarted one at a time, serves what was
// acknowledged before the backup, nothing acknowledged between the backup and the restore,
// and every write acknowledged after the restore.
func TestRestoreOnDemandBackup(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-restore")
	c := newCluster(ns, "bao", 3)
	if err := k8s.Create(ctx, c); err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	c = waitFullyFormed(t, ns, "bao", 3)
	// The load writes through the client Service during the backup and the restore. While
	// the restore restarts the servers some requests fail (connection refused, a server
	// sealed or standing by, the load's token gone with the data it was created after);
	// that is expected: the load retries each write until it is acknowledged, and only
	// acknowledged writes are checked.
	load := startLoad(t, c, "restore")
	waitAcknowledged(t, load, "writes before the backup", time.Time{}, 20)

	write := func(key, value string) {
		t.Helper()
		active, _ := activePod(t, c)
		if active == nil {
			t.Fatal("no active server to write to")
		}
		cl := appLogin(t, c, active)
		if _, err := cl.Logical().Write("secret/data/e2e/"+key, map[string]any{"data": map[string]any{"v": value}}); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
	}
	write("before", "1")

	// An on-demand backup to the snapshot volume.
	backupStart := time.Now()
	cur := getCluster(t, ns, "bao")
	before := cur.DeepCopy()
	cur.Spec.Backup = &openbaov1alpha1.BackupSpec{RequestID: "restore-e2e"}
	if err := k8s.Patch(ctx, cur, client.MergeFrom(before)); err != nil {
		t.Fatalf("request a backup: %v", err)
	}
	var location string
	eventually(t, waitShort, "the on-demand backup recorded", func() (bool, string) {
		cur := getCluster(t, ns, "bao")
		b := cur.Status.Backup
		if b == nil || b.LastSuccessful == nil {
			if b != nil && b.LastFailed != nil {
				t.Fatalf("the backup failed: %s", b.LastFailed.Message)
			}
			return false, fmt.Sprintf("%+v", b)
		}
		location = b.LastSuccessful.Location
		return true, ""
	})
	backupDone := time.Now()
	t.Logf("backup at %s", location)
	write("after", "2")
	waitAcknowledged(t, load, "writes after the backup", backupDone, 20)

	start := time.Now()
	rs := &openbaov1alpha1.OpenBaoRestore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "back"},
		Spec: openbaov1alpha1.OpenBaoRestoreSpec{
			Cluster: openbaov1alpha1.RestoreClusterReference{Name: "bao"},
			Source:  openbaov1alpha1.RestoreSource{Backup: "latest"},
		},
	}
	if err := k8s.Create(ctx, rs); err != nil {
		t.Fatalf("create restore: %v", err)
	}
	eventually(t, waitFormed, "the restore Succeeded", func() (bool, string) {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(rs), rs); err != nil {
			return false, err.Error()
		}
		if rs.Status.Phase == openbaov1alpha1.RestoreFailed || rs.Status.Phase == openbaov1alpha1.RestoreRefused {
			t.Fatalf("restore %s: %s", rs.Status.Phase, rs.Status.Message)
		}
		return rs.Status.Phase == openbaov1alpha1.RestoreSucceeded, fmt.Sprintf("%s: %s", rs.Status.Phase, rs.Status.Message)
	})
	restoreDone := time.Now()
	t.Logf("restore succeeded in %s: %s", restoreDone.Sub(start).Round(time.Second), rs.Status.Message)
	waitAcknowledged(t, load, "writes after the restore", restoreDone, 20)
	load.Stop()
	if got := rs.Status.RestartedPods; len(got) != 3 {
		t.Errorf("restarted servers: %v, want all three", got)
	}
	if rs.Status.Location != location || rs.Status.SHA256 == "" {
		t.Errorf("restored %q (sha256 %q), want %q", rs.Status.Location, rs.Status.SHA256, location)
	}
	cond := meta.FindStatusCondition(rs.Status.Conditions, openbaov1alpha1.ConditionRestored)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("Restored condition: %+v", cond)
	}
	if getCluster(t, ns, "bao").Status.Restore != nil {
		t.Error("the cluster's operation lock is still held")
	}

	c = waitFullyFormed(t, ns, "bao", 3)
	for _, pod := range serverPods(t, c) {
		cl := appLogin(t, c, &pod)
		got, err := cl.Logical().Read("secret/data/e2e/before")
		if err != nil || got == nil {
			t.Errorf("%s: the value written before the backup is gone (%v)", pod.Name, err)
		} else if v := got.Data["data"].(map[string]any)["v"]; v != "1" {
			t.Errorf("%s: before = %v, want 1", pod.Name, v)
		}
		got, err = cl.Logical().Read("secret/data/e2e/after")
		if err != nil && !strings.Contains(err.Error(), "404") {
			t.Errorf("%s: read after: %v", pod.Name, err)
		}
		if got != nil && got.Data["data"] != nil {
			t.Errorf("%s: the value written after the backup is still there: %v", pod.Name, got.Data)
		}
	}
	checkLoadAroundRestore(t, c, load, backupStart, backupDone, start, restoreDone)
}

// waitAcknowledged waits until the load has n writes acknowledged that it first sent after
// since.
func waitAcknowledged(t *testing.T, load *loadclient.Client, what string, since time.Time, n int) {
	t.Helper()
	eventually(t, waitShort, what, func() (bool, string) {
		got := 0
		for _, w := range load.Writes() {
			if w.Start.After(since) {
				got++
			}
		}
		r := load.Report()
		return got >= n, fmt.Sprintf("%d of %d acknowledged; %d failed requests, first errors %v", got, n, r.FailedRequests, r.FirstErrors)
	})
}

// checkLoadAroundRestore reads the load's acknowledged writes through every server: those
// acknowledged before the backup started hold their value, those sent after the backup
// completed and acknowledged before the restore started are gone, those acknowledged after
// the restore finished hold their value. Writes in flight while the backup ran may or may
// not be in it, and are not checked.
func checkLoadAroundRestore(t *testing.T, c *openbaov1alpha1.OpenBaoCluster, load *loadclient.Client, backupStart, backupDone, restoreStart, restoreDone time.Time) {
	t.Helper()
	keep := map[string]string{}
	var absent []loadclient.Write
	for _, w := range load.Writes() {
		switch {
		case w.Acknowledged.Before(backupStart):
			keep[w.Key] = w.Value
		case w.Start.After(backupDone) && w.Acknowledged.Before(restoreStart):
			absent = append(absent, w)
		case w.Acknowledged.After(restoreDone):
			keep[w.Key] = w.Value
		}
	}
	r := load.Report()
	t.Logf("load: %d writes acknowledged (%d to keep, %d written after the backup to be gone), %d failed requests during the restarts, longest write gap %s; first errors: %v",
		r.Acknowledged, len(keep), len(absent), r.FailedRequests, r.LongestWriteGap.Round(time.Millisecond), r.FirstErrors)
	if len(keep) == 0 || len(absent) == 0 {
		t.Fatalf("the load has %d writes to keep and %d to be gone: nothing to check", len(keep), len(absent))
	}
	ctx := context.Background()
	for _, pod := range serverPods(t, c) {
		cl := appLogin(t, c, &pod)
		for _, w := range absent {
			got, err := cl.Logical().ReadWithContext(ctx, w.Key)
			if err != nil && !strings.Contains(err.Error(), "404") {
				t.Errorf("%s: read %s: %v", pod.Name, w.Key, err)
			} else if got != nil && got.Data["data"] != nil {
				t.Errorf("%s: %s, acknowledged after the backup and before the restore, is still there: %v", pod.Name, w.Key, got.Data)
			}
		}
		lost, err := loadclient.VerifyValues(ctx, cl, keep)
		if err != nil {
			t.Fatalf("read back the writes to keep through %s: %v", pod.Name, err)
		}
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d acknowledged writes lost: %v", pod.Name, len(lost), len(keep), lost[:min(len(lost), 10)])
		}
	}
}
