package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/nodeagent"
)

// bridgeLockDir holds one lock file per pod-network bridge of this machine.
// A bridge is a machine-wide name, so its lock is too: whichever checkout or
// folder a cluster runs from, two clusters never share a bridge, and a
// cluster that finds a bridge whose lock is free knows it is left over from a
// run that was killed, and removes it.
var bridgeLockDir = "/run/lock/openbao-localcluster"

// ErrInUse reports a bridge or a folder that a running local cluster holds.
var ErrInUse = errors.New("in use by a running local cluster")

// bridgeClaim is the held lock of a bridge; closing it releases the bridge.
type bridgeClaim struct {
	f *os.File
}

func (b *bridgeClaim) release() {
	if b != nil && b.f != nil {
		_ = b.f.Close()
		b.f = nil
	}
}

// claimBridge takes the machine-wide lock of bridge for the cluster in dir.
// When a running cluster holds it, the error wraps ErrInUse and names
// that cluster's folder. When the lock is free but the bridge, or pod network
// namespaces named after it, still exist, a run was killed before its Down:
// the pods' processes, namespaces and the bridge are removed, and so is the
// dead run's folder (control-plane processes included) when nothing holds it.
func claimBridge(bridge, dir string) (*bridgeClaim, error) {
	if err := os.MkdirAll(bridgeLockDir, 0o755); err != nil {
		return nil, err
	}
	path := filepath.Join(bridgeLockDir, bridge+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		owner, _ := os.ReadFile(path)
		f.Close()
		return nil, fmt.Errorf("%w: %s is held by the cluster in %s; stop that cluster or choose another bridge and CIDR",
			ErrInUse, bridge, strings.TrimSpace(string(owner)))
	}
	previous, _ := os.ReadFile(path)
	if prev := strings.TrimSpace(string(previous)); prev != "" && prev != dir {
		// The folder of a killed run elsewhere: its own lock tells whether
		// it is free to clean (a cluster may have moved to another bridge).
		if lock, err := lockDir(prev); err == nil {
			_ = Cleanup(prev)
			lock.Close()
		}
	}
	if err := nodeagent.CleanupBridge(bridge); err != nil {
		f.Close()
		return nil, fmt.Errorf("remove what a killed run left on bridge %s: %w", bridge, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(dir+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return &bridgeClaim{f: f}, nil
}
