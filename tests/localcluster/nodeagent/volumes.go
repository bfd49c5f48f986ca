package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// rootCAConfigMap is published in every namespace by kube-controller-manager
// and projected into the default service account token volume.
const rootCAConfigMap = "kube-root-ca.crt"

// projectedToken is an issued service account token and when to renew it.
type projectedToken struct {
	token   string
	renewAt time.Time
}

// volumeError is a volume that cannot be set up yet (a missing Secret, an
// unbound claim); the kubelet reports FailedMount and keeps trying.
type volumeError struct{ msg string }

func (e *volumeError) Error() string { return e.msg }

// syncVolumes creates or refreshes every volume of the pod and returns the
// host folder of each, by volume name.
func (w *podWorker) syncVolumes(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	paths := map[string]string{}
	// The kubelet applies the fsGroup to a volume's contents when it mounts it, once per
	// pod; later passes only keep the folder itself right.
	mounting := w.volumes == nil
	gid := -1
	if sc := pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		gid = int(*sc.FSGroup)
	}
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		dir := filepath.Join(w.dir, "volumes", v.Name)
		var err error
		switch {
		case v.EmptyDir != nil:
			err = ensureSharedDir(dir, gid, mounting)
		case v.HostPath != nil:
			dir = v.HostPath.Path
			if v.HostPath.Type != nil && (*v.HostPath.Type == corev1.HostPathDirectoryOrCreate) {
				err = os.MkdirAll(dir, 0o755)
			}
		case v.PersistentVolumeClaim != nil:
			dir, err = w.agent.claimPath(pod.Namespace, v.PersistentVolumeClaim.ClaimName)
			if err == nil {
				err = ensureSharedDir(dir, gid, mounting)
			}
		case v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil:
			var payload map[string]fileData
			payload, err = w.volumePayload(ctx, pod, v)
			if err == nil && payload != nil {
				_, err = writeAtomic(dir, payload, gid)
			}
		default:
			err = &volumeError{fmt.Sprintf("volume %q: type not supported on this node", v.Name)}
		}
		if err != nil {
			return nil, err
		}
		paths[v.Name] = dir
	}
	return paths, nil
}

// ensureSharedDir creates a writable folder (emptyDir, claim): mode 0777 as
// the kubelet's emptyDir, group-owned by the pod's fsGroup if any; when the pod
// mounts it, everything in it too, as the kubelet does (setVolumeOwnership).
func ensureSharedDir(dir string, gid int, mounting bool) error {
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return err
	}
	mode := os.FileMode(0o777)
	if info, err := os.Stat(dir); err == nil {
		mode |= info.Mode() & os.ModeSetgid
	}
	if err := os.Chmod(dir, mode); err != nil {
		return err
	}
	switch {
	case gid < 0:
		return nil
	case mounting:
		return setVolumeOwnership(dir, gid)
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return err
	}
	return os.Chmod(dir, mode|os.ModeSetgid)
}

// setVolumeOwnership applies a pod's fsGroup to a volume as the kubelet does
// (SetVolumeOwnership, fsGroupChangePolicy Always): every file and folder
// becomes group-owned by fsGroup and group-readable and -writable, folders also
// group-searchable and setgid so that new files inherit the group. This is what
// lets a pod whose user ID the platform assigns (OpenShift gives each namespace
// its own range) use data that a pod with another user ID wrote, as long as
// both share the fsGroup. Symbolic links are re-owned, never followed.
func setVolumeOwnership(dir string, gid int) error {
	return filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		// A file that a still running process removed meanwhile needs nothing.
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := os.Lchown(path, -1, gid); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("fsGroup %d on %s: %w", gid, path, err)
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		mask := os.FileMode(0o660)
		if d.IsDir() {
			mask |= 0o110 | os.ModeSetgid
		}
		if info.Mode()&mask == mask {
			return nil
		}
		return os.Chmod(path, info.Mode()&(os.ModePerm|os.ModeSetgid|os.ModeSetuid|os.ModeSticky)|mask)
	})
}

func modeOr(m *int32, def int32) os.FileMode {
	if m != nil {
		return os.FileMode(*m)
	}
	return os.FileMode(def)
}

// volumePayload computes the files of a configMap, secret, downwardAPI or
// projected volume. A nil map without error means "optional source
// missing": the folder is left as it is.
func (w *podWorker) volumePayload(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (map[string]fileData, error) {
	out := map[string]fileData{}
	switch {
	case v.ConfigMap != nil:
		return out, w.configMapFiles(ctx, pod, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, modeOr(v.ConfigMap.DefaultMode, 0o644), out)
	case v.Secret != nil:
		return out, w.secretFiles(ctx, pod, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, modeOr(v.Secret.DefaultMode, 0o644), out)
	case v.DownwardAPI != nil:
		return out, w.downwardFiles(pod, v.DownwardAPI.Items, modeOr(v.DownwardAPI.DefaultMode, 0o644), out)
	}
	def := modeOr(v.Projected.DefaultMode, 0o644)
	for i, src := range v.Projected.Sources {
		var err error
		switch {
		case src.ConfigMap != nil:
			err = w.configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, def, out)
		case src.Secret != nil:
			err = w.secretFiles(ctx, pod, src.Secret.Name, src.Secret.Items, src.Secret.Optional, def, out)
		case src.DownwardAPI != nil:
			err = w.downwardFiles(pod, src.DownwardAPI.Items, def, out)
		case src.ServiceAccountToken != nil:
			var tok string
			tok, err = w.serviceAccountToken(ctx, pod, fmt.Sprintf("%s/%d", v.Name, i), src.ServiceAccountToken)
			out[src.ServiceAccountToken.Path] = fileData{Data: []byte(tok), Mode: def}
		default:
			err = &volumeError{fmt.Sprintf("volume %q: projected source %d not supported on this node", v.Name, i)}
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (w *podWorker) configMapFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode, out map[string]fileData) error {
	cm, err := w.agent.getConfigMap(ctx, pod.Namespace, name)
	if apierrors.IsNotFound(err) && name == rootCAConfigMap {
		// Before kube-controller-manager publishes it, serve the cluster
		// CA the agent itself trusts (the same bundle).
		cm, err = &corev1.ConfigMap{Data: map[string]string{"ca.crt": string(w.agent.caPEM)}}, nil
	}
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil
		}
		return &volumeError{fmt.Sprintf("configmap %q not found", name)}
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles("configmap", name, data, items, optional, def, out)
}

func (w *podWorker) secretFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, def os.FileMode, out map[string]fileData) error {
	s, err := w.agent.getSecret(ctx, pod.Namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return nil
		}
		return &volumeError{fmt.Sprintf("secret %q not found", name)}
	}
	return keyFiles("secret", name, s.Data, items, optional, def, out)
}

func keyFiles(kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional *bool, def os.FileMode, out map[string]fileData) error {
	if len(items) == 0 {
		for k, v := range data {
			out[k] = fileData{Data: v, Mode: def}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return &volumeError{fmt.Sprintf("%s %q has no key %q", kind, name, it.Key)}
		}
		out[it.Path] = fileData{Data: v, Mode: modeOr(it.Mode, int32(def))}
	}
	return nil
}

func (w *podWorker) downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def os.FileMode, out map[string]fileData) error {
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = podFieldValue(pod, it.FieldRef.FieldPath, w.podIP(), w.agent.hostIP())
		case it.ResourceFieldRef != nil:
			c := findContainer(pod, it.ResourceFieldRef.ContainerName)
			if c == nil {
				return &volumeError{fmt.Sprintf("downward API: container %q not found", it.ResourceFieldRef.ContainerName)}
			}
			val, err = w.agent.resourceFieldValue(pod, c, it.ResourceFieldRef)
		}
		if err != nil {
			return &volumeError{err.Error()}
		}
		out[it.Path] = fileData{Data: []byte(val), Mode: modeOr(it.Mode, int32(def))}
	}
	return nil
}

// serviceAccountToken returns a token bound to the pod from TokenRequest,
// renewed once 80% of its lifetime has passed (as the kubelet does).
func (w *podWorker) serviceAccountToken(ctx context.Context, pod *corev1.Pod, key string, src *corev1.ServiceAccountTokenProjection) (string, error) {
	if t, ok := w.tokens[key]; ok && time.Now().Before(t.renewAt) {
		return t.token, nil
	}
	expiration := int64(3600)
	if src.ExpirationSeconds != nil {
		expiration = *src.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &expiration,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	issued := time.Now()
	resp, err := w.agent.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return "", &volumeError{fmt.Sprintf("request token for service account %q: %v", sa, err)}
	}
	lifetime := resp.Status.ExpirationTimestamp.Sub(issued)
	if lifetime > 24*time.Hour {
		lifetime = 24 * time.Hour
	}
	w.tokens[key] = projectedToken{token: resp.Status.Token, renewAt: issued.Add(lifetime * 8 / 10)}
	return resp.Status.Token, nil
}

// claimPath returns the host folder of a bound claim's volume.
func (a *agent) claimPath(ns, claim string) (string, error) {
	pvc, err := a.pvcs.PersistentVolumeClaims(ns).Get(claim)
	if err != nil {
		return "", &volumeError{fmt.Sprintf("persistentvolumeclaim %q not found", claim)}
	}
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName == "" {
		return "", &volumeError{fmt.Sprintf("persistentvolumeclaim %q is not bound", claim)}
	}
	pv, err := a.pvs.Get(pvc.Spec.VolumeName)
	if err != nil {
		return "", &volumeError{fmt.Sprintf("persistentvolume %q not found", pvc.Spec.VolumeName)}
	}
	switch {
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path, nil
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, nil
	}
	return "", &volumeError{fmt.Sprintf("persistentvolume %q is neither hostPath nor local", pv.Name)}
}
