// Package olm installs Operator Lifecycle Manager on a local cluster (see
// package cluster) the way OLM's quickstart installs it on any cluster: its
// CRDs, olm-operator and catalog-operator as Deployments, packageserver as an
// aggregated API (installed by olm-operator from its own CSV), all from the
// manifests that ship with OLM. It also builds a file-based catalog of
// bundles with opm and serves it with `opm serve` in a pod, referenced by a
// CatalogSource.
//
// The node runs no container runtime: images stand for directories of
// files and executables built by `make olm-bins` (see Images). Nothing OLM
// runs is changed or told that it runs here.
package olm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
	"github.com/openbao-operator/openbao-operator/tests/localcluster/nodeagent"
)

// Images and names of OLM's install (deploy/upstream/quickstart/olm.yaml).
const (
	// OLMImageRepository runs olm-operator, catalog-operator, packageserver
	// and the bundle-unpack Job's util container (cpb).
	OLMImageRepository = "quay.io/operator-framework/olm"
	// OPMImageRepository runs the bundle-unpack Job's extract container
	// (catalog-operator's default -opmImage).
	OPMImageRepository = "quay.io/operator-framework/opm"
	// Namespace is where OLM runs, and the global catalog namespace.
	Namespace = "olm"
	// OperatorsNamespace holds the global OperatorGroup (AllNamespaces).
	OperatorsNamespace = "operators"

	waitInstall = 5 * time.Minute
)

// Assets is the folder `make olm-bins` fills:
//
//	olm-image/bin/{olm,catalog,package-server,copy-content,cpb}
//	opm-image/bin/opm
//	manifests/crds/*.yaml, manifests/olm.yaml
type Assets string

// OPM is the opm binary.
func (a Assets) OPM() string { return filepath.Join(string(a), "opm-image", "bin", "opm") }

// Check fails with the missing file when the assets are incomplete.
func (a Assets) Check() error {
	for _, f := range []string{"olm-image/bin/olm", "olm-image/bin/catalog", "olm-image/bin/package-server", "olm-image/bin/cpb",
		"opm-image/bin/opm", "manifests/crds/0000_50_olm_00-olmconfigs.crd.yaml", "manifests/olm.yaml"} {
		if _, err := os.Stat(filepath.Join(string(a), f)); err != nil {
			return fmt.Errorf("OLM assets incomplete (%v): run `make olm-bins`", err)
		}
	}
	return nil
}

func repoPattern(repo string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(repo) + `(?::[^@/]+)?(?:@sha256:[0-9a-f]+)?$`)
}

// Images resolves OLM's images to the assets, and each reference of files
// to its image (bundle images FROM scratch, catalog images).
func Images(a Assets, files nodeagent.ImageResolver) nodeagent.ImageResolver {
	olmImage := nodeagent.PatternRule{Pattern: repoPattern(OLMImageRepository), Build: func([]string) nodeagent.Image {
		// Built on a base image (the node's tree here): util's /bin/cp is the base's.
		return nodeagent.Image{Root: filepath.Join(string(a), "olm-image")}
	}}
	opmImage := nodeagent.PatternRule{Pattern: repoPattern(OPMImageRepository), Build: func([]string) nodeagent.Image {
		return nodeagent.Image{Root: filepath.Join(string(a), "opm-image"), Entrypoint: []string{a.OPM()}}
	}}
	return nodeagent.Resolvers{files, nodeagent.PatternResolver{olmImage, opmImage}}
}

// BundleImage is a bundle image (FROM scratch: /manifests, /metadata) whose
// files are dir, such as the repository's bundle/.
func BundleImage(dir string) nodeagent.Image {
	return nodeagent.Image{Root: dir, Scratch: true}
}

// CatalogImage is a file-based catalog image: opm as the entrypoint, the
// catalog in /configs, `serve /configs` as the command. (The Dockerfile of
// `opm generate dockerfile` also bakes a serving cache into the image and
// serves from it; without one opm builds it in a temporary folder at start.)
func CatalogImage(a Assets, dir string) nodeagent.Image {
	return nodeagent.Image{
		Root:       dir,
		Entrypoint: []string{a.OPM()},
		Cmd:        []string{"serve", "/configs"},
	}
}

// Install applies OLM's CRDs (from its chart) and olm.yaml (without its catalog of
// OperatorHub.io, which lives on the internet), then waits for olm-operator
// and catalog-operator to be Available and for packageserver's CSV to
// succeed and its APIService to be Available.
func Install(ctx context.Context, c *cluster.Cluster, a Assets) error {
	if err := a.Check(); err != nil {
		return err
	}
	kubectl := func(what string, args ...string) error {
		out, err := c.Kubectl(ctx, args...)
		if err != nil {
			return fmt.Errorf("%s: kubectl %s: %w\n%s", what, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := kubectl("OLM CRDs", "apply", "--server-side", "-f", filepath.Join(string(a), "manifests", "crds")); err != nil {
		return err
	}
	if err := kubectl("OLM CRDs", "wait", "--for=condition=Established", "--timeout=2m", "crd", "--all"); err != nil {
		return err
	}
	manifest, err := localManifest(filepath.Join(string(a), "manifests", "olm.yaml"))
	if err != nil {
		return err
	}
	local := filepath.Join(c.Dir(), "olm.yaml")
	if err := os.WriteFile(local, manifest, 0o644); err != nil {
		return err
	}
	if err := kubectl("OLM", "apply", "--server-side", "-f", local); err != nil {
		return err
	}
	timeout := fmt.Sprintf("--timeout=%s", waitInstall)
	if err := kubectl("OLM operators", "-n", Namespace, "wait", "--for=condition=Available", timeout,
		"deployment/olm-operator", "deployment/catalog-operator"); err != nil {
		return err
	}
	if err := kubectl("packageserver", "-n", Namespace, "wait", "--for=jsonpath={.status.phase}=Succeeded", timeout,
		"clusterserviceversion/packageserver"); err != nil {
		return err
	}
	// olm-operator creates the APIService once packageserver's Deployment is up.
	if err := WaitExists(ctx, c, "", "apiservice/v1.packages.operators.coreos.com", waitInstall); err != nil {
		return err
	}
	return kubectl("packageserver", "wait", "--for=condition=Available", timeout, "apiservice/v1.packages.operators.coreos.com")
}

// WaitExists waits until `kubectl get` finds the object (kubectl wait
// fails at once on an object that does not exist yet).
func WaitExists(ctx context.Context, c *cluster.Cluster, namespace, object string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	args := []string{"get", object, "-o", "name"}
	if namespace != "" {
		args = append([]string{"-n", namespace}, args...)
	}
	for {
		out, err := c.Kubectl(ctx, args...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %s: %s", object, timeout, out)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// localManifest returns OLM's olm.yaml with two changes: its CatalogSource
// objects are left out, and catalog-operator's single-dash flags get their
// second dash. The quickstart manifest of v0.38.0 passes `-namespace`,
// `-configmapServerImage=...` and `-util-image`, which catalog's command
// line parser (cobra) reads as shorthand flags and rejects ("unknown
// shorthand flag: 'n' in -namespace").
func localManifest(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var kept []string
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if regexp.MustCompile(`(?m)^kind:\s*CatalogSource\s*$`).MatchString(doc) {
			continue
		}
		kept = append(kept, doc)
	}
	out := strings.Join(kept, "\n---\n")
	out = regexp.MustCompile(`(?m)^(\s*-\s*'?)-(namespace|configmapServerImage|util-image)\b`).ReplaceAllString(out, "$1--$2")
	return []byte(out), nil
}

// FileImages is a set of images of files that can grow while the node runs
// (a test adds the image of a bundle it is about to publish).
type FileImages struct {
	mu     sync.RWMutex
	images nodeagent.MapResolver
}

// Add makes ref resolve to img.
func (f *FileImages) Add(ref string, img nodeagent.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.images == nil {
		f.images = nodeagent.MapResolver{}
	}
	f.images[ref] = img
}

// Resolve implements nodeagent.ImageResolver.
func (f *FileImages) Resolve(ref string) (nodeagent.Image, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.images.Resolve(ref)
}
