package nodeagent

import (
	"os"
	"path/filepath"
	"testing"
)

// An image's own command is often its absolute path inside the image (the
// operator's Deployment runs /manager): on the node it is the entrypoint.
func TestResolveExecutable(t *testing.T) {
	dir := t.TempDir()
	manager := filepath.Join(dir, "manager")
	if err := os.WriteFile(manager, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	img := Image{Entrypoint: []string{manager}}
	env := &envList{}
	env.set("PATH", "/usr/bin:/bin")
	for name, want := range map[string]string{
		"/manager": manager, // not on the host: the entrypoint
		"manager":  manager,
		"/bin/sh":  "/bin/sh", // on the host: as is
		// Absolute, but not named like the entrypoint: as is.
		"/opt/nothing/manager-x": "/opt/nothing/manager-x",
	} {
		got, err := resolveExecutable(name, img, env)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != want {
			t.Errorf("%s -> %s, want %s", name, got, want)
		}
	}
	if _, err := resolveExecutable("no-such-command", img, env); err == nil {
		t.Error("an unknown command resolved")
	}
}
