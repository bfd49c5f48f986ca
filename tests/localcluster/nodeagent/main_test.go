package nodeagent

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"k8s.io/klog/v2"
)

// Names used by this test binary: fixed, and cleaned up before use, so a
// crashed earlier run never gets in the way.
const (
	testBridge = "nabr0"
	testCIDR   = "10.78.0.0/24"
)

var (
	probeAppOnce sync.Once
	probeAppPath string
	probeAppErr  error
	probeAppDir  string
)

func TestMain(m *testing.M) {
	// Test binaries of this package share fixed network names (testBridge,
	// testCIDR) and clean them up at start: two runs at once (`go test
	// ./...` from two shells) would tear down each other's pods. The second
	// run waits for the first.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "openbao-operator-nodeagent-test.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintln(os.Stderr, "another run of the node agent tests holds", lock.Name(), "- waiting for it")
		if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	// NODEAGENT_V=2 shows the agent's detailed log (probe failures).
	klog.InitFlags(nil)
	if v := os.Getenv("NODEAGENT_V"); v != "" {
		_ = flag.Set("v", v)
	}
	code := m.Run()
	if probeAppDir != "" {
		_ = os.RemoveAll(probeAppDir)
	}
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the node agent tests must run as root (network namespaces, bridges, mounts)")
	}
}

// probeApp builds testdata/probeapp once per test binary.
func probeApp(t *testing.T) string {
	t.Helper()
	probeAppOnce.Do(func() {
		probeAppDir, probeAppErr = os.MkdirTemp("", "nodeagent-probeapp-")
		if probeAppErr != nil {
			return
		}
		probeAppPath = filepath.Join(probeAppDir, "probeapp")
		cmd := exec.Command("go", "build", "-o", probeAppPath, "./testdata/probeapp")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probeAppErr = fmt.Errorf("build probeapp: %w: %s", err, out)
		}
		_ = os.Chmod(probeAppDir, 0o755)
	})
	if probeAppErr != nil {
		t.Fatal(probeAppErr)
	}
	return probeAppPath
}
