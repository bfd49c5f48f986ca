package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/backup"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Backup pacing.
const (
	// requeueBackupRunning looks again at a backup Job; its status changes trigger a
	// reconcile too.
	requeueBackupRunning = 15 * time.Second
	// requeueBackupIdle is the longest wait for the next scheduled time.
	requeueBackupIdle = 5 * time.Minute
)

// reconcileBackup starts the scheduled and requested backups and records their results.
// It never fails the pass: a backup problem is the BackupHealthy condition and a Warning
// event, and never makes the cluster Degraded. One backup runs at a time, and none starts
// while an upgrade is in flight (status.upgrade set) or the cluster is not Available.
func (r *OpenBaoClusterReconciler) reconcileBackup(ctx context.Context, s *scope) ctrl.Result {
	c := s.cluster
	if c.Spec.Backup == nil {
		meta.RemoveStatusCondition(&c.Status.Conditions, openbaov1alpha1.ConditionBackupHealthy)
		return ctrl.Result{}
	}
	if c.Status.Backup == nil {
		c.Status.Backup = &openbaov1alpha1.BackupStatus{}
	}
	st := c.Status.Backup
	if st.Running != nil {
		return r.followBackup(ctx, s)
	}

	now := r.Clock.Now()
	due, trigger, wait, problem := backupDue(c, now)
	if problem != "" {
		r.setBackupCondition(ctx, s, metav1.ConditionFalse, openbaov1alpha1.ReasonBackupInvalid, problem)
		return ctrl.Result{}
	}
	if cond := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionBackupHealthy); cond == nil || cond.Reason == openbaov1alpha1.ReasonBackupInvalid {
		// No backup yet, or the schedule was fixed: nothing has failed since.
		r.setBackupCondition(ctx, s, metav1.ConditionTrue, openbaov1alpha1.ReasonBackupPending, "No backup has run since spec.backup was set.")
	}
	if due.IsZero() {
		return ctrl.Result{RequeueAfter: min(wait, requeueBackupIdle)}
	}
	if c.Status.Upgrade != nil {
		// Documented rule: backups wait while an upgrade is in flight (its own pre-upgrade
		// snapshot covers it); the latest missed time runs once it is over.
		log.FromContext(ctx).V(1).Info("Backup waits for the upgrade in flight", "trigger", trigger)
		return ctrl.Result{RequeueAfter: requeueBackupIdle}
	}
	if l := c.Status.Restore; l != nil {
		// A restore holds the cluster's operation lock: a snapshot taken meanwhile would
		// hold neither the old data nor the restored one for sure.
		log.FromContext(ctx).V(1).Info("Backup waits for the restore in flight", "trigger", trigger, "restore", l.Name)
		return ctrl.Result{RequeueAfter: requeueBackupIdle}
	}
	if !s.available() || c.Status.Leader == "" {
		return ctrl.Result{RequeueAfter: requeueConverging}
	}

	// Intent first: the backup is recorded before its Job exists, so that a restart creates
	// the same Job (its name and its snapshot's name derive from the recorded time).
	at := metav1.NewTime(due)
	st.Running = &openbaov1alpha1.BackupRecord{
		JobName: resources.BackupJobName(c, due), Trigger: trigger, ScheduledTime: at,
		StartTime: ptrTime(metav1.NewTime(now)),
		Message:   fmt.Sprintf("Taking a snapshot of %s for the %s backup of %s.", c.Status.Leader, strings.ToLower(string(trigger)), due.UTC().Format(time.RFC3339)),
	}
	switch trigger {
	case openbaov1alpha1.BackupScheduled:
		st.LastScheduleTime = &at
	case openbaov1alpha1.BackupOnDemand:
		st.LastRequestID = c.Spec.Backup.RequestID
	}
	if err := r.persistStatus(ctx, s); err != nil {
		log.FromContext(ctx).Error(err, "Could not record the backup before starting it")
		return ctrl.Result{RequeueAfter: requeueAfterError}
	}
	return r.followBackup(ctx, s)
}

// backupDue says which backup should start now: an on-demand request first, then the
// latest missed time of the schedule. wait is how long until the next scheduled time;
// problem says why the schedule cannot be used.
func backupDue(c *openbaov1alpha1.OpenBaoCluster, now time.Time) (due time.Time, trigger openbaov1alpha1.BackupTrigger, wait time.Duration, problem string) {
	spec, st := c.Spec.Backup, c.Status.Backup
	wait = requeueBackupIdle
	if spec.Schedule != "" {
		sched, err := backup.ParseSchedule(spec.Schedule)
		if err != nil {
			return time.Time{}, "", 0, err.Error() + ". Fix spec.backup.schedule; no scheduled backup runs until then."
		}
		last := c.CreationTimestamp.Time
		if st.LastScheduleTime != nil {
			last = st.LastScheduleTime.Time
		}
		d, next := sched.Due(last, now)
		st.NextScheduleTime = ptrTime(metav1.NewTime(next))
		wait = max(next.Sub(now), time.Second)
		if !d.IsZero() {
			due, trigger = d, openbaov1alpha1.BackupScheduled
		}
	} else {
		st.NextScheduleTime = nil
	}
	if spec.RequestID != "" && spec.RequestID != st.LastRequestID {
		// Second precision: snapshot names carry seconds.
		due, trigger = now.UTC().Truncate(time.Second), openbaov1alpha1.BackupOnDemand
	}
	return due, trigger, wait, ""
}

// followBackup creates the running backup's Job if it does not exist, and records its
// result once it finished.
func (r *OpenBaoClusterReconciler) followBackup(ctx context.Context, s *scope) ctrl.Result {
	c := s.cluster
	st := c.Status.Backup
	run := st.Running
	job := &batchv1.Job{}
	err := r.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: run.JobName}, job)
	if apierrors.IsNotFound(err) {
		if err := r.createBackupJob(ctx, s); err != nil {
			r.setBackupCondition(ctx, s, metav1.ConditionFalse, openbaov1alpha1.ReasonBackupFailed,
				fmt.Sprintf("Could not create the backup Job %s, retrying: %v", run.JobName, err))
			return ctrl.Result{RequeueAfter: requeueAfterError}
		}
		return ctrl.Result{RequeueAfter: requeueBackupRunning}
	}
	if err != nil {
		log.FromContext(ctx).Error(err, "Could not read the backup Job", "job", run.JobName)
		return ctrl.Result{RequeueAfter: requeueAfterError}
	}
	succeeded, failed := upgrade.JobFinished(job)
	if !succeeded && !failed {
		return ctrl.Result{RequeueAfter: requeueBackupRunning}
	}
	res, msgErr := r.backupResult(ctx, job, succeeded)
	rec := *run
	rec.CompletionTime = ptrTime(metav1.NewTime(r.Clock.Now()))
	rec.Location, rec.Endpoint, rec.Size, rec.SHA256, rec.Deleted = res.Location, res.Endpoint, res.Size, res.SHA256, res.Deleted
	if succeeded && res.Location != "" && res.SHA256 != "" {
		rec.Message = fmt.Sprintf("Saved %d bytes to %s.", res.Size, res.Location)
		if len(res.Deleted) > 0 {
			rec.Message += fmt.Sprintf(" Retention deleted %d older backups.", len(res.Deleted))
		}
		if res.RetentionError != "" {
			rec.Message += " Retention did not finish and runs again after the next backup: " + res.RetentionError
		}
		st.LastSuccessful, st.Running = &rec, nil
		r.setBackupCondition(ctx, s, metav1.ConditionTrue, openbaov1alpha1.ReasonBackupSucceeded,
			fmt.Sprintf("The last backup (%s) saved %s.", rec.JobName, rec.Location))
		if err := r.persistStatus(ctx, s); err != nil {
			return ctrl.Result{RequeueAfter: requeueAfterError}
		}
		r.backupEvent(c, corev1.EventTypeNormal, openbaov1alpha1.ReasonBackupSucceeded, rec.Message)
		return ctrl.Result{RequeueAfter: requeueBackupIdle}
	}
	why := res.Error
	switch {
	case why == "" && msgErr != nil:
		why = msgErr.Error()
	case why == "" && succeeded:
		why = "the Job completed without reporting a snapshot location and checksum"
	case why == "":
		why = "the Job failed without a message"
	}
	rec.Message = fmt.Sprintf("Backup Job %s failed: %s. See `kubectl logs -n %s job/%s`.", rec.JobName, why, c.Namespace, rec.JobName)
	if strings.Contains(why, "permission denied") || strings.Contains(why, "role") {
		rec.Message += " Clusters initialized by an operator release without backups have no " + resources.DefaultBackupRole + " JWT role: see the README's Backups section."
	}
	st.LastFailed, st.Running = &rec, nil
	r.setBackupCondition(ctx, s, metav1.ConditionFalse, openbaov1alpha1.ReasonBackupFailed, rec.Message)
	if err := r.persistStatus(ctx, s); err != nil {
		return ctrl.Result{RequeueAfter: requeueAfterError}
	}
	r.backupEvent(c, corev1.EventTypeWarning, openbaov1alpha1.ReasonBackupFailed, rec.Message)
	return ctrl.Result{RequeueAfter: requeueBackupIdle}
}

func (r *OpenBaoClusterReconciler) createBackupJob(ctx context.Context, s *scope) error {
	c := s.cluster
	run := c.Status.Backup.Running
	if c.Spec.Backup.Target.S3 == nil {
		if err := upgrade.CreateOwnedOrExisting(ctx, r.Client, nil, resources.SnapshotClaim(c)); err != nil {
			return fmt.Errorf("create the snapshot volume: %w", err)
		}
	}
	image := c.Spec.Upgrade.ExecutorImage
	if image == "" {
		image = r.Options.OperatorImage
	}
	leader := c.Status.Leader
	if leader == "" {
		return fmt.Errorf("no active node to take the snapshot from")
	}
	job := resources.BackupJob(c, resources.BackupJobParams{
		Name: run.JobName, Image: image, TargetPod: leader, Time: run.ScheduledTime.Time, Platform: r.Options.Platform,
	})
	if err := upgrade.CreateOwnedOrExisting(ctx, r.Client, c, job); err != nil {
		return err
	}
	log.FromContext(ctx).Info("Backup Job created", "job", job.Name, "trigger", run.Trigger)
	return nil
}

// backupResult reads the executor's result from the termination message of the Job's
// newest pod that ended the way the Job did.
func (r *OpenBaoClusterReconciler) backupResult(ctx context.Context, job *batchv1.Job, succeeded bool) (backup.Result, error) {
	var res backup.Result
	msg, err := jobTerminationMessage(ctx, r, job, succeeded)
	if err != nil {
		return res, err
	}
	if err := json.Unmarshal([]byte(msg), &res); err != nil {
		return res, fmt.Errorf("the Job's result is not readable (%v): %q", err, truncate(msg, 200))
	}
	return res, nil
}

// errNoFinishedPod: no pod of the Job that ended the way the Job did is left to read.
var errNoFinishedPod = errors.New("no finished pod of the Job is left to report the result")

// jobTerminationMessage is the termination message of the Job's newest pod that ended the way
// the Job did.
func jobTerminationMessage(ctx context.Context, r client.Reader, job *batchv1.Job, succeeded bool) (string, error) {
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods, client.InNamespace(job.Namespace), client.MatchingLabels{batchv1.JobNameLabel: job.Name}); err != nil {
		return "", fmt.Errorf("list the Job's pods: %w", err)
	}
	var newest *corev1.ContainerStateTerminated
	for i := range pods.Items {
		for _, cs := range pods.Items[i].Status.ContainerStatuses {
			t := cs.State.Terminated
			if t == nil || (t.ExitCode == 0) != succeeded {
				continue
			}
			if newest == nil || t.FinishedAt.After(newest.FinishedAt.Time) {
				newest = t
			}
		}
	}
	if newest == nil {
		return "", errNoFinishedPod
	}
	return newest.Message, nil
}

func (r *OpenBaoClusterReconciler) setBackupCondition(ctx context.Context, s *scope, status metav1.ConditionStatus, reason, msg string) {
	c := s.cluster
	before := meta.FindStatusCondition(c.Status.Conditions, openbaov1alpha1.ConditionBackupHealthy)
	changed := before == nil || before.Status != status || before.Reason != reason
	meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{
		Type: openbaov1alpha1.ConditionBackupHealthy, Status: status, Reason: reason, Message: msg, ObservedGeneration: c.Generation,
	})
	if changed && reason == openbaov1alpha1.ReasonBackupInvalid {
		r.backupEvent(c, corev1.EventTypeWarning, reason, msg)
	}
	log.FromContext(ctx).V(1).Info("Backup condition", "reason", reason, "message", msg)
}

func (r *OpenBaoClusterReconciler) backupEvent(c *openbaov1alpha1.OpenBaoCluster, eventType, reason, msg string) {
	if r.Recorder != nil {
		r.Recorder.Eventf(c, nil, eventType, reason, "Backup", "%s", msg)
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
