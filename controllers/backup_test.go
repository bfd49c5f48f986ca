package controllers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

func TestBackupDue(t *testing.T) {
	created := time.Date(2026, 11, 30, 7, 30, 0, 0, time.UTC)
	cluster := func(spec openbaov1alpha1.BackupSpec, st openbaov1alpha1.BackupStatus) *openbaov1alpha1.OpenBaoCluster {
		return &openbaov1alpha1.OpenBaoCluster{
			ObjectMeta: metav1.ObjectMeta{Name: "bao", CreationTimestamp: metav1.NewTime(created)},
			Spec:       openbaov1alpha1.OpenBaoClusterSpec{Backup: &spec},
			Status:     openbaov1alpha1.OpenBaoClusterStatus{Backup: &st},
		}
	}
	at := func(h, m int) time.Time { return time.Date(2026, 11, 30, h, m, 0, 0, time.UTC) }
	last := metav1.NewTime(at(12, 0))

	// A new cluster's first scheduled backup is the first time after its creation.
	due, trigger, wait, problem := backupDue(cluster(openbaov1alpha1.BackupSpec{Schedule: "0 */6 * * *"}, openbaov1alpha1.BackupStatus{}), at(11, 0))
	assert.True(t, due.IsZero())
	assert.Empty(t, problem)
	assert.Equal(t, time.Hour, wait)
	due, trigger, _, _ = backupDue(cluster(openbaov1alpha1.BackupSpec{Schedule: "0 */6 * * *"}, openbaov1alpha1.BackupStatus{}), at(12, 1))
	assert.Equal(t, at(12, 0), due)
	assert.Equal(t, openbaov1alpha1.BackupScheduled, trigger)

	// The time last taken is not taken again.
	c := cluster(openbaov1alpha1.BackupSpec{Schedule: "0 */6 * * *"}, openbaov1alpha1.BackupStatus{LastScheduleTime: &last})
	due, _, _, _ = backupDue(c, at(17, 59))
	assert.True(t, due.IsZero())
	assert.Equal(t, at(18, 0), c.Status.Backup.NextScheduleTime.Time.UTC())

	// A new request ID runs now, before the schedule; the handled one does not run again.
	now := at(13, 0).Add(1500 * time.Millisecond)
	due, trigger, _, _ = backupDue(cluster(openbaov1alpha1.BackupSpec{Schedule: "0 */6 * * *", RequestID: "r1"}, openbaov1alpha1.BackupStatus{LastScheduleTime: &last}), now)
	assert.Equal(t, openbaov1alpha1.BackupOnDemand, trigger)
	assert.Equal(t, at(13, 0).Add(time.Second), due, "second precision, as snapshot names carry")
	due, _, _, _ = backupDue(cluster(openbaov1alpha1.BackupSpec{RequestID: "r1"}, openbaov1alpha1.BackupStatus{LastRequestID: "r1"}), now)
	assert.True(t, due.IsZero())

	// A schedule cron refuses is a problem that names the field.
	_, _, _, problem = backupDue(cluster(openbaov1alpha1.BackupSpec{Schedule: "61 * * * *"}, openbaov1alpha1.BackupStatus{}), now)
	assert.Contains(t, problem, "spec.backup.schedule")
}
