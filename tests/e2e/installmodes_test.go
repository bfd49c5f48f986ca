package e2e

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// TestSingleNamespaceInstallMode runs the operator as OLM configures it for the
// OwnNamespace and SingleNamespace install modes: its pod carries the olm.targetNamespaces
// annotation, which the Deployment passes to the manager as WATCH_NAMESPACE through the
// downward API. A cluster in the target namespace becomes Available; one in another
// namespace is never touched.
func TestSingleNamespaceInstallMode(t *testing.T) {
	ctx := context.Background()
	other := newNamespace(t, "e2e-unwatched")
	watched := newNamespace(t, "e2e-watched")
	if err := env.SetOperatorTargetNamespaces(ctx, watched); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.SetOperatorTargetNamespaces(context.Background(), ""); err != nil {
			t.Errorf("let the operator watch every namespace again: %v", err)
		}
	})

	// The ignored cluster comes first: an operator that saw it would act on it before it
	// formed the watched one.
	if err := k8s.Create(ctx, newCluster(other, "bao", 1)); err != nil {
		t.Fatalf("create OpenBaoCluster in %s: %v", other, err)
	}
	if err := k8s.Create(ctx, newCluster(watched, "bao", 1)); err != nil {
		t.Fatalf("create OpenBaoCluster in %s: %v", watched, err)
	}
	waitFullyFormed(t, watched, "bao", 1)
	// One more observation period of the operator for the unwatched cluster to be (not) seen.
	time.Sleep(5 * time.Second)

	ignored := getCluster(t, other, "bao")
	if len(ignored.Finalizers) > 0 || ignored.Status.Phase != "" || len(ignored.Status.Conditions) > 0 {
		t.Errorf("the operator touched the cluster outside its target namespace: finalizers %v, status %+v", ignored.Finalizers, ignored.Status)
	}
	names := resources.NamesFor(ignored)
	if _, err := cs.AppsV1().StatefulSets(other).Get(ctx, names.StatefulSet, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("StatefulSet %s/%s: %v, want none", other, names.StatefulSet, err)
	}
	if _, err := cs.CoreV1().Secrets(other).Get(ctx, names.SealSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("seal-key Secret %s/%s: %v, want none", other, names.SealSecret, err)
	}
	events, err := cs.EventsV1().Events(other).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if e.Regarding.Kind == "OpenBaoCluster" {
			t.Errorf("event %s on the unwatched cluster: %s", e.Reason, e.Note)
		}
	}
}
