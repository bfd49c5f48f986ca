package resources

import (
	"fmt"
	"path"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// Upgrade Jobs run the operator's own binary as an executor of one action.
const (
	// LabelUpgradeRevision names the upgrade a Job belongs to.
	LabelUpgradeRevision = "openbao.org/upgrade-revision"

	ExecutorTokenDir  = "/var/run/secrets/openbao.org/upgrade"
	ExecutorTokenFile = ExecutorTokenDir + "/token"
	SnapshotDir       = "/snapshots"

	// executorUser is the distroless image's unprivileged user.
	executorUser int64 = 65532
	// executorTokenSeconds is the lifetime of the Job's projected token.
	executorTokenSeconds int64 = 600
)

// ExecutorAction is what an upgrade Job does.
type ExecutorAction string

// The actions, and how long each may take, login included: the Job passes the timeout to
// the executor, and the executor uses it as its default.
const (
	ActionStepDown ExecutorAction = "step-down"
	ActionSnapshot ExecutorAction = "snapshot"

	StepDownTimeout = 2 * time.Minute
	SnapshotTimeout = 10 * time.Minute
)

// ExecutorJobParams are the inputs of an upgrade Job.
type ExecutorJobParams struct {
	Name     string
	Revision string
	Image    string
	Action   ExecutorAction
	// TargetPod is the server the action talks to (the one to step down, or the active
	// node for a snapshot).
	TargetPod string
	// SnapshotFile is the file name inside the snapshot volume.
	SnapshotFile string
	Timeout      time.Duration
	// Platform says whether the Job's pod chooses its user and group IDs.
	Platform Platform
}

// SnapshotClaimName is the PersistentVolumeClaim that keeps a cluster's pre-upgrade snapshots.
func SnapshotClaimName(c *openbaov1alpha1.OpenBaoCluster) string { return c.Name + "-snapshots" }

// SnapshotClaim keeps pre-upgrade snapshots. Like the data volumes it outlives the cluster.
func SnapshotClaim(c *openbaov1alpha1.OpenBaoCluster) *corev1.PersistentVolumeClaim {
	size := c.Spec.Storage.Size
	if size.IsZero() {
		size = DefaultStorageSize
	}
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: SnapshotClaimName(c), Namespace: c.Namespace, Labels: Labels(c, ComponentJob)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: c.Spec.Storage.StorageClassName,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
		},
	}
}

// ExecutorJob builds an upgrade Job. It runs as <cluster>-upgrade-serviceaccount, which has no
// RBAC; its only credential is a projected token for the audience OpenBao's upgrade role
// accepts, and it sees only the CA certificate of the cluster's TLS Secret.
func ExecutorJob(c *openbaov1alpha1.OpenBaoCluster, p ExecutorJobParams) *batchv1.Job {
	names := NamesFor(c)
	role := c.Spec.Upgrade.JWTAuthRole
	if role == "" {
		role = DefaultUpgradeRole
	}
	labels := Labels(c, ComponentJob)
	labels[LabelUpgradeRevision] = p.Revision
	args := []string{
		"executor", string(p.Action),
		"--address", fmt.Sprintf("https://%s:%d", PodDNSName(c, p.TargetPod), APIPort),
		"--ca-file", path.Join(TLSDir, "ca.crt"),
		"--token-file", ExecutorTokenFile,
		"--role", role,
		"--auth-mount", JWTAuthMount,
		"--timeout", p.Timeout.String(),
	}
	volumes, mounts := executorVolumes(c, UpgradeAudience)
	switch p.Action {
	case ActionStepDown:
		args = append(args, "--node-id", p.TargetPod)
	case ActionSnapshot:
		args = append(args, "--out", path.Join(SnapshotDir, p.SnapshotFile))
		volumes = append(volumes, corev1.Volume{Name: "snapshots", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: SnapshotClaimName(c)},
		}})
		mounts = append(mounts, corev1.VolumeMount{Name: "snapshots", MountPath: SnapshotDir})
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: c.Namespace, Labels: labels},
		Spec: batchv1.JobSpec{
			BackoffLimit:          ptr.To[int32](2),
			ActiveDeadlineSeconds: ptr.To(int64(p.Timeout.Seconds()) * 3),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       executorPodSpec(names.UpgradeServiceAccount, p.Platform, p.Image, args, volumes, mounts, "32Mi"),
			},
		},
	}
}

// executorVolumes are an executor Job's projected service-account token for audience and
// the cluster's CA certificate, with their mounts.
func executorVolumes(c *openbaov1alpha1.OpenBaoCluster, audience string) ([]corev1.Volume, []corev1.VolumeMount) {
	volumes := []corev1.Volume{
		{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](0o440),
			Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
				Audience: audience, ExpirationSeconds: ptr.To(executorTokenSeconds), Path: "token",
			}}},
		}}},
		{Name: "ca", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
			SecretName: TLSSecretName(c), DefaultMode: ptr.To[int32](0o444),
			Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
		}}},
	}
	mounts := []corev1.VolumeMount{
		{Name: "token", MountPath: ExecutorTokenDir, ReadOnly: true},
		{Name: "ca", MountPath: TLSDir, ReadOnly: true},
	}
	return volumes, mounts
}

// executorPodSpec is the pod of an executor Job: the operator's image running one action as
// serviceAccount (which has no RBAC), non-root, read-only, no capabilities, with volumes and
// mounts from executorVolumes and the action's own.
func executorPodSpec(serviceAccount string, platform Platform, image string, args []string,
	volumes []corev1.Volume, mounts []corev1.VolumeMount, memoryRequest string) corev1.PodSpec {
	return corev1.PodSpec{
		ServiceAccountName:           serviceAccount,
		AutomountServiceAccountToken: ptr.To(false),
		RestartPolicy:                corev1.RestartPolicyNever,
		EnableServiceLinks:           ptr.To(false),
		SecurityContext:              podSecurityContext(platform, executorUser, executorUser, executorUser),
		Containers: []corev1.Container{{
			Name:            "executor",
			Image:           image,
			ImagePullPolicy: corev1.PullIfNotPresent,
			Command:         []string{"/manager"},
			Args:            args,
			VolumeMounts:    mounts,
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse(memoryRequest)},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
			},
			SecurityContext: &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false),
				ReadOnlyRootFilesystem:   ptr.To(true),
				RunAsNonRoot:             ptr.To(true),
				Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			},
		}},
		Volumes: volumes,
	}
}
