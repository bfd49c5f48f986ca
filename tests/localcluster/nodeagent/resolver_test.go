package nodeagent

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolvers(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"2.6.2", "2.7.2"} {
		if err := os.MkdirAll(filepath.Join(dir, v), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, v, "bao"), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "2.7.2", "bao")
	r := Resolvers{
		MapResolver{"registry.local/manager": {Entrypoint: []string{exe, "manager"}}},
		PatternResolver{OpenBaoRule(dir)},
	}
	for ref, want := range map[string]string{
		"openbao/openbao:2.7.2":               exe,
		"quay.io/openbao/openbao:2.7.2":       exe,
		"ghcr.io/openbao/openbao:v2.6.2":      filepath.Join(dir, "2.6.2", "bao"),
		"registry.example:5000/openbao:2.7.2": exe,
		"registry.local/manager:dev":          exe,
		"registry.local/manager":              exe,
	} {
		img, err := r.Resolve(ref)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		if img.Entrypoint[0] != want {
			t.Errorf("%s -> %s, want %s", ref, img.Entrypoint[0], want)
		}
	}
	for _, ref := range []string{"openbao/openbao:9.9.9", "busybox:1.36", "openbao/openbao-operator:1.0", "registry.local/other:1"} {
		if img, err := r.Resolve(ref); err == nil {
			t.Errorf("%s resolved to %v, want an error", ref, img.Entrypoint)
		}
	}
}

func TestExpand(t *testing.T) {
	env := &envList{}
	env.set("A", "1")
	env.set("B", "x y")
	for in, want := range map[string]string{
		"$(A)":           "1",
		"$(A)-$(B)":      "1-x y",
		"$$(A)":          "$(A)",
		"$(MISSING)":     "$(MISSING)",
		"$(A":            "$(A",
		"a$b":            "a$b",
		"trailing$":      "trailing$",
		"$$$(A)":         "$1",
		"--config=$(B)/": "--config=x y/",
	} {
		if got := expand(in, env.lookup); got != want {
			t.Errorf("expand(%q) = %q, want %q", in, got, want)
		}
	}
}
