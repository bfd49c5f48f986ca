package openbao

import (
	"context"
	"errors"
	"fmt"
)

// Raft membership changes, verified. OpenBao's answers to promote and remove-peer do not
// say what happened: promoting a voter answers 500, removing an unknown ID answers 204. Only
// the Raft configuration tells, so these verbs read it.

// ErrNotMember is a server that is not in the Raft configuration.
var ErrNotMember = errors.New("not in the Raft configuration")

// PromoteNonVoter makes nodeID a voter unless the Raft configuration already lists it as
// one. It reports whether it asked OpenBao to promote. The promotion takes effect on
// autopilot's cycle (~10 s): the caller waits for the configuration to show it.
func PromoteNonVoter(ctx context.Context, c Client, nodeID string) (asked bool, err error) {
	servers, err := c.RaftConfiguration(ctx)
	if err != nil {
		return false, fmt.Errorf("read the Raft configuration: %w", err)
	}
	for _, srv := range servers {
		if srv.NodeID != nodeID {
			continue
		}
		if srv.Voter {
			return false, nil
		}
		return true, c.Promote(ctx, nodeID)
	}
	return false, fmt.Errorf("%s is %w", nodeID, ErrNotMember)
}

// RemovePeerVerified removes nodeID from the Raft configuration and reads the configuration
// back to check that it is gone.
func RemovePeerVerified(ctx context.Context, c Client, nodeID string) error {
	if err := c.RemovePeer(ctx, nodeID); err != nil {
		return err
	}
	servers, err := c.RaftConfiguration(ctx)
	if err != nil {
		return fmt.Errorf("read the configuration back: %w", err)
	}
	for _, srv := range servers {
		if srv.NodeID == nodeID {
			return fmt.Errorf("%s is still in the configuration", nodeID)
		}
	}
	return nil
}
