package upgrade

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
)

// Check is one named pre-check. It returns "" when the cluster passes, otherwise why not
// and what to do, in words that go into the Upgrading condition as they are.
type Check struct {
	Name string
	Run  func(s *State) string
}

// PreChecks must all pass before an upgrade touches anything.
var PreChecks = []Check{
	{"NoRestoreRunning", noRestoreRunning},
	{"AllPodsReady", allPodsReady},
	{"AllServersUnsealed", allServersUnsealed},
	{"OneActiveNode", oneActiveNode},
	{"RaftQuorumHealthy", raftQuorumHealthy},
	{"ExecutorImageKnown", executorImageKnown},
}

// noRestoreRunning: a restore holds the cluster's operation lock (status.restore) from
// before its Job starts until every server was restarted and verified.
func noRestoreRunning(s *State) string {
	if l := s.Cluster.Status.Restore; l != nil {
		return fmt.Sprintf("the OpenBaoRestore %s is restoring a snapshot into the cluster; the upgrade starts once it is over.", l.Name)
	}
	return ""
}

func executorImageKnown(s *State) string {
	if s.ExecutorImage == "" {
		return "no image for the upgrade Jobs: set spec.upgrade.executorImage, or run the operator with OPERATOR_IMAGE set to its own image."
	}
	return ""
}

// RunPreChecks returns the first failing check's name and reason, or "", "".
func RunPreChecks(s *State) (name, reason string) {
	for _, c := range PreChecks {
		if r := c.Run(s); r != "" {
			return c.Name, r
		}
	}
	return "", ""
}

// ordinalPods are the pod names the StatefulSet should have, in ordinal order.
func ordinalPods(s *State) []string {
	name := s.Cluster.Name
	if s.StatefulSet != nil {
		name = s.StatefulSet.Name
	}
	out := make([]string, 0, s.Replicas())
	for i := range int(s.Replicas()) {
		out = append(out, resources.PodName(name, i))
	}
	return out
}

func allPodsReady(s *State) string {
	var notReady []string
	for _, name := range ordinalPods(s) {
		if p, ok := s.Pods[name]; !ok || !PodReady(p) {
			notReady = append(notReady, name)
		}
	}
	if len(notReady) > 0 {
		return fmt.Sprintf("pods not ready: %s. Wait for them or look at their events and logs.", strings.Join(notReady, ", "))
	}
	return ""
}

func allServersUnsealed(s *State) string {
	var bad []string
	for _, name := range ordinalPods(s) {
		if srv, ok := s.Servers[name]; !ok || !srv.Serving() {
			bad = append(bad, name)
		}
	}
	if len(bad) > 0 {
		return fmt.Sprintf("servers not initialized and unsealed: %s. Check their logs and the seal key Secret.", strings.Join(bad, ", "))
	}
	return ""
}

func oneActiveNode(s *State) string {
	var active []string
	for _, name := range ordinalPods(s) {
		if s.Servers[name].Active {
			active = append(active, name)
		}
	}
	switch len(active) {
	case 1:
		return ""
	case 0:
		return "no server is the active node. Wait for an election; if it lasts, check the servers' logs."
	default:
		return fmt.Sprintf("more than one server reports itself active (%s): the Raft cluster may be split. Do not upgrade; investigate.", strings.Join(active, ", "))
	}
}

func raftQuorumHealthy(s *State) string {
	if s.Raft == nil {
		return "the Raft state could not be read with the operator's OpenBao role. Check that the operator's token is mounted and the openbao-operator role exists."
	}
	if s.Raft.AutopilotHealthy == nil {
		return "autopilot has no verdict on the cluster's health yet (normal for a minute after the cluster forms). Wait."
	}
	if !*s.Raft.AutopilotHealthy {
		return "autopilot reports the Raft cluster unhealthy. Check the servers' logs and sys/storage/raft/autopilot/state."
	}
	var missing []string
	for _, name := range ordinalPods(s) {
		if !s.Raft.Voters[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 || len(s.Raft.Voters) != int(s.Replicas()) {
		return fmt.Sprintf("the Raft configuration has %d voters, expected %d (not voters: %s). Wait for autopilot to promote new servers, or remove stale peers.",
			len(s.Raft.Voters), s.Replicas(), strings.Join(missing, ", "))
	}
	return ""
}

// PodReady is the pod's Ready condition; a terminating pod is not ready.
func PodReady(p *corev1.Pod) bool {
	if p == nil || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
