// Package scorecard runs `operator-sdk scorecard bundle/` (the basic and OLM
// suites of bundle/tests/scorecard/config.yaml) against a local cluster (see
// tests/localcluster/cluster). The scorecard runs one pod per test; their
// images resolve on the node to binaries built here: the scorecard-test
// image to `scorecard-test` built from the Operator SDK module of the pinned
// version, the untar image to ./untar. `make test-scorecard` builds what it
// needs and runs it (root).
package scorecard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/nodeagent"
)

// The cluster's pod network and state: its own, so that it runs beside the
// development cluster and the end-to-end suite.
const (
	bridge = "obscard0"
	cidr   = "10.84.0.0/24"
	// namespace is where the scorecard creates its ConfigMap and pods.
	namespace = "scorecard"
)

// untarImageFlag finds the default of the scorecard's --untar-image in its
// help: quay.io/operator-framework/scorecard-untar, a UBI 8 image without
// entrypoint in which the init container runs `tar`.
var untarImageFlag = regexp.MustCompile(`--untar-image string\s+.*\(default "([^"]+)"\)`)

// defaultUntarImage is the untar image the Operator SDK CLI uses unless told
// otherwise. Only this reference is mapped: an image the CLI does not name
// fails to pull instead of running something else.
func defaultUntarImage(t *testing.T, operatorSDK string) string {
	t.Helper()
	out, err := exec.Command(operatorSDK, "scorecard", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("operator-sdk scorecard --help: %v: %s", err, out)
	}
	m := untarImageFlag.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("operator-sdk scorecard --help names no default --untar-image:\n%s", out)
	}
	return m[1]
}

// scorecardUser is the numeric USER of the scorecard-test image.
const scorecardUser int64 = 1001

// images maps the scorecard's images to the binaries built here:
// quay.io/operator-framework/scorecard-test:<version> to
// scorecardTest (built for that one version), untarImage to untar.
func images(version, scorecardTest, untarImage, untar string) nodeagent.ImageResolver {
	user := scorecardUser
	return nodeagent.PatternResolver{
		{
			Pattern: regexp.MustCompile(`^quay\.io/operator-framework/scorecard-test:` + regexp.QuoteMeta(version) + `$`),
			Build: func([]string) nodeagent.Image {
				return nodeagent.Image{
					Entrypoint: []string{scorecardTest},
					Env:        []string{"HOME=/opt/scorecard-test"},
					User:       &user, Group: new(int64),
				}
			},
		},
		{
			Pattern: regexp.MustCompile(`^` + regexp.QuoteMeta(untarImage) + `$`),
			Build: func([]string) nodeagent.Image {
				return nodeagent.Image{Entrypoint: []string{untar}}
			},
		},
	}
}

// testList is the part of the scorecard's JSON output (v1alpha3 TestList)
// this test reads.
type testList struct {
	Items []struct {
		Spec struct {
			Entrypoint []string          `json:"entrypoint"`
			Labels     map[string]string `json:"labels"`
		} `json:"spec"`
		Status struct {
			Results []struct {
				Name   string   `json:"name"`
				State  string   `json:"state"`
				Errors []string `json:"errors"`
				Log    string   `json:"log"`
			} `json:"results"`
		} `json:"status"`
	} `json:"items"`
}

func need(t *testing.T, env, what string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: %s (run `make test-scorecard`)", env, what)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(abs); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		t.Fatalf("%s=%s is not an executable: %s (run `make test-scorecard`)", env, p, what)
	}
	return abs
}

func TestScorecard(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the scorecard test runs a local cluster and must run as root")
	}
	operatorSDK := need(t, "OPERATOR_SDK", "the Operator SDK CLI")
	scorecardTest := need(t, "SCORECARD_TEST", "scorecard-test built from the Operator SDK module")
	untar := need(t, "SCORECARD_UNTAR", "the untar image's stand-in (tests/scorecard/untar)")
	version := os.Getenv("OPERATOR_SDK_VERSION")
	if version == "" {
		t.Fatal("OPERATOR_SDK_VERSION is not set (run `make test-scorecard`)")
	}
	root, err := cluster.FindRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(root, "bundle", "tests", "scorecard", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "quay.io/operator-framework/scorecard-test:" + version; !strings.Contains(string(config), want) {
		t.Fatalf("bundle/tests/scorecard/config.yaml does not use %s: run `make bundle`", want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	env, err := cluster.Up(ctx, cluster.Options{
		Dir:          filepath.Join(root, ".cache", "scorecard-cluster"),
		KubeAssets:   os.Getenv("KUBE_ASSETS"),
		OpenBaoDir:   os.Getenv("OPENBAO_DIR"),
		RepoRoot:     root,
		Bridge:       bridge,
		CIDR:         cidr,
		SkipOperator: true,
		Progress:     testWriter{t},
		ExtraImages:  images(version, scorecardTest, defaultUntarImage(t, operatorSDK), untar),
	})
	if err != nil {
		t.Fatalf("the local cluster did not come up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dst := filepath.Join(root, "tests", "scorecard", "_artifacts", time.Now().UTC().Format("20060102T150405Z"))
			if err := env.CollectLogs(dst); err == nil {
				t.Logf("logs of the local cluster kept in %s", dst)
			}
		}
		if err := env.Down(); err != nil {
			t.Errorf("tear the local cluster down: %v", err)
		}
	})
	t.Logf("local cluster up in %s", time.Since(start).Round(time.Second))
	cs := env.Clientset()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The scorecard's pods run as the namespace's default service account,
	// which kube-controller-manager creates right after the namespace.
	for {
		if _, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no default service account in namespace " + namespace)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Exactly what a user runs, with the cluster's kubeconfig.
	start = time.Now()
	cmd := exec.CommandContext(ctx, operatorSDK, "scorecard", "bundle",
		"--kubeconfig", env.Kubeconfig(), "--namespace", namespace, "--wait-time", "5m", "--output", "json")
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("operator-sdk scorecard bundle took %s", time.Since(start).Round(100*time.Millisecond))
	var list testList
	if err := json.Unmarshal(stdout.Bytes(), &list); err != nil {
		t.Fatalf("operator-sdk scorecard: %v (output is not a TestList: %v)\nstdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	got := map[string]string{}
	var failures []string
	for _, item := range list.Items {
		for _, r := range item.Status.Results {
			got[item.Spec.Labels["suite"]+"/"+r.Name] = r.State
			if r.State != "pass" {
				failures = append(failures, fmt.Sprintf("%s: %s %v %s", r.Name, r.State, r.Errors, r.Log))
			}
		}
	}
	names := make([]string, 0, len(got))
	for n, state := range got {
		names = append(names, n+"="+state)
	}
	sort.Strings(names)
	t.Logf("results: %s", strings.Join(names, ", "))
	want := []string{"basic/basic-check-spec", "olm/olm-bundle-validation", "olm/olm-crds-have-resources",
		"olm/olm-crds-have-validation", "olm/olm-spec-descriptors", "olm/olm-status-descriptors"}
	for _, w := range want {
		if _, ok := got[w]; !ok {
			failures = append(failures, w+": no result")
		}
	}
	var exitErr *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exitErr) {
		failures = append(failures, "operator-sdk: "+runErr.Error())
	} else if runErr != nil {
		failures = append(failures, fmt.Sprintf("operator-sdk scorecard exited with %d: %s", exitErr.ExitCode(), stderr.String()))
	}
	if len(failures) > 0 {
		t.Fatalf("scorecard failed:\n%s", strings.Join(failures, "\n"))
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
