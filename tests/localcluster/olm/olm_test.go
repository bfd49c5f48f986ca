package olm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalManifest(t *testing.T) {
	path := filepath.Join(t.TempDir(), "olm.yaml")
	in := `kind: Deployment
spec:
  args:
  - '-namespace'
  - olm
  - -configmapServerImage=x
  - -util-image
  -  img
  - --writeStatusName
---
apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata:
  name: operatorhubio-catalog
`
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := localManifest(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(out)
	for _, want := range []string{"- '--namespace'", "- --configmapServerImage=x", "- --util-image", "- --writeStatusName"} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	if strings.Contains(got, "CatalogSource") {
		t.Errorf("the online catalog was kept:\n%s", got)
	}
}
