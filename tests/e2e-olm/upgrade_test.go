package e2eolm

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/olm"
)

const secondVersion = "0.2.0"

// secondBundle writes bundle/ as release v0.2.0 of this tree would be: the
// same manifests with the version, the image tag and a build stamp
// changed, replacing v0.1.0 (and skipping anything older).
func secondBundle(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(env.Dir(), "bundles", "v"+secondVersion)
	src := filepath.Join(root, "bundle")
	for _, sub := range []string{"manifests", "metadata"} {
		entries, err := os.ReadDir(filepath.Join(src, sub))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			data, err := os.ReadFile(filepath.Join(src, sub, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(e.Name(), ".clusterserviceversion.yaml") {
				data = []byte(rewriteCSV(t, string(data)))
			}
			if err := os.WriteFile(filepath.Join(dir, sub, e.Name()), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func rewriteCSV(t *testing.T, csv string) string {
	t.Helper()
	for _, r := range []struct{ old, new string }{
		{"\n  name: openbao-operator.v" + firstVersion + "\n", "\n  name: openbao-operator.v" + secondVersion + "\n"},
		{"\n  version: " + firstVersion + "\n", "\n  version: " + secondVersion + "\n  replaces: openbao-operator.v" + firstVersion + "\n"},
		{"\nmetadata:\n  annotations:\n", "\nmetadata:\n  annotations:\n    olm.skipRange: '<" + secondVersion + "'\n    openbao.org/build-stamp: e2e-olm-v" + secondVersion + "\n"},
		{cluster0Image(firstVersion), cluster0Image(secondVersion)},
	} {
		if !strings.Contains(csv, r.old) {
			t.Fatalf("the CSV has no %q to rewrite", r.old)
		}
		csv = strings.ReplaceAll(csv, r.old, r.new)
	}
	return csv
}

func cluster0Image(version string) string {
	return "quay.io/openbao-operator/openbao-operator:" + version
}

// testOperatorUpgrade upgrades the operator through OLM: the Subscription
// switches to manual approval, the catalog it reads is updated in place to
// one with v0.1.0 and v0.2.0 (which replaces it), the InstallPlan OLM makes
// is approved, and the CSV moves to v0.2.0. An OpenBao upgrade started just before the approval
// is still under way when v0.1.0 is gone and completes under v0.2.0. The
// example cluster is left alone: no server pod is re-created or restarted
// and status.currentVersion does not change. Applications write to both
// clusters all along: no acknowledged write may be lost, and the example
// cluster, whose servers nothing touches, must not fail a single request.
func testOperatorUpgrade(t *testing.T) {
	ctx := context.Background()
	// A second cluster, on 2.6.2, whose upgrade to 2.7.2 is under way when
	// the operator is replaced.
	inflight := createInflightCluster(t)
	inflightObj := "openbaocluster/" + inflight.Name
	before := takeSnapshot(t, example())
	current := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", "openbaocluster/"+exampleName, "-o", "jsonpath={.status.currentVersion}")))
	// The example's own application (its JWT role binds default/demo and
	// its policy secret/data/demo/*), and the application of the in-flight
	// cluster.
	exampleLoad := startLoad(t, application{cluster: example(), saNamespace: "default", sa: "demo", role: "demo", keyPrefix: "secret/data/demo/olm-upgrade/"})
	inflightLoad := startLoad(t, application{cluster: inflight, saNamespace: inflight.Namespace, sa: loadclient.AppServiceAccount,
		role: loadclient.AppRole, keyPrefix: "secret/data/e2e/olm-upgrade/"})
	kubectl(t, "-n", installNamespace, "patch", "subscription/openbao-operator", "--type=merge", "-p", `{"spec":{"installPlanApproval":"Manual"}}`)

	cat := olm.Catalog{Package: packageName, Channel: channel, Bundles: []olm.Bundle{
		{Image: bundleRepository + ":v" + firstVersion, Dir: filepath.Join(root, "bundle")},
		{Image: bundleRepository + ":v" + secondVersion, Dir: secondBundle(t), Replaces: "openbao-operator.v" + firstVersion, SkipRange: "<" + secondVersion},
	}}
	// The catalog's maintainer publishes a new catalog image with both
	// bundles and the CatalogSource the Subscription uses serves it: OLM
	// sees the new version in the catalog it already reads.
	published := time.Now()
	if err := cat.Publish(ctx, env, assets, files, catalogName, catalogRepository+":v"+secondVersion); err != nil {
		t.Fatal(err)
	}
	waitJSONPath(t, installNamespace, "subscription/openbao-operator", "{.status.state}", "UpgradePending")
	t.Logf("the Subscription saw v%s %s after the catalog update", secondVersion, time.Since(published).Round(time.Second))
	ip := strings.TrimSpace(string(kubectl(t, "-n", installNamespace, "get", "subscription/openbao-operator", "-o", "jsonpath={.status.installPlanRef.name}")))
	waitJSONPath(t, installNamespace, "installplan/"+ip, "{.status.phase}", "RequiresApproval")
	if csvs := string(kubectl(t, "-n", installNamespace, "get", "installplan/"+ip, "-o", "jsonpath={.spec.clusterServiceVersionNames}")); !strings.Contains(csvs, "v"+secondVersion) {
		t.Fatalf("InstallPlan %s installs %s, want v%s", ip, csvs, secondVersion)
	}
	kubectl(t, "-n", inflight.Namespace, "patch", inflightObj, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"version":%q}}`, toVersion))
	waitJSONPath(t, inflight.Namespace, inflightObj, "{.status.upgrade.toVersion}", toVersion)
	start := time.Now()
	kubectl(t, "-n", installNamespace, "patch", "installplan/"+ip, "--type=merge", "-p", `{"spec":{"approved":true}}`)
	waitJSONPath(t, installNamespace, "installplan/"+ip, "{.status.phase}", "Complete")
	next := packageName + ".v" + secondVersion
	waitJSONPath(t, installNamespace, "csv/"+next, "{.status.phase}", "Succeeded")
	kubectl(t, "-n", installNamespace, "wait", "--for=delete", fmt.Sprintf("--timeout=%s", waitOLM), "csv/"+packageName+".v"+firstVersion)
	kubectl(t, "-n", installNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitOLM), "deployment/openbao-operator-controller-manager")
	t.Logf("operator upgraded v%s -> v%s through OLM in %s", firstVersion, secondVersion, time.Since(start).Round(time.Second))
	// The OpenBao upgrade was still under way when v0.1.0 was gone: v0.2.0
	// finishes it.
	if cur := strings.TrimSpace(string(kubectl(t, "-n", inflight.Namespace, "get", inflightObj, "-o", "jsonpath={.status.currentVersion}"))); cur != fromVersion {
		t.Fatalf("the OpenBao upgrade finished (currentVersion %q) before the operator was replaced: nothing was in flight", cur)
	}
	waitJSONPath(t, inflight.Namespace, inflightObj, "{.status.currentVersion}", toVersion)
	kubectl(t, "-n", inflight.Namespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), inflightObj)
	if up := strings.TrimSpace(string(kubectl(t, "-n", inflight.Namespace, "get", inflightObj, "-o", "jsonpath={.status.upgrade}"))); up != "" {
		t.Errorf("status.upgrade of the in-flight cluster still set: %s", up)
	}
	t.Logf("the OpenBao upgrade in flight during the operator's replacement completed under v%s, %s after the approval", secondVersion, time.Since(start).Round(time.Second))
	if got := strings.TrimSpace(string(kubectl(t, "get", "deployment/openbao-operator-controller-manager", "-n", installNamespace,
		"-o", "jsonpath={.spec.template.spec.containers[0].image}"))); got != cluster0Image(secondVersion) {
		t.Errorf("operator Deployment runs %s, want %s", got, cluster0Image(secondVersion))
	}
	// Let the new operator reconcile the cluster before comparing.
	time.Sleep(20 * time.Second)
	kubectl(t, "-n", exampleNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), "openbaocluster/"+exampleName)
	before.compare(t, takeSnapshot(t, example()), "across the operator upgrade")
	if got := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", "openbaocluster/"+exampleName, "-o", "jsonpath={.status.currentVersion}"))); got != current {
		t.Errorf("status.currentVersion %q after the operator upgrade, was %q", got, current)
	}
	serving(t, example())

	// Nothing touched the example's servers: its application saw no error.
	if r := exampleLoad.stop(t); r.FailedRequests != 0 {
		t.Errorf("%d of %d requests to %s failed while the operator was replaced, whose servers nothing touched: %v",
			r.FailedRequests, r.Requests, example(), r.FirstErrors)
	}
	// The in-flight cluster's servers were replaced one by one: requests to a
	// stopping server may fail and be retried, but writes never stop for long.
	if r := inflightLoad.stop(t); r.LongestWriteGap > time.Minute {
		t.Errorf("writes to %s stopped for %s during its upgrade", inflight, r.LongestWriteGap.Round(time.Second))
	}
}

const inflightNamespace = "bao-inflight"

// createInflightCluster creates a cluster on 2.6.2 for the application of
// the load client (kv-v2 at secret/, the JWT role app for the service
// account app of its namespace) and waits for it to become Available.
func createInflightCluster(t *testing.T) baoCluster {
	t.Helper()
	c := loadclient.AppCluster(loadclient.AppClusterOptions{
		Namespace: inflightNamespace, Name: "inflight", Version: fromVersion, Replicas: 3, Scope: "e2e", TokenTTL: "10m",
	})
	c.APIVersion, c.Kind = openbaov1alpha1.GroupVersion.String(), "OpenBaoCluster"
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "namespace", inflightNamespace)
	apply(t, "inflight", string(data))
	ref := baoCluster{inflightNamespace, c.Name}
	created = append(created, ref)
	obj := "openbaocluster/" + c.Name
	start := time.Now()
	kubectl(t, "-n", inflightNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), obj)
	waitJSONPath(t, inflightNamespace, obj, "{.status.currentVersion}", fromVersion)
	t.Logf("cluster %s Available on %s after %s", ref, fromVersion, time.Since(start).Round(time.Second))
	return ref
}
