package bluegreen

// Abort: the clients go back to Blue and Green is removed, while Blue can still be given
// back.

import (
	"fmt"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Aborting says whether the upgrade is being undone.
func (Strategy) Aborting(s *upgrade.State) bool {
	bg := s.Upgrade().BlueGreen
	return bg != nil && bg.Aborting
}

// Abort starts undoing the upgrade, unless Blue has started to retire or a Green server
// leads the cluster (leadership never moves back to an older version deliberately).
func (Strategy) Abort(s *upgrade.State) string {
	u := s.Upgrade()
	if u.BlueGreen == nil {
		blue := resources.ActiveStatefulSet(s.Cluster)
		u.BlueGreen = &openbaov1alpha1.BlueGreenStatus{BlueStatefulSet: blue, GreenStatefulSet: GreenName(s.Cluster, u.Revision), ServingStatefulSet: blue}
	}
	bg := u.BlueGreen
	if retiring(bg) {
		return "Blue's servers are already leaving the Raft cluster"
	}
	if s.Leader != "" && ownedBy(bg.GreenStatefulSet, s.Leader) {
		return fmt.Sprintf("%s, a server on the new version, is the active node, and leadership never moves back to an older version", s.Leader)
	}
	bg.Aborting = true
	bg.Phase = openbaov1alpha1.BlueGreenAborting
	return ""
}

// removeGreen takes a Green StatefulSet's servers out of the Raft cluster and deletes it,
// after giving the clients back to Blue. done is true once nothing of it is left.
func removeGreen(s *upgrade.State, green string) (upgrade.Step, bool) {
	c := s.Cluster
	bg := s.Upgrade().BlueGreen
	blue := bg.BlueStatefulSet
	if bg.ServingStatefulSet != blue {
		// Traffic first: the controller switches the client Service to ServingStatefulSet
		// (the declared Workload) before Green's servers are touched.
		bg.ServingStatefulSet, bg.CutoverTime = blue, nil
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepRestoreService, NewStep: true,
			Message: fmt.Sprintf("Switching the client Service %s back to Blue's servers (%s).", c.Name, blue),
			Action:  upgrade.ApplyWorkload{Event: "ServiceRestored"},
		}, false
	}
	if peers := peersOf(s, green); len(peers) > 0 || s.Raft == nil {
		if s.Raft == nil || s.Leader == "" {
			return upgrade.Wait(StepRemoveGreenPeer, "", "Waiting to read the Raft state with the operator's role from an active node."), false
		}
		if ownedBy(green, s.Leader) {
			return upgrade.Wait(StepRemoveGreenPeer, s.Leader, fmt.Sprintf(
				"%s, a Green server on the new version, is the active node: leadership is never moved back to an older version on purpose, so Green's servers cannot leave the Raft cluster. Waiting for a Blue server to be elected; if this lasts, set spec.version to %s to finish the upgrade instead.",
				s.Leader, s.Upgrade().ToVersion)), false
		}
		pod := peers[0]
		if why := removalUnsafe(s, pod); why != "" {
			return upgrade.Wait(StepRemoveGreenPeer, pod, why), false
		}
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepRemoveGreenPeer, Pod: pod,
			Message: fmt.Sprintf("Removing Green's server %s from the Raft cluster (%d Green servers left in it).", pod, len(peers)),
			Action:  removePeer{Leader: s.Leader, Pod: pod},
		}, false
	}
	if sts := s.StatefulSets[green]; sts != nil && sts.DeletionTimestamp == nil {
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepDeleteGreen, NewStep: true,
			Message: fmt.Sprintf("Deleting Green's StatefulSet %s: none of its servers is in the Raft cluster.", green),
			Action:  deleteStatefulSet{Name: green},
		}, false
	}
	if pod := firstPodOf(s, green); s.StatefulSets[green] != nil || pod != "" {
		return upgrade.Wait(StepWaitGreenGone, pod, fmt.Sprintf("Waiting for Green's StatefulSet %s and its pods to be deleted.", green)), false
	}
	if step, pending := volumesLeft(s, green, StepDeleteGreenVolumes); pending {
		return step, false
	}
	return upgrade.Step{}, true
}
