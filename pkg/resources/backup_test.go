package resources

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func argValue(args []string, flag string) (string, bool) {
	i := slices.Index(args, flag)
	if i < 0 {
		return "", false
	}
	if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
		return args[i+1], true
	}
	return "", true
}

func TestBackupJobToS3(t *testing.T) {
	c := testCluster()
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{
		Schedule:  "0 */6 * * *",
		Retention: openbaov1alpha1.BackupRetention{KeepLast: ptr.To[int32](3), MaxAge: &metav1.Duration{Duration: 48 * time.Hour}},
		Target: openbaov1alpha1.BackupTarget{S3: &openbaov1alpha1.S3Target{
			Endpoint: "https://s3.example.com:9000/", Bucket: "b", Prefix: "openbao/", PathStyle: true,
			CredentialsSecret: "s3-creds", CABundle: &openbaov1alpha1.CABundleSource{ConfigMapName: "s3-ca", Key: "bundle.pem"},
		}},
	}
	at := time.Date(2026, 11, 30, 6, 0, 0, 0, time.UTC)
	job := BackupJob(c, BackupJobParams{Name: BackupJobName(c, at), Image: "img", TargetPod: c.Name + "-1", Time: at})
	assert.Equal(t, c.Name+"-backup-1796018400", job.Name)
	assert.Equal(t, ComponentBackup, job.Labels[LabelComponent], "not an upgrade Job: the upgrade's clean-up must leave it alone")
	pod := job.Spec.Template.Spec
	assert.Equal(t, c.Name+"-upgrade-serviceaccount", pod.ServiceAccountName)
	assert.False(t, *pod.AutomountServiceAccountToken)
	args := pod.Containers[0].Args
	for flag, want := range map[string]string{
		"--role": DefaultBackupRole, "--cluster": c.Name, "--name": c.Name + "-20261130T060000Z.snap",
		"--s3-endpoint": "https://s3.example.com:9000", "--s3-bucket": "b", "--s3-prefix": "openbao/" + c.Namespace + "/" + c.Name + "/",
		"--keep-last": "3", "--max-age": "48h0m0s", "--result-file": "/dev/termination-log",
		"--s3-ca-file": "/etc/openbao-backup/ca/ca.crt", "--s3-credentials-dir": backupCredentialsDir,
	} {
		got, ok := argValue(args, flag)
		assert.True(t, ok, "flag %s", flag)
		assert.Equal(t, want, got, "flag %s", flag)
	}
	_, pathStyle := argValue(args, "--s3-path-style")
	assert.True(t, pathStyle)
	_, dir := argValue(args, "--dir")
	assert.False(t, dir, "an S3 backup does not mount the snapshot volume")

	var audiences, secrets, configMaps []string
	for _, v := range pod.Volumes {
		switch {
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				audiences = append(audiences, s.ServiceAccountToken.Audience)
			}
		case v.Secret != nil:
			secrets = append(secrets, v.Secret.SecretName)
		case v.ConfigMap != nil:
			configMaps = append(configMaps, v.ConfigMap.Name)
			require.Len(t, v.ConfigMap.Items, 1)
			assert.Equal(t, "bundle.pem", v.ConfigMap.Items[0].Key)
		case v.PersistentVolumeClaim != nil:
			t.Errorf("volume %s mounts a claim", v.Name)
		}
	}
	assert.Equal(t, []string{BackupAudience}, audiences, "only a token the backup role accepts")
	assert.ElementsMatch(t, []string{TLSSecretName(c), "s3-creds"}, secrets)
	assert.Equal(t, []string{"s3-ca"}, configMaps)
}

func TestBackupJobToVolume(t *testing.T) {
	c := testCluster()
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{RequestID: "now"}
	at := time.Date(2026, 11, 30, 6, 0, 5, 0, time.UTC)
	job := BackupJob(c, BackupJobParams{Name: BackupJobName(c, at), Image: "img", TargetPod: c.Name + "-0", Time: at})
	args := job.Spec.Template.Spec.Containers[0].Args
	d, _ := argValue(args, "--dir")
	assert.Equal(t, "/snapshots/backups", d)
	claim, _ := argValue(args, "--claim")
	assert.Equal(t, SnapshotClaimName(c), claim)
	_, s3 := argValue(args, "--s3-endpoint")
	assert.False(t, s3)
	_, keep := argValue(args, "--keep-last")
	assert.False(t, keep, "no retention flags without a retention")
	timeout, _ := argValue(args, "--timeout")
	assert.Equal(t, BackupTimeout.String(), timeout)
}

func TestBackupPolicyOnlyReadsSnapshots(t *testing.T) {
	assert.Equal(t, 1, strings.Count(BackupPolicy, "path "), BackupPolicy)
	assert.Contains(t, BackupPolicy, `path "sys/storage/raft/snapshot" {
  capabilities = ["read"]
}`)
}
