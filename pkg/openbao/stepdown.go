package openbao

import (
	"fmt"
	"sort"
)

// RaftView is a cluster's Raft membership as its active node reports it: who votes and who
// does not (the Raft configuration, which decides elections) and autopilot's verdicts. The
// operator and the upgrade Job build it with NewRaftView from the same two answers, so that
// they judge the same servers the same way.
type RaftView struct {
	// Voters and NonVoters hold the node IDs of the Raft configuration.
	Voters    map[string]bool
	NonVoters map[string]bool
	// AutopilotHealthy is autopilot's verdict on the whole cluster, nil while it has none.
	AutopilotHealthy *bool
	// Healthy is autopilot's verdict per server.
	Healthy map[string]bool
}

// NewRaftView reads the Raft configuration and autopilot's state into a RaftView.
func NewRaftView(servers []RaftServer, ap *AutopilotState) RaftView {
	v := RaftView{Voters: map[string]bool{}, NonVoters: map[string]bool{}, Healthy: map[string]bool{}}
	for _, srv := range servers {
		if srv.Voter {
			v.Voters[srv.NodeID] = true
		} else {
			v.NonVoters[srv.NodeID] = true
		}
	}
	if ap != nil {
		v.AutopilotHealthy = ap.Healthy
		for _, srv := range ap.Servers {
			v.Healthy[srv.ID] = srv.Healthy
		}
	}
	return v
}

// Successors answers "may node step down now?" for the operator, which plans the step-down,
// and for the upgrade Job, which performs it, so that the two never disagree: it lists the
// servers that could take over leadership from node, or says why none can. A successor is a
// voter of the Raft configuration other than node that autopilot reports healthy, and
// autopilot's verdict on the whole cluster must be healthy: right after a cluster formed or
// a server was replaced, autopilot has no verdict yet, and new servers are non-voters for
// ~10 s; a step-down then does nothing.
func (v RaftView) Successors(node string) (ready []string, why string) {
	others := 0
	for id, voter := range v.Voters {
		if voter && id != node {
			others++
		}
	}
	if others == 0 {
		return nil, fmt.Sprintf("the Raft configuration has no voter other than %s", node)
	}
	switch {
	case v.AutopilotHealthy == nil:
		return nil, "autopilot has no verdict on the cluster yet"
	case !*v.AutopilotHealthy:
		return nil, "autopilot reports the cluster unhealthy"
	}
	for id, voter := range v.Voters {
		if voter && id != node && v.Healthy[id] {
			ready = append(ready, id)
		}
	}
	if len(ready) == 0 {
		return nil, fmt.Sprintf("autopilot reports no healthy voter other than %s", node)
	}
	sort.Strings(ready)
	return ready, ""
}
