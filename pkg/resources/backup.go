package resources

import (
	"fmt"
	"maps"
	"path"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/backup"
)

// Backups run the executor's backup action in a Job that logs in with a JWT role that may
// only read a snapshot.
const (
	ActionBackup ExecutorAction = "backup"
	// BackupTimeout is a backup's default bound (spec.backup.timeout).
	BackupTimeout = 30 * time.Minute

	// DefaultBackupRole is the JWT role (and policy) of backup Jobs.
	DefaultBackupRole = "openbao-backup"
	// BackupAudience is the audience of backup Jobs' projected tokens. It differs from the
	// upgrade role's, so that a backup Job's token cannot log in to the upgrade role.
	BackupAudience = "openbao-backup"

	// ComponentBackup labels backup Jobs (the upgrade's clean-up leaves them alone).
	ComponentBackup = "backup-job"
	// LabelBackupName is the snapshot a backup Job writes.
	LabelBackupName = "openbao.org/backup"

	backupCredentialsDir = "/var/run/secrets/openbao.org/s3"
	backupCADir          = "/etc/openbao-backup/ca"
	// backupJobTTL keeps a finished backup Job (and its logs) for a day.
	backupJobTTL int32 = 24 * 3600
)

// BackupPolicy may only read a Raft snapshot.
const BackupPolicy = `# Read a Raft snapshot; nothing else.
path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}
`

// BackupJobName is the Job that writes the snapshot of time t: <cluster>-backup-<unix time>.
func BackupJobName(c *openbaov1alpha1.OpenBaoCluster, t time.Time) string {
	return c.Name + "-backup-" + strconv.FormatInt(t.Unix(), 10)
}

// BackupS3Prefix is where the cluster's backups live in the bucket.
func BackupS3Prefix(c *openbaov1alpha1.OpenBaoCluster) string {
	s3 := c.Spec.Backup.Target.S3
	return backup.ObjectPrefix(s3.Prefix, c.Namespace, c.Name)
}

// BackupJobParams are the inputs of a backup Job.
type BackupJobParams struct {
	Name  string
	Image string
	// TargetPod is the active node.
	TargetPod string
	// Time names the snapshot (backup.SnapshotName).
	Time     time.Time
	Platform Platform
}

// BackupJob builds the Job that takes one backup of c as spec.backup says. It runs as the
// upgrade service account (no RBAC) with a token only the backup role accepts; it mounts
// the snapshot volume or the S3 credentials and CA bundle, nothing else.
func BackupJob(c *openbaov1alpha1.OpenBaoCluster, p BackupJobParams) *batchv1.Job {
	name := backup.SnapshotName(c.Name, p.Time)
	labels := Labels(c, ComponentBackup)
	labels[LabelBackupName] = strings.TrimSuffix(name, backup.Suffix)
	var retention []string
	if n := c.Spec.Backup.Retention.KeepLast; n != nil {
		retention = append(retention, "--keep-last", strconv.Itoa(int(*n)))
	}
	if d := c.Spec.Backup.Retention.MaxAge; d != nil {
		retention = append(retention, "--max-age", d.Duration.String())
	}
	job := backupJob(c, p, name, labels, retention)
	job.Spec.TTLSecondsAfterFinished = ptr.To(backupJobTTL)
	return job
}

// PreUpgradeSnapshotParams are the inputs of the Job that writes an upgrade's snapshot to
// the backup bucket.
type PreUpgradeSnapshotParams struct {
	Name     string
	Revision string
	Image    string
	// TargetPod is the active node.
	TargetPod string
	// Object is the snapshot's name in the bucket (backup.PreUpgradeName).
	Object   string
	Platform Platform
}

// PreUpgradeSnapshotJob builds the Job that writes the snapshot taken before an upgrade to
// the bucket of spec.backup.target.s3: the backup Job (the backup role, streaming, SHA-256,
// no partial object) with a name retention never lists and no retention of its own. It is
// labelled as an upgrade Job, so that the upgrade finds it and removes it when it ends.
func PreUpgradeSnapshotJob(c *openbaov1alpha1.OpenBaoCluster, p PreUpgradeSnapshotParams) *batchv1.Job {
	labels := Labels(c, ComponentJob)
	labels[LabelUpgradeRevision] = p.Revision
	labels[LabelBackupName] = strings.TrimSuffix(p.Object, backup.Suffix)
	return backupJob(c, BackupJobParams{Name: p.Name, Image: p.Image, TargetPod: p.TargetPod, Platform: p.Platform}, p.Object, labels, nil)
}

// PreUpgradeSnapshotLocation is where PreUpgradeSnapshotJob writes object.
func PreUpgradeSnapshotLocation(c *openbaov1alpha1.OpenBaoCluster, object string) string {
	return "s3://" + c.Spec.Backup.Target.S3.Bucket + "/" + BackupS3Prefix(c) + object
}

// backupJob is the Job of the executor's backup action that writes the snapshot name to
// the target of spec.backup, with the given labels and retention flags.
func backupJob(c *openbaov1alpha1.OpenBaoCluster, p BackupJobParams, name string, labels map[string]string, retention []string) *batchv1.Job {
	spec := c.Spec.Backup
	timeout := BackupTimeout
	if spec.Timeout != nil && spec.Timeout.Duration > 0 {
		timeout = spec.Timeout.Duration
	}
	args := []string{
		"executor", string(ActionBackup),
		"--address", fmt.Sprintf("https://%s:%d", PodDNSName(c, p.TargetPod), APIPort),
		"--ca-file", path.Join(TLSDir, "ca.crt"),
		"--token-file", ExecutorTokenFile,
		"--role", DefaultBackupRole,
		"--auth-mount", JWTAuthMount,
		"--timeout", timeout.String(),
		"--cluster", c.Name,
		"--name", name,
		"--result-file", corev1.TerminationMessagePathDefault,
	}
	args = append(args, retention...)
	volumes, mounts := executorVolumes(c, BackupAudience)
	if s3 := spec.Target.S3; s3 != nil {
		s3Args, s3Volumes, s3Mounts := s3Access(s3, s3.Bucket)
		args = append(args, s3Args...)
		args = append(args, "--s3-prefix", BackupS3Prefix(c))
		volumes = append(volumes, s3Volumes...)
		mounts = append(mounts, s3Mounts...)
	} else {
		args = append(args, "--dir", path.Join(SnapshotDir, backup.VolumeDir), "--claim", SnapshotClaimName(c))
		volumes = append(volumes, corev1.Volume{Name: "snapshots", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: SnapshotClaimName(c)},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "snapshots", MountPath: SnapshotDir})
	}
	pod := executorPodSpec(NamesFor(c).UpgradeServiceAccount, p.Platform, p.Image, args, volumes, mounts, "64Mi")
	// The result (location, size, SHA-256) is the container's termination message.
	pod.Containers[0].TerminationMessagePolicy = corev1.TerminationMessageReadFile
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: c.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](1),
			ActiveDeadlineSeconds: ptr.To(int64(timeout.Seconds()) * 2),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(labels)},
				Spec:       pod,
			},
		},
	}
}

// s3Access is what an executor Job needs to reach a bucket: the S3 flags (endpoint,
// bucket, credentials, region, addressing, CA) and the credentials Secret and CA bundle,
// mounted read-only. Backup and restore Jobs share it.
func s3Access(s3 *openbaov1alpha1.S3Target, bucket string) ([]string, []corev1.Volume, []corev1.VolumeMount) {
	args := []string{
		"--s3-endpoint", strings.TrimSuffix(s3.Endpoint, "/"),
		"--s3-bucket", bucket,
		"--s3-credentials-dir", backupCredentialsDir,
	}
	if s3.Region != "" {
		args = append(args, "--s3-region", s3.Region)
	}
	if s3.PathStyle {
		args = append(args, "--s3-path-style")
	}
	volumes := []corev1.Volume{{Name: "s3-credentials", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: s3.CredentialsSecret, DefaultMode: ptr.To[int32](0o440),
		Items: []corev1.KeyToPath{{Key: "AWS_ACCESS_KEY_ID", Path: "AWS_ACCESS_KEY_ID"}, {Key: "AWS_SECRET_ACCESS_KEY", Path: "AWS_SECRET_ACCESS_KEY"}},
	}}}}
	mounts := []corev1.VolumeMount{{Name: "s3-credentials", MountPath: backupCredentialsDir, ReadOnly: true}}
	if b := s3.CABundle; b != nil {
		key := b.Key
		if key == "" {
			key = "ca.crt"
		}
		items := []corev1.KeyToPath{{Key: key, Path: "ca.crt"}}
		vs := corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: b.ConfigMapName}, DefaultMode: ptr.To[int32](0o444), Items: items,
		}}
		if b.SecretName != "" {
			vs = corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: b.SecretName, DefaultMode: ptr.To[int32](0o444), Items: items}}
		}
		volumes = append(volumes, corev1.Volume{Name: "s3-ca", VolumeSource: vs})
		mounts = append(mounts, corev1.VolumeMount{Name: "s3-ca", MountPath: backupCADir, ReadOnly: true})
		args = append(args, "--s3-ca-file", path.Join(backupCADir, "ca.crt"))
	}
	return args, volumes, mounts
}
