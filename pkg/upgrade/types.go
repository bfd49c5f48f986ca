// Package upgrade carries OpenBao clusters from one version to another. The Manager detects
// drift between the spec and the running version, validates it, runs the pre-checks and
// keeps the upgrade's bookkeeping (deadlines, pause, halt, completion); a Strategy, chosen by
// spec.upgrade.strategy among those the Manager was given, decides and performs each step. The manager knows
// nothing of a strategy's steps.
package upgrade

import (
	"context"
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// ServerState is what one server pod said about itself in this pass.
type ServerState struct {
	// Reachable is false when the pod has no IP or its API did not answer.
	Reachable   bool
	Initialized bool
	Sealed      bool
	Active      bool
	Version     string
	// AppliedIndex is how far the server has applied the Raft log.
	AppliedIndex uint64
}

// Serving is true for an initialized, unsealed server that answered.
func (s ServerState) Serving() bool { return s.Reachable && s.Initialized && !s.Sealed }

// RaftState is the cluster's Raft view, read from the active node with the operator's token.
type RaftState struct {
	// RaftView is the membership and autopilot's verdicts, judged as the step-down Job
	// judges them.
	openbao.RaftView
	// LeaderCommittedIndex is the active node's committed index, read before any other
	// server's applied index, so that a server at or beyond it has caught up.
	LeaderCommittedIndex uint64
}

// State is everything a strategy plans from: the cluster with its persisted upgrade status,
// and the live objects and servers observed in this pass.
type State struct {
	Cluster     *openbaov1alpha1.OpenBaoCluster
	StatefulSet *appsv1.StatefulSet
	// Pods of the cluster's StatefulSets, by name.
	Pods map[string]*corev1.Pod
	// Jobs of the cluster's upgrades, by name.
	Jobs map[string]*batchv1.Job
	// JobResults are the termination messages of the finished upgrade Jobs that report a
	// result (the pre-upgrade snapshot to object storage: a backup.Result), by Job name; a
	// Job without an entry had no finished pod left to read.
	JobResults map[string]string
	// Servers by pod name; a pod without an entry was not asked.
	Servers map[string]ServerState
	// Leader is the pod that reported itself active, or "".
	Leader string
	// Raft is nil when it could not be read (no operator token, no active node).
	Raft *RaftState
	// ExecutorImage runs the upgrade's Jobs.
	ExecutorImage string
	// Platform says whether the pods a strategy creates choose their user and group IDs.
	Platform resources.Platform
	Now      time.Time

	// StatefulSets are every server StatefulSet of the cluster, by name (StatefulSet above is
	// the active one); strategies that build a second set of servers find it here.
	StatefulSets map[string]*appsv1.StatefulSet
	// Claims are the cluster's data volumes, by name.
	Claims map[string]*corev1.PersistentVolumeClaim
	// ConfigMaps are the cluster's ConfigMaps, by name.
	ConfigMaps map[string]*corev1.ConfigMap
}

// Upgrade is the upgrade in flight (never nil inside a strategy).
func (s *State) Upgrade() *openbaov1alpha1.UpgradeStatus { return s.Cluster.Status.Upgrade }

// Replicas is the cluster's number of servers: spec.replicas, or the active StatefulSet's
// larger count while a lower spec.replicas waits for the upgrade to finish (servers are
// removed only afterwards, so the upgrade carries them all).
func (s *State) Replicas() int32 {
	n := s.Cluster.Spec.ReplicaCount()
	if s.StatefulSet != nil && s.StatefulSet.Spec.Replicas != nil && *s.StatefulSet.Spec.Replicas > n {
		return *s.StatefulSet.Spec.Replicas
	}
	return n
}

// StepKind says what a Step does.
type StepKind string

const (
	// StepWait has no side effect: the strategy waits for the cluster to reach a state.
	StepWait StepKind = "Wait"
	// StepAct performs one side effect (Apply).
	StepAct StepKind = "Act"
	// StepComplete: every server runs the target; the manager records completion.
	StepComplete StepKind = "Complete"
	// StepHalt: the strategy cannot go on safely; the manager halts with Degraded=True.
	StepHalt StepKind = "Halt"
	// StepAborted: an abort (see Aborter) has taken the cluster back to where the upgrade
	// started; the manager clears the upgrade and keeps the running version.
	StepAborted StepKind = "Aborted"
)

// Step is a strategy's decision for this pass.
type Step struct {
	Kind StepKind
	// Name is the strategy's name for the step, recorded in status.upgrade.step
	// (e.g. "StepDown", "UpdatePod", "WaitPodHealthy").
	Name string
	// Pod the step is about, if any.
	Pod string
	// Message explains the step to people; for StepHalt it says what went wrong and what to do.
	Message string
	// Action is the side effect of a StepAct, run by the strategy's Apply.
	Action any
	// NewStep is true when this step starts a new unit of work: the manager resets the step's
	// start time, deadline and attempts.
	NewStep bool
	// PollAfter, when positive, is how soon a waiting step is looked at again instead of
	// the default: for waits that end within a second or two and hold the next server
	// back, such as a replaced server catching up or leadership moving.
	PollAfter time.Duration
	// Timeout, when positive, bounds this step instead of spec.upgrade.stepTimeout: a wait
	// whose length the user chose (a verification period) gets that length plus the step
	// timeout.
	Timeout time.Duration
	// WaitsForUser marks a StepWait that only a person ends (a confirmation): it has no
	// deadline.
	WaitsForUser bool
}

// Env gives strategies their side effects.
type Env interface {
	// Client reads and writes Kubernetes objects.
	Client() client.Client
	// OpenBao returns a client for a server pod, logged in with the operator's JWT role.
	OpenBao(ctx context.Context, pod string) (openbao.Client, error)
	// Event records an event on the cluster (after the status write).
	Event(eventType, reason, message string)
	// ApplyWorkload applies the Workload the status now declares (after the intent was
	// persisted): the controller's one place that writes the server StatefulSets, their
	// ConfigMaps and the client Service.
	ApplyWorkload(ctx context.Context) error
}

// Workload is the complete set of server workloads the cluster wants in this pass: every
// server StatefulSet, the active one first, and the StatefulSet whose pods the client
// Service selects. Idle, it is the active StatefulSet on the running image; during an
// upgrade the strategy declares it from the status. The controller applies it, in one place,
// and is the only writer of the StatefulSets, their ConfigMaps and the client Service; a
// strategy changes them only by recording a new intent in its status and asking for it to
// be applied (ApplyWorkload).
type Workload struct {
	// Sets are the server StatefulSets to apply; Sets[0] is the active one, whose servers
	// are the cluster's (status.statefulSet). A StatefulSet of the cluster that is not
	// listed is left as it is: a strategy removes it with its own steps.
	Sets []resources.ServerSet
	// Serving is the StatefulSet whose pods the client Service selects.
	Serving string
}

// Active is the StatefulSet whose servers are the cluster's.
func (w Workload) Active() resources.ServerSet { return w.Sets[0] }

// Strategy carries an upgrade. Workload declares the server StatefulSets and the client
// Service's selection for the upgrade in flight, from the status alone. Plan decides the
// next step from the state (live objects plus the persisted status.upgrade) and records its
// intent in its own part of status.upgrade (status.upgrade.rolling or .blueGreen, and the
// pre-upgrade snapshot's record), which is written before the side effect. Plan runs on a
// copy of the cluster: the manager keeps that part of what it wrote and nothing else, and
// halts the upgrade if it changed anything else. Apply performs one idempotent side effect.
type Strategy interface {
	Workload(c *openbaov1alpha1.OpenBaoCluster) Workload
	Plan(ctx context.Context, s *State) (Step, error)
	Apply(ctx context.Context, s *State, step Step, env Env) error
}

// Aborter is implemented by strategies that can undo an upgrade in flight. When the spec's
// target is set back to the version and image the upgrade started from, the manager asks
// the strategy to abort instead of finishing the upgrade first; the strategy records the
// abort in its own status fields, Plan drives the way back and finally returns StepAborted.
type Aborter interface {
	// Aborting says whether the upgrade in flight is being undone.
	Aborting(s *State) bool
	// Abort starts undoing the upgrade in flight. It returns "" when the abort was accepted,
	// otherwise why the upgrade can no longer be undone (it then finishes first).
	Abort(s *State) string
}

// Strategies maps each spec.upgrade.strategy name to the strategy that carries it. The
// operator's main wires the real ones; tests pass their own.
type Strategies map[openbaov1alpha1.UpgradeStrategyType]Strategy

// Names lists the strategies by name, sorted, for messages.
func (ss Strategies) Names() []string {
	out := make([]string, 0, len(ss))
	for k := range ss {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}
