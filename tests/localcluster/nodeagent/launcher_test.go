package nodeagent

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/utils/ptr"
)

// TestLauncherIsolation starts one container process directly (no API
// server): network namespace, volume mounts, read-only host, hidden state
// folder, user switch.
func TestLauncherIsolation(t *testing.T) {
	requireRoot(t)
	stateDir := t.TempDir()
	n, err := newNetwork(testBridge+"l", "10.78.1.0/24")
	if err != nil {
		t.Fatal(err)
	}
	cleanupNetwork(n.bridge, true)
	t.Cleanup(func() { cleanupNetwork(n.bridge, true) })
	if err := n.ensureBridge(); err != nil {
		t.Fatal(err)
	}
	if err := n.setupPod(5); err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(stateDir, "vol")
	if err := os.MkdirAll(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vol, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vol, "hello"), []byte("world"), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(stateDir, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	podTmp := t.TempDir()
	if err := os.Chmod(podTmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	spec := &launchSpec{
		NetNS:    filepath.Join(netnsDir, n.nsName(5)),
		Hostname: "pod-a",
		Root:     root,
		Hide:     []string{stateDir},
		Mounts: []mountSpec{
			// Mounted first (shallowest): it hides the host's /tmp, where the
			// other sources live.
			{Source: podTmp, Target: "/tmp"},
			{Source: vol, Target: "/openbao/config", ReadOnly: true},
			{Source: vol, Target: "/var/run/secrets/kubernetes.io/serviceaccount"},
		},
		Path: probeApp(t),
		Args: []string{"probeapp", "serve", "-port", "8080"},
		Env:  []string{"A=1"},
		Dir:  "/openbao",
		UID:  ptr.To[uint32](1000),
		GID:  ptr.To[uint32](1000),
	}
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := launch(spec, logFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	base := "http://" + n.addr(5).String() + ":8080"
	waitHTTP(t, base+"/id")
	get := func(path string) (int, string) {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var id struct {
		UID, GID int
		Hostname string
		Cwd      string
	}
	_, body := get("/id")
	if err := json.Unmarshal([]byte(body), &id); err != nil {
		t.Fatal(err, body)
	}
	if id.UID != 1000 || id.GID != 1000 || id.Hostname != "pod-a" || id.Cwd != "/openbao" {
		t.Errorf("identity = %+v", id)
	}
	if code, body := get("/file?path=/openbao/config/hello"); code != 200 || body != "world" {
		t.Errorf("volume file: %d %q", code, body)
	}
	if code, body := get("/file?path=/var/run/secrets/kubernetes.io/serviceaccount/hello"); code != 200 || body != "world" {
		t.Errorf("volume file under a host symlink: %d %q", code, body)
	}
	if code, _ := get("/write?path=/openbao/config/x&data=1"); code == 200 {
		t.Errorf("write to a read-only volume succeeded")
	}
	if code, body := get("/write?path=/var/run/secrets/kubernetes.io/serviceaccount/x&data=1"); code != 200 {
		t.Errorf("write to a read-write volume failed: %s", body)
	}
	if code, body := get("/write?path=/tmp/x&data=1"); code != 200 {
		t.Errorf("write to a read-write volume over a host directory failed: %s", body)
	}
	if code, _ := get("/write?path=/etc/nodeagent-test&data=1"); code == 200 {
		t.Errorf("write to the host's /etc succeeded")
	}
	if code, _ := get("/file?path=" + filepath.Join(stateDir, "vol", "hello")); code == 200 {
		t.Errorf("the agent's state folder is visible in the container")
	}
	if _, err := os.Stat("/var/run/secrets/kubernetes.io/serviceaccount"); err == nil && !strings.HasPrefix(stateDir, "/var/run") {
		t.Errorf("a mount point was created on the host")
	}
	if _, err := os.Stat("/openbao"); err == nil {
		t.Errorf("/openbao was created on the host")
	}
}

func waitHTTP(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCleanupAfterCrash leaves a pod network namespace with a running
// container process behind, as a killed agent would, and checks that
// Cleanup removes all of it.
func TestCleanupAfterCrash(t *testing.T) {
	requireRoot(t)
	stateDir := t.TempDir()
	bridge := testBridge + "c"
	cleanupNetwork(bridge, true)
	t.Cleanup(func() { cleanupNetwork(bridge, true) })
	if err := os.WriteFile(filepath.Join(stateDir, "agent.json"), []byte(`{"bridge":"`+bridge+`","cidr":"10.78.2.0/24"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := newNetwork(bridge, "10.78.2.0/24")
	if err != nil {
		t.Fatal(err)
	}
	if err := n.ensureBridge(); err != nil {
		t.Fatal(err)
	}
	if err := n.setupPod(9); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(stateDir, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd, err := launch(&launchSpec{NetNS: filepath.Join(netnsDir, n.nsName(9)), Root: root, Path: probeApp(t),
		Args: []string{"probeapp", "sleep"}}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited })

	if err := Cleanup(stateDir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("container process still running after Cleanup")
	}
	if ns := ownedNetns(bridge); len(ns) > 0 {
		t.Errorf("network namespaces left: %v", ns)
	}
	if v := ownedVeths(bridge); len(v) > 0 {
		t.Errorf("veths left: %v", v)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", bridge)); err == nil {
		t.Errorf("bridge %s left", bridge)
	}
}
