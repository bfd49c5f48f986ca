// Package bluegreen upgrades an OpenBao cluster by building a second set of servers on the
// target version (Green) next to the running ones (Blue), moving traffic and leadership to
// Green and then retiring Blue.
//
// Every step keeps the Raft cluster's quorum and leadership safe:
//
//   - Green's servers join Blue's Raft cluster as non-voters (retry_join_as_non_voter: OpenBao
//     keeps such nodes non-voters until they are promoted explicitly). Non-voters count for
//     no quorum, so however Green behaves, Blue's N voters keep the cluster as it was.
//   - Green's servers are promoted one at a time, only once each of them has caught up with
//     the leader for a minimum sync time. The configuration then has N Blue and up to N Green
//     voters (quorum at most N+1): every promoted server is healthy and caught up, so the
//     quorum grows only with servers that can vote.
//   - The client Service is switched to Green's pods; Green's standbys forward writes to the
//     active node (still a Blue server), so nothing about Raft changes.
//   - After the verification period (and the user's confirmation, when required), Blue's
//     followers leave the Raft configuration one at a time, the active Blue server last:
//     each removal is of a healthy cluster's non-leader, and the remaining voters (all N
//     Green plus the Blue leader, at least N+1) keep a quorum. The configuration is read back
//     after each removal. Then the Blue leader steps down (an executor Job: the operator's
//     own role may not step down) while the only other voters are Green's, so leadership
//     moves from the old version to the new one, never back. Finally the former leader
//     leaves the configuration, which holds Green's N voters.
//   - Blue's StatefulSet, ConfigMap and volumes are deleted only once none of its servers is
//     in the Raft configuration.
//
// Until Blue starts to retire, setting spec.version back aborts: traffic returns to Blue,
// Green's servers leave the Raft configuration one at a time (never the leader: a Green
// leader would mean moving leadership back to an older version, so the abort waits), and
// Green's StatefulSet, ConfigMap and volumes are deleted.
//
// Intent is written to status.upgrade.blueGreen before each side effect (the manager
// persists the status before every StepAct); everything else is derived from the live
// objects and the Raft configuration on every pass, so the operator can be restarted at
// any point.
package bluegreen

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/pkg/upgrade"
)

// Step names recorded in status.upgrade.step.
const (
	StepSnapshot            = upgrade.StepSnapshot
	StepDeployGreen         = "DeployGreen"
	StepWaitRaftState       = "WaitRaftState"
	StepWaitGreenJoined     = "WaitGreenJoined"
	StepWaitGreenSynced     = "WaitGreenSynced"
	StepPromote             = "Promote"
	StepCutOver             = "CutOver"
	StepVerify              = "Verify"
	StepAwaitConfirmation   = "AwaitConfirmation"
	StepWaitGreenHealthy    = "WaitGreenHealthy"
	StepRemoveBluePeer      = "RemoveBluePeer"
	StepStepDown            = upgrade.StepStepDown
	StepWaitLeadershipMoved = upgrade.StepWaitLeadershipMoved
	StepDeleteBlue          = "DeleteBlue"
	StepWaitBlueGone        = "WaitBlueGone"
	StepDeleteBlueVolumes   = "DeleteBlueVolumes"
	StepCleanup             = "Cleanup"

	// Steps of an abort, and of removing a Green built for an earlier target.
	StepRestoreService     = "RestoreService"
	StepRemoveGreenPeer    = "RemoveGreenPeer"
	StepDeleteGreen        = "DeleteGreen"
	StepWaitGreenGone      = "WaitGreenGone"
	StepDeleteGreenVolumes = "DeleteGreenVolumes"
)

const (
	// MinSyncTime is how long every Green server must stay caught up with the leader before
	// the first one is promoted.
	MinSyncTime = 30 * time.Second
	// DefaultVerificationPeriod applies when spec.upgrade.blueGreen.verificationPeriod is not set.
	DefaultVerificationPeriod = 5 * time.Minute
	// promoteRetry: OpenBao applies a promotion on autopilot's next cycle (~10 s); a server
	// still a non-voter this long after its promotion was requested is promoted again.
	promoteRetry = 20 * time.Second
)

// Actions, performed by Apply. Green's creation and the client Service's switches are
// declared by the Workload and applied by the controller (upgrade.ApplyWorkload).
type (
	promote           struct{ Leader, Pod string }
	removePeer        struct{ Leader, Pod string }
	deleteStatefulSet struct{ Name string }
	// deleteVolumes deletes a retired StatefulSet's ConfigMap and data volumes.
	deleteVolumes struct{ StatefulSet string }
)

// Strategy is the BlueGreen strategy.
type Strategy struct{}

var _ upgrade.Aborter = Strategy{}

// GreenName is the StatefulSet of an upgrade's new servers: <cluster>-<revision>. Cluster
// names have at most 40 characters, so pod names and their revision labels stay valid.
func GreenName(c *openbaov1alpha1.OpenBaoCluster, revision string) string {
	return c.Name + "-" + revision
}

// Workload: Blue, the active StatefulSet, keeps the running image. Green is declared, on
// the target and joining Blue's servers as non-voters, from the moment the upgrade decides to
// deploy it until it is removed (an abort, or a Green built for an earlier target). Once no
// Blue server is left in the Raft cluster, Green is the active StatefulSet and Blue is no
// longer declared; the strategy deletes it. The clients go to ServingStatefulSet.
func (Strategy) Workload(c *openbaov1alpha1.OpenBaoCluster) upgrade.Workload {
	u, active := c.Status.Upgrade, resources.ActiveStatefulSet(c)
	w := upgrade.Workload{Sets: []resources.ServerSet{{Name: active, Image: c.Status.CurrentImage}}, Serving: active}
	bg := u.BlueGreen
	if bg == nil {
		return w
	}
	if bg.ServingStatefulSet != "" {
		w.Serving = bg.ServingStatefulSet
	}
	switch {
	case greenIsActive(c):
		w.Sets = []resources.ServerSet{{Name: bg.GreenStatefulSet, Image: u.ToImage}}
	case bg.Phase != "" && !bg.Aborting && bg.GreenStatefulSet == GreenName(c, u.Revision):
		w.Sets = append(w.Sets, resources.ServerSet{Name: bg.GreenStatefulSet, Image: u.ToImage, NonVoterOf: bg.BlueStatefulSet})
	}
	return w
}

// greenIsActive: none of Blue's servers is in the Raft cluster any more, so Green's servers
// are the cluster's (a release before DeletingBlue recorded it in status.statefulSet).
func greenIsActive(c *openbaov1alpha1.OpenBaoCluster) bool {
	bg := c.Status.Upgrade.BlueGreen
	return bg.Phase == openbaov1alpha1.BlueGreenDeletingBlue || resources.ActiveStatefulSet(c) == bg.GreenStatefulSet
}

// retiring: Blue's servers have started to leave the Raft cluster; there is no way back.
func retiring(bg *openbaov1alpha1.BlueGreenStatus) bool {
	return bg.Phase == openbaov1alpha1.BlueGreenRetiringBlue || bg.Phase == openbaov1alpha1.BlueGreenDeletingBlue
}

// Plan decides the next step from the live StatefulSets, pods, Jobs and the Raft state.
func (Strategy) Plan(ctx context.Context, s *upgrade.State) (upgrade.Step, error) {
	c, u := s.Cluster, s.Upgrade()
	if u.BlueGreen == nil {
		if s.StatefulSet == nil {
			return upgrade.Wait(StepDeployGreen, "", "The StatefulSet does not exist yet."), nil
		}
		u.BlueGreen = &openbaov1alpha1.BlueGreenStatus{
			BlueStatefulSet:    s.StatefulSet.Name,
			GreenStatefulSet:   GreenName(c, u.Revision),
			ServingStatefulSet: s.StatefulSet.Name,
			// The phase is set when Green is deployed (after the pre-upgrade snapshot): from
			// then on the Workload declares it.
		}
	}
	bg := u.BlueGreen
	if bg.Aborting {
		bg.Phase = openbaov1alpha1.BlueGreenAborting
		step, done := removeGreen(s, bg.GreenStatefulSet)
		if !done {
			return step, nil
		}
		if len(s.Jobs) > 0 {
			return upgrade.Step{Kind: upgrade.StepAct, Name: StepCleanup, Message: "Removing the upgrade's Jobs.", Action: upgrade.DeleteJobs{}}, nil
		}
		return upgrade.Step{Kind: upgrade.StepAborted, Name: "Aborted",
			Message: fmt.Sprintf("Green (%s) is removed; %s serves the cluster on %s as before.", bg.GreenStatefulSet, bg.BlueStatefulSet, u.FromVersion)}, nil
	}
	if want := GreenName(c, u.Revision); bg.GreenStatefulSet != want {
		// A halted upgrade was given another target: the Green built for the earlier one goes
		// first. Once Blue has started to retire, that Green is the cluster: finish with it.
		if retiring(bg) {
			target := "the target the upgrade had when it halted"
			if sts := s.StatefulSets[bg.GreenStatefulSet]; sts != nil {
				if img := upgrade.TemplateImage(sts); img != "" {
					target = img
				}
			}
			return upgrade.Step{Kind: upgrade.StepHalt, Name: StepRemoveBluePeer, Message: fmt.Sprintf(
				"Blue's servers had started to leave the Raft cluster, so %s now holds the cluster's data and cannot be replaced by another target. Set spec.version (and spec.image) back to %s to finish the retirement.",
				bg.GreenStatefulSet, target)}, nil
		}
		step, done := removeGreen(s, bg.GreenStatefulSet)
		if !done {
			return step, nil
		}
		*bg = openbaov1alpha1.BlueGreenStatus{
			BlueStatefulSet: bg.BlueStatefulSet, GreenStatefulSet: want, ServingStatefulSet: bg.BlueStatefulSet,
			Phase: openbaov1alpha1.BlueGreenDeployingGreen,
		}
	}
	if retiring(bg) {
		return retire(s), nil
	}
	return forward(s), nil
}

func verificationPeriod(c *openbaov1alpha1.OpenBaoCluster) time.Duration {
	if bg := c.Spec.Upgrade.BlueGreen; bg != nil && bg.VerificationPeriod != nil {
		return max(bg.VerificationPeriod.Duration, 0)
	}
	return DefaultVerificationPeriod
}

// ownedBy says whether pod (or Raft node ID) belongs to the StatefulSet sts.
func ownedBy(sts, pod string) bool {
	rest, ok := strings.CutPrefix(pod, sts+"-")
	if !ok {
		return false
	}
	_, err := strconv.Atoi(rest)
	return err == nil
}

func ordinal(pod string) int {
	i := strings.LastIndex(pod, "-")
	n, _ := strconv.Atoi(pod[i+1:])
	return n
}

func ordinalPods(sts string, replicas int32) []string {
	out := make([]string, 0, replicas)
	for i := range int(replicas) {
		out = append(out, resources.PodName(sts, i))
	}
	return out
}

// peersOf lists the Raft members of a StatefulSet, highest ordinal first.
func peersOf(s *upgrade.State, sts string) []string {
	if s.Raft == nil {
		return nil
	}
	var out []string
	for _, set := range []map[string]bool{s.Raft.Voters, s.Raft.NonVoters} {
		for id := range set {
			if ownedBy(sts, id) {
				out = append(out, id)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return ordinal(out[i]) > ordinal(out[j]) })
	return out
}

// firstPodOf returns a pod of the StatefulSet that still exists, or "".
func firstPodOf(s *upgrade.State, sts string) string {
	var names []string
	for name := range s.Pods {
		if ownedBy(sts, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	if len(names) == 0 {
		return ""
	}
	return names[0]
}
