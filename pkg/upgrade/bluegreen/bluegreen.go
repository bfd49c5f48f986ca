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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

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

// Actions, performed by Apply.
type (
	createGreen struct {
		ConfigMap   *corev1.ConfigMap
		StatefulSet *appsv1.StatefulSet
	}
	promote           struct{ Leader, Pod string }
	removePeer        struct{ Leader, Pod string }
	switchService     struct{ StatefulSet string }
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
			Phase:              openbaov1alpha1.BlueGreenDeployingGreen,
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
		if bg.Phase == openbaov1alpha1.BlueGreenRetiringBlue {
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
	if bg.Phase == openbaov1alpha1.BlueGreenRetiringBlue {
		return retire(s), nil
	}
	return forward(s), nil
}

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
	if bg.Phase == openbaov1alpha1.BlueGreenRetiringBlue {
		return "Blue's servers are already leaving the Raft cluster"
	}
	if s.Leader != "" && ownedBy(bg.GreenStatefulSet, s.Leader) {
		return fmt.Sprintf("%s, a server on the new version, is the active node, and leadership never moves back to an older version", s.Leader)
	}
	bg.Aborting = true
	bg.Phase = openbaov1alpha1.BlueGreenAborting
	return ""
}

// forward carries the upgrade from Green's creation to the start of Blue's retirement.
func forward(s *upgrade.State) upgrade.Step {
	c, u := s.Cluster, s.Upgrade()
	bg := u.BlueGreen
	if c.Spec.Upgrade.PreUpgradeSnapshot && (u.Snapshot == nil || u.Snapshot.CompletionTime == nil) {
		if step, done := upgrade.Snapshot(s, "Green is created"); !done {
			return step
		}
	}

	green := s.StatefulSets[bg.GreenStatefulSet]
	if green == nil {
		bg.Phase = openbaov1alpha1.BlueGreenDeployingGreen
		return deployGreen(s)
	}
	pods := ordinalPods(bg.GreenStatefulSet, s.Replicas())
	if s.Raft == nil {
		// Without the Raft configuration nothing can be decided; keep the phase as it is.
		return upgrade.Wait(StepWaitRaftState, "", "Waiting to read the Raft state with the operator's role from an active node.")
	}

	var nonVoters []string
	for _, pod := range pods {
		if !s.Raft.Voters[pod] {
			nonVoters = append(nonVoters, pod)
		}
	}

	// Before the first promotion: every Green server joins, stays healthy for the minimum
	// sync time and applies what was committed when that time started. Under write load a
	// follower's applied index trails the leader's committed index by a few entries at any
	// instant, so "caught up" is judged by autopilot's health (which bounds the trailing
	// entries and the time since the last contact) while the time runs, and by the index
	// committed at its start when it ends.
	if len(nonVoters) == len(pods) {
		for _, pod := range pods {
			if why := notJoined(s, pod); why != "" {
				bg.Phase = openbaov1alpha1.BlueGreenJoiningNonVoters
				bg.SyncStartTime, bg.SyncCommitIndex = nil, 0
				return upgrade.Wait(StepWaitGreenJoined, pod, why)
			}
		}
		for _, pod := range pods {
			if why := notHealthy(s, pod); why != "" {
				bg.Phase = openbaov1alpha1.BlueGreenSyncing
				bg.SyncStartTime, bg.SyncCommitIndex = nil, 0
				return upgrade.Wait(StepWaitGreenSynced, pod, why)
			}
		}
		if bg.SyncStartTime == nil {
			bg.SyncStartTime = &metav1.Time{Time: s.Now}
			bg.SyncCommitIndex = int64(s.Raft.LeaderCommittedIndex)
		}
		if left := MinSyncTime - s.Now.Sub(bg.SyncStartTime.Time); left > 0 {
			bg.Phase = openbaov1alpha1.BlueGreenSyncing
			return upgrade.Wait(StepWaitGreenSynced, "", fmt.Sprintf("Every Green server replicates and is healthy; checking that they stay so for %s more before promoting them.", left.Round(time.Second)))
		}
		for _, pod := range pods {
			if applied := s.Servers[pod].AppliedIndex; int64(applied) < bg.SyncCommitIndex {
				bg.Phase = openbaov1alpha1.BlueGreenSyncing
				return upgrade.Wait(StepWaitGreenSynced, pod, fmt.Sprintf("Waiting for %s to apply the Raft index %d, committed when syncing started (it applied %d).", pod, bg.SyncCommitIndex, applied))
			}
		}
	}

	// Promotion, one server at a time, each caught up.
	if len(nonVoters) > 0 {
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

	// Cutover: clients go to Green. The provisioning controller follows
	// ServingStatefulSet on its next pass even if the operator stops right here.
	if bg.ServingStatefulSet != bg.GreenStatefulSet {
		bg.Phase = openbaov1alpha1.BlueGreenCuttingOver
		if pod, why := greenProblem(s, pods, true); why != "" {
			return upgrade.Wait(StepCutOver, pod, why)
		}
		bg.ServingStatefulSet = bg.GreenStatefulSet
		bg.CutoverTime = &metav1.Time{Time: s.Now}
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepCutOver, NewStep: true,
			Message: fmt.Sprintf("Switching the client Service %s to Green's servers (%s).", c.Name, bg.GreenStatefulSet),
			Action:  switchService{StatefulSet: bg.GreenStatefulSet},
		}
	}
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
		return step
	}
	if bgSpec := c.Spec.Upgrade.BlueGreen; bgSpec != nil && bgSpec.RequireConfirmation && !upgrade.SameVersion(bgSpec.ConfirmedVersion, u.ToVersion) {
		bg.Phase = openbaov1alpha1.BlueGreenAwaitingConfirmation
		step := upgrade.Wait(StepAwaitConfirmation, "", fmt.Sprintf(
			"Green (%s) has served the clients for the verification period. Set spec.upgrade.blueGreen.confirmedVersion to %s to retire Blue (%s), or spec.version back to %s to abort.",
			bg.GreenStatefulSet, u.ToVersion, bg.BlueStatefulSet, u.FromVersion))
		step.WaitsForUser = true
		return step
	}
	if pod, why := greenProblem(s, pods, true); why != "" {
		return upgrade.Wait(StepWaitGreenHealthy, pod, why)
	}
	// From here on there is no way back: Blue's servers leave the Raft cluster.
	bg.Phase = openbaov1alpha1.BlueGreenRetiringBlue
	return retire(s)
}

// deployGreen creates Green's ConfigMap and StatefulSet.
func deployGreen(s *upgrade.State) upgrade.Step {
	c, u := s.Cluster, s.Upgrade()
	bg := u.BlueGreen
	if s.Config == nil {
		return upgrade.Wait(StepDeployGreen, "", "Waiting for the server configuration to be rendered.")
	}
	params := *s.Config
	blue := params
	blue.StatefulSet, blue.JoinTargets = bg.BlueStatefulSet, nil
	params.StatefulSet = bg.GreenStatefulSet
	params.NonVoter = true
	params.JoinTargets = resources.DefaultJoinTargets(blue)
	config, err := resources.RenderConfig(params)
	if err != nil {
		return upgrade.Step{Kind: upgrade.StepHalt, Name: StepDeployGreen, Message: fmt.Sprintf("Green's configuration cannot be rendered: %v.", err)}
	}
	sum := sha256.Sum256([]byte(config))
	replicas := s.Replicas()
	sts := resources.StatefulSet(c, resources.StatefulSetParams{
		Name: bg.GreenStatefulSet, Image: u.ToImage, Replicas: replicas,
		// The partition keeps Green's pods on the template they were created with: after the
		// upgrade the provisioning controller renders Green's configuration as the active one,
		// and that must not restart them.
		Partition:  replicas,
		ConfigHash: hex.EncodeToString(sum[:8]),
	})
	return upgrade.Step{
		Kind: upgrade.StepAct, Name: StepDeployGreen, NewStep: true,
		Message: fmt.Sprintf("Creating StatefulSet %s with %d servers on %s that join the Raft cluster of %s as non-voters.",
			bg.GreenStatefulSet, replicas, u.ToVersion, bg.BlueStatefulSet),
		Action: createGreen{ConfigMap: resources.ConfigMap(c, bg.GreenStatefulSet, config, ""), StatefulSet: sts},
	}
}

// retire takes Blue's servers out of the Raft cluster, moves leadership to Green, deletes
// Blue and completes the upgrade.
func retire(s *upgrade.State) upgrade.Step {
	c, u := s.Cluster, s.Upgrade()
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

	// No Blue server is in the Raft cluster any more. Green becomes the active StatefulSet
	// before Blue's is deleted, so that the provisioning controller does not create Blue again.
	c.Status.StatefulSet = green
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

// removeGreen takes a Green StatefulSet's servers out of the Raft cluster and deletes it,
// after giving the clients back to Blue. done is true once nothing of it is left.
func removeGreen(s *upgrade.State, green string) (upgrade.Step, bool) {
	c := s.Cluster
	bg := s.Upgrade().BlueGreen
	blue := bg.BlueStatefulSet
	if bg.ServingStatefulSet != blue {
		// Traffic first; the provisioning controller follows ServingStatefulSet as well.
		bg.ServingStatefulSet, bg.CutoverTime = blue, nil
		return upgrade.Step{
			Kind: upgrade.StepAct, Name: StepRestoreService, NewStep: true,
			Message: fmt.Sprintf("Switching the client Service %s back to Blue's servers (%s).", c.Name, blue),
			Action:  switchService{StatefulSet: blue},
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

// notJoined says why a Green pod is not yet an unsealed member of the Raft cluster, or "".
func notJoined(s *upgrade.State, pod string) string {
	u := s.Upgrade()
	p, ok := s.Pods[pod]
	switch {
	case !ok:
		return fmt.Sprintf("Waiting for the StatefulSet controller to create %s.", pod)
	case p.DeletionTimestamp != nil:
		return fmt.Sprintf("Waiting for %s to stop.", pod)
	case upgrade.PodImage(p) != u.ToImage:
		return fmt.Sprintf("%s runs %s instead of %s.", pod, upgrade.PodImage(p), u.ToImage)
	case !upgrade.PodReady(p):
		return fmt.Sprintf("Waiting for %s to become Ready (unsealed and serving).%s", pod, upgrade.ContainerProblem(p))
	}
	if why := upgrade.NotServingTarget(s, pod); why != "" {
		return why
	}
	switch {
	case !s.Raft.Voters[pod] && !s.Raft.NonVoters[pod]:
		return fmt.Sprintf("Waiting for %s to join the Raft cluster as a non-voter.", pod)
	}
	return ""
}

// notHealthy says why autopilot does not call a joined Green pod healthy, or "". Autopilot's
// health bounds how far a server trails the leader (max_trailing_logs) and how long ago the
// leader last heard from it.
func notHealthy(s *upgrade.State, pod string) string {
	if !s.Raft.Healthy[pod] {
		return fmt.Sprintf("Waiting for autopilot to report %s healthy (replicating, close behind the leader).", pod)
	}
	return ""
}

// greenProblem returns the first Green pod that is not a healthy member (a voter when voters
// is true) and why.
func greenProblem(s *upgrade.State, pods []string, voters bool) (string, string) {
	for _, pod := range pods {
		why := notJoined(s, pod)
		if why == "" {
			why = notHealthy(s, pod)
		}
		if why == "" && voters && !s.Raft.Voters[pod] {
			why = fmt.Sprintf("%s is not a Raft voter.", pod)
		}
		if why != "" {
			return pod, why
		}
	}
	return "", ""
}

// Apply performs one step's side effect; each is idempotent.
func (Strategy) Apply(ctx context.Context, s *upgrade.State, step upgrade.Step, env upgrade.Env) error {
	if handled, err := upgrade.ApplyShared(ctx, s, step, env); handled {
		return err
	}
	c := s.Cluster
	cl := env.Client()
	switch a := step.Action.(type) {
	case createGreen:
		if err := upgrade.CreateOwnedOrExisting(ctx, cl, c, a.ConfigMap); err != nil {
			return fmt.Errorf("create ConfigMap %s: %w", a.ConfigMap.Name, err)
		}
		if err := upgrade.CreateOwnedOrExisting(ctx, cl, c, a.StatefulSet); err != nil {
			return fmt.Errorf("create StatefulSet %s: %w", a.StatefulSet.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "GreenCreated", step.Message)
		return nil
	case promote:
		ob, err := env.OpenBao(ctx, a.Leader)
		if err != nil {
			return fmt.Errorf("promote %s: %w", a.Pod, err)
		}
		// The configuration, not the answer to promote, says whether a server votes: a
		// voter is left alone (promoting it again answers 500).
		servers, err := ob.RaftConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("promote %s: read the Raft configuration: %w", a.Pod, err)
		}
		member, voter := false, false
		for _, srv := range servers {
			if srv.NodeID == a.Pod {
				member, voter = true, srv.Voter
			}
		}
		switch {
		case !member:
			return fmt.Errorf("promote %s: it is not in the Raft configuration", a.Pod)
		case voter:
			return nil
		}
		if err := ob.Promote(ctx, a.Pod); err != nil {
			return fmt.Errorf("promote %s: %w", a.Pod, err)
		}
		env.Event(corev1.EventTypeNormal, "ServerPromoted", step.Message)
		return nil
	case removePeer:
		ob, err := env.OpenBao(ctx, a.Leader)
		if err != nil {
			return fmt.Errorf("remove %s from the Raft cluster: %w", a.Pod, err)
		}
		if err := ob.RemovePeer(ctx, a.Pod); err != nil {
			return fmt.Errorf("remove %s from the Raft cluster: %w", a.Pod, err)
		}
		// remove-peer of an unknown ID answers 204 too: only the configuration tells.
		servers, err := ob.RaftConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("remove %s from the Raft cluster: read the configuration back: %w", a.Pod, err)
		}
		for _, srv := range servers {
			if srv.NodeID == a.Pod {
				return fmt.Errorf("remove %s from the Raft cluster: it is still in the configuration", a.Pod)
			}
		}
		env.Event(corev1.EventTypeNormal, "PeerRemoved", step.Message)
		return nil
	case switchService:
		svc := &corev1.Service{}
		if err := cl.Get(ctx, client.ObjectKey{Namespace: c.Namespace, Name: resources.NamesFor(c).ClientService}, svc); err != nil {
			return fmt.Errorf("read the client Service: %w", err)
		}
		// The provisioning controller may have switched it already: it follows
		// ServingStatefulSet too.
		if selector := resources.StatefulSetSelector(c, a.StatefulSet); !mapsEqual(svc.Spec.Selector, selector) {
			patch := client.MergeFrom(svc.DeepCopy())
			svc.Spec.Selector = selector
			if err := cl.Patch(ctx, svc, patch); err != nil {
				return fmt.Errorf("switch the client Service to %s: %w", a.StatefulSet, err)
			}
		}
		reason := "ServiceCutover"
		if a.StatefulSet == s.Upgrade().BlueGreen.BlueStatefulSet {
			reason = "ServiceRestored"
		}
		env.Event(corev1.EventTypeNormal, reason, step.Message)
		return nil
	case deleteStatefulSet:
		sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: a.Name}}
		if err := cl.Delete(ctx, sts, client.PropagationPolicy(metav1.DeletePropagationBackground)); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete StatefulSet %s: %w", a.Name, err)
		}
		env.Event(corev1.EventTypeNormal, "StatefulSetDeleted", step.Message)
		return nil
	case deleteVolumes:
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.Namespace, Name: resources.ConfigMapName(a.StatefulSet)}}
		if err := cl.Delete(ctx, cm); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete ConfigMap %s: %w", cm.Name, err)
		}
		if err := cl.DeleteAllOf(ctx, &corev1.PersistentVolumeClaim{}, client.InNamespace(c.Namespace),
			client.MatchingLabels{resources.LabelCluster: c.Name, resources.LabelStatefulSet: a.StatefulSet}); err != nil {
			return fmt.Errorf("delete the volumes of %s: %w", a.StatefulSet, err)
		}
		env.Event(corev1.EventTypeNormal, "VolumesDeleted", step.Message)
		return nil
	default:
		return fmt.Errorf("unknown blue/green action %T", step.Action)
	}
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

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
