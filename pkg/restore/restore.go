// Package restore decides, one step per pass, how an OpenBaoRestore proceeds: the refusals,
// the cluster's operation lock, the restore Job, the restart of every server one at a time
// (the active one last) and the final check that every server serves the restored data.
// Plan is pure: it reads the restore's persisted status and what the controller observed,
// records its decision (intent) in the restore's status and returns the one side effect the
// controller must apply after writing that status. A restarted operator plans again from the
// status and the live objects and never repeats a step that was done.
package restore

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Result is what the restore Job reports as JSON in its termination message. Refused means
// the executor changed nothing (Reason: ChecksumMismatch, SealKeyMismatch,
// IncompleteSnapshot or NotFound).
type Result struct {
	Location string `json:"location"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	Forced   bool   `json:"forced"`
	Refused  bool   `json:"refused"`
	Reason   string `json:"reason"`
	Message  string `json:"message"`
}

// State is what a restore plans from: the restore with its persisted status, and what the
// controller observed of its cluster in this pass.
type State struct {
	Restore *openbaov1alpha1.OpenBaoRestore
	// Cluster is nil when it does not exist.
	Cluster *openbaov1alpha1.OpenBaoCluster
	// Pods are the cluster's server pods, by name.
	Pods map[string]*corev1.Pod
	// Job is the restore Job, nil when it does not exist; JobResult its result once it
	// finished (nil when none could be read, JobResultError says why).
	Job            *batchv1.Job
	JobResult      *Result
	JobResultError string
	// StepDownJob is the Job of status.stepDownJob, nil when it does not exist.
	StepDownJob *batchv1.Job
	// Servers, Leader and Raft are what the servers said (Restarting and Verifying only).
	Servers map[string]upgrade.ServerState
	Leader  string
	Raft    *upgrade.RaftState
	Now     time.Time
}

// Kind is the side effect a step asks for.
type Kind string

const (
	// Idle: the restore is over; nothing to do.
	Idle Kind = "Idle"
	// Wait: nothing to do in this pass; look again later.
	Wait Kind = "Wait"
	// Record: write the status (progress), no other side effect.
	Record Kind = "Record"
	// TakeLock: write status.restore on the cluster, then the restore's status.
	TakeLock Kind = "TakeLock"
	// CreateJob: create the restore Job against Step.Pod (the active node).
	CreateJob Kind = "CreateJob"
	// CreateStepDownJob: create the step-down Job of Step.Pod.
	CreateStepDownJob Kind = "CreateStepDownJob"
	// DeletePod: delete Step.Pod (the UID recorded in status.currentPodUID).
	DeletePod Kind = "DeletePod"
	// Finish: the restore is over (Succeeded, Failed or Refused): write its status, then
	// release the cluster's lock if it holds it.
	Finish Kind = "Finish"
)

// Step is one decision.
type Step struct {
	Kind Kind
	Pod  string
	// EventType, Reason and Message are the event to emit after the status write (none when
	// Reason is empty).
	EventType, Reason, Message string
}

// Plan decides the next step and records it in s.Restore.Status.
func Plan(s *State) Step {
	r := s.Restore
	st := &r.Status
	if st.Phase.Done() {
		return Step{Kind: Idle}
	}
	c := s.Cluster
	if c == nil {
		if holdsLockPhase(st.Phase) {
			return finish(s, openbaov1alpha1.RestoreFailed, openbaov1alpha1.ReasonRestoreFailed,
				fmt.Sprintf("The OpenBaoCluster %s was deleted during the restore (phase %s).", r.Spec.Cluster.Name, st.Phase))
		}
		return refuse(s, openbaov1alpha1.ReasonRestoreClusterNotFound,
			fmt.Sprintf("The OpenBaoCluster %s does not exist in namespace %s. Nothing was changed; create a new OpenBaoRestore naming an existing cluster.", r.Spec.Cluster.Name, r.Namespace))
	}
	if !holdsLock(c, r) {
		return planStart(s)
	}
	if c.Spec.Paused {
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreWaiting,
			fmt.Sprintf("The cluster %s is paused (spec.paused): the restore waits in phase %s and goes on when it is unpaused. The README describes the manual restore while paused.", c.Name, phaseOrValidating(st.Phase)))
	}
	switch st.Phase {
	case openbaov1alpha1.RestoreRestarting:
		return planRestart(s)
	case openbaov1alpha1.RestoreVerifying:
		return planVerify(s)
	default:
		return planJob(s)
	}
}

// planStart checks, before anything changes, whether the restore may start; then takes the
// cluster's operation lock.
func planStart(s *State) Step {
	r, c := s.Restore, s.Cluster
	st := &r.Status
	if holdsLockPhase(st.Phase) {
		// The lock was released under a running restore (someone edited the status): stop
		// before another side effect.
		return finish(s, openbaov1alpha1.RestoreFailed, openbaov1alpha1.ReasonRestoreFailed,
			fmt.Sprintf("The cluster's operation lock (status.restore) no longer names this restore, in phase %s; nothing more is done. Check the cluster and create a new OpenBaoRestore if needed.", st.Phase))
	}
	if l := c.Status.Restore; l != nil {
		return refuse(s, openbaov1alpha1.ReasonRestoreAnotherRestore,
			fmt.Sprintf("The OpenBaoRestore %s is restoring the cluster %s. Nothing was changed; create a new OpenBaoRestore once it is over.", l.Name, c.Name))
	}
	if u := c.Status.Upgrade; u != nil {
		return refuse(s, openbaov1alpha1.ReasonRestoreUpgradeInProgress,
			fmt.Sprintf("An upgrade of the cluster %s from %s to %s is in flight. Nothing was changed; create a new OpenBaoRestore once it is over (status.upgrade is empty).", c.Name, u.FromVersion, u.ToVersion))
	}
	if sd := c.Status.ScaleDown; sd != nil {
		return refuse(s, openbaov1alpha1.ReasonRestoreScaleDownInProgress,
			fmt.Sprintf("The cluster %s is scaling down from %d to %d servers. Nothing was changed; create a new OpenBaoRestore once it is over.", c.Name, sd.FromReplicas, sd.ToReplicas))
	}
	if !c.Status.Initialized {
		return refuse(s, openbaov1alpha1.ReasonRestoreClusterNotReady,
			fmt.Sprintf("The cluster %s is not initialized yet: a snapshot is installed through its active server. Nothing was changed; create a new OpenBaoRestore once it is Available.", c.Name))
	}
	src, problem := ResolveSource(r, c)
	if problem != "" {
		return refuse(s, openbaov1alpha1.ReasonRestoreUnknownSource, problem+" Nothing was changed.")
	}
	if c.Spec.Paused {
		return wait(s, openbaov1alpha1.RestorePending, openbaov1alpha1.ReasonRestoreWaiting,
			fmt.Sprintf("The cluster %s is paused (spec.paused): the restore starts when it is unpaused. The README describes the manual restore while paused.", c.Name))
	}
	if b := c.Status.Backup; b != nil && b.Running != nil {
		return wait(s, openbaov1alpha1.RestorePending, openbaov1alpha1.ReasonRestoreWaiting,
			fmt.Sprintf("The backup %s of the cluster %s is running; the restore starts after it.", b.Running.JobName, c.Name))
	}
	if c.Status.Leader == "" {
		return wait(s, openbaov1alpha1.RestorePending, openbaov1alpha1.ReasonRestoreWaiting,
			fmt.Sprintf("The cluster %s has no active server; the restore starts when it has one.", c.Name))
	}
	st.Phase = openbaov1alpha1.RestoreValidating
	st.Location, st.ExpectedSHA256 = src.Location, src.SHA256
	if src.S3 != nil {
		st.Endpoint = strings.TrimSuffix(src.S3.Endpoint, "/")
	}
	st.JobName = resources.RestoreJobName(c, r)
	now := metav1.NewTime(s.Now)
	st.StartTime = &now
	msg := fmt.Sprintf("Restoring %s into the cluster %s: the cluster's operation lock is taken (no upgrade, backup or scale-down starts meanwhile).", src.Location, c.Name)
	setProgress(s, msg)
	return Step{Kind: TakeLock, EventType: corev1.EventTypeNormal, Reason: "RestoreStarted", Message: msg}
}

// planJob runs the restore Job and reads its result.
func planJob(s *State) Step {
	r, c := s.Restore, s.Cluster
	st := &r.Status
	if st.JobName == "" {
		st.JobName = resources.RestoreJobName(c, r)
	}
	if s.Job == nil {
		leader := c.Status.Leader
		if leader == "" {
			return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress,
				fmt.Sprintf("The restore Job %s waits for the cluster %s to have an active server.", st.JobName, c.Name))
		}
		st.Phase = openbaov1alpha1.RestoreRestoring
		msg := fmt.Sprintf("The restore Job %s checks the snapshot's checksum and that the cluster's seal key decrypts it, then installs it through the active server %s.", st.JobName, leader)
		setProgress(s, msg)
		return Step{Kind: CreateJob, Pod: leader, EventType: corev1.EventTypeNormal, Reason: "JobCreated", Message: fmt.Sprintf("Restore Job %s created against %s.", st.JobName, leader)}
	}
	succeeded, failed := upgrade.JobFinished(s.Job)
	if !succeeded && !failed {
		if st.Phase != openbaov1alpha1.RestoreRestoring {
			st.Phase = openbaov1alpha1.RestoreRestoring
			setProgress(s, fmt.Sprintf("The restore Job %s runs.", st.JobName))
			return Step{Kind: Record}
		}
		return Step{Kind: Wait}
	}
	res := s.JobResult
	if res != nil && res.Refused {
		reason := refusalReason(res.Reason)
		return refuse(s, reason, fmt.Sprintf("The restore Job %s refused the snapshot %s (%s): %s. Nothing was changed.", st.JobName, st.Location, res.Reason, res.Message))
	}
	if succeeded && res != nil && res.SHA256 != "" {
		st.Size, st.SHA256, st.Forced = res.Size, res.SHA256, res.Forced
		if res.Location != "" {
			st.Location = res.Location
		}
		st.Phase = openbaov1alpha1.RestoreRestarting
		msg := fmt.Sprintf("The snapshot %s (%d bytes, sha256 %s) is installed; restarting every server one at a time, the active one last, so that none serves its state from before the restore.", st.Location, st.Size, st.SHA256)
		setProgress(s, msg)
		return Step{Kind: Record, EventType: corev1.EventTypeNormal, Reason: "SnapshotInstalled", Message: msg}
	}
	why := "the Job failed without a result"
	switch {
	case res != nil && res.Message != "":
		why = res.Message
	case s.JobResultError != "":
		why = s.JobResultError
	case succeeded:
		why = "the Job completed without reporting the snapshot's checksum"
	}
	return finish(s, openbaov1alpha1.RestoreFailed, openbaov1alpha1.ReasonRestoreFailed,
		fmt.Sprintf("The restore Job %s failed: %s. The snapshot may or may not have been installed: check the data (`kubectl logs -n %s job/%s`) and create a new OpenBaoRestore to try again; the servers were not restarted.", st.JobName, why, r.Namespace, st.JobName))
}

// planRestart restarts the servers one at a time: followers first, highest ordinal first,
// the active server last after a step-down; each must be back (ready, unsealed, a voter,
// caught up) before the next one goes, and none goes while another is not ready, so a
// quorum always serves.
func planRestart(s *State) Step {
	r, c := s.Restore, s.Cluster
	st := &r.Status
	if st.CurrentPod != "" {
		return planCurrentPod(s)
	}
	names := ServerPods(c)
	var remaining []string
	for _, n := range names {
		if !slices.Contains(st.RestartedPods, n) {
			remaining = append(remaining, n)
		}
	}
	if len(remaining) == 0 {
		st.Phase, st.CatchUpIndex = openbaov1alpha1.RestoreVerifying, 0
		setProgress(s, "Every server was restarted; checking that each is unsealed, ready, a Raft voter and caught up.")
		return Step{Kind: Record}
	}
	for _, n := range names {
		if why := serverBack(s, n, 0); why != "" {
			return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress,
				fmt.Sprintf("Waiting before the next restart (%d of %d done): %s", len(st.RestartedPods), len(names), why))
		}
	}
	// Highest ordinal first; the active server last.
	sort.Slice(remaining, func(i, j int) bool { return ordinal(remaining[i]) > ordinal(remaining[j]) })
	next := remaining[0]
	for _, n := range remaining {
		if n != s.Leader {
			next = n
			break
		}
	}
	st.CurrentPod, st.CurrentPodUID, st.StepDownJob, st.CatchUpIndex = next, "", "", 0
	if next == s.Leader && len(names) > 1 {
		st.StepDownJob = resources.RestoreStepDownJobName(c, r, next)
		setProgress(s, fmt.Sprintf("Restarting the active server %s (%d of %d done): its leadership moves away first (Job %s).", next, len(st.RestartedPods), len(names), st.StepDownJob))
	} else {
		setProgress(s, fmt.Sprintf("Restarting %s (%d of %d done).", next, len(st.RestartedPods), len(names)))
	}
	return Step{Kind: Record}
}

// planCurrentPod carries status.currentPod through step-down, deletion and return.
func planCurrentPod(s *State) Step {
	st := &s.Restore.Status
	name := st.CurrentPod
	pod := s.Pods[name]
	if st.CurrentPodUID == "" {
		if st.StepDownJob != "" && s.Leader == name {
			if s.StepDownJob == nil {
				return Step{Kind: CreateStepDownJob, Pod: name, EventType: corev1.EventTypeNormal, Reason: "JobCreated",
					Message: fmt.Sprintf("Step-down Job %s created: leadership moves away from %s before its restart.", st.StepDownJob, name)}
			}
			succeeded, failed := upgrade.JobFinished(s.StepDownJob)
			if !failed {
				why := "the step-down Job runs"
				if succeeded {
					why = "the step-down Job finished; waiting for another server to be active"
				}
				return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Restarting the active server %s: %s.", name, why))
			}
			// A step-down that failed (for instance a snapshot of another cluster whose
			// upgrade role names another service account) leaves the graceful stop:
			// OpenBao hands leadership over when its active server receives SIGTERM.
		}
		if pod == nil {
			return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Waiting for the pod %s to exist before restarting it.", name))
		}
		st.CurrentPodUID = string(pod.UID)
		msg := fmt.Sprintf("Deleting %s so that it restarts on the restored data.", name)
		setProgress(s, msg)
		return Step{Kind: DeletePod, Pod: name, EventType: corev1.EventTypeNormal, Reason: "ServerRestarting", Message: msg}
	}
	if pod != nil && string(pod.UID) == st.CurrentPodUID {
		if pod.DeletionTimestamp == nil {
			// Recorded but not deleted yet (the operator stopped in between): delete it.
			return Step{Kind: DeletePod, Pod: name}
		}
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Waiting for %s to stop.", name))
	}
	if pod == nil {
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Waiting for %s to be re-created.", name))
	}
	if why := serverBack(s, name, -1); why != "" {
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Waiting for the restarted %s: %s", name, why))
	}
	if st.CatchUpIndex == 0 && s.Raft != nil {
		st.CatchUpIndex = int64(s.Raft.LeaderCommittedIndex)
		setProgress(s, fmt.Sprintf("%s is back; waiting until it has applied Raft index %d.", name, st.CatchUpIndex))
		return Step{Kind: Record}
	}
	if why := serverBack(s, name, st.CatchUpIndex); why != "" {
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, fmt.Sprintf("Waiting for the restarted %s: %s", name, why))
	}
	st.RestartedPods = append(st.RestartedPods, name)
	st.CurrentPod, st.CurrentPodUID, st.StepDownJob, st.CatchUpIndex = "", "", "", 0
	msg := fmt.Sprintf("%s restarted on the restored data and caught up (%d of %d).", name, len(st.RestartedPods), len(ServerPods(s.Cluster)))
	setProgress(s, msg)
	return Step{Kind: Record, EventType: corev1.EventTypeNormal, Reason: "ServerRestarted", Message: msg}
}

// planVerify checks that every server is unsealed, ready, a Raft voter and has applied the
// active server's committed index of the moment verification started.
func planVerify(s *State) Step {
	st := &s.Restore.Status
	names := ServerPods(s.Cluster)
	for _, n := range names {
		if why := serverBack(s, n, -1); why != "" {
			return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, "Verifying: "+why)
		}
	}
	if s.Leader == "" || s.Raft == nil {
		return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, "Verifying: waiting for an active server and its Raft state.")
	}
	if st.CatchUpIndex == 0 {
		st.CatchUpIndex = int64(s.Raft.LeaderCommittedIndex)
		setProgress(s, fmt.Sprintf("Verifying: every server must apply Raft index %d.", st.CatchUpIndex))
		return Step{Kind: Record}
	}
	for _, n := range names {
		if why := serverBack(s, n, st.CatchUpIndex); why != "" {
			return wait(s, st.Phase, openbaov1alpha1.ReasonRestoreInProgress, "Verifying: "+why)
		}
	}
	return finish(s, openbaov1alpha1.RestoreSucceeded, openbaov1alpha1.ReasonRestoreSucceeded,
		fmt.Sprintf("Restored %s into the cluster %s: every server (%s) was restarted and serves the snapshot's data, caught up to Raft index %d.", st.Location, s.Cluster.Name, strings.Join(st.RestartedPods, ", "), st.CatchUpIndex))
}

// serverBack says why a server is not serving as a caught-up voter, or "". minIndex < 0
// skips the index; 0 checks only that it is a voter when the Raft state is known.
func serverBack(s *State, name string, minIndex int64) string {
	pod := s.Pods[name]
	if pod == nil {
		return fmt.Sprintf("%s does not exist", name)
	}
	if !upgrade.PodReady(pod) {
		return fmt.Sprintf("%s is not ready", name)
	}
	srv, ok := s.Servers[name]
	if !ok || !srv.Serving() {
		return fmt.Sprintf("%s is not unsealed and serving", name)
	}
	if minIndex < 0 {
		if s.Raft == nil {
			return "the Raft configuration could not be read"
		}
		if !s.Raft.Voters[name] {
			return fmt.Sprintf("%s is not a Raft voter", name)
		}
		return ""
	}
	if minIndex > 0 && srv.AppliedIndex < uint64(minIndex) {
		return fmt.Sprintf("%s has applied Raft index %d of %d", name, srv.AppliedIndex, minIndex)
	}
	return ""
}

// ResolveSource turns spec.source into a location, an expected checksum and S3 settings,
// or says why it cannot.
func ResolveSource(r *openbaov1alpha1.OpenBaoRestore, c *openbaov1alpha1.OpenBaoCluster) (resources.RestoreSource, string) {
	src := r.Spec.Source
	var out resources.RestoreSource
	var target *openbaov1alpha1.S3Target
	if c.Spec.Backup != nil {
		target = c.Spec.Backup.Target.S3
	}
	switch {
	case src.Backup != "":
		var last *openbaov1alpha1.BackupRecord
		if c.Status.Backup != nil {
			last = c.Status.Backup.LastSuccessful
		}
		if last == nil || last.Location == "" {
			return out, fmt.Sprintf("spec.source.backup %q: the cluster %s has recorded no successful backup (status.backup.lastSuccessful). Name the snapshot with spec.source.location.", src.Backup, c.Name)
		}
		if src.Backup != "latest" && src.Backup != last.Location {
			return out, fmt.Sprintf("spec.source.backup %q is not the backup the cluster %s records (status.backup.lastSuccessful is %s). Use latest, or name an older snapshot with spec.source.location.", src.Backup, c.Name, last.Location)
		}
		out.Location, out.SHA256 = last.Location, last.SHA256
		if src.SHA256 != "" && last.SHA256 != "" && src.SHA256 != last.SHA256 {
			return out, fmt.Sprintf("spec.source.sha256 %s differs from the checksum %s the backup %s was recorded with.", src.SHA256, last.SHA256, last.Location)
		}
	case src.Location != "":
		out.Location, out.SHA256 = src.Location, src.SHA256
	default:
		return out, "spec.source names no snapshot."
	}
	if strings.HasPrefix(out.Location, "s3://") {
		out.S3 = src.S3.S3Target()
		if out.S3 == nil {
			out.S3 = target
		}
		if out.S3 == nil {
			return out, fmt.Sprintf("The snapshot %s is in object storage, but neither spec.source.s3 nor the cluster's spec.backup.target.s3 says how to reach it (endpoint, credentials).", out.Location)
		}
		if _, key, _ := strings.Cut(strings.TrimPrefix(out.Location, "s3://"), "/"); key == "" {
			return out, fmt.Sprintf("The location %s names no object.", out.Location)
		}
	} else if _, _, ok := resources.ParsePVCLocation(out.Location); !ok {
		return out, fmt.Sprintf("The location %q is neither s3://<bucket>/<key> nor pvc://<claim>/<path>.", out.Location)
	}
	return out, ""
}

// ServerPods are the names of the cluster's servers, in ordinal order.
func ServerPods(c *openbaov1alpha1.OpenBaoCluster) []string {
	sts := resources.ActiveStatefulSet(c)
	n := int(c.Spec.ReplicaCount())
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, resources.PodName(sts, i))
	}
	return out
}

func holdsLock(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) bool {
	return c != nil && c.Status.Restore != nil && c.Status.Restore.UID == string(r.UID)
}

// HoldsLock says whether the cluster's operation lock names r.
func HoldsLock(c *openbaov1alpha1.OpenBaoCluster, r *openbaov1alpha1.OpenBaoRestore) bool {
	return holdsLock(c, r)
}

// holdsLockPhase: phases that are only reached with the lock taken.
func holdsLockPhase(p openbaov1alpha1.RestorePhase) bool {
	switch p {
	case openbaov1alpha1.RestoreRestoring, openbaov1alpha1.RestoreRestarting, openbaov1alpha1.RestoreVerifying:
		return true
	}
	return false
}

func phaseOrValidating(p openbaov1alpha1.RestorePhase) openbaov1alpha1.RestorePhase {
	if p == "" || p == openbaov1alpha1.RestorePending {
		return openbaov1alpha1.RestoreValidating
	}
	return p
}

// conditionReason matches what the API server takes as a condition's reason.
var conditionReason = regexp.MustCompile(`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`)

// refusalReason is the restore Job's reason word for word (ChecksumMismatch,
// SealKeyMismatch, IncompleteSnapshot, NotFound, ...), so the condition says exactly what
// the executor found.
func refusalReason(executorReason string) string {
	if len(executorReason) <= 128 && conditionReason.MatchString(executorReason) {
		return executorReason
	}
	return "RestoreRefused"
}

func refuse(s *State, reason, msg string) Step {
	return finish(s, openbaov1alpha1.RestoreRefused, reason, msg)
}

// finish ends the restore; the controller releases the lock after the status write.
func finish(s *State, phase openbaov1alpha1.RestorePhase, reason, msg string) Step {
	st := &s.Restore.Status
	st.Phase, st.Message = phase, msg
	now := metav1.NewTime(s.Now)
	st.CompletionTime = &now
	setCondition(s, phase == openbaov1alpha1.RestoreSucceeded, reason, msg)
	eventType := corev1.EventTypeWarning
	event := "Restore" + string(phase)
	if phase == openbaov1alpha1.RestoreSucceeded {
		eventType = corev1.EventTypeNormal
	}
	if phase == openbaov1alpha1.RestoreRefused {
		event = "RestoreRefused"
	}
	return Step{Kind: Finish, EventType: eventType, Reason: event, Message: reason + ": " + msg}
}

// wait records why the restore waits (a status write only when the message changed).
func wait(s *State, phase openbaov1alpha1.RestorePhase, reason, msg string) Step {
	st := &s.Restore.Status
	if phase == "" {
		phase = openbaov1alpha1.RestorePending
	}
	changed := st.Phase != phase || st.Message != msg
	st.Phase, st.Message = phase, msg
	setCondition(s, false, reason, msg)
	if changed {
		return Step{Kind: Record}
	}
	return Step{Kind: Wait}
}

func setProgress(s *State, msg string) {
	s.Restore.Status.Message = msg
	setCondition(s, false, openbaov1alpha1.ReasonRestoreInProgress, msg)
}

func setCondition(s *State, status bool, reason, msg string) {
	cs := metav1.ConditionFalse
	if status {
		cs = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&s.Restore.Status.Conditions, metav1.Condition{
		Type: openbaov1alpha1.ConditionRestored, Status: cs, Reason: reason, Message: msg,
		ObservedGeneration: s.Restore.Generation, LastTransitionTime: metav1.NewTime(s.Now),
	})
	s.Restore.Status.ObservedGeneration = s.Restore.Generation
}

func ordinal(pod string) int {
	n, err := strconv.Atoi(pod[strings.LastIndex(pod, "-")+1:])
	if err != nil {
		return -1
	}
	return n
}
