package envtest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// TestBackupSpecValidation checks that the API server refuses a bad spec.backup with the
// rule's own message, and takes good ones.
func TestBackupSpecValidation(t *testing.T) {
	h := newHarness(t)
	s3 := func() *openbaov1alpha1.S3Target {
		return &openbaov1alpha1.S3Target{Endpoint: "https://s3.example.com:9000", Bucket: "backups", CredentialsSecret: "s3-creds"}
	}
	bad := []struct {
		name string
		spec openbaov1alpha1.BackupSpec
		want string
	}{
		{"neither schedule nor request", openbaov1alpha1.BackupSpec{}, "backup needs a schedule"},
		{"four-field cron", openbaov1alpha1.BackupSpec{Schedule: "0 */6 * *"}, "schedule must be a cron expression with five fields"},
		{"six-field cron", openbaov1alpha1.BackupSpec{Schedule: "0 0 */6 * * *"}, "schedule must be a cron expression with five fields"},
		{"@every", openbaov1alpha1.BackupSpec{Schedule: "@every 1h"}, "schedule must be a cron expression with five fields"},
		{"prose", openbaov1alpha1.BackupSpec{Schedule: "every six hours"}, "schedule must be a cron expression with five fields"},
		{"s3 without bucket", openbaov1alpha1.BackupSpec{Schedule: "@daily", Target: openbaov1alpha1.BackupTarget{S3: func() *openbaov1alpha1.S3Target {
			t := s3()
			t.Bucket = ""
			return t
		}()}}, "s3.bucket is required"},
		{"s3 without credentials", openbaov1alpha1.BackupSpec{Schedule: "@daily", Target: openbaov1alpha1.BackupTarget{S3: func() *openbaov1alpha1.S3Target {
			t := s3()
			t.CredentialsSecret = ""
			return t
		}()}}, "s3.credentialsSecret is required"},
		{"s3 endpoint with a path", openbaov1alpha1.BackupSpec{Schedule: "@daily", Target: openbaov1alpha1.BackupTarget{S3: func() *openbaov1alpha1.S3Target {
			t := s3()
			t.Endpoint = "https://s3.example.com/backups"
			return t
		}()}}, "endpoint must be an http(s) URL without a path"},
		{"CA from both a Secret and a ConfigMap", openbaov1alpha1.BackupSpec{Schedule: "@daily", Target: openbaov1alpha1.BackupTarget{S3: func() *openbaov1alpha1.S3Target {
			t := s3()
			t.CABundle = &openbaov1alpha1.CABundleSource{SecretName: "a", ConfigMapName: "b"}
			return t
		}()}}, "caBundle names either a secretName or a configMapName"},
		{"zero keepLast", openbaov1alpha1.BackupSpec{Schedule: "@daily", Retention: openbaov1alpha1.BackupRetention{KeepLast: ptr.To[int32](0)}}, "keepLast"},
		{"negative maxAge", openbaov1alpha1.BackupSpec{Schedule: "@daily", Retention: openbaov1alpha1.BackupRetention{MaxAge: &metav1.Duration{Duration: -1}}}, "maxAge must be a positive duration"},
		{"request ID with spaces", openbaov1alpha1.BackupSpec{RequestID: "now please"}, "requestID"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(h.namespace, "bad-backup")
			c.Spec.Backup = &tc.spec
			err := h.client.Create(t.Context(), c)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked", "one clear message")
		})
	}

	good := []openbaov1alpha1.BackupSpec{
		{Schedule: "0 */6 * * *"},
		{Schedule: "@daily", Retention: openbaov1alpha1.BackupRetention{KeepLast: ptr.To[int32](7), MaxAge: &metav1.Duration{Duration: 1}}},
		{RequestID: "2026-11-30T17:00"},
		{Schedule: "*/15 2-4 * * MON-FRI", Target: openbaov1alpha1.BackupTarget{S3: func() *openbaov1alpha1.S3Target {
			t := s3()
			t.Prefix, t.Region, t.PathStyle = "openbao/", "eu-west-1", true
			t.CABundle = &openbaov1alpha1.CABundleSource{ConfigMapName: "s3-ca"}
			return t
		}()}},
	}
	for i, spec := range good {
		c := newCluster(h.namespace, "good-backup")
		c.Name = c.Name + "-" + string(rune('a'+i))
		c.Spec.Backup = &spec
		require.NoError(t, h.client.Create(t.Context(), c), "spec.backup %+v", spec)
	}
}

// TestBackupSpecRawInput sends what the typed client cannot: explicit empty strings.
func TestBackupSpecRawInput(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "raw-backup")
	require.NoError(t, h.client.Create(t.Context(), c))
	cases := []struct{ name, patch, want string }{
		{"empty bucket", `{"spec":{"backup":{"schedule":"@daily","target":{"s3":{"endpoint":"https://s3:9000","bucket":"","credentialsSecret":"c"}}}}}`, "s3.bucket is required"},
		{"empty credentials", `{"spec":{"backup":{"schedule":"@daily","target":{"s3":{"endpoint":"https://s3:9000","bucket":"b","credentialsSecret":""}}}}}`, "s3.credentialsSecret is required"},
		{"empty schedule", `{"spec":{"backup":{"schedule":""}}}`, "schedule must be a cron expression"},
		{"zero timeout", `{"spec":{"backup":{"schedule":"@daily","timeout":"0s"}}}`, "timeout must be a positive duration"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := h.client.Patch(t.Context(), c.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(tc.patch)))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "some validation rules were not checked")
		})
	}
}

// TestBadScheduleIsAConditionNotDegraded: a schedule the schema admits but cron rejects
// (minute 61) makes BackupHealthy False with the parser's reason; the cluster is not
// Degraded.
func TestBadScheduleIsAConditionNotDegraded(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "bad-schedule")
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{Schedule: "61 * * * *"}
	require.NoError(t, h.client.Create(t.Context(), c))
	h.converge(c.Name)
	got := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, h.get(c.Name, got))
	cond := findCondition(got, openbaov1alpha1.ConditionBackupHealthy)
	require.NotNil(t, cond, "BackupHealthy condition")
	assert.Equal(t, metav1.ConditionFalse, cond.Status)
	assert.Equal(t, openbaov1alpha1.ReasonBackupInvalid, cond.Reason)
	assert.Contains(t, cond.Message, `spec.backup.schedule "61 * * * *" is not a valid cron expression`)
	degraded := findCondition(got, openbaov1alpha1.ConditionDegraded)
	require.NotNil(t, degraded)
	assert.Equal(t, metav1.ConditionFalse, degraded.Status, "a backup problem never makes the cluster Degraded")
}

func findCondition(c *openbaov1alpha1.OpenBaoCluster, t string) *metav1.Condition {
	return meta.FindStatusCondition(c.Status.Conditions, t)
}

// TestFixedScheduleClearsTheCondition: once the schedule is fixed, BackupHealthy is True
// again (nothing has failed).
func TestFixedScheduleClearsTheCondition(t *testing.T) {
	h := newHarness(t)
	c := newCluster(h.namespace, "fixed-schedule")
	c.Spec.Backup = &openbaov1alpha1.BackupSpec{Schedule: "0 25 * * *"}
	require.NoError(t, h.client.Create(t.Context(), c))
	h.converge(c.Name)
	got := &openbaov1alpha1.OpenBaoCluster{}
	require.NoError(t, h.get(c.Name, got))
	require.Equal(t, openbaov1alpha1.ReasonBackupInvalid, findCondition(got, openbaov1alpha1.ConditionBackupHealthy).Reason)

	got.Spec.Backup.Schedule = "0 5 * * *"
	require.NoError(t, h.client.Update(t.Context(), got))
	h.converge(c.Name)
	require.NoError(t, h.get(c.Name, got))
	cond := findCondition(got, openbaov1alpha1.ConditionBackupHealthy)
	assert.Equal(t, metav1.ConditionTrue, cond.Status)
	assert.Equal(t, openbaov1alpha1.ReasonBackupPending, cond.Reason)
	require.NotNil(t, got.Status.Backup)
	require.NotNil(t, got.Status.Backup.NextScheduleTime, "the next time of the schedule is shown")
	assert.Equal(t, 5, got.Status.Backup.NextScheduleTime.UTC().Hour())
	assert.Nil(t, got.Status.Backup.Running, "no backup starts on a cluster that is not Available")
}
