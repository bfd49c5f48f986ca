package resources

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func testRestore() *openbaov1alpha1.OpenBaoRestore {
	return &openbaov1alpha1.OpenBaoRestore{ObjectMeta: metav1.ObjectMeta{Name: "back", Namespace: "vault", UID: "0d1c2f3e-uid"}}
}

const testSHA = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// The restore Job's arguments are the contract with `manager executor restore`: every
// flag and its value are pinned here, in order.
func TestRestoreJobFromS3Args(t *testing.T) {
	c, r := testCluster(), testRestore()
	s3 := &openbaov1alpha1.S3Target{
		Endpoint: "https://s3.example.com:9000/", Region: "eu-1", PathStyle: true, CredentialsSecret: "s3-creds",
		CABundle: &openbaov1alpha1.CABundleSource{SecretName: "s3-ca"},
	}
	job := RestoreJob(c, r, RestoreJobParams{
		Name: RestoreJobName(c, r), Image: "img", TargetPod: "bao-1", Force: true,
		Source: RestoreSource{Location: "s3://bucket/openbao/vault/bao/bao-20261130T060000Z.snap", SHA256: testSHA, S3: s3},
	})
	assert.Equal(t, "bao-restore-"+RestoreSuffix(r), job.Name)
	assert.LessOrEqual(t, len(job.Name), 63)
	assert.Equal(t, []string{
		"executor", "restore",
		"--address", "https://bao-1.bao-internal.vault.svc:8200",
		"--ca-file", "/openbao/tls/ca.crt",
		"--token-file", "/var/run/secrets/openbao.org/upgrade/token",
		"--role", "openbao-restore",
		"--auth-mount", JWTAuthMount,
		"--timeout", "30m0s",
		"--result-file", "/dev/termination-log",
		"--cluster", "bao",
		"--source", "s3://bucket/openbao/vault/bao/bao-20261130T060000Z.snap",
		"--sha256", testSHA,
		"--force",
		"--seal-key-file", "/var/run/secrets/openbao.org/seal/key",
		"--seal-key-id", SealKeyID,
		"--s3-endpoint", "https://s3.example.com:9000",
		"--s3-bucket", "bucket",
		"--s3-credentials-dir", backupCredentialsDir,
		"--s3-region", "eu-1",
		"--s3-path-style",
		"--s3-ca-file", "/etc/openbao-backup/ca/ca.crt",
	}, job.Spec.Template.Spec.Containers[0].Args)
}

func TestRestoreJobPodAndVolumes(t *testing.T) {
	c, r := testCluster(), testRestore()
	job := RestoreJob(c, r, RestoreJobParams{
		Name: RestoreJobName(c, r), Image: "img", TargetPod: "bao-0",
		Source: RestoreSource{Location: "pvc://bao-snapshots/backups/bao-20261130T060000Z.snap"},
	})
	assert.Equal(t, ComponentRestore, job.Labels[LabelComponent], "not an upgrade Job: the upgrade's clean-up must leave it alone")
	assert.Equal(t, "back", job.Labels[LabelRestoreName])
	assert.Equal(t, int32(0), *job.Spec.BackoffLimit, "a restore is never retried by the Job controller")
	pod := job.Spec.Template.Spec
	assert.Equal(t, "bao-upgrade-serviceaccount", pod.ServiceAccountName)
	assert.False(t, *pod.AutomountServiceAccountToken)
	ctr := pod.Containers[0]
	assert.Equal(t, corev1.TerminationMessageReadFile, ctr.TerminationMessagePolicy)
	assert.True(t, *ctr.SecurityContext.ReadOnlyRootFilesystem)
	assert.False(t, *ctr.SecurityContext.AllowPrivilegeEscalation)
	assert.Equal(t, []corev1.Capability{"ALL"}, ctr.SecurityContext.Capabilities.Drop)

	dir, _ := argValue(ctr.Args, "--snapshot-dir")
	assert.Equal(t, "/snapshots", dir)
	for _, flag := range []string{"--s3-endpoint", "--sha256", "--force"} {
		_, set := argValue(ctr.Args, flag)
		assert.False(t, set, "flag %s", flag)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m
		assert.True(t, m.ReadOnly, "mount %s must be read-only", m.Name)
	}
	var audiences []string
	for _, v := range pod.Volumes {
		require.Contains(t, mounts, v.Name)
		switch {
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				audiences = append(audiences, s.ServiceAccountToken.Audience)
			}
		case v.Name == "seal-key":
			assert.Equal(t, "bao-unseal-key", v.Secret.SecretName)
			assert.Equal(t, []corev1.KeyToPath{{Key: "key", Path: "key"}}, v.Secret.Items, "only the key")
			assert.Equal(t, "/var/run/secrets/openbao.org/seal", mounts[v.Name].MountPath)
		case v.Name == "snapshots":
			assert.Equal(t, "bao-snapshots", v.PersistentVolumeClaim.ClaimName)
			assert.True(t, v.PersistentVolumeClaim.ReadOnly)
			assert.Equal(t, "/snapshots", mounts[v.Name].MountPath)
		case v.Name == "ca":
			assert.Equal(t, TLSSecretName(c), v.Secret.SecretName)
		default:
			t.Errorf("unexpected volume %s", v.Name)
		}
	}
	assert.Equal(t, []string{RestoreAudience}, audiences, "only a token the restore role accepts")
}

func TestRestoreNames(t *testing.T) {
	c, r := testCluster(), testRestore()
	c.Name = "a-cluster-name-of-forty-characters-xxxxx"
	require.Len(t, c.Name, 40)
	assert.LessOrEqual(t, len(RestoreJobName(c, r)), 63)
	assert.LessOrEqual(t, len(RestoreStepDownJobName(c, r, c.Name+"-8")), 63)
	assert.Equal(t, c.Name+"-rsd-"+RestoreSuffix(r)+"-8", RestoreStepDownJobName(c, r, c.Name+"-8"))
	other := testRestore()
	other.UID = "another"
	assert.NotEqual(t, RestoreJobName(c, r), RestoreJobName(c, other), "a re-created restore never finds the old Job")

	claim, file, ok := ParsePVCLocation("pvc://bao-snapshots/backups/x.snap")
	assert.True(t, ok)
	assert.Equal(t, "bao-snapshots", claim)
	assert.Equal(t, "backups/x.snap", file)
	_, _, ok = ParsePVCLocation("s3://b/k")
	assert.False(t, ok)
}
