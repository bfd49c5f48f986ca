package e2e

import (
	"context"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// leaseName is the operator's leader-election lease (main.go's LeaderElectionID).
const leaseName = "openbao-operator.openbao.org"

// TestOperatorRestartHandsOverTheLease deletes the operator's pod the way a rollout or a
// drain does (a graceful stop) and checks that the stopping operator released its
// leader-election lease, so its successor did not wait for the lease to expire. The time from
// the deletion to the successor holding the lease is printed (README: "Operator restarts").
func TestOperatorRestartHandsOverTheLease(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	leases := cs.CoordinationV1().Leases(cluster.OperatorNamespace)
	var before *coordinationv1.Lease
	eventually(t, time.Minute, "the operator holds its lease", func() (bool, string) {
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		before = l
		return holder(l) != "", "no holder"
	})
	old := holder(before)
	w, err := leases.Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", leaseName).String(),
		ResourceVersion: before.ResourceVersion,
	})
	if err != nil {
		t.Fatalf("watch the lease: %v", err)
	}
	defer w.Stop()

	pods, err := cs.CoreV1().Pods(cluster.OperatorNamespace).List(ctx, metav1.ListOptions{LabelSelector: "control-plane=controller-manager"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("find the operator pod: %v (%d found)", err, len(pods.Items))
	}
	deleted := time.Now()
	if err := cs.CoreV1().Pods(cluster.OperatorNamespace).Delete(ctx, pods.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete the operator pod: %v", err)
	}
	t.Logf("deleted the operator pod %s (graceful stop); lease held by %s", pods.Items[0].Name, old)

	released := false
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("no new operator took the lease within 3 minutes (released by %s: %v)", old, released)
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatal("the lease watch ended before a new operator took the lease")
			}
			if ev.Type != watch.Modified {
				continue
			}
			l := ev.Object.(*coordinationv1.Lease)
			switch h := holder(l); {
			case h == "":
				released = true
				t.Logf("%s released the lease %.1fs after its pod was deleted", old, time.Since(deleted).Seconds())
			case h != old:
				t.Logf("%s took the lease %.1fs after the old pod was deleted", h, time.Since(deleted).Seconds())
				if !released {
					t.Errorf("%s took over without %s releasing the lease first: the new operator waited for it to expire", h, old)
				}
				return
			}
		}
	}
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
