package olm

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/openbao-operator/openbao-operator/tests/localcluster/cluster"
)

// Bundle is one bundle of a catalog: its image reference and the folder of
// its files (manifests/, metadata/).
type Bundle struct {
	Image string
	Dir   string
	// Replaces and SkipRange make the channel entry's upgrade edge.
	Replaces, SkipRange string
}

// Catalog describes a file-based catalog of one package.
type Catalog struct {
	Package, Channel string
	// Bundles in channel order, oldest first.
	Bundles []Bundle
}

// Build writes the catalog to dir/configs/<package>/catalog.json the way
// its maintainers would: `opm init` for the package, `opm render` for each
// bundle (with the bundle's image reference, which rendering a folder
// leaves empty), a channel with their entries, then `opm validate`.
func (cat Catalog) Build(ctx context.Context, a Assets, dir string) error {
	out := filepath.Join(dir, "configs", cat.Package)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	opm := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, a.OPM(), args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return nil, fmt.Errorf("opm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return b, nil
	}
	var docs []map[string]any
	pkg, err := opm("init", cat.Package, "--default-channel="+cat.Channel, "--output=json")
	if err != nil {
		return err
	}
	if docs, err = appendJSON(docs, pkg); err != nil {
		return err
	}
	var entries []map[string]any
	for _, b := range cat.Bundles {
		rendered, err := opm("render", b.Dir, "--output=json")
		if err != nil {
			return err
		}
		objs, err := appendJSON(nil, rendered)
		if err != nil {
			return err
		}
		if len(objs) != 1 || objs[0]["schema"] != "olm.bundle" {
			return fmt.Errorf("opm render %s: want one olm.bundle, got %d objects", b.Dir, len(objs))
		}
		objs[0]["image"] = b.Image
		entry := map[string]any{"name": objs[0]["name"]}
		if b.Replaces != "" {
			entry["replaces"] = b.Replaces
		}
		if b.SkipRange != "" {
			entry["skipRange"] = b.SkipRange
		}
		entries = append(entries, entry)
		docs = append(docs, objs[0])
	}
	docs = append(docs, map[string]any{"schema": "olm.channel", "package": cat.Package, "name": cat.Channel, "entries": entries})
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(out, "catalog.json"), buf.Bytes(), 0o644); err != nil {
		return err
	}
	_, err = opm("validate", filepath.Join(dir, "configs"))
	return err
}

func appendJSON(docs []map[string]any, data []byte) ([]map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, m)
	}
}

// Serve runs the catalog image with `opm serve` in a Deployment of the OLM
// namespace, behind a headless Service, and creates a CatalogSource that
// points at it; it waits until catalog-operator reports the connection
// READY.
//
// Serving another image under the same name updates the catalog in place,
// as a catalog maintainer's new image does: the registry pod is replaced,
// catalog-operator's connection to the address drops and comes back READY
// on the new pod, and catalog-operator then drops what it had read of the
// catalog and resolves every Subscription to it again.
//
// The CatalogSource gives an address rather than the image: for an image,
// catalog-operator creates the registry pod and a Service and dials the
// Service's clusterIP, which leads nowhere on a cluster without a service
// proxy; the address of a headless Service resolves to the pod itself.
func Serve(ctx context.Context, c *cluster.Cluster, name, image, displayName string) error {
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[1]s
  namespace: %[2]s
  labels: {app.kubernetes.io/name: %[1]s}
spec:
  replicas: 1
  selector:
    matchLabels: {app.kubernetes.io/name: %[1]s}
  template:
    metadata:
      labels: {app.kubernetes.io/name: %[1]s}
    spec:
      securityContext:
        runAsNonRoot: true
        runAsUser: 1001
        seccompProfile: {type: RuntimeDefault}
      containers:
      - name: registry-server
        image: %[3]s
        ports:
        - {name: grpc, containerPort: 50051}
        readinessProbe:
          tcpSocket: {port: grpc}
          periodSeconds: 2
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        volumeMounts:
        - {name: cache, mountPath: /tmp}
      volumes:
      - name: cache
        emptyDir: {}
---
apiVersion: v1
kind: Service
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  clusterIP: None
  selector: {app.kubernetes.io/name: %[1]s}
  ports:
  - {name: grpc, port: 50051, targetPort: grpc}
---
apiVersion: operators.coreos.com/v1alpha1
kind: CatalogSource
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  sourceType: grpc
  address: %[1]s.%[2]s.svc:50051
  displayName: %[4]q
  publisher: OpenBao Operator
`, name, Namespace, image, displayName)
	path := filepath.Join(c.Dir(), "catalog-"+name+".yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		return err
	}
	if out, err := c.Kubectl(ctx, "apply", "--server-side", "-f", path); err != nil {
		return fmt.Errorf("catalog %s: %w\n%s", name, err, out)
	}
	// A new image for a catalog already served rolls its registry pod:
	// wait until the old one is gone, so that the CatalogSource's address
	// leads to the new image only.
	if out, err := c.Kubectl(ctx, "-n", Namespace, "rollout", "status", "--timeout=3m", "deployment/"+name); err != nil {
		return fmt.Errorf("catalog %s: %w\n%s", name, err, out)
	}
	if out, err := c.Kubectl(ctx, "-n", Namespace, "wait", "--for=jsonpath={.status.connectionState.lastObservedState}=READY",
		"--timeout=3m", "catalogsource/"+name); err != nil {
		return fmt.Errorf("catalog %s: %w\n%s", name, err, out)
	}
	return nil
}

// Publish builds the catalog into the cluster's folder, makes its bundle
// images and the catalog image (reference image) known to the node, and
// serves it as the CatalogSource name in the OLM namespace.
func (cat Catalog) Publish(ctx context.Context, c *cluster.Cluster, a Assets, files *FileImages, name, image string) error {
	dir := filepath.Join(c.Dir(), "images", name+"-"+strings.NewReplacer("/", "_", ":", "_").Replace(image))
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := cat.Build(ctx, a, dir); err != nil {
		return err
	}
	for _, b := range cat.Bundles {
		files.Add(b.Image, BundleImage(b.Dir))
	}
	files.Add(image, CatalogImage(a, dir))
	return Serve(ctx, c, name, image, "OpenBao Operator")
}

// The package and the catalog as published from this repository.
const (
	PackageName = "openbao-operator"
	CatalogName = "openbao-operator-catalog"
)

// BundleVersion reads spec.version of the bundle's CSV.
func BundleVersion(bundleDir string) (string, error) {
	csvs, err := filepath.Glob(filepath.Join(bundleDir, "manifests", "*.clusterserviceversion.yaml"))
	if err != nil || len(csvs) != 1 {
		return "", fmt.Errorf("want one CSV in %s/manifests, found %d (%v)", bundleDir, len(csvs), err)
	}
	data, err := os.ReadFile(csvs[0])
	if err != nil {
		return "", err
	}
	m := regexp.MustCompile(`(?m)^  version: ([^\s]+)\s*$`).FindSubmatch(data)
	if m == nil {
		return "", fmt.Errorf("%s: no spec.version", csvs[0])
	}
	return string(m[1]), nil
}
