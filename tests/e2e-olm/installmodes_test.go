package e2eolm

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

const (
	// ownNamespace holds the operator installed for the OwnNamespace
	// install mode and the cluster it serves.
	ownNamespace = "openbao-own"
	// ignoredNamespace holds a cluster outside the operator's target
	// namespaces.
	ignoredNamespace = "bao-ignored"
)

// createAppCluster creates a cluster of replicas servers on toVersion for
// the load client's application.
func createAppCluster(t *testing.T, ns, name string, replicas int32) {
	t.Helper()
	c := loadclient.AppCluster(loadclient.AppClusterOptions{
		Namespace: ns, Name: name, Version: toVersion, Replicas: replicas, Scope: "e2e", TokenTTL: "10m",
	})
	c.APIVersion, c.Kind = openbaov1alpha1.GroupVersion.String(), "OpenBaoCluster"
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, ns+"-"+name, string(data))
}

// clusterVersions are the resourceVersions of the clusters' OpenBaoCluster
// objects: an operator that does not watch them never writes them.
func clusterVersions(t *testing.T, clusters ...baoCluster) map[baoCluster]string {
	t.Helper()
	out := map[baoCluster]string{}
	for _, c := range clusters {
		out[c] = strings.TrimSpace(string(kubectl(t, "-n", c.Namespace, "get", "openbaocluster/"+c.Name, "-o", "jsonpath={.metadata.resourceVersion}")))
	}
	return out
}

// testOwnNamespace installs the operator for the OwnNamespace install mode:
// an OperatorGroup whose only target namespace is its own, and a
// Subscription. OLM gives the operator's pod olm.targetNamespaces, which the
// Deployment passes as WATCH_NAMESPACE; a cluster in that namespace becomes
// Available, while one created in another namespace gets no status and no
// object, and the clusters of the earlier tests (in other namespaces, now
// without an operator) are not written either.
func testOwnNamespace(t *testing.T) {
	ctx := context.Background()
	// The all-namespaces install is gone; its OperatorGroup goes with it, as
	// a user cleans up (two groups that both target ownNamespace and provide
	// the same API would make OLM refuse the second install).
	kubectl(t, "-n", installNamespace, "delete", "operatorgroup/openbao-operator")
	earlier := append([]baoCluster(nil), created...)
	earlierSnapshot := takeSnapshot(t, earlier...)
	earlierVersions := clusterVersions(t, earlier...)

	start := time.Now()
	subscribeIn(t, ownNamespace, "["+ownNamespace+"]", "Automatic")
	csv := subscribedCSV(t, ownNamespace)
	waitJSONPath(t, ownNamespace, "csv/"+csv, "{.status.phase}", "Succeeded")
	kubectl(t, "-n", ownNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitOLM), "deployment/openbao-operator-controller-manager")
	t.Logf("OwnNamespace install: CSV %s Succeeded and the Deployment Available %s after the Subscription", csv, time.Since(start).Round(time.Second))
	d, err := cs.AppsV1().Deployments(ownNamespace).Get(ctx, "openbao-operator-controller-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if owner := d.Labels["olm.owner"]; owner != csv {
		t.Errorf("Deployment label olm.owner=%q, want %q (created by OLM for the CSV)", owner, csv)
	}
	pods, err := cs.CoreV1().Pods(ownNamespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(d.Spec.Selector)})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no pod of the operator Deployment in %s", ownNamespace)
	}
	for _, p := range pods.Items {
		if got := p.Annotations["olm.targetNamespaces"]; got != ownNamespace {
			t.Errorf("operator pod %s: olm.targetNamespaces=%q, want %q", p.Name, got, ownNamespace)
		}
	}

	// The ignored cluster comes first: an operator that saw it would act on
	// it before it formed the watched one.
	kubectl(t, "create", "namespace", ignoredNamespace)
	createAppCluster(t, ignoredNamespace, "ignored", 1)
	createAppCluster(t, ownNamespace, "own", 1)
	own := baoCluster{ownNamespace, "own"}
	created = append(created, own)
	start = time.Now()
	kubectl(t, "-n", ownNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), "openbaocluster/own")
	waitJSONPath(t, ownNamespace, "openbaocluster/own", "{.status.currentVersion}", toVersion)
	t.Logf("cluster %s Available %s after its creation", own, time.Since(start).Round(time.Second))
	serving(t, own)
	// One more observation period of the operator for the other clusters to
	// be (not) seen.
	time.Sleep(10 * time.Second)

	ignored := getCluster(t, baoCluster{ignoredNamespace, "ignored"})
	if len(ignored.Finalizers) > 0 || ignored.Status.Phase != "" || len(ignored.Status.Conditions) > 0 || ignored.Status.CurrentVersion != "" {
		t.Errorf("the operator touched the cluster outside its target namespace: finalizers %v, status %+v", ignored.Finalizers, ignored.Status)
	}
	// Everything the operator would create for a cluster; the namespace's
	// own kube-root-ca.crt ConfigMap and default ServiceAccount are
	// Kubernetes'.
	for _, kind := range []string{"statefulsets", "secrets", "configmaps", "serviceaccounts", "services", "persistentvolumeclaims",
		"poddisruptionbudgets", "jobs", "pods"} {
		out := strings.Fields(string(kubectl(t, "-n", ignoredNamespace, "get", kind, "-o", "name")))
		var unexpected []string
		for _, o := range out {
			if o != "configmap/kube-root-ca.crt" && o != "serviceaccount/default" {
				unexpected = append(unexpected, o)
			}
		}
		if len(unexpected) > 0 {
			t.Errorf("%s in %s, outside the operator's target namespace: %v", kind, ignoredNamespace, unexpected)
		}
	}
	events, err := cs.EventsV1().Events(ignoredNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		if e.Regarding.Kind == "OpenBaoCluster" {
			t.Errorf("event %s on the cluster outside the target namespace: %s", e.Reason, e.Note)
		}
	}
	// The earlier clusters lie outside the target namespace too.
	for c, v := range clusterVersions(t, earlier...) {
		if earlierVersions[c] != v {
			t.Errorf("OpenBaoCluster %s was written by the operator of %s (resourceVersion %s -> %s)", c, ownNamespace, earlierVersions[c], v)
		}
	}
	earlierSnapshot.compare(t, takeSnapshot(t, earlier...), "while the operator watched "+ownNamespace+" only")
}

// testUninstallOwnNamespace removes the OwnNamespace install; every cluster
// of the suite stays.
func testUninstallOwnNamespace(t *testing.T) { uninstall(t, ownNamespace) }
