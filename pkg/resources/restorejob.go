package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

const (
	// LabelRestoreName names the OpenBaoRestore a Job belongs to.
	LabelRestoreName = "openbao.org/restore"

	// restoreSealKeyDir holds the cluster's seal key in the restore Job, read-only: the
	// executor checks that it decrypts the snapshot before installing it.
	restoreSealKeyDir = "/var/run/secrets/openbao.org/seal"
	// restoreSnapshotDir is where a pvc:// source's claim is mounted, read-only.
	restoreSnapshotDir = "/snapshots"
	// restoreJobTTL keeps a finished restore Job (and its logs) for a week.
	restoreJobTTL int32 = 7 * 24 * 3600
)

// RestoreSuffix is a short, stable token of a restore's UID that names its Jobs, so that a
// restore re-created under the same name never finds the Jobs of the previous one.
func RestoreSuffix(r *openbaov1alpha1.OpenBaoRestore) string {
	sum := sha256.Sum256([]byte(r.UID))
	return hex.EncodeToString(sum[:])[:8]
}

// RestoreJobName is the restore's Job: <cluster>-restore-<suffix> (at most 57 characters).
func RestoreJobName(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) string {
	return c.Name + "-restore-" + RestoreSuffix(r)
}

// RestoreStepDownJobName is the Job that steps the active server down before its restart.
func RestoreStepDownJobName(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore, pod string) string {
	ordinal := pod[strings.LastIndex(pod, "-")+1:]
	return c.Name + "-rsd-" + RestoreSuffix(r) + "-" + ordinal
}

// RestoreSource is a restore's snapshot as the operator resolved it.
type RestoreSource struct {
	// Location is s3://<bucket>/<key> or pvc://<claim>/<path>.
	Location string
	// SHA256 is the checksum the snapshot must have, or "".
	SHA256 string
	// S3 are the settings of an s3:// location (its bucket is the location's).
	S3 *openbaov1alpha1.S3Target
}

// ParsePVCLocation splits pvc://<claim>/<path>.
func ParsePVCLocation(location string) (claim, file string, ok bool) {
	rest, found := strings.CutPrefix(location, "pvc://")
	if !found {
		return "", "", false
	}
	claim, file, ok = strings.Cut(rest, "/")
	return claim, file, ok && claim != "" && file != ""
}

// RestoreJobParams are the inputs of a restore Job.
type RestoreJobParams struct {
	Name  string
	Image string
	// TargetPod is the active node, which installs the snapshot.
	TargetPod string
	Source    RestoreSource
	Force     bool
	Platform  Platform
}

// RestoreJob builds the Job that checks a snapshot and installs it into c. It runs as the
// upgrade service account (no RBAC) with a token only the restore role accepts; besides the
// token and the CA it mounts, read-only, the cluster's seal key (to check that it decrypts
// the snapshot before anything changes) and the source: the S3 credentials and CA bundle, or
// the snapshot's volume.
func RestoreJob(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore, p RestoreJobParams) *batchv1.Job {
	labels := Labels(c, ComponentRestore)
	labels[LabelRestoreName] = truncateLabel(r.Name)
	args := []string{
		"executor", string(ActionRestore),
		"--address", fmt.Sprintf("https://%s:%d", PodDNSName(c, p.TargetPod), APIPort),
		"--ca-file", path.Join(TLSDir, "ca.crt"),
		"--token-file", ExecutorTokenFile,
		"--role", DefaultRestoreRole,
		"--auth-mount", JWTAuthMount,
		"--timeout", RestoreTimeout.String(),
		"--result-file", corev1.TerminationMessagePathDefault,
		"--cluster", c.Name,
		"--source", p.Source.Location,
	}
	if p.Source.SHA256 != "" {
		args = append(args, "--sha256", p.Source.SHA256)
	}
	if p.Force {
		args = append(args, "--force")
	}
	args = append(args,
		"--seal-key-file", path.Join(restoreSealKeyDir, SealKeyFile),
		"--seal-key-id", SealKeyID,
	)
	volumes, mounts := executorVolumes(c, RestoreAudience)
	volumes = append(volumes, corev1.Volume{Name: "seal-key", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: NamesFor(c).SealSecret, DefaultMode: ptr.To[int32](0o440),
		Items: []corev1.KeyToPath{{Key: SealKeyFile, Path: SealKeyFile}},
	}}})
	mounts = append(mounts, corev1.VolumeMount{Name: "seal-key", MountPath: restoreSealKeyDir, ReadOnly: true})
	if claim, _, ok := ParsePVCLocation(p.Source.Location); ok {
		args = append(args, "--snapshot-dir", restoreSnapshotDir)
		volumes = append(volumes, corev1.Volume{Name: "snapshots", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim, ReadOnly: true},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "snapshots", MountPath: restoreSnapshotDir, ReadOnly: true})
	} else if s3 := p.Source.S3; s3 != nil {
		// The same flags and mounts as a backup Job's, without the backup's prefix: the
		// bucket and key are the location's.
		bucket, _, _ := strings.Cut(strings.TrimPrefix(p.Source.Location, "s3://"), "/")
		s3Args, s3Volumes, s3Mounts := s3Access(s3, bucket)
		args = append(args, s3Args...)
		volumes = append(volumes, s3Volumes...)
		mounts = append(mounts, s3Mounts...)
	}
	pod := executorPodSpec(NamesFor(c).UpgradeServiceAccount, p.Platform, p.Image, args, volumes, mounts, "64Mi")
	// The result (location, size, SHA-256, refusal) is the container's termination message.
	pod.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageReadFile
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: c.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			// Never retried by the Job controller: a second attempt after a restore that got
			// as far as installing the snapshot would install it twice; the operator decides.
			BackoffLimit:            ptr.To[int32](0),
			ActiveDeadlineSeconds:   ptr.To(int64(RestoreTimeout.Seconds()) * 2),
			TTLSecondsAfterFinished: ptr.To(restoreJobTTL),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       pod,
			},
		},
	}
}

// truncateLabel keeps a name within a label value's 63 characters.
func truncateLabel(s string) string {
	if len(s) <= 63 {
		return s
	}
	return s[:63]
}
