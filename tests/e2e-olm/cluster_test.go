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

func example() baoCluster { return baoCluster{exampleNamespace, exampleName} }

// testExampleCluster creates the CSV's first alm-example as the console's
// form would (the example as it is, in the user's namespace), waits for it
// to become Available on OpenBao 2.6.2, then upgrades it to 2.7.2 (Rolling,
// the default) under the operator OLM installed.
func testExampleCluster(t *testing.T) {
	csv := subscribedCSV(t, installNamespace)
	raw := kubectl(t, "-n", installNamespace, "get", "csv/"+csv, "-o", "jsonpath={.metadata.annotations.alm-examples}")
	var examples []map[string]any
	if err := json.Unmarshal(raw, &examples); err != nil || len(examples) == 0 {
		t.Fatalf("alm-examples of %s: %v (%d examples)", csv, err, len(examples))
	}
	ex := examples[0]
	meta := ex["metadata"].(map[string]any)
	meta["namespace"] = exampleNamespace
	exampleName = meta["name"].(string)
	spec := ex["spec"].(map[string]any)
	if spec["version"] != fromVersion {
		t.Fatalf("the example runs OpenBao %v; this test upgrades from %s", spec["version"], fromVersion)
	}
	data, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	kubectl(t, "create", "namespace", exampleNamespace)
	apply(t, "example", string(data))
	created = append(created, example())
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
	for _, p := range serverPods(t, example()) {
		if img := p.Spec.Containers[0].Image; !strings.HasSuffix(img, ":"+toVersion) {
			t.Errorf("pod %s runs %s after the upgrade", p.Name, img)
		}
	}
	t.Logf("Rolling upgrade %s -> %s under the OLM-installed operator took %s", fromVersion, toVersion, time.Since(start).Round(time.Second))
}

// baoCluster is an OpenBaoCluster the suite created; uninstalling the
// operator must leave every one of them untouched and serving.
type baoCluster struct{ Namespace, Name string }

func (c baoCluster) String() string { return c.Namespace + "/" + c.Name }

// created lists the clusters the suite created, in order.
var created []baoCluster

func serverPods(t *testing.T, c baoCluster) []corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(c.Namespace).List(context.Background(), metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/instance=" + c.Name + ",app.kubernetes.io/component=server"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) == 0 {
		t.Fatalf("no server pods of %s", c)
	}
	return pods.Items
}

// snapshot is what must not change when the operator goes away or is
// replaced.
type snapshot map[string]string

// takeSnapshot records the clusters' server pods (UID, restarts), their
// volume claims (UID, bound volume) and seal-key Secrets (UID, version).
func takeSnapshot(t *testing.T, clusters ...baoCluster) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{}
	for _, c := range clusters {
		for _, p := range serverPods(t, c) {
			restarts := 0
			for _, cst := range p.Status.ContainerStatuses {
				restarts += int(cst.RestartCount)
			}
			s[c.Namespace+"/pod/"+p.Name] = fmt.Sprintf("uid=%s restarts=%d", p.UID, restarts)
		}
		pvcs, err := cs.CoreV1().PersistentVolumeClaims(c.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(pvcs.Items) == 0 {
			t.Fatalf("%s has no volume claims", c)
		}
		for _, v := range pvcs.Items {
			s[c.Namespace+"/pvc/"+v.Name] = fmt.Sprintf("uid=%s volume=%s phase=%s", v.UID, v.Spec.VolumeName, v.Status.Phase)
		}
		seal, err := cs.CoreV1().Secrets(c.Namespace).Get(ctx, c.Name+"-unseal-key", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s[c.Namespace+"/secret/"+seal.Name] = fmt.Sprintf("uid=%s resourceVersion=%s", seal.UID, seal.ResourceVersion)
	}
	return s
}

// compare fails for every entry of before that changed or vanished and for
// every entry that appeared.
func (before snapshot) compare(t *testing.T, after snapshot, when string) {
	t.Helper()
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed %s: before %q, after %q", k, when, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s appeared %s", k, when)
		}
	}
}

// serving checks that every server pod of the clusters answers OpenBao's
// health endpoint as an initialized, unsealed member.
func serving(t *testing.T, clusters ...baoCluster) {
	t.Helper()
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, c := range clusters {
		for _, p := range serverPods(t, c) {
			// standbyok: a standby answers 200 too; sealed or uninitialized do not.
			resp, err := hc.Get(fmt.Sprintf("https://%s:8200/v1/sys/health?standbyok=true&perfstandbyok=true", p.Status.PodIP))
			if err != nil {
				t.Errorf("%s/%s: %v", c.Namespace, p.Name, err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s/%s: health %d", c.Namespace, p.Name, resp.StatusCode)
			}
		}
	}
}

// testUninstall deletes the Subscription and the CSV of the all-namespaces
// install, as a user removes an operator in the console.
func testUninstall(t *testing.T) { uninstall(t, installNamespace) }

// uninstall deletes the Subscription and the CSV in namespace: OLM removes
// the operator's Deployment; every OpenBao cluster the suite created, its
// volumes and its seal-key Secret stay untouched and keep serving.
func uninstall(t *testing.T, namespace string) {
	csv := subscribedCSV(t, namespace)
	t.Logf("uninstalling %s/%s; checking %v", namespace, csv, created)
	before := takeSnapshot(t, created...)
	serving(t, created...)
	start := time.Now()
	kubectl(t, "-n", namespace, "delete", "subscription/openbao-operator")
	kubectl(t, "-n", namespace, "delete", "csv/"+csv)
	kubectl(t, "-n", namespace, "wait", "--for=delete", fmt.Sprintf("--timeout=%s", waitOLM), "deployment/openbao-operator-controller-manager")
	t.Logf("operator removed %s after the deletion", time.Since(start).Round(time.Second))
	// Give anything that would react to the operator's removal (garbage
	// collection of owned objects, finalizers) time to act before looking.
	time.Sleep(20 * time.Second)
	for _, c := range created {
		if got := strings.TrimSpace(string(kubectl(t, "-n", c.Namespace, "get", "openbaocluster/"+c.Name, "-o", "name"))); got == "" {
			t.Fatalf("the OpenBaoCluster %s is gone", c)
		}
	}
	before.compare(t, takeSnapshot(t, created...), "after the uninstall")
	serving(t, created...)
}
