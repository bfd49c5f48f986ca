package e2eolm

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	exampleNamespace = "bao"
	fromVersion      = "2.6.2"
	toVersion        = "2.7.2"
	waitCluster      = 10 * time.Minute
)

// exampleName is the name of the OpenBaoCluster in the CSV's alm-examples.
var exampleName string

// testExampleCluster creates the CSV's first alm-example as the console's
// form would (the example as it is, in the user's namespace), waits for it
// to become Available on OpenBao 2.6.2, then upgrades it to 2.7.2 (Rolling,
// the default) under the operator OLM installed.
func testExampleCluster(t *testing.T) {
	csv := installedCSV(t)
	raw := kubectl(t, "-n", installNamespace, "get", "csv/"+csv, "-o", "jsonpath={.metadata.annotations.alm-examples}")
	var examples []map[string]any
	if err := json.Unmarshal(raw, &examples); err != nil || len(examples) == 0 {
		t.Fatalf("alm-examples of %s: %v (%d examples)", csv, err, len(examples))
	}
	example := examples[0]
	meta := example["metadata"].(map[string]any)
	meta["namespace"] = exampleNamespace
	exampleName = meta["name"].(string)
	spec := example["spec"].(map[string]any)
	if spec["version"] != fromVersion {
		t.Fatalf("the example runs OpenBao %v; this test upgrades from %s", spec["version"], fromVersion)
	}
	data, err := json.Marshal(example)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "namespace", exampleNamespace)
	apply(t, "example", string(data))
	obj := "openbaocluster/" + exampleName
	start := time.Now()
	kubectl(t, "-n", exampleNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), obj)
	waitJSONPath(t, exampleNamespace, obj, "{.status.currentVersion}", fromVersion)
	t.Logf("example cluster Available on %s after %s", fromVersion, time.Since(start).Round(time.Second))

	start = time.Now()
	kubectl(t, "-n", exampleNamespace, "patch", obj, "--type=merge", "-p", fmt.Sprintf(`{"spec":{"version":%q}}`, toVersion))
	waitJSONPath(t, exampleNamespace, obj, "{.status.currentVersion}", toVersion)
	kubectl(t, "-n", exampleNamespace, "wait", "--for=condition=Available", fmt.Sprintf("--timeout=%s", waitCluster), obj)
	if up := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", obj, "-o", "jsonpath={.status.upgrade}"))); up != "" {
		t.Errorf("status.upgrade still set after the upgrade: %s", up)
	}
	for _, p := range serverPods(t) {
		if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+toVersion) {
			t.Errorf("pod %s runs %s after the upgrade", p.Name, img)
		}
	}
	t.Logf("Rolling upgrade %s -> %s under the OLM-installed operator took %s", fromVersion, toVersion, time.Since(start).Round(time.Second))
}

func serverPods(t *testing.T) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(exampleNamespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + exampleName + ",app.kubernetes.io/component=server"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no server pods of %s/%s", exampleNamespace, exampleName)
	}
	return pods.Items
}

// snapshot is what must not change when the operator goes away.
type snapshot map[string]string

func takeSnapshot(t *testing.T) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{}
	for _, p := range serverPods(t) {
		restarts := 0
		for _, c := range p.Status.ContainerStatuses {
			restarts += int(c.RestartCount)
		}
		s["pod/"+p.Name] = fmt.Sprintf("uid=%s restarts=%d", p.UID, restarts)
	}
	pvcs, err := cs.CoreV1().PersistentVolumeClaims(exampleNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range pvcs.Items {
		s["pvc/"+c.Name] = fmt.Sprintf("uid=%s volume=%s phase=%s", c.UID, c.Spec.VolumeName, c.Status.Phase)
	}
	seal, err := cs.CoreV1().Secrets(exampleNamespace).Get(ctx, exampleName+"-unseal-key", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s["secret/"+seal.Name] = fmt.Sprintf("uid=%s resourceVersion=%s", seal.UID, seal.ResourceVersion)
	return s
}

// serving checks that every server pod answers OpenBao's health endpoint
// as an initialized, unsealed member.
func serving(t *testing.T) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, p := range serverPods(t) {
		// standbyok: a standby answers 200 too; sealed or uninitialized do not.
		resp, err := hc.Get(fmt.Sprintf("https://%s:8200/v1/sys/health?standbyok=true&perfstandbyok=true", p.Status.PodIP))
		if err != nil {
			t.Errorf("%s: %v", p.Name, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: health %d", p.Name, resp.StatusCode)
		}
	}
}

// testUninstall deletes the Subscription and the CSV, as a user removes an
// operator in the console: OLM removes the operator's Deployment; every
// OpenBao cluster, its volumes and its seal-key Secret stay untouched and
// keep serving.
func testUninstall(t *testing.T) {
	csv := installedCSV(t)
	before := takeSnapshot(t)
	serving(t)
	kubectl(t, "-n", installNamespace, "delete", "subscription/openbao-operator")
	kubectl(t, "-n", installNamespace, "delete", "csv/"+csv)
	kubectl(t, "-n", installNamespace, "wait", "--for=delete", fmt.Sprintf("--timeout=%s", waitOLM), "deployment/openbao-operator-controller-manager")
	// Give anything that would react to the operator's removal (garbage
	// collection of owned objects, finalizers) time to act before looking.
	time.Sleep(20 * time.Second)
	if got := strings.TrimSpace(string(kubectl(t, "-n", exampleNamespace, "get", "openbaocluster/"+exampleName, "-o", "name"))); got == "" {
		t.Fatal("the OpenBaoCluster is gone")
	}
	after := takeSnapshot(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: before %q, after %q", k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared after the uninstall", k)
		}
	}
	serving(t)
}
