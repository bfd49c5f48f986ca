package openbao

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/utils/ptr"
)

func TestSuccessors(t *testing.T) {
	servers := []RaftServer{{NodeID: "bao-0", Voter: true}, {NodeID: "bao-1", Voter: true}, {NodeID: "bao-2", Voter: true, Leader: true}, {NodeID: "bao-3"}}
	autopilot := func(verdict *bool) *AutopilotState {
		return &AutopilotState{Healthy: verdict, Servers: []AutopilotServer{
			{ID: "bao-0", Healthy: true}, {ID: "bao-1"}, {ID: "bao-2", Healthy: true}, {ID: "bao-3", Healthy: true},
		}}
	}
	cases := []struct {
		name    string
		node    string
		servers []RaftServer
		ap      *AutopilotState
		ready   []string
		why     string
	}{
		{"healthy voters take over", "bao-2", servers, autopilot(ptr.To(true)), []string{"bao-0"}, ""},
		{"no verdict yet", "bao-2", servers, autopilot(nil), nil, "autopilot has no verdict on the cluster yet"},
		{"no autopilot state", "bao-2", servers, nil, nil, "autopilot has no verdict on the cluster yet"},
		{"unhealthy cluster", "bao-2", servers, autopilot(ptr.To(false)), nil, "autopilot reports the cluster unhealthy"},
		{"the only voter", "bao-0", []RaftServer{{NodeID: "bao-0", Voter: true}, {NodeID: "bao-1"}}, autopilot(ptr.To(true)), nil, "the Raft configuration has no voter other than bao-0"},
		{"a healthy non-voter is no successor", "bao-0", []RaftServer{{NodeID: "bao-0", Voter: true}, {NodeID: "bao-1", Voter: true}, {NodeID: "bao-3"}}, autopilot(ptr.To(true)), nil, "autopilot reports no healthy voter other than bao-0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ready, why := NewRaftView(tc.servers, tc.ap).Successors(tc.node)
			assert.Equal(t, tc.ready, ready)
			assert.Equal(t, tc.why, why)
		})
	}
}
