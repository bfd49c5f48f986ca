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
)

// TestRestoreOnDemandBackup takes a backup to the snapshot volume on request, writes more,
// and restores that backup with an OpenBaoRestore: afterwards every server, restarted one
// at a time, serves what was written before the backup and nothing written after it.
func TestRestoreOnDemandBackup(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-restore")
	c := newCluster(ns, "bao", 3)
	if err := k8s.Create(ctx, c); err != nil {
		t.Fatalf("create cluster: %v", err)
	}
	c = waitFullyFormed(t, ns, "bao", 3)

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
	t.Logf("backup at %s", location)
	write("after", "2")

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
	t.Logf("restore succeeded in %s: %s", time.Since(start).Round(time.Second), rs.Status.Message)
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
}
