package upgrade

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
)

// One question, one answer: "is this server on the target, ready, voting and caught up?"
// Both strategies ask it of the servers they replace or build (Rolling of each released
// pod, Blue/Green of Green's pods), with what they require at that point (ServerWant).

// Rung names the first requirement a server does not meet.
type Rung string

// The rungs of ServerGap, in the order they are checked.
const (
	RungPod      Rung = "Pod"      // the pod exists and is not terminating
	RungRevision Rung = "Revision" // the pod runs the StatefulSet's update revision
	RungImage    Rung = "Image"    // the pod runs the target image
	RungReady    Rung = "Ready"    // the pod is Ready
	RungServing  Rung = "Serving"  // the server answers, unsealed, with the target version
	RungMember   Rung = "Member"   // the server is in the Raft configuration
	RungVoter    Rung = "Voter"    // the server is a Raft voter
	RungHealthy  Rung = "Healthy"  // autopilot calls the server healthy
	RungCaughtUp Rung = "CaughtUp" // the server applied the index it must reach
)

// ServerWant says what a server must be to count as there.
type ServerWant struct {
	// Revision is the StatefulSet revision the pod must run; "" accepts any.
	Revision string
	// Voter asks for a Raft voter; otherwise a non-voter that joined is enough.
	Voter bool
	// Healthy asks autopilot to call the server healthy.
	Healthy bool
	// CatchUpIndex, when set, gives the Raft index the server must have applied
	// (NotCaughtUp). It is asked only once every other rung is reached, so that a strategy
	// can record the leader's index when the server is first seen healthy on the target.
	CatchUpIndex func() int64
}

// ServerGap returns the first rung pod does not reach and why, or "" and "" when the server
// is what want asks.
func ServerGap(s *State, pod string, want ServerWant) (Rung, string) {
	u := s.Upgrade()
	p, ok := s.Pods[pod]
	switch {
	case !ok:
		return RungPod, fmt.Sprintf("Waiting for the StatefulSet controller to create %s.", pod)
	case p.DeletionTimestamp != nil:
		return RungPod, fmt.Sprintf("Waiting for %s to stop.", pod)
	case want.Revision != "" && p.Labels[appsv1.ControllerRevisionHashLabelKey] != want.Revision:
		return RungRevision, fmt.Sprintf("Waiting for %s to be replaced with the new template (revision %s).", pod, want.Revision)
	case PodImage(p) != u.ToImage:
		return RungImage, fmt.Sprintf("Waiting for %s to run %s (it runs %s).", pod, u.ToImage, PodImage(p))
	case !PodReady(p):
		return RungReady, fmt.Sprintf("Waiting for %s to become Ready (unsealed and serving).%s", pod, ContainerProblem(p))
	}
	if why := NotServingTarget(s, pod); why != "" {
		return RungServing, why
	}
	switch {
	case !s.Raft.Voters[pod] && !s.Raft.NonVoters[pod]:
		if want.Voter {
			return RungMember, fmt.Sprintf("Waiting for %s to join the Raft cluster.", pod)
		}
		return RungMember, fmt.Sprintf("Waiting for %s to join the Raft cluster as a non-voter.", pod)
	case want.Voter && !s.Raft.Voters[pod]:
		return RungVoter, fmt.Sprintf("Waiting for %s to be a Raft voter.", pod)
	case want.Healthy && !s.Raft.Healthy[pod]:
		// Autopilot's health bounds how far a server trails the leader (max_trailing_logs)
		// and how long ago the leader last heard from it.
		return RungHealthy, fmt.Sprintf("Waiting for autopilot to report %s healthy (replicating, close behind the leader).", pod)
	}
	if want.CatchUpIndex != nil {
		if why := NotCaughtUp(s, pod, want.CatchUpIndex()); why != "" {
			return RungCaughtUp, why
		}
	}
	return "", ""
}

// NotCaughtUp is the one catch-up rule: a server has caught up once it applied index, the
// leader's committed index recorded when the wait for it started. Under write load a
// follower trails the leader by a few entries at any instant, so a moving index is never
// chased; and since the leader's index is read before any other server's, a server at or
// beyond it has caught up, also on the pass that records it.
func NotCaughtUp(s *State, pod string, index int64) string {
	if applied := s.Servers[pod].AppliedIndex; int64(applied) < index {
		return fmt.Sprintf("Waiting for %s to catch up with the leader (applied %d of the leader's committed index %d).", pod, applied, index)
	}
	return ""
}

// NotServingTarget says why pod's server does not serve the upgrade's target version yet,
// or why the Raft state to judge it by is missing, or "".
func NotServingTarget(s *State, pod string) string {
	u, srv := s.Upgrade(), s.Servers[pod]
	switch {
	case !srv.Serving():
		return fmt.Sprintf("Waiting for %s to answer as an unsealed server.", pod)
	case !SameVersion(srv.Version, u.ToVersion):
		return fmt.Sprintf("Waiting for %s to report version %s (it reports %s).", pod, u.ToVersion, srv.Version)
	case s.Raft == nil:
		return "Waiting to read the Raft state with the operator's role."
	}
	return ""
}
