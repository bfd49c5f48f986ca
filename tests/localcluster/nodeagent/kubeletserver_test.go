package nodeagent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// testLogs reads container logs the way kubectl does (the API server's
// pods/log, which calls the agent's kubelet API) and calls the kubelet API
// directly as users with and without nodes/proxy.
func (c *cluster) testLogs(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "logs")

	node, err := c.cs.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Status.DaemonEndpoints.KubeletEndpoint.Port; got != DefaultKubeletPort {
		t.Fatalf("node daemonEndpoints.kubeletEndpoint.port = %d, want %d", got, DefaultKubeletPort)
	}

	// A container that prints a line unique to each run and exits: it is
	// restarted, so there is a previous run.
	_, err = c.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "restarts"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyAlways,
			Containers: []corev1.Container{{Name: "main", Image: probeImage,
				Command: []string{"sh", "-c", "echo run $(cat /proc/sys/kernel/random/uuid); echo to stderr >&2; exit 1"}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "restarts", "restarted once", func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	logDir := filepath.Join(c.stateDir, "logs", fmt.Sprintf("%s_%s_%s", ns, p.Name, p.UID), "main")
	runs, err := containerRuns(logDir)
	if err != nil || len(runs) < 2 {
		t.Fatalf("runs of the container: %v, %v", runs, err)
	}
	getLogs := func(cs kubernetes.Interface, o *corev1.PodLogOptions) (string, error) {
		data, err := cs.CoreV1().Pods(ns).GetLogs("restarts", o).DoRaw(ctx)
		return string(data), err
	}
	// Read the files after the API: the container may have run again
	// meanwhile, so compare with the run the file listing names then.
	prev, err := getLogs(c.cs, &corev1.PodLogOptions{Container: "main", Previous: true})
	if err != nil {
		t.Fatalf("logs --previous: %v", err)
	}
	if !strings.HasPrefix(prev, "run ") || !strings.Contains(prev, "to stderr\n") {
		t.Fatalf("logs --previous = %q, want the run's stdout and stderr", prev)
	}
	found := false
	for _, r := range runs {
		if data, _ := os.ReadFile(r); string(data) == prev {
			found = true
		}
	}
	if !found {
		t.Fatalf("logs --previous = %q is the output of no run in %s", prev, logDir)
	}
	cur, err := getLogs(c.cs, &corev1.PodLogOptions{Container: "main"})
	if err == nil && cur == "" {
		// The next run had just started and printed nothing yet.
		time.Sleep(time.Second)
		cur, err = getLogs(c.cs, &corev1.PodLogOptions{Container: "main"})
	}
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	if cur == prev || !strings.HasPrefix(cur, "run ") {
		t.Fatalf("logs = %q, --previous = %q: want two different runs", cur, prev)
	}
	ts, err := getLogs(c.cs, &corev1.PodLogOptions{Previous: true, Timestamps: true, TailLines: ptr.To[int64](1)})
	if err != nil {
		t.Fatalf("logs --previous --timestamps --tail=1: %v", err)
	}
	stamp, line, _ := strings.Cut(ts, " ")
	when, perr := time.Parse(time.RFC3339Nano, stamp)
	if perr != nil || time.Since(when) > 10*time.Minute || time.Since(when) < 0 || line != "to stderr\n" {
		t.Fatalf("logs --previous --timestamps --tail=1 = %q, want an RFC 3339 time of this run and the last line", ts)
	}

	// Follow: a container that prints a line every 200 ms.
	_, err = c.cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "ticker"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: probeImage,
			Command: []string{"sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"}}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.waitPod(t, ns, "ticker", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
	followCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stream, err := c.cs.CoreV1().Pods(ns).GetLogs("ticker", &corev1.PodLogOptions{Follow: true, TailLines: ptr.To[int64](1)}).Stream(followCtx)
	if err != nil {
		t.Fatalf("logs -f: %v", err)
	}
	sc := bufio.NewScanner(stream)
	var ticks []int
	start := time.Now()
	for len(ticks) < 5 && sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "tick "))
		if err != nil {
			t.Fatalf("logs -f line %q", sc.Text())
		}
		ticks = append(ticks, n)
	}
	stream.Close()
	if len(ticks) < 5 {
		t.Fatalf("logs -f gave %v before %v (%v)", ticks, followCtx.Err(), sc.Err())
	}
	for i := 1; i < len(ticks); i++ {
		if ticks[i] != ticks[i-1]+1 {
			t.Fatalf("logs -f gave %v: want consecutive lines", ticks)
		}
	}
	if d := time.Since(start); d < 600*time.Millisecond {
		t.Fatalf("logs -f gave 5 lines in %s: they must arrive as they are written (every 200 ms)", d)
	}

	// A user without pods/log is refused by the API server.
	alice, err := c.cp.UserRESTConfig("alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getLogs(kubernetes.NewForConfigOrDie(alice), &corev1.PodLogOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("logs as a user without rights: %v, want Forbidden", err)
	}

	// The kubelet API itself: its certificate is the node's, signed by the
	// cluster CA; a caller needs a client certificate (or token) and nodes/proxy.
	path := fmt.Sprintf("/containerLogs/%s/%s/%s?tailLines=1", ns, "ticker", "main")
	call := func(cfg *rest.Config) (int, string) {
		t.Helper()
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(c.cp.CACertPEM())
		tlsCfg := &tls.Config{RootCAs: pool, ServerName: c.gateway}
		if cfg != nil {
			cert, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData)
			if err != nil {
				t.Fatal(err)
			}
			tlsCfg.Certificates = []tls.Certificate{cert}
		}
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
		resp, err := client.Get("https://" + net.JoinHostPort(c.gateway, strconv.Itoa(DefaultKubeletPort)) + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := call(nil); code != http.StatusUnauthorized {
		t.Errorf("kubelet API without credentials: %d %q, want 401", code, body)
	}
	if code, body := call(alice); code != http.StatusForbidden || !strings.Contains(body, "subresource(s)=[proxy]") {
		t.Errorf("kubelet API as a user without nodes/proxy: %d %q, want 403", code, body)
	}
	if code, body := call(c.cp.RESTConfig()); code != http.StatusOK || !strings.HasPrefix(body, "tick ") {
		t.Errorf("kubelet API as the admin: %d %q, want 200 and the last line", code, body)
	}

	for _, name := range []string{"restarts", "ticker"} {
		if err := c.cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](1)}); err != nil {
			t.Fatal(err)
		}
	}
}
