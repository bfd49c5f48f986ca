package nodeagent

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSharedDirFSGroupOwnership: a pod's fsGroup re-owns what an earlier pod left in a
// volume, as the kubelet does, so that a pod with another (platform-assigned) user ID but
// the same fsGroup can use it.
func TestSharedDirFSGroupOwnership(t *testing.T) {
	requireRoot(t)
	const gid = 4242
	dir := filepath.Join(t.TempDir(), "claim")
	if err := os.MkdirAll(filepath.Join(dir, "raft", "snapshots"), 0o700); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"vault.db": 0o600, "raft/raft.db": 0o600, "raft/tool": 0o700} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(dir, name), 100, 1000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}

	if err := ensureSharedDir(dir, gid, true); err != nil {
		t.Fatal(err)
	}

	want := map[string]os.FileMode{
		".":              0o777 | os.ModeSetgid,
		"raft":           0o770 | os.ModeSetgid,
		"raft/snapshots": 0o770 | os.ModeSetgid,
		"vault.db":       0o660,
		"raft/raft.db":   0o660,
		"raft/tool":      0o760, // the kubelet adds no execute bit to files
	}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode() & (os.ModePerm | os.ModeSetgid); got != mode {
			t.Errorf("%s: mode %v, want %v", name, got, mode)
		}
		st := info.Sys().(*syscall.Stat_t)
		if st.Gid != gid {
			t.Errorf("%s: group %d, want the fsGroup %d", name, st.Gid, gid)
		}
		if name == "vault.db" && st.Uid != 100 {
			t.Errorf("%s: owner changed to %d: only the group follows the fsGroup", name, st.Uid)
		}
	}
	var passwd syscall.Stat_t
	if err := syscall.Stat("/etc/passwd", &passwd); err != nil {
		t.Fatal(err)
	}
	if passwd.Gid == gid {
		t.Error("the symbolic link was followed: /etc/passwd got the fsGroup")
	}
}
