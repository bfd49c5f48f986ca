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
// switches to manual approval, a catalog with v0.1.0 and v0.2.0 (which
// replaces it) is published, the InstallPlan OLM makes is approved, and the
// CSV moves to v0.2.0. An OpenBao upgrade started just before the approval
// is still under way when v0.1.0 is gone and completes under v0.2.0. The
// first OpenBao cluster is left alone: no server pod is
// re-created or restarted and status.currentVersion does not change.
func testOperatorUpgrade(t *testing.T) {
	ctx := context.Background()
	// A second cluster, on 2.6.2, whose upgrade to 2.7.2 is under way when
	// the operator is replaced.
	inflight := createInflightCluster(t)
	before := takeSnapshot(t)
	current := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", "openbaocluster/"+exampleName, "-o", "jsonpath={.status.currentVersion}")))
	kubectl(t, "-n", installNamespace, "patch", "subscription/openbao-operator", "--type=merge", "-p", `{"spec":{"installPlanApproval":"Manual"}}`)

	cat := olm.Catalog{Package: packageName, Channel: channel, Bundles: []olm.Bundle{
		{Image: bundleRepository + ":v" + firstVersion, Dir: filepath.Join(root, "bundle")},
		{Image: bundleRepository + ":v" + secondVersion, Dir: secondBundle(t), Replaces: "openbao-operator.v" + firstVersion, SkipRange: "<" + secondVersion},
	}}
	const v2Catalog = catalogName + "-v2"
	if err := cat.Publish(ctx, env, assets, files, v2Catalog, catalogRepository+":v"+secondVersion); err != nil {
		t.Fatal(err)
	}
	// The user points the Subscription at the new catalog (a catalog image
	// update on a CatalogSource with spec.image does the same on a cluster
	// with a service proxy).
	kubectl(t, "-n", installNamespace, "patch", "subscription/openbao-operator", "--type=merge", "-p", fmt.Sprintf(`{"spec":{"source":%q}}`, v2Catalog))
	waitJSONPath(t, installNamespace, "subscription/openbao-operator", "{.status.state}", "UpgradePending")
	ip := strings.TrimSpace(string(kubectl(t, "-n", installNamespace, "get", "subscription/openbao-operator", "-o", "jsonpath={.status.installPlanRef.name}")))
	waitJSONPath(t, installNamespace, "installplan/"+ip, "{.status.phase}", "RequiresApproval")
	if csvs := string(kubectl(t, "-n", installNamespace, "get", "installplan/"+ip, "-o", "jsonpath={.spec.clusterServiceVersionNames}")); !strings.Contains(csvs, "v"+secondVersion) {
		t.Fatalf("InstallPlan %s installs %s, want v%s", ip, csvs, secondVersion)
	}
	kubectl(t, "-n", inflightNamespace, "patch", inflight, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"version":%q}}`, toVersion))
	waitJSONPath(t, inflightNamespace, inflight, "{.status.upgrade.toVersion}", toVersion)
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
	if cur := strings.TrimSpace(string(kubectl(t, "-n", inflightNamespace, "get", inflight, "-o", "jsonpath={.status.currentVersion}"))); cur != fromVersion {
		t.Fatalf("the OpenBao upgrade finished (currentVersion %q) before the operator was replaced: nothing was in flight", cur)
	}
	waitJSONPath(t, inflightNamespace, inflight, "{.status.currentVersion}", toVersion)
	kubectl(t, "-n", inflightNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), inflight)
	if up := strings.TrimSpace(string(kubectl(t, "-n", inflightNamespace, "get", inflight, "-o", "jsonpath={.status.upgrade}"))); up != "" {
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
	after := takeSnapshot(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed across the operator upgrade: before %q, after %q", k, v, after[k])
		}
	}
	if got := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", "openbaocluster/"+exampleName, "-o", "jsonpath={.status.currentVersion}"))); got != current {
		t.Errorf("status.currentVersion %q after the operator upgrade, was %q", got, current)
	}
	serving(t)
}

const inflightNamespace = "bao-inflight"

// createInflightCluster creates the CSV's example again, on 2.6.2, in its
// own namespace and waits for it to become Available.
func createInflightCluster(t *testing.T) string {
	t.Helper()
	raw := kubectl(t, "-n", installNamespace, "get", "csv/"+installedCSV(t), "-o", "jsonpath={.metadata.annotations.alm-examples}")
	var examples []map[string]any
	if err := json.Unmarshal(raw, &examples); err != nil || len(examples) == 0 {
		t.Fatalf("alm-examples: %v", err)
	}
	example := examples[0]
	example["metadata"] = map[string]any{"name": "inflight", "namespace": inflightNamespace}
	example["spec"].(map[string]any)["version"] = fromVersion
	data, err := json.Marshal(example)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "namespace", inflightNamespace)
	apply(t, "inflight", string(data))
	obj := "openbaocluster/inflight"
	kubectl(t, "-n", inflightNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), obj)
	waitJSONPath(t, inflightNamespace, obj, "{.status.currentVersion}", fromVersion)
	return obj
}
