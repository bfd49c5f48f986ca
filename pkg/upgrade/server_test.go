package upgrade

import (
	"testing"

	"github.com/stretchr/testify/assert"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

// A server climbs the ladder one rung at a time; each rung it misses is named with the
// first requirement it does not meet, in the ladder's order.
func TestServerGapClimbsTheLadderInOrder(t *testing.T) {
	const pod, image = "bao-2", "quay.io/openbao/openbao:2.7.2"
	c := cluster("2.7.2")
	c.Status.Upgrade = &openbaov1alpha1.UpgradeStatus{ToVersion: "2.7.2", ToImage: image}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{appsv1.ControllerRevisionHashLabelKey: "old"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "openbao", Image: "quay.io/openbao/openbao:2.6.2"}}},
	}
	s := &State{Cluster: c, Pods: map[string]*corev1.Pod{}, Servers: map[string]ServerState{}}
	want := ServerWant{Revision: "new", Voter: true, Healthy: true, CatchUpIndex: func() int64 { return 100 }}

	steps := []struct {
		rung   Rung
		msg    string
		change func()
	}{
		{RungPod, "Waiting for the StatefulSet controller to create bao-2.", func() { s.Pods[pod] = p }},
		{RungRevision, "(revision new)", func() { p.Labels[appsv1.ControllerRevisionHashLabelKey] = "new" }},
		{RungImage, "Waiting for bao-2 to run " + image, func() { p.Spec.Containers[0].Image = image }},
		{RungReady, "Waiting for bao-2 to become Ready", func() {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
		}},
		{RungServing, "Waiting for bao-2 to answer as an unsealed server.", func() {
			s.Servers[pod] = ServerState{Reachable: true, Initialized: true, Version: "2.7.2", AppliedIndex: 90}
		}},
		{RungServing, "Waiting to read the Raft state", func() {
			s.Raft = &RaftState{RaftView: openbao.RaftView{Voters: map[string]bool{}, NonVoters: map[string]bool{}, Healthy: map[string]bool{}}}
		}},
		{RungMember, "Waiting for bao-2 to join the Raft cluster.", func() { s.Raft.NonVoters[pod] = true }},
		{RungVoter, "Waiting for bao-2 to be a Raft voter.", func() { s.Raft.Voters[pod], s.Raft.NonVoters[pod] = true, false }},
		{RungHealthy, "Waiting for autopilot to report bao-2 healthy", func() { s.Raft.Healthy[pod] = true }},
		{RungCaughtUp, "applied 90 of the leader's committed index 100", func() {
			s.Servers[pod] = ServerState{Reachable: true, Initialized: true, Version: "2.7.2", AppliedIndex: 100}
		}},
	}
	for _, step := range steps {
		rung, why := ServerGap(s, pod, want)
		assert.Equal(t, step.rung, rung, why)
		assert.Contains(t, why, step.msg)
		step.change()
	}
	rung, why := ServerGap(s, pod, want)
	assert.Empty(t, rung)
	assert.Empty(t, why)

	// What a strategy does not ask is not checked: a healthy non-voter on any revision
	// that has not caught up is a joined Green server.
	s.Raft.Voters[pod], s.Raft.NonVoters[pod] = false, true
	p.Labels[appsv1.ControllerRevisionHashLabelKey] = "other"
	s.Servers[pod] = ServerState{Reachable: true, Initialized: true, Version: "2.7.2", AppliedIndex: 1}
	rung, why = ServerGap(s, pod, ServerWant{Healthy: true})
	assert.Empty(t, rung)
	assert.Empty(t, why)
}
