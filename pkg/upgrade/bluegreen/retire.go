package bluegreen

// Retirement: Blue's servers leave the Raft cluster, leadership moves to Green, Blue is
// deleted.

import (
	"fmt"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// retire takes Blue's servers out of the Raft cluster, moves leadership to Green, deletes
// Blue and completes the upgrade.
func retire(s *upgrade.State) upgrade.Step {
	u := s.Upgrade()
	bg := u.BlueGreen
	blue, green := bg.BlueStatefulSet, bg.GreenStatefulSet
	greenPods := ordinalPods(green, s.Replicas())

	if s.Raft == nil || s.Leader == "" {
		return upgrade.Wait(StepRemoveBluePeer, "", "Waiting to read the Raft state with the operator's role from an active node.")
	}
	bluePeers := peersOf(s, blue)
	if len(bluePeers) > 0 {
		// Blue loses a server only while every Green server is a healthy voter.
		if pod, why := greenProblem(s, greenPods, true); why != "" {
			return upgrade.Wait(StepWaitGreenHealthy, pod, why)
		}
		for _, pod := range bluePeers {
			if pod == s.Leader {
				continue
			}
			if why := removalUnsafe(s, pod); why != "" {
				return upgrade.Wait(StepRemoveBluePeer, pod, why)
			}
			return upgrade.Step{
				Kind: upgrade.StepAct, Name: StepRemoveBluePeer, Pod: pod,
				Message: fmt.Sprintf("Removing Blue's server %s from the Raft cluster (%d Blue servers left in it).", pod, len(bluePeers)),
				Action:  removePeer{Leader: s.Leader, Pod: pod},
			}
		}
		// Only the active Blue server is left: move leadership to Green.
		return upgrade.StepDownStep(s, upgrade.StepDown{
			Pod: s.Leader, Ordinal: ordinal(s.Leader),
			Reason:    fmt.Sprintf("%s, the last Blue server in the Raft cluster, is the active node", s.Leader),
			Successor: "a Green server",
			OnFailure: "Green's servers are voters",
		})
	}

	// No Blue server is in the Raft cluster any more: Green is the active StatefulSet and
	// the Workload no longer declares Blue, so the controller leaves it to be deleted.
	bg.Phase = openbaov1alpha1.BlueGreenDeletingBlue
	if sts := s.StatefulSets[blue]; sts != nil && sts.DeletionTimestamp == nil {
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepDeleteBlue, NewStep: true,
			Message: fmt.Sprintf("Deleting Blue's StatefulSet %s: none of its servers is in the Raft cluster any more.", blue),
			Action:  deleteStatefulSet{Name: blue},
		}
	}
	if pod := firstPodOf(s, blue); s.StatefulSets[blue] != nil || pod != "" {
		return upgrade.Wait(StepWaitBlueGone, pod, fmt.Sprintf("Waiting for Blue's StatefulSet %s and its pods to be deleted.", blue))
	}
	if step, pending := volumesLeft(s, blue, StepDeleteBlueVolumes); pending {
		return step
	}
	if len(s.Jobs) > 0 {
		return upgrade.Step{Kind: upgrade.StepAct, Name: StepCleanup, Message: "Removing the upgrade's Jobs.", Action: upgrade.DeleteJobs{}}
	}
	bg.ServingStatefulSet = ""
	return upgrade.Step{Kind: upgrade.StepComplete, Name: "Complete",
		Message: fmt.Sprintf("Green (%s) serves the cluster on %s; Blue (%s) is retired.", green, u.ToVersion, blue)}
}

// volumesLeft deletes a retired StatefulSet's ConfigMap and data volumes (they hold a
// removed Raft peer's data, which no server may ever start from again).
func volumesLeft(s *upgrade.State, sts, stepName string) (upgrade.Step, bool) {
	deleting := ""
	for name, pvc := range s.Claims {
		if pvc.Labels[resources.LabelStatefulSet] != sts {
			continue
		}
		if pvc.DeletionTimestamp == nil {
			return deleteVolumesStep(sts, stepName), true
		}
		deleting = name
	}
	if cm := s.ConfigMaps[resources.ConfigMapName(sts)]; cm != nil && cm.DeletionTimestamp == nil {
		return deleteVolumesStep(sts, stepName), true
	}
	if deleting != "" {
		return upgrade.Wait(stepName, "", fmt.Sprintf("Waiting for volume %s to be deleted.", deleting)), true
	}
	return upgrade.Step{}, false
}

func deleteVolumesStep(sts, stepName string) upgrade.Step {
	return upgrade.Step{
		Kind: upgrade.StepAct, Name: stepName, NewStep: true,
		Message: fmt.Sprintf("Deleting the ConfigMap %s and the data volumes of StatefulSet %s.", resources.ConfigMapName(sts), sts),
		Action:  deleteVolumes{StatefulSet: sts},
	}
}

// removalUnsafe says why removing pod from the Raft configuration now could cost the
// cluster its quorum, or "".
func removalUnsafe(s *upgrade.State, pod string) string {
	if pod == s.Leader {
		return fmt.Sprintf("%s is the active node; it is never removed while it leads.", pod)
	}
	if !s.Raft.Voters[pod] {
		return ""
	}
	remaining, healthy := 0, 0
	for id := range s.Raft.Voters {
		if id == pod {
			continue
		}
		remaining++
		if s.Raft.Healthy[id] {
			healthy++
		}
	}
	if need := remaining/2 + 1; healthy < need {
		return fmt.Sprintf("Removing %s would leave %d healthy voters of %d, fewer than the quorum of %d. Waiting for the other servers to be healthy.", pod, healthy, remaining, need)
	}
	return ""
}
