package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// toolsImage is an image of files laid over the node's tree (like an
	// operator image built on a base image): /bin/tool.
	toolsImage = "registry.local/tools:1"
	// bundleImage is an image FROM scratch holding only files (like an
	// OLM bundle image): /manifests, /metadata.
	bundleImage = "registry.local/bundle:1"
)

func writeFiles(t *testing.T, root string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

func toolsImageRoot(t *testing.T) string {
	t.Helper()
	exe, err := os.ReadFile(probeApp(t))
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"bin/tool": string(exe)}, 0o755)
	writeFiles(t, root, map[string]string{"opt/tools/README": "tools image"}, 0o644)
	return root
}

func bundleImageRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"manifests/csv.yaml":        "kind: ClusterServiceVersion\n",
		"metadata/annotations.yaml": "annotations: {}\n",
	}, 0o644)
	return root
}

// An image can stand for a directory of files. The pod has the shape of
// OLM's bundle-unpack Job: an init container of a tools image copies a
// program out of its image (run by the node's /bin/cp, the base layer) into
// a shared volume; an init container of a scratch image of files runs that
// program from the volume, sees only its image's files at its root and
// copies them out; the main container reads the copies.
func (c *cluster) testImageFiles(t *testing.T) {
	ctx := context.Background()
	ns := c.namespace(t, "imagefiles")
	ro := &corev1.SecurityContext{ReadOnlyRootFilesystem: ptr.To(true)}
	mounts := []corev1.VolumeMount{{Name: "bundle", MountPath: "/bundle"}, {Name: "util", MountPath: "/util"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "unpack"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{
				{Name: "util", Image: toolsImage, Command: []string{"/bin/cp", "/bin/tool", "/util/tool"}, VolumeMounts: mounts[1:], SecurityContext: ro},
				{Name: "list", Image: bundleImage, Command: []string{"/util/tool", "ls", "/", "/bundle/root.txt"}, VolumeMounts: mounts, SecurityContext: ro},
				{Name: "pull", Image: bundleImage, Command: []string{"/util/tool", "cp", "/manifests/csv.yaml", "/bundle/csv.yaml"}, VolumeMounts: mounts, SecurityContext: ro},
				// The tools image's own directories appear beside the node's.
				{Name: "opt", Image: toolsImage, Command: []string{"tool", "cp", "/opt/tools/README", "/bundle/readme"}, VolumeMounts: mounts, SecurityContext: ro},
			},
			Containers: []corev1.Container{{Name: "main", Image: probeImage, Args: []string{"serve"}, VolumeMounts: mounts}},
			Volumes: []corev1.Volume{
				{Name: "bundle", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "util", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			},
		},
	}
	if _, err := c.cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p := c.waitPod(t, ns, "unpack", "running", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" })
	for path, want := range map[string]string{
		"/bundle/csv.yaml": "kind: ClusterServiceVersion\n",
		"/bundle/readme":   "tools image",
		// Only the scratch image's files, the volumes and what every
		// container gets (kernel file systems, /etc files, the token).
		"/bundle/root.txt": strings.Join([]string{"bundle", "dev", "etc", "manifests", "metadata", "proc", "sys", "util", "var"}, "\n"),
	} {
		if code, got := httpGet(t, p.Status.PodIP, "/file?path="+path); code != 200 || got != want {
			t.Errorf("%s: %d %q, want %q", path, code, got, want)
		}
	}
	// The image files are not the node's: the node's /bin has no tool.
	if _, err := os.Stat("/bin/tool"); err == nil {
		t.Error("/bin/tool exists on the node")
	}
	if err := c.cs.CoreV1().Pods(ns).Delete(ctx, "unpack", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}
