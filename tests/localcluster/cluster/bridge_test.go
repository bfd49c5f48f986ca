package cluster

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A bridge, a pod namespace and a process in it, as a run that was killed
// before its Down leaves them: the next claim of the bridge removes them,
// while a second claim as long as the first is held is refused.
func TestClaimBridgeRemovesWhatAKilledRunLeft(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test must run as root (a bridge and a network namespace)")
	}
	bridgeLockDir = t.TempDir()
	const bridge = "obclaim0"
	ns := bridge + "-7"
	ipCmd := func(args ...string) {
		t.Helper()
		out, err := exec.Command("ip", args...).CombinedOutput()
		require.NoError(t, err, "ip %v: %s", args, out)
	}
	t.Cleanup(func() {
		_ = exec.Command("ip", "netns", "del", ns).Run()
		_ = exec.Command("ip", "link", "del", bridge).Run()
	})

	// The killed run: its folder (still holding a state file), its lock file
	// naming that folder, its bridge, a pod namespace with a live process.
	deadDir := filepath.Join(t.TempDir(), "dead")
	require.NoError(t, os.MkdirAll(deadDir, 0o755))
	require.NoError(t, writeState(deadDir, state{Bridge: bridge, CIDR: "10.76.9.0/24"}))
	require.NoError(t, os.WriteFile(filepath.Join(bridgeLockDir, bridge+".lock"), []byte(deadDir+"\n"), 0o644))
	ipCmd("link", "add", bridge, "type", "bridge")
	ipCmd("netns", "add", ns)
	ipCmd("link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
	pod := exec.Command("ip", "netns", "exec", ns, "sleep", "600")
	require.NoError(t, pod.Start())
	exited := make(chan error, 1)
	go func() { exited <- pod.Wait() }()

	dir := filepath.Join(t.TempDir(), "cluster")
	claim, err := claimBridge(bridge, dir)
	require.NoError(t, err)
	defer claim.release()

	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Fatal("the process in the left-over pod namespace still runs")
	}
	for _, p := range []string{filepath.Join("/sys/class/net", bridge), filepath.Join("/sys/class/net", ns), filepath.Join("/run/netns", ns), deadDir} {
		_, err := os.Stat(p)
		require.Truef(t, errors.Is(err, os.ErrNotExist), "%s is still there (%v)", p, err)
	}
	owner, err := os.ReadFile(filepath.Join(bridgeLockDir, bridge+".lock"))
	require.NoError(t, err)
	require.Equal(t, dir+"\n", string(owner))

	// While held, nobody else gets the bridge, and nothing of the holder's
	// is touched.
	ipCmd("link", "add", bridge, "type", "bridge")
	_, err = claimBridge(bridge, filepath.Join(t.TempDir(), "other"))
	require.ErrorIs(t, err, ErrInUse)
	require.ErrorContains(t, err, dir)
	_, err = os.Stat(filepath.Join("/sys/class/net", bridge))
	require.NoError(t, err, "a refused claim removed the holder's bridge")

	// Released, it can be claimed again.
	claim.release()
	again, err := claimBridge(bridge, dir)
	require.NoError(t, err)
	again.release()
}
