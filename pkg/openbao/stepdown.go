package openbao

import (
	"fmt"
	"sort"
)

// Successors answers "may node step down now?" for the operator, which plans the step-down,
// and for the upgrade Job, which performs it, so that the two never disagree: it lists the
// servers that could take over leadership from node, or says why none can. A successor is a
// voter of the Raft configuration (voters) other than node that autopilot reports healthy
// (healthy), and autopilot's verdict on the whole cluster (verdict, nil while it has none)
// must be healthy: right after a cluster formed or a server was replaced, autopilot has no
// verdict yet, and new servers are non-voters for ~10 s; a step-down then does nothing.
func Successors(node string, voters map[string]bool, verdict *bool, healthy map[string]bool) (ready []string, why string) {
	others := 0
	for id, voter := range voters {
		if voter && id != node {
			others++
		}
	}
	if others == 0 {
		return nil, fmt.Sprintf("the Raft configuration has no voter other than %s", node)
	}
	switch {
	case verdict == nil:
		return nil, "autopilot has no verdict on the cluster yet"
	case !*verdict:
		return nil, "autopilot reports the cluster unhealthy"
	}
	for id, voter := range voters {
		if voter && id != node && healthy[id] {
			ready = append(ready, id)
		}
	}
	if len(ready) == 0 {
		return nil, fmt.Sprintf("autopilot reports no healthy voter other than %s", node)
	}
	sort.Strings(ready)
	return ready, ""
}
