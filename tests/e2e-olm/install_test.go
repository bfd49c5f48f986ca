package e2eolm

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/olm"
)

const (
	// installNamespace is where a user installs the operator for all
	// namespaces (OLM's global OperatorGroup lives in "operators" too, but
	// a user making their own namespace is the common path).
	installNamespace = "openbao-operator"
	waitOLM          = 5 * time.Minute
)

func kubectl(t *testing.T, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitOLM+time.Minute)
	defer cancel()
	out, err := env.Kubectl(ctx, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func apply(t *testing.T, name, manifest string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	kubectl(t, "apply", "--server-side", "-f", path)
}

// waitJSONPath waits until `kubectl get` of the object shows want at path.
func waitJSONPath(t *testing.T, ns, obj, path, want string) {
	t.Helper()
	args := []string{"wait", "--for=jsonpath=" + path + "=" + want, fmt.Sprintf("--timeout=%s", waitOLM), obj}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	start := time.Now()
	kubectl(t, args...)
	t.Logf("%s %s=%s after %s", obj, path, want, time.Since(start).Round(time.Second))
}

// subscribe creates the namespace, an OperatorGroup for all namespaces and
// a Subscription to the catalog's stable channel.
func subscribe(t *testing.T, approval string) {
	t.Helper()
	subscribeIn(t, installNamespace, "", approval)
}

// subscribeIn creates namespace, an OperatorGroup in it (for all
// namespaces when targets is "", else a YAML list of its target
// namespaces) and a Subscription to the catalog's stable channel.
func subscribeIn(t *testing.T, namespace, targets, approval string) {
	t.Helper()
	groupSpec := ""
	if targets != "" {
		groupSpec = "\nspec:\n  targetNamespaces: " + targets
	}
	apply(t, "subscription-"+namespace, fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
---
apiVersion: operators.coreos.com/v1
kind: OperatorGroup
metadata:
  name: openbao-operator
  namespace: %[1]s%[7]s
---
apiVersion: operators.coreos.com/v1alpha1
kind: Subscription
metadata:
  name: openbao-operator
  namespace: %[1]s
spec:
  name: %[2]s
  channel: %[3]s
  source: %[4]s
  sourceNamespace: %[5]s
  installPlanApproval: %[6]s
`, namespace, packageName, channel, catalogName, olm.Namespace, approval, groupSpec))
}

// subscribedCSV returns the name of the CSV the Subscription in namespace
// installed, once it is at the latest version its catalog knows.
func subscribedCSV(t *testing.T, namespace string) string {
	t.Helper()
	waitJSONPath(t, namespace, "subscription/openbao-operator", "{.status.state}", "AtLatestKnown")
	return strings.TrimSpace(string(kubectl(t, "-n", namespace, "get", "subscription/openbao-operator", "-o", "jsonpath={.status.installedCSV}")))
}

// TestOLM runs the operator's life under OLM in order: install for all
// namespaces through a Subscription, an OpenBao cluster from the CSV's
// example upgraded under it, the operator's own upgrade, uninstall; then an
// install for its own namespace only, and its uninstall. A step that fails
// stops the ones after it.
func TestOLM(t *testing.T) {
	for _, step := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"Subscription", testSubscription},
		{"ExampleClusterAndRollingUpgrade", testExampleCluster},
		{"OperatorUpgrade", testOperatorUpgrade},
		{"Uninstall", testUninstall},
		{"OwnNamespace", testOwnNamespace},
		{"UninstallOwnNamespace", testUninstallOwnNamespace},
	} {
		if !t.Run(step.name, step.run) {
			t.Fatalf("%s failed; the later steps need it", step.name)
		}
	}
}

// testSubscription installs the operator the way a user does from
// OperatorHub: OperatorGroup and Subscription (stable, automatic); OLM
// resolves it from the catalog, unpacks the bundle, runs the InstallPlan and
// the CSV succeeds with the operator Deployment Available. The package is
// listed by packageserver as the console shows it.
func testSubscription(t *testing.T) {
	subscribe(t, "Automatic")
	csv := subscribedCSV(t, installNamespace)
	if want := packageName + ".v" + firstVersion; csv != want {
		t.Fatalf("installed CSV %q, want %q", csv, want)
	}
	ip := strings.TrimSpace(string(kubectl(t, "-n", installNamespace, "get", "subscription/openbao-operator", "-o", "jsonpath={.status.installPlanRef.name}")))
	waitJSONPath(t, installNamespace, "installplan/"+ip, "{.status.phase}", "Complete")
	waitJSONPath(t, installNamespace, "csv/"+csv, "{.status.phase}", "Succeeded")
	kubectl(t, "-n", installNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitOLM), "deployment/openbao-operator-controller-manager")
	d, err := cs.AppsV1().Deployments(installNamespace).Get(context.Background(), "openbao-operator-controller-manager", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if owner := d.Labels["olm.owner"]; owner != csv {
		t.Errorf("Deployment label olm.owner=%q, want %q (created by OLM for the CSV)", owner, csv)
	}

	// What OperatorHub shows: packageserver's PackageManifest.
	var pm struct {
		Status struct {
			CatalogSource  string `json:"catalogSource"`
			DefaultChannel string `json:"defaultChannel"`
			Channels       []struct {
				Name           string `json:"name"`
				CurrentCSV     string `json:"currentCSV"`
				CurrentCSVDesc struct {
					DisplayName string `json:"displayName"`
					Description string `json:"description"`
				} `json:"currentCSVDesc"`
			} `json:"channels"`
		} `json:"status"`
	}
	out := kubectl(t, "get", "packagemanifests", packageName, "-n", installNamespace, "-o", "json")
	if err := json.Unmarshal(out, &pm); err != nil {
		t.Fatal(err)
	}
	st := pm.Status
	if st.CatalogSource != catalogName || st.DefaultChannel != channel || len(st.Channels) != 1 || st.Channels[0].Name != channel {
		t.Fatalf("packagemanifest: catalog %q, default channel %q, channels %+v", st.CatalogSource, st.DefaultChannel, st.Channels)
	}
	desc := st.Channels[0].CurrentCSVDesc
	if desc.DisplayName != "OpenBao Operator" || !strings.Contains(desc.Description, "OpenBao") {
		t.Errorf("packagemanifest's CSV description: display name %q, description %d chars", desc.DisplayName, len(desc.Description))
	}
	// packageserver leaves icons out of get and list and serves them, as
	// the console fetches them, from the icon subresource (a default icon
	// when the CSV has none): it must be the CSV's own.
	icon := kubectl(t, "get", "--raw", "/apis/packages.operators.coreos.com/v1/namespaces/"+installNamespace+"/packagemanifests/"+packageName+"/icon")
	want := bundleIcon(t)
	if !bytes.Equal(icon, want) {
		t.Errorf("packagemanifest icon: got %d bytes %.60q, want the CSV's %d bytes", len(icon), icon, len(want))
	}
	t.Logf("kubectl get packagemanifests:\n%s", kubectl(t, "get", "packagemanifests", packageName, "-n", installNamespace))
}

// bundleIcon is the decoded icon of bundle/'s CSV.
func bundleIcon(t *testing.T) []byte {
	t.Helper()
	csvs, err := filepath.Glob(filepath.Join(root, "bundle", "manifests", "*.clusterserviceversion.yaml"))
	if err != nil || len(csvs) != 1 {
		t.Fatalf("bundle CSV: %v (%d files)", err, len(csvs))
	}
	data, err := os.ReadFile(csvs[0])
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^  - base64data: (\S+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no icon", csvs[0])
	}
	icon, err := base64.StdEncoding.DecodeString(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	return icon
}
