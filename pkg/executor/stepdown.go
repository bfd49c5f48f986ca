package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

// stepDown moves leadership away from the server at --address:
//
//  1. log in;
//  2. if the server is not active, there is nothing to do;
//  3. check that another healthy voter can take over (autopilot and the Raft configuration);
//  4. send sys/step-down and poll until the server is a standby and another server is
//     active, sending the request again if leadership did not move.
func (r *runner) stepDown(ctx context.Context) error {
	node := r.opts.NodeID
	cl, err := r.client()
	if err != nil {
		return err
	}
	if err := r.login(ctx, cl); err != nil {
		return err
	}

	active, leaderAddr, err := r.targetState(ctx, cl)
	if err != nil {
		return err
	}
	if !active {
		r.printf("leadership already moved away from %s (active: %s)", node, leaderAddr)
		return nil
	}
	// The active server's sys/leader names its own api_addr: once another address is
	// reported, leadership has moved.
	selfAddr := leaderAddr
	r.printf("%s is the active node (%s)", node, selfAddr)

	if err := r.waitOtherHealthyVoter(ctx, cl, node); err != nil {
		return err
	}

	start := time.Now()
	sent := 0
	var lastSent time.Time
	peers := map[string]openbao.Client{}
	for {
		if sent < r.maxStepDowns && (sent == 0 || time.Since(lastSent) >= r.stepDownResendAfter) {
			// OpenBao answers 204 and sometimes leaves leadership where it was, so the
			// request is sent again after a while. Only while the server still says it is
			// active, though: a standby forwards sys/step-down to the active server, which
			// would then be a server this Job is not about.
			if l, err := cl.Leader(ctx); err == nil && l.IsSelf {
				r.printf("sending step-down to %s (request %d of at most %d)", node, sent+1, r.maxStepDowns)
				if err := cl.StepDown(ctx); err != nil && !openbao.IsTransient(err) {
					return fmt.Errorf("step down %s: %w", node, err)
				} else if err != nil {
					r.printf("step-down request to %s failed (%v); it is sent again while %s stays active", node, err, node)
				}
				sent++
				lastSent = time.Now()
			}
		}
		moved, newAddr, why := r.leadershipMoved(ctx, cl, selfAddr, peers)
		if moved {
			if sent == 0 {
				r.printf("leadership already moved away from %s (active: %s)", node, newAddr)
			} else {
				r.printf("stepped down %s; new active node %s after %s", node, newAddr, time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if sleep(ctx, pollInterval) != nil {
			return fmt.Errorf("leadership did not move away from %s within %s after %d step-down request(s): %s",
				node, r.opts.Timeout, sent, why)
		}
	}
}

// targetState says whether the server is the active node and which address is active. It
// asks again while the answer is not definite (unreachable, no active node known yet).
func (r *runner) targetState(ctx context.Context, cl openbao.Client) (active bool, leaderAddr string, err error) {
	node := r.opts.NodeID
	last := errors.New("no answer yet")
	for {
		active, leaderAddr, definite, err := r.targetStateOnce(ctx, cl)
		if definite {
			return active, leaderAddr, nil
		}
		if err != nil {
			if !openbao.IsTransient(err) {
				return false, "", fmt.Errorf("find out whether %s is active: %w", node, err)
			}
			last = err
		}
		if sleep(ctx, pollInterval) != nil {
			return false, "", fmt.Errorf("find out whether %s is active: gave up after %s: %w", node, r.opts.Timeout, last)
		}
	}
}

func (r *runner) targetStateOnce(ctx context.Context, cl openbao.Client) (active bool, leaderAddr string, definite bool, err error) {
	h, err := cl.Health(ctx)
	if err != nil {
		return false, "", false, err
	}
	if !h.Serving() {
		// A sealed or uninitialized server cannot be the active node.
		return false, fmt.Sprintf("unknown; %s is %s", r.opts.NodeID, servingState(h)), true, nil
	}
	l, err := cl.Leader(ctx)
	if err != nil {
		return false, "", false, err
	}
	switch {
	case h.Active() && l.IsSelf:
		return true, l.LeaderAddress, true, nil
	case !h.Active() && !l.IsSelf && l.LeaderAddress != "":
		return false, l.LeaderAddress, true, nil
	default:
		// Health and sys/leader disagree, or no server is active: an election is going on.
		// Reported as unavailable so that it is asked again.
		return false, "", false, &openbao.Error{Op: "status of " + r.opts.NodeID, Kind: openbao.ErrUnavailable, Messages: []string{
			fmt.Sprintf("election in progress: health %d, is_self=%v, leader %q", h.StatusCode, l.IsSelf, l.LeaderAddress)}}
	}
}

func servingState(h *openbao.HealthStatus) string {
	if !h.Initialized {
		return "not initialized"
	}
	return "sealed"
}

// waitOtherHealthyVoter waits until autopilot says the cluster is healthy and another voter
// than node is healthy. Right after a cluster forms, autopilot has no verdict and new servers
// are non-voters for ~10 s, so the check is repeated until the timeout before refusing.
func (r *runner) waitOtherHealthyVoter(ctx context.Context, cl openbao.Client, node string) error {
	reason := "no answer yet"
	for {
		ready, why, err := otherHealthyVoters(ctx, cl, node)
		if err != nil && !openbao.IsTransient(err) {
			return fmt.Errorf("check the other voters before stepping down %s: %w", node, err)
		}
		if err != nil {
			reason = err.Error()
		} else if len(ready) > 0 {
			r.printf("healthy voters that can take over: %s", strings.Join(ready, ", "))
			return nil
		} else {
			reason = why
		}
		if sleep(ctx, pollInterval) != nil {
			return fmt.Errorf("refusing to step down %s: no other healthy voter to take over (%s)", node, reason)
		}
	}
}

// errWrongNode is a --node-id that is not in the Raft configuration: waiting will not help.
var errWrongNode = errors.New("not in the raft configuration")

// otherHealthyVoters lists the voters other than node that autopilot reports healthy, or
// says why there are none: the operator's answer before it starts this Job
// (openbao.RaftView.Successors), from the same two reads.
func otherHealthyVoters(ctx context.Context, cl openbao.Client, node string) (ready []string, why string, err error) {
	servers, err := cl.RaftConfiguration(ctx)
	if err != nil {
		return nil, "", err
	}
	found := false
	var ids []string
	for _, s := range servers {
		ids = append(ids, s.NodeID)
		found = found || s.NodeID == node
	}
	if !found {
		return nil, "", fmt.Errorf("node %s is %w (peers: %s); check --node-id", node, errWrongNode, strings.Join(ids, ", "))
	}
	ap, err := cl.AutopilotState(ctx)
	if err != nil {
		return nil, "", err
	}
	ready, why = openbao.NewRaftView(servers, ap).Successors(node)
	if why != "" {
		why += fmt.Sprintf(" (peers: %s)", strings.Join(ids, ", "))
	}
	return ready, why, nil
}

// leadershipMoved says whether the server has stopped being active and another server is:
// the server's own sys/leader names another address, and that server, when it can be
// reached from here, answers health 200.
func (r *runner) leadershipMoved(ctx context.Context, cl openbao.Client, selfAddr string, peers map[string]openbao.Client) (bool, string, string) {
	node := r.opts.NodeID
	l, err := cl.Leader(ctx)
	if err != nil {
		return false, "", fmt.Sprintf("%s: %v", node, err)
	}
	switch {
	case l.IsSelf:
		return false, "", node + " is still the active node"
	case l.LeaderAddress == "":
		return false, "", node + " knows no active node yet"
	case l.LeaderAddress == selfAddr:
		return false, "", node + " still names itself (" + selfAddr + ") as the active node"
	}
	h, err := cl.Health(ctx)
	if err != nil {
		return false, "", fmt.Sprintf("%s: %v", node, err)
	}
	if h.Active() {
		return false, "", fmt.Sprintf("%s still answers health %d (active)", node, h.StatusCode)
	}
	peer, ok := peers[l.LeaderAddress]
	if !ok {
		// The new active server's certificate names its own host, so no --tls-server-name.
		peer, err = r.newClient(openbao.Config{Address: l.LeaderAddress, CACertPEM: r.caPEM, Timeout: 5 * time.Second})
		if err != nil {
			return true, l.LeaderAddress, ""
		}
		peers[l.LeaderAddress] = peer
	}
	ph, err := peer.Health(ctx)
	if err != nil {
		// Not reachable from here (network policy, certificate names): the server's own
		// view is the best evidence there is.
		return true, l.LeaderAddress, ""
	}
	if !ph.Active() {
		return false, "", fmt.Sprintf("%s names %s as the active node, which answers health %d", node, l.LeaderAddress, ph.StatusCode)
	}
	return true, l.LeaderAddress, ""
}
