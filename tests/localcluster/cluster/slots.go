package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// SuiteSlots is how many test suites can each run a local cluster at the same time on one
// machine: slot i is the bridge obe2e<i> with the pod network 10.79.<i>.0/24 and the state
// folder <repo>/.cache/e2e-cluster[-<i>].
const SuiteSlots = 4

// SuiteSlot names slot i (see SuiteSlots).
func SuiteSlot(repoRoot string, i int) (bridge, cidr, dir string) {
	dir = filepath.Join(repoRoot, ".cache", "e2e-cluster")
	if i > 0 {
		dir += "-" + strconv.Itoa(i)
	}
	return "obe2e" + strconv.Itoa(i), fmt.Sprintf("10.79.%d.0/24", i), dir
}

// UpInFreeSlot starts a test suite's local cluster in the first slot no running suite
// holds (what a killed run left in a slot is cleaned up first, see Up). E2E_BRIDGE, E2E_CIDR
// and E2E_DIR choose one explicitly. opts.Bridge, CIDR and Dir are set to the slot used,
// which the returned Options carry even when Up fails. A failed start keeps the cluster's
// logs under artifacts (see KeepLogs) and removes what it left.
func UpInFreeSlot(ctx context.Context, opts Options, artifacts string) (*Cluster, Options, error) {
	explicit := os.Getenv("E2E_BRIDGE") != ""
	var (
		c   *Cluster
		err error
	)
	for i := range SuiteSlots {
		bridge, cidr, dir := SuiteSlot(opts.RepoRoot, i)
		opts.Bridge, opts.CIDR, opts.Dir = envOr("E2E_BRIDGE", bridge), envOr("E2E_CIDR", cidr), envOr("E2E_DIR", dir)
		c, err = Up(ctx, opts)
		if err == nil || explicit || !errors.Is(err, ErrInUse) {
			break
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "%v; trying the next slot\n", err)
		}
	}
	if err != nil && !errors.Is(err, ErrInUse) {
		KeepLogs(opts.Dir, artifacts)
		_ = Cleanup(opts.Dir)
	}
	return c, opts, err
}

// KeepLogs copies the logs of the local cluster in dir to a new folder under artifacts
// (named by the time), for a failed test run to be read afterwards.
func KeepLogs(dir, artifacts string) {
	dst, err := filepath.Abs(filepath.Join(artifacts, time.Now().UTC().Format("20060102T150405Z")))
	if err != nil {
		return
	}
	if err := CollectLogs(dir, dst); err != nil {
		fmt.Fprintf(os.Stderr, "collect logs: %v\n", err)
	}
	fmt.Fprintf(os.Stderr, "logs of the local cluster kept in %s\n", dst)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
