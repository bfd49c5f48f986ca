package upgradebench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what the benchmark writes as JSON.
type Result struct {
	Started  time.Time `json:"started"`
	Machine  Machine   `json:"machine"`
	From     string    `json:"from"`
	To       string    `json:"to"`
	Rate     float64   `json:"loadRequestsPerSecond"`
	Settle   string    `json:"settle"`
	Steady   string    `json:"steady"`
	BlueGrnV string    `json:"blueGreenVerificationPeriod,omitempty"`
	// LoadAvg is /proc/loadavg before the first run and after the last: the machine may be
	// shared, and other work slows the servers and the operator down.
	LoadAvgStart string `json:"loadAvgStart"`
	LoadAvgEnd   string `json:"loadAvgEnd"`
	// LeaderNotLast: leadership was moved away from ordinal 0 before each upgrade.
	LeaderNotLast bool   `json:"leaderMovedFromOrdinal0"`
	Runs          []*Run `json:"runs"`
	// Failovers are the failover runs: the active server of a cluster under load lost.
	Failovers []*FailoverRun `json:"failovers,omitempty"`
	Summary   []string       `json:"summary"`
	Targets   []Target       `json:"targets"`
}

// Machine describes where the figures were measured.
type Machine struct {
	CPUs      int     `json:"cpus"`
	MemoryGiB float64 `json:"memoryGiB"`
	CPUModel  string  `json:"cpuModel,omitempty"`
	Kernel    string  `json:"kernel,omitempty"`
}

// Target is one target of the issue, checked against a run.
type Target struct {
	Run  string `json:"run"`
	What string `json:"what"`
	Met  bool   `json:"met"`
	Seen string `json:"seen"`
}

// LoadAvg reads /proc/loadavg.
func LoadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(data))
}

// MachineCPU is what /proc/stat's first line says of every core together, in seconds:
// time spent working (user, nice, system, irq, softirq, steal) and time idle (idle, iowait).
type MachineCPU struct{ Busy, Idle float64 }

// ReadMachineCPU reads /proc/stat (clock ticks of 1/100 s); zero when it cannot.
func ReadMachineCPU() MachineCPU {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return MachineCPU{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return MachineCPU{}
	}
	var m MachineCPU
	for i, v := range f[1:9] {
		ticks, _ := strconv.ParseFloat(v, 64)
		if i == 3 || i == 4 { // idle, iowait
			m.Idle += ticks / 100
		} else {
			m.Busy += ticks / 100
		}
	}
	return m
}

// procStat reads a process's parent and its CPU clock ticks from /proc/<pid>/stat: its own
// user and system time (utime, stime) and that of its children that ended and were waited
// for (cutime, cstime).
func procStat(pid int) (ppid int, own, children float64, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, 0, false // ended meanwhile
	}
	// The command name, in parentheses, may hold spaces: the fields start after it.
	st := string(data)
	f := strings.Fields(st[strings.LastIndexByte(st, ')')+1:])
	if len(f) < 15 {
		return 0, 0, 0, false
	}
	ppid, _ = strconv.Atoi(f[1])
	tick := func(i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
	return ppid, tick(11) + tick(12), tick(13) + tick(14), true
}

// ProcessCPUSeconds is a process's own user and system CPU time in seconds (clock ticks of
// 1/100 s), 0 when it is not found.
func ProcessCPUSeconds(pid int) float64 {
	_, own, _, _ := procStat(pid)
	return own / 100
}

// TreeCPUSeconds is the CPU time of process root and all its descendants, in seconds:
// each live process's own user and system time plus that of its children that ended and
// were waited for, so a process that ended during a measurement still counts, in its
// parent. For the benchmarks root is their own process, which runs the local cluster: the
// control plane, the node, OpenBao's servers and the operator, and nothing else of the
// machine.
func TreeCPUSeconds(root int) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	parent := map[int]int{}
	ticks := map[int]float64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ppid, own, children, ok := procStat(pid)
		if !ok {
			continue
		}
		parent[pid], ticks[pid] = ppid, own+children
	}
	var sum float64
	for pid, t := range ticks {
		for p := pid; p != 0; p = parent[p] {
			if p == root {
				sum += t
				break
			}
			if _, known := parent[p]; !known {
				break
			}
		}
	}
	return sum / 100
}

// ThisMachine reads the CPU count, memory and kernel.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU()}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = float64(int(kb/(1<<20)*10+0.5)) / 10
			}
		}
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	return m
}

func runName(r *Run) string { return fmt.Sprintf("%s/%d", r.Mode, r.Replicas) }

// Evaluate fills the summary line(s) and checks the targets: 0 acknowledged writes lost;
// at most one leadership change per old leader and none from new to old; longest write gap
// at most 1 s and at most 1/5 of the naive roll's; operator overhead at most 10 % of the
// total; no API writes in steady state.
func (res *Result) Evaluate() {
	naive := map[int]*Run{}
	for _, r := range res.Runs {
		if r.Mode == ModeNaive && r.Error == "" {
			naive[r.Replicas] = r
		}
	}
	var parts []string
	for _, r := range res.Runs {
		if r.Mode == ModeNaive {
			continue
		}
		name := runName(r)
		add := func(what string, met bool, seen string) {
			res.Targets = append(res.Targets, Target{Run: name, What: what, Met: met, Seen: seen})
		}
		if r.Error != "" {
			add("run completed", false, r.Error)
			continue
		}
		add("0 acknowledged writes lost", r.Load.Lost == 0 && r.Load.VerifyError == "",
			fmt.Sprintf("%d of %d lost%s", r.Load.Lost, r.Load.Acknowledged, suffix(r.Load.VerifyError)))
		add("at most one leadership change per old leader", r.MaxChangesPerOldLeader <= 1,
			fmt.Sprintf("max %d", r.MaxChangesPerOldLeader))
		add("no leadership change from new to old", r.NewToOld == 0, fmt.Sprintf("%d", r.NewToOld))
		add("longest write gap <= 1 s", r.Load.LongestWriteGapSecs <= 1, fmt.Sprintf("%.3f s", r.Load.LongestWriteGapSecs))
		if n := naive[r.Replicas]; n != nil {
			add("longest write gap <= 1/5 of the naive roll's", r.Load.LongestWriteGapSecs <= n.Load.LongestWriteGapSecs/5,
				fmt.Sprintf("%.3f s vs naive %.3f s", r.Load.LongestWriteGapSecs, n.Load.LongestWriteGapSecs))
			parts = append(parts, fmt.Sprintf("%s/naive %d replicas: unavailability %s (%.2fs/%.2fs), failed requests %s (%d/%d)",
				r.Mode, r.Replicas, ratio(r.Load.LongestWriteGapSecs, n.Load.LongestWriteGapSecs), r.Load.LongestWriteGapSecs, n.Load.LongestWriteGapSecs,
				ratio(float64(r.Load.FailedRequests), float64(n.Load.FailedRequests)), r.Load.FailedRequests, n.Load.FailedRequests))
		} else {
			add("longest write gap <= 1/5 of the naive roll's", false, "no naive run to compare with")
		}
		if r.Mode != ModeBlueGreen {
			add("operator overhead <= 10 % of the total", r.OverheadFraction <= 0.10,
				fmt.Sprintf("%.1f s of %.1f s (%.1f %%)", r.OperatorOverheadSeconds, r.TotalSeconds, 100*r.OverheadFraction))
		}
		if r.APISteady != nil {
			add("no API writes in steady state", r.APISteady.Writes == 0,
				fmt.Sprintf("%d writes to the cluster's namespace in %s (%v); %d leader-election lease renewals", r.APISteady.Writes, res.Steady, r.APISteady.WritesByResource, r.APISteady.LeaseWrites))
		} else {
			add("no API writes in steady state", false, "steady state not measured")
		}
	}
	res.evaluateFailovers()
	res.Summary = parts
}

// evaluateFailovers checks the failover targets: at most 3 s without a successful write and
// no acknowledged write lost.
func (res *Result) evaluateFailovers() {
	for _, r := range res.Failovers {
		add := func(what string, met bool, seen string) {
			res.Targets = append(res.Targets, Target{Run: failoverName(r), What: what, Met: met, Seen: seen})
		}
		if r.Error != "" {
			add("run completed", false, r.Error)
			continue
		}
		add("0 acknowledged writes lost", r.Load.Lost == 0 && r.Load.VerifyError == "",
			fmt.Sprintf("%d of %d lost%s", r.Load.Lost, r.Load.Acknowledged, suffix(r.Load.VerifyError)))
		add("longest write gap <= 3 s", r.Load.LongestWriteGapSecs <= 3, fmt.Sprintf("%.3f s", r.Load.LongestWriteGapSecs))
	}
}

func suffix(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

// ratio is a/b, "0" when both are zero and "inf" when only b is.
func ratio(a, b float64) string {
	switch {
	case a == 0 && b == 0:
		return "0 (both 0)"
	case b == 0:
		return "inf"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// SummaryLine is the one-line summary.
func (res *Result) SummaryLine() string {
	met, total := 0, 0
	for _, t := range res.Targets {
		total++
		if t.Met {
			met++
		}
	}
	return fmt.Sprintf("summary %s -> %s: %s; targets met %d/%d", res.From, res.To, strings.Join(res.Summary, "; "), met, total)
}

func secs(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *f)
}

// WriteTable prints the runs, each server's timeline, the leadership changes and the
// targets.
func (res *Result) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\nUpgrade %s -> %s, load %.1f requests/s (4 writes : 1 read); %d CPUs, %.1f GiB (%s); loadavg before %s, after %s\n\n",
		res.From, res.To, res.Rate, res.Machine.CPUs, res.Machine.MemoryGiB, res.Machine.CPUModel, res.LoadAvgStart, res.LoadAvgEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\ttotal s\top done s\tlead s\toverhead s (%)\tleader chg\tnew->old\tmax/old leader\tno leader s\twrite gap s\tfailed req\tacked\tlost\tAPI upgrade (writes)\tAPI steady (writes, leases)\tpeak RSS MiB\t")
	for _, r := range res.Runs {
		if r.Error != "" && r.TotalSeconds == 0 {
			fmt.Fprintf(tw, "%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\t\t\t\t\t\t\n", runName(r), r.Error)
			continue
		}
		steady := "-"
		if r.APISteady != nil {
			steady = fmt.Sprintf("%d (%d, %d)", r.APISteady.Total, r.APISteady.Writes, r.APISteady.LeaseWrites)
		}
		overhead := "-"
		if r.Mode != ModeBlueGreen {
			overhead = fmt.Sprintf("%.1f (%.1f%%)", r.OperatorOverheadSeconds, 100*r.OverheadFraction)
		}
		opDone := "-"
		if r.OperatorDoneSeconds > 0 {
			opDone = fmt.Sprintf("%.1f", r.OperatorDoneSeconds)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%.1f\t%s\t%d\t%d\t%d\t%.2f\t%.3f\t%d\t%d\t%d\t%d (%d)\t%s\t%.0f\t\n",
			runName(r), r.TotalSeconds, opDone, r.LeadSeconds, overhead, len(r.LeaderChanges), r.NewToOld, r.MaxChangesPerOldLeader,
			r.LongestLeaderlessSecs, r.Load.LongestWriteGapSecs, r.Load.FailedRequests, r.Load.Acknowledged, r.Load.Lost,
			r.APIUpgrade.Total, r.APIUpgrade.Writes, steady, r.OperatorPeakRSSMiB)
	}
	_ = tw.Flush()

	for _, r := range res.Runs {
		fmt.Fprintf(w, "\n%s (namespace %s, leader before: %s)%s\n", runName(r), r.Namespace, r.LeaderBefore, suffix(r.Error))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "pod\tstep-down\tstop\tgone\tstart\tReady\tcaught up\toverhead before\t")
		for _, p := range r.Pods {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", p.Name, secs(p.StepDown), secs(p.Stop), secs(p.Gone), secs(p.Start), secs(p.Ready), secs(p.CaughtUp), secs(p.OverheadPre))
		}
		_ = tw.Flush()
		var chg []string
		for _, c := range r.LeaderChanges {
			chg = append(chg, fmt.Sprintf("%.1fs %s(%s)->%s(%s)", c.AtSeconds, c.From, c.FromVersion, c.To, c.ToVersion))
		}
		fmt.Fprintf(w, "  leadership (every server polled %.1f times/s): %s\n", r.PollRoundsPerSecond, orNone(chg))
		fmt.Fprintf(w, "  load: %d requests (%d writes), %d failed (%d writes), longest write gap %.3fs at %.1fs; operator API during upgrade: %s",
			r.Load.Requests, r.Load.Writes, r.Load.FailedRequests, r.Load.FailedWrites, r.Load.LongestWriteGapSecs, r.Load.WriteGapAtSecs, r.APIUpgrade)
		if len(r.APIUpgrade.WritesByResource) > 0 {
			fmt.Fprintf(w, ", writes %v", r.APIUpgrade.WritesByResource)
		}
		fmt.Fprintln(w)
		if r.APISteady != nil {
			fmt.Fprintf(w, "  steady state %.0fs: %s, writes %v, lease renewals %d, elsewhere %v\n",
				r.SteadySeconds, r.APISteady, r.APISteady.WritesByResource, r.APISteady.LeaseWrites, r.APISteady.OtherWritesByResource)
		}
		if r.APISettle != nil {
			fmt.Fprintf(w, "  settle (between done and steady state): %s, writes %v\n", r.APISettle, r.APISettle.WritesByResource)
		}
		for i, f := range r.Load.Failures {
			if i == 8 {
				fmt.Fprintf(w, "  ... %d more failed requests in the JSON\n", len(r.Load.Failures)-i)
				break
			}
			kind := "read"
			if f.Write {
				kind = "write"
			}
			fmt.Fprintf(w, "  failed %s at %.2fs via %s: %s\n", kind, f.AtSeconds, f.Endpoint, strings.Join(strings.Fields(f.Err), " "))
		}
	}

	res.writeFailovers(w)

	fmt.Fprintln(w, "\nTargets:")
	for _, t := range res.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %s %-12s %-48s %s\n", mark, t.Run, t.What, t.Seen)
	}
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// writeFailovers prints the failover runs and what the operator reported during each.
func (res *Result) writeFailovers(w io.Writer) {
	if len(res.Failovers) == 0 {
		return
	}
	fmt.Fprintf(w, "\nFailover of the active server on %s under the same load (request timeout %s)\n\n", res.To, failoverRequestTimeout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "run\tvictim\tnew active\tnew active s\tstatus.leader s\twrite gap s\tfailed req\tacked\tlost\trecovered s\t")
	for _, r := range res.Failovers {
		if r.Error != "" && r.NewActiveSeconds == nil {
			fmt.Fprintf(tw, "%s\tFAILED: %s\t\t\t\t\t\t\t\t\t\n", failoverName(r), r.Error)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%d\t%d\t%d\t%s\t\n", failoverName(r), r.Victim, r.NewActive,
			secs3(r.NewActiveSeconds), secs3(r.OperatorLeaderSeconds), r.Load.LongestWriteGapSecs, r.Load.FailedRequests,
			r.Load.Acknowledged, r.Load.Lost, secs(r.RecoveredSeconds))
	}
	_ = tw.Flush()
	for _, r := range res.Failovers {
		fmt.Fprintf(w, "  %s: operator reported %s\n", failoverName(r), orNone(r.OperatorSaw))
	}
}

func secs3(f *float64) string {
	if f == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *f)
}
