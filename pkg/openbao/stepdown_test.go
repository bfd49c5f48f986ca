package openbao

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"k8s.io/utils/ptr"
)

func TestSuccessors(t *testing.T) {
	voters := map[string]bool{"bao-0": true, "bao-1": true, "bao-2": true, "bao-3": false}
	healthy := map[string]bool{"bao-0": true, "bao-1": false, "bao-2": true, "bao-3": true}
	cases := []struct {
		name    string
		node    string
		voters  map[string]bool
		verdict *bool
		healthy map[string]bool
		ready   []string
		why     string
	}{
		{"healthy voters take over", "bao-2", voters, ptr.To(true), healthy, []string{"bao-0"}, ""},
		{"no verdict yet", "bao-2", voters, nil, healthy, nil, "autopilot has no verdict on the cluster yet"},
		{"unhealthy cluster", "bao-2", voters, ptr.To(false), healthy, nil, "autopilot reports the cluster unhealthy"},
		{"the only voter", "bao-0", map[string]bool{"bao-0": true, "bao-1": false}, ptr.To(true), healthy, nil, "the Raft configuration has no voter other than bao-0"},
		{"a healthy non-voter is no successor", "bao-0", map[string]bool{"bao-0": true, "bao-1": true, "bao-3": false}, ptr.To(true), healthy, nil, "autopilot reports no healthy voter other than bao-0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ready, why := Successors(tc.node, tc.voters, tc.verdict, tc.healthy)
			assert.Equal(t, tc.ready, ready)
			assert.Equal(t, tc.why, why)
		})
	}
}
