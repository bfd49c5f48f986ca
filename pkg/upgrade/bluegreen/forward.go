package bluegreen

// Forward phases: Green is created, joins as non-voters, syncs, is promoted, takes the
// clients and is verified.

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// forward carries the upgrade from Green's creation to the start of Blue's retirement: each
// phase returns a step while it is not over.
func forward(s *upgrade.State) upgrade.Step {
	c, u := s.Cluster, s.Upgrade()
	bg := u.BlueGreen
	if c.Spec.Upgrade.PreUpgradeSnapshot && (u.Snapshot == nil || u.Snapshot.CompletionTime == nil) {
		if step, done := upgrade.Snapshot(s, "Green is created"); !done {
			return step
		}
	}
	if s.StatefulSets[bg.GreenStatefulSet] == nil {
		return deployGreen(s)
	}
	if s.Raft == nil {
		// Without the Raft configuration nothing can be decided; keep the phase as it is.
		return upgrade.Wait(StepWaitRaftState, "", "Waiting to read the Raft state with the operator's role from an active node.")
	}
	pods := ordinalPods(bg.GreenStatefulSet, s.Replicas())
	var nonVoters []string
	for _, pod := range pods {
		if !s.Raft.Voters[pod] {
			nonVoters = append(nonVoters, pod)
		}
	}
	if len(nonVoters) == len(pods) {
		if step, waiting := joinAndSync(s, pods); waiting {
			return step
		}
	}
	if len(nonVoters) > 0 {
		return promoteNext(s, pods, nonVoters)
	}
	if bg.ServingStatefulSet != bg.GreenStatefulSet {
		return cutOver(s, pods)
	}
	if step, waiting := verify(s, pods); waiting {
		return step
	}
	// From here on there is no way back: Blue's servers leave the Raft cluster.
	bg.Phase = openbaov1alpha1.BlueGreenRetiringBlue
	return retire(s)
}

// joinAndSync holds the first promotion back until every Green server has joined, stayed
// healthy for the minimum sync time and applied what was committed when that time started.
// Under write load a follower's applied index trails the leader's committed index by a few
// entries at any instant, so "caught up" is judged by autopilot's health (which bounds the
// trailing entries and the time since the last contact) while the time runs, and by the
// index committed at its start when it ends.
func joinAndSync(s *upgrade.State, pods []string) (upgrade.Step, bool) {
	bg := s.Upgrade().BlueGreen
	for _, pod := range pods {
		if _, why := upgrade.ServerGap(s, pod, upgrade.ServerWant{}); why != "" {
			bg.Phase = openbaov1alpha1.BlueGreenJoiningNonVoters
			bg.SyncStartTime, bg.SyncCommitIndex = nil, 0
			return upgrade.Wait(StepWaitGreenJoined, pod, why), true
		}
	}
	for _, pod := range pods {
		if _, why := upgrade.ServerGap(s, pod, upgrade.ServerWant{Healthy: true}); why != "" {
			bg.Phase = openbaov1alpha1.BlueGreenSyncing
			bg.SyncStartTime, bg.SyncCommitIndex = nil, 0
			return upgrade.Wait(StepWaitGreenSynced, pod, why), true
		}
	}
	if bg.SyncStartTime == nil {
		bg.SyncStartTime = &metav1.Time{Time: s.Now}
		bg.SyncCommitIndex = int64(s.Raft.LeaderCommittedIndex)
	}
	if left := MinSyncTime - s.Now.Sub(bg.SyncStartTime.Time); left > 0 {
		bg.Phase = openbaov1alpha1.BlueGreenSyncing
		return upgrade.Wait(StepWaitGreenSynced, "", fmt.Sprintf("Every Green server replicates and is healthy; checking that they stay so for %s more before promoting them.", left.Round(time.Second))), true
	}
	for _, pod := range pods {
		if why := upgrade.NotCaughtUp(s, pod, bg.SyncCommitIndex); why != "" {
			bg.Phase = openbaov1alpha1.BlueGreenSyncing
			return upgrade.Wait(StepWaitGreenSynced, pod, why), true
		}
	}
	return upgrade.Step{}, false
}

// promoteNext promotes the first Green non-voter, one server at a time, each caught up; a
// promotion that has not taken effect is asked again after promoteRetry.
func promoteNext(s *upgrade.State, pods, nonVoters []string) upgrade.Step {
	u := s.Upgrade()
	bg := u.BlueGreen
	bg.Phase = openbaov1alpha1.BlueGreenPromoting
	if pod, why := greenProblem(s, pods, false); why != "" {
		return upgrade.Wait(StepPromote, pod, why)
	}
	pod := nonVoters[0]
	if u.Step == StepPromote && u.CurrentPod == pod && bg.LastMembershipChange != nil && s.Now.Sub(bg.LastMembershipChange.Time) < promoteRetry {
		return upgrade.Wait(StepPromote, pod, fmt.Sprintf("Waiting for OpenBao to make %s a voter (autopilot applies a promotion within about 10 s).", pod))
	}
	bg.LastMembershipChange = &metav1.Time{Time: s.Now}
	return upgrade.Step{
		Kind: upgrade.StepAct, Name: StepPromote, Pod: pod,
		Message: fmt.Sprintf("Promoting %s to a Raft voter (%d of %d Green servers are voters).", pod, len(pods)-len(nonVoters), len(pods)),
		Action:  promote{Leader: s.Leader, Pod: pod},
	}
}

// cutOver sends the clients to Green once every Green server is a healthy voter. The
// controller switches the client Service to ServingStatefulSet (the declared Workload),
// now or, if the operator stops right here, on its next pass.
func cutOver(s *upgrade.State, pods []string) upgrade.Step {
	bg := s.Upgrade().BlueGreen
	bg.Phase = openbaov1alpha1.BlueGreenCuttingOver
	if pod, why := greenProblem(s, pods, true); why != "" {
		return upgrade.Wait(StepCutOver, pod, why)
	}
	bg.ServingStatefulSet = bg.GreenStatefulSet
	bg.CutoverTime = &metav1.Time{Time: s.Now}
	return upgrade.Step{
		Kind: upgrade.StepAct, Name: StepCutOver, NewStep: true,
		Message: fmt.Sprintf("Switching the client Service %s to Green's servers (%s).", s.Cluster.Name, bg.GreenStatefulSet),
		Action:  upgrade.ApplyWorkload{Event: "ServiceCutover"},
	}
}

// verify keeps Blue for the verification period after the cutover, then, when required,
// until the user confirms the target, and until every Green server is a healthy voter.
func verify(s *upgrade.State, pods []string) (upgrade.Step, bool) {
	c, u := s.Cluster, s.Upgrade()
	bg := u.BlueGreen
	if bg.CutoverTime == nil {
		bg.CutoverTime = &metav1.Time{Time: s.Now}
	}
	period := verificationPeriod(c)
	if left := bg.CutoverTime.Add(period).Sub(s.Now); left > 0 {
		bg.Phase = openbaov1alpha1.BlueGreenVerifying
		msg := fmt.Sprintf("Green (%s, %s) serves the clients; Blue (%s) is retired in %s. Set spec.version back to %s to abort until then.",
			bg.GreenStatefulSet, u.ToVersion, bg.BlueStatefulSet, left.Round(time.Second), u.FromVersion)
		if pod, why := greenProblem(s, pods, true); why != "" {
			msg = fmt.Sprintf("Verifying Green: %s (%s): %s", pod, left.Round(time.Second), why)
		}
		step := upgrade.Wait(StepVerify, "", msg)
		step.Timeout = period + upgrade.StepTimeout(c)
		return step, true
	}
	if bgSpec := c.Spec.Upgrade.BlueGreen; bgSpec != nil && bgSpec.RequireConfirmation && !upgrade.SameVersion(bgSpec.ConfirmedVersion, u.ToVersion) {
		bg.Phase = openbaov1alpha1.BlueGreenAwaitingConfirmation
		step := upgrade.Wait(StepAwaitConfirmation, "", fmt.Sprintf(
			"Green (%s) has served the clients for the verification period. Set spec.upgrade.blueGreen.confirmedVersion to %s to retire Blue (%s), or spec.version back to %s to abort.",
			bg.GreenStatefulSet, u.ToVersion, bg.BlueStatefulSet, u.FromVersion))
		step.WaitsForUser = true
		return step, true
	}
	if pod, why := greenProblem(s, pods, true); why != "" {
		return upgrade.Wait(StepWaitGreenHealthy, pod, why), true
	}
	return upgrade.Step{}, false
}

// deployGreen has the controller create Green's ConfigMap and StatefulSet: the phase
// DeployingGreen makes the Workload declare them.
func deployGreen(s *upgrade.State) upgrade.Step {
	bg := s.Upgrade().BlueGreen
	bg.Phase = openbaov1alpha1.BlueGreenDeployingGreen
	return upgrade.Step{
		Kind: upgrade.StepAct, Name: StepDeployGreen, NewStep: true,
		Message: fmt.Sprintf("Creating StatefulSet %s with %d servers on %s that join the Raft cluster of %s as non-voters.",
			bg.GreenStatefulSet, s.Replicas(), s.Upgrade().ToVersion, bg.BlueStatefulSet),
		Action: upgrade.ApplyWorkload{Event: "GreenCreated"},
	}
}

// greenProblem returns the first Green pod that is not a healthy member (a voter when voters
// is true) and why.
func greenProblem(s *upgrade.State, pods []string, voters bool) (string, string) {
	for _, pod := range pods {
		if _, why := upgrade.ServerGap(s, pod, upgrade.ServerWant{Voter: voters, Healthy: true}); why != "" {
			return pod, why
		}
	}
	return "", ""
}
