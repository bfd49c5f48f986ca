package upgradebench

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/types"

	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

const testUser = "system:serviceaccount:op:mgr"

func TestCountAudit(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	log := strings.Join([]string{
		`{"stage":"ResponseComplete","verb":"get","user":{"username":"` + testUser + `"},"objectRef":{"resource":"pods","namespace":"ns1"},"stageTimestamp":"2026-11-25T10:00:01.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"` + testUser + `"},"objectRef":{"resource":"openbaoclusters","subresource":"status","namespace":"ns1"},"stageTimestamp":"2026-11-25T10:00:02.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"update","user":{"username":"` + testUser + `"},"objectRef":{"resource":"leases","namespace":"op"},"stageTimestamp":"2026-11-25T10:00:03.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"create","user":{"username":"` + testUser + `"},"objectRef":{"resource":"events","namespace":"ns2"},"stageTimestamp":"2026-11-25T10:00:04.000000Z"}`,
		// Another user, and a request outside the window.
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"someone"},"objectRef":{"resource":"pods","namespace":"ns1"},"stageTimestamp":"2026-11-25T10:00:02.000000Z"}`,
		`{"stage":"ResponseComplete","verb":"patch","user":{"username":"` + testUser + `"},"objectRef":{"resource":"pods","namespace":"ns1"},"stageTimestamp":"2026-11-25T10:00:10.000000Z"}`,
	}, "\n")
	got, err := countAudit(strings.NewReader(log), testUser, "ns1", "op", t0, t0.Add(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 4 || got.Writes != 1 || got.LeaseWrites != 1 || got.OtherWrites != 1 {
		t.Errorf("total %d, writes %d, lease writes %d, other writes %d; want 4, 1, 1, 1", got.Total, got.Writes, got.LeaseWrites, got.OtherWrites)
	}
	if got.WritesByResource["patch openbaoclusters/status"] != 1 {
		t.Errorf("writes by resource %v, want one patch of openbaoclusters/status", got.WritesByResource)
	}
}

func TestLongestWriteGap(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	reqs := []loadclient.Request{
		{Start: at(0), Duration: 10 * time.Millisecond, Write: true},
		{Start: at(20), Duration: 10 * time.Millisecond, Write: true, Err: "refused"},
		{Start: at(40), Duration: 10 * time.Millisecond, Write: false}, // a read does not count
		{Start: at(1000), Duration: 10 * time.Millisecond, Write: true},
		{Start: at(1100), Duration: 10 * time.Millisecond, Write: true},
	}
	gap, from := longestWriteGap(reqs)
	if gap != time.Second || !from.Equal(at(10)) {
		t.Errorf("gap %s from %s, want 1s from +10ms", gap, from.Sub(t0))
	}
}

// TestAnalyze: a three-server roll where the operator steps bao-0 down before stopping it.
func TestAnalyze(t *testing.T) {
	t0 := time.Now()
	s := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	rec := &recorder{pods: map[types.UID]*podLife{}, stepDown: map[string]time.Time{"bao-0": s(20)}}
	add := func(uid, name, version string, seen, stop, ready, caught time.Time) {
		rec.pods[types.UID(uid)] = &podLife{Name: name, UID: types.UID(uid), Version: version, Seen: seen, Stop: stop, Gone: stop, Ready: ready, CaughtUp: caught}
	}
	add("o2", "bao-2", "2.6.2", s(-60), s(1), s(-50), s(-50))
	add("n2", "bao-2", "2.7.2", s(3), time.Time{}, s(5), s(6))
	add("o1", "bao-1", "2.6.2", s(-60), s(8), s(-50), s(-50))
	add("n1", "bao-1", "2.7.2", s(10), time.Time{}, s(12), s(13))
	add("o0", "bao-0", "2.6.2", s(-60), s(22), s(-50), s(-50))
	add("n0", "bao-0", "2.7.2", s(24), time.Time{}, s(26), s(27))
	rec.changes = []leaderChange{
		{At: s(-100), From: "bao-1", FromVersion: "2.6.2", To: "bao-0", ToVersion: "2.6.2"}, // before the upgrade
		{At: s(21), From: "bao-0", FromVersion: "2.6.2", To: "bao-2", ToVersion: "2.7.2"},
	}
	r := &Run{Mode: ModeRolling, Start: t0, TotalSeconds: 27}
	analyze(r, rec, "2.6.2", "2.7.2")

	if len(r.Pods) != 3 || r.Pods[0].Name != "bao-0" || *r.Pods[0].StepDown != 20 || *r.Pods[0].CaughtUp != 27 {
		t.Fatalf("pods %+v", r.Pods)
	}
	// Overhead: bao-1 moved 2 s after bao-2 caught up, bao-0 (its step-down) 7 s after bao-1.
	if r.OperatorOverheadSeconds != 9 || r.LeadSeconds != 1 {
		t.Errorf("overhead %.3f, lead %.3f; want 9 and 1", r.OperatorOverheadSeconds, r.LeadSeconds)
	}
	if len(r.LeaderChanges) != 1 || r.NewToOld != 0 || r.MaxChangesPerOldLeader != 1 {
		t.Errorf("leader changes %+v, new->old %d, max per old leader %d", r.LeaderChanges, r.NewToOld, r.MaxChangesPerOldLeader)
	}

	rec.changes = append(rec.changes, leaderChange{At: s(23), From: "bao-2", FromVersion: "2.7.2", To: "bao-0", ToVersion: "2.6.2"})
	r = &Run{Mode: ModeRolling, Start: t0, TotalSeconds: 27}
	analyze(r, rec, "2.6.2", "2.7.2")
	if r.NewToOld != 1 {
		t.Errorf("new->old %d, want 1", r.NewToOld)
	}
}

// TestAnalyzeEarlyStepDown: five servers, the leader on ordinal 1 stepped down before any
// server moved; that step-down starts nobody's turn, so bao-1's turn starts at its stop.
func TestAnalyzeEarlyStepDown(t *testing.T) {
	t0 := time.Now()
	s := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	rec := &recorder{pods: map[types.UID]*podLife{}, stepDown: map[string]time.Time{"bao-1": s(0.3), "bao-0": s(18.7)}}
	add := func(uid, name, version string, seen, stop, ready, caught time.Time) {
		rec.pods[types.UID(uid)] = &podLife{Name: name, UID: types.UID(uid), Version: version, Seen: seen, Stop: stop, Gone: stop, Ready: ready, CaughtUp: caught}
	}
	for i, stop := range []float64{23.7, 14.8, 10.7, 6.8, 2.5} {
		name := fmt.Sprintf("bao-%d", i)
		add("o"+name, name, "2.6.2", s(-60), s(stop), s(-50), s(-50))
	}
	for i, caught := range []float64{34.0, 17.5, 13.5, 9.5, 5.3} {
		name := fmt.Sprintf("bao-%d", i)
		add("n"+name, name, "2.7.2", s(caught-2), time.Time{}, s(caught), s(caught))
	}
	r := &Run{Mode: ModeRolling, Start: t0, TotalSeconds: 35.7}
	analyze(r, rec, "2.6.2", "2.7.2")
	// bao-3 1.5 s after bao-4 caught up, bao-2 1.2 s, bao-1 (its stop) 1.3 s, bao-0 (its
	// step-down) 1.2 s.
	if r.OperatorOverheadSeconds != 5.2 || r.LeadSeconds != 0.3 {
		t.Errorf("overhead %.3f, lead %.3f; want 5.2 and 0.3", r.OperatorOverheadSeconds, r.LeadSeconds)
	}
}

// TestAnalyzeStepDownBeforeThePollerSawCatchUp: the operator saw bao-1 caught up and
// created bao-0's step-down 0.1 s before the poller did: bao-0's turn starts at its
// step-down, with no overhead before it; the hand-over that follows is part of its turn.
func TestAnalyzeStepDownBeforeThePollerSawCatchUp(t *testing.T) {
	t0 := time.Now()
	s := func(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }
	rec := &recorder{pods: map[types.UID]*podLife{}, stepDown: map[string]time.Time{"bao-0": s(6.4)}}
	add := func(uid, name, version string, seen, stop, ready, caught time.Time) {
		rec.pods[types.UID(uid)] = &podLife{Name: name, UID: types.UID(uid), Version: version, Seen: seen, Stop: stop, Gone: stop, Ready: ready, CaughtUp: caught}
	}
	for i, stop := range []float64{11.7, 3.5, 0.4} {
		name := fmt.Sprintf("bao-%d", i)
		add("o"+name, name, "2.6.2", s(-60), s(stop), s(-50), s(-50))
	}
	for i, caught := range []float64{22.0, 6.5, 3.3} {
		name := fmt.Sprintf("bao-%d", i)
		add("n"+name, name, "2.7.2", s(caught-2), time.Time{}, s(caught), s(caught))
	}
	r := &Run{Mode: ModeRolling, Start: t0, TotalSeconds: 22.6}
	analyze(r, rec, "2.6.2", "2.7.2")
	// bao-1 0.2 s after bao-2 caught up; bao-0 (its step-down) before bao-1 was seen caught up.
	if r.OperatorOverheadSeconds != 0.2 || r.LeadSeconds != 0.4 {
		t.Errorf("overhead %.3f, lead %.3f; want 0.2 and 0.4", r.OperatorOverheadSeconds, r.LeadSeconds)
	}
}

func TestEvaluate(t *testing.T) {
	steady := APIRequests{Total: 10, Writes: 0, LeaseWrites: 100}
	res := &Result{From: "2.6.2", To: "2.7.2", Steady: "5m0s", Runs: []*Run{
		{Mode: ModeRolling, Replicas: 3, TotalSeconds: 100, OperatorOverheadSeconds: 5, OverheadFraction: 0.05,
			MaxChangesPerOldLeader: 1, Load: Load{LongestWriteGapSecs: 0.5, FailedRequests: 1, Acknowledged: 10}, APISteady: &steady},
		{Mode: ModeNaive, Replicas: 3, Load: Load{LongestWriteGapSecs: 2, FailedRequests: 10}},
	}}
	res.Evaluate()
	for _, tg := range res.Targets {
		want := tg.What != "longest write gap <= 1/5 of the naive roll's" // 0.5 > 2/5
		if tg.Met != want {
			t.Errorf("%s: met %v, want %v (%s)", tg.What, tg.Met, want, tg.Seen)
		}
	}
	if !strings.Contains(res.SummaryLine(), "unavailability 0.25") || !strings.Contains(res.SummaryLine(), "failed requests 0.10") {
		t.Errorf("summary %q", res.SummaryLine())
	}
}

func TestReadMachineCPUCountsWorkAndIdle(t *testing.T) {
	before := ReadMachineCPU()
	require.Positive(t, before.Busy+before.Idle, "/proc/stat gave no CPU time")
	deadline := time.Now().Add(200 * time.Millisecond)
	for time.Now().Before(deadline) { // work, so that the busy time grows
	}
	after := ReadMachineCPU()
	require.Greater(t, after.Busy, before.Busy)
	require.GreaterOrEqual(t, after.Idle, before.Idle)
}

func TestTreeCPUSecondsCountsEndedChildren(t *testing.T) {
	before := TreeCPUSeconds(os.Getpid())
	// A child that does a fixed amount of work and ends: its time must still count, in
	// this process (whatever else the machine runs meanwhile).
	cmd := exec.Command("sh", "-c", `i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done`)
	require.NoError(t, cmd.Run())
	child := (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	after := TreeCPUSeconds(os.Getpid())
	require.Greater(t, child, 0.05, "the child did too little work to measure")
	require.GreaterOrEqual(t, after-before, child-0.02, "the ended child's CPU time is missing")
	require.Zero(t, TreeCPUSeconds(-1), "a process that does not exist has no time")
}
