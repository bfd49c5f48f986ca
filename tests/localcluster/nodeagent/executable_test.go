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
		got, err := resolveExecutable(name, img, env, containerView{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got != want {
			t.Errorf("%s -> %s, want %s", name, got, want)
		}
	}
	if _, err := resolveExecutable("no-such-command", img, env, containerView{}); err == nil {
		t.Error("an unknown command resolved")
	}
}

// A command is looked up where the container sees it: its volumes first,
// then its image's files, then (unless FROM scratch) the node's tree.
func TestContainerView(t *testing.T) {
	root, vol := t.TempDir(), t.TempDir()
	writeFiles(t, root, map[string]string{"bin/olm": "#!/bin/sh\n", "configs/index.json": "{}"}, 0o755)
	writeFiles(t, vol, map[string]string{"cpb": "#!/bin/sh\n"}, 0o755)
	mounts := []mountSpec{{Source: vol, Target: "/util"}}
	env := &envList{}
	env.set("PATH", "/usr/bin:/bin")
	overlay := containerView{mounts: mounts, root: root}
	scratch := containerView{mounts: mounts, root: root, scratch: true}
	for _, tc := range []struct {
		view       containerView
		name, want string
		ok         bool
	}{
		{overlay, "/util/cpb", filepath.Join(vol, "cpb"), true},
		{overlay, "/bin/olm", filepath.Join(root, "bin/olm"), true},
		{overlay, "olm", filepath.Join(root, "bin/olm"), true},
		{overlay, "/bin/sh", "/bin/sh", true},
		{overlay, "sh", "/usr/bin/sh", true},
		{scratch, "/util/cpb", filepath.Join(vol, "cpb"), true},
		{scratch, "olm", filepath.Join(root, "bin/olm"), true},
		{scratch, "sh", "", false},
	} {
		got, err := resolveExecutable(tc.name, Image{Root: root, Scratch: tc.view.scratch}, env, tc.view)
		if tc.ok && (err != nil || got != tc.want) {
			t.Errorf("scratch=%t %s -> %q, %v; want %s", tc.view.scratch, tc.name, got, err, tc.want)
		}
		if !tc.ok && err == nil {
			t.Errorf("scratch=%t %s -> %s, want not found", tc.view.scratch, tc.name, got)
		}
	}
}

// An image's files are laid over the node's directories entry by entry;
// volumes hide them.
func TestImageMounts(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"bin/cpb": "x", "bin/olm": "x", "configs/a/index.json": "{}", "util/hidden": "x"}, 0o755)
	got, err := imageMounts(root, []string{"/util", "/tmp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []mountSpec{
		{Source: filepath.Join(root, "bin/cpb"), Target: "/bin/cpb", ReadOnly: true, Image: true},
		{Source: filepath.Join(root, "bin/olm"), Target: "/bin/olm", ReadOnly: true, Image: true},
		{Source: filepath.Join(root, "configs"), Target: "/configs", ReadOnly: true, Image: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mount %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestCheckImage(t *testing.T) {
	dir := t.TempDir()
	if _, err := checkImage("files", Image{Root: dir, Scratch: true}); err != nil {
		t.Errorf("an image of files only: %v", err)
	}
	if _, err := checkImage("missing", Image{Root: filepath.Join(dir, "none")}); err == nil {
		t.Error("a missing root was accepted")
	}
	if _, err := checkImage("scratch", Image{Scratch: true}); err == nil {
		t.Error("a scratch image without files was accepted")
	}
}
