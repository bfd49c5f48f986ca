package upgradebench

import (
	"sort"
	"time"

	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

// Timeline is what a run's picture is drawn from: the observations of the run over time,
// in seconds since the run's zero (the version change of an upgrade, the fault of a
// failover; negative during the warm-up). It holds no figure of its own: the figures are
// computed from the same observations elsewhere in the Run.
type Timeline struct {
	// From and To bound the window shown: from the start of the load to its end.
	From float64 `json:"from"`
	To   float64 `json:"to"`
	// Servers are the server pods, one entry per pod incarnation (UID).
	Servers []ServerLife `json:"servers"`
	// Active lists the changes of the active server seen by the poller; an empty pod
	// means that no server reported itself active.
	Active []ActiveChange `json:"active,omitempty"`
	// Steps are the changes of status.upgrade.step (upgrades) or of status.leader
	// (failovers) as the operator reported them; an empty step ends the last one.
	Steps []StepChange `json:"steps,omitempty"`
	// Jobs are the cluster's Jobs (step-down, snapshot).
	Jobs   []JobLife   `json:"jobs,omitempty"`
	Writes WriteSeries `json:"writes"`
	// Events are single moments worth a line across the picture.
	Events []Event `json:"events,omitempty"`
}

// ServerLife is one server pod incarnation.
type ServerLife struct {
	Pod     string  `json:"pod"`
	Version string  `json:"version"`
	Seen    float64 `json:"seen"`
	// Ready lists the changes of the pod's Ready condition.
	Ready []ReadyChange `json:"ready,omitempty"`
	// Stop is when its deletion started, Gone when it left the API.
	Stop *float64 `json:"stop,omitempty"`
	Gone *float64 `json:"gone,omitempty"`
}

// ReadyChange is a change of a pod's Ready condition.
type ReadyChange struct {
	At    float64 `json:"at"`
	Ready bool    `json:"ready"`
}

// ActiveChange is a change of the active server.
type ActiveChange struct {
	At      float64 `json:"at"`
	Pod     string  `json:"pod"`
	Version string  `json:"version,omitempty"`
}

// StepChange is a change of what the operator reported.
type StepChange struct {
	At   float64 `json:"at"`
	Step string  `json:"step"`
	Pod  string  `json:"pod,omitempty"`
}

// JobLife is one Job of the cluster.
type JobLife struct {
	Name   string   `json:"name"`
	Action string   `json:"action,omitempty"`
	Target string   `json:"target,omitempty"`
	Start  float64  `json:"start"`
	End    *float64 `json:"end,omitempty"`
	Failed bool     `json:"failed,omitempty"`
}

// WriteSeries counts the load's requests in bins of Bin seconds from Start, by the time
// each completed: successful writes, and failed requests (reads and writes).
type WriteSeries struct {
	Start  float64 `json:"start"`
	Bin    float64 `json:"bin"`
	OK     []int   `json:"ok"`
	Failed []int   `json:"failed"`
}

// Event is one moment of a run.
type Event struct {
	At   float64 `json:"at"`
	What string  `json:"what"`
	// Until, when set, makes the event a span (a network cut).
	Until *float64 `json:"until,omitempty"`
}

// writeBin is the width of the write series' bins.
const writeBin = 0.25

// newTimeline builds the picture's observations of a run whose zero is zero: the
// recorder's pods, active servers and Jobs, and the load's requests. steps and events are
// the caller's.
func newTimeline(zero, end time.Time, rec *recorder, reqs []loadclient.Request) *Timeline {
	rel := func(t time.Time) float64 { return round3(t.Sub(zero).Seconds()) }
	relp := func(t time.Time) *float64 {
		if t.IsZero() {
			return nil
		}
		return ptr.To(rel(t))
	}
	tl := &Timeline{To: rel(end)}
	if len(reqs) > 0 {
		first := reqs[0].Start
		for _, q := range reqs {
			if q.Start.Before(first) {
				first = q.Start
			}
		}
		tl.From = rel(first)
	}
	pods, active, jobs := rec.pictureSnapshot()
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Name != pods[j].Name {
			return pods[i].Name < pods[j].Name
		}
		return pods[i].Seen.Before(pods[j].Seen)
	})
	for _, p := range pods {
		s := ServerLife{Pod: p.Name, Version: p.Version, Seen: rel(p.Seen), Stop: relp(p.Stop), Gone: relp(p.Gone)}
		for _, c := range p.ReadyChanges {
			s.Ready = append(s.Ready, ReadyChange{At: rel(c.At), Ready: c.Ready})
		}
		tl.Servers = append(tl.Servers, s)
		tl.From = min(tl.From, s.Seen)
	}
	for _, a := range active {
		tl.Active = append(tl.Active, ActiveChange{At: rel(a.At), Pod: a.Pod, Version: a.Version})
	}
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].Seen.Before(jobs[j].Seen) })
	for _, j := range jobs {
		tl.Jobs = append(tl.Jobs, JobLife{Name: j.Name, Action: j.Action, Target: j.Target, Start: rel(j.Seen), End: relp(j.End), Failed: j.Failed})
	}
	tl.Writes = writeSeries(zero, tl.From, tl.To, reqs)
	return tl
}

// writeSeries bins the requests by the time they completed.
func writeSeries(zero time.Time, from, to float64, reqs []loadclient.Request) WriteSeries {
	n := max(0, int((to-from)/writeBin)+1)
	w := WriteSeries{Start: from, Bin: writeBin, OK: make([]int, n), Failed: make([]int, n)}
	for _, q := range reqs {
		at := q.Start.Add(q.Duration).Sub(zero).Seconds()
		i := int((at - from) / writeBin)
		if i < 0 || i >= n {
			continue
		}
		switch {
		case q.Err != "":
			w.Failed[i]++
		case q.Write:
			w.OK[i]++
		}
	}
	return w
}

// upgradeTimeline completes the picture of an upgrade run once its figures are known:
// the operator's steps recorded while waiting, and the version change, the end of the
// roll and the operator's done as events.
func upgradeTimeline(r *Run, rec *recorder, reqs []loadclient.Request) *Timeline {
	tl := newTimeline(r.Start, time.Now(), rec, reqs)
	if r.Timeline != nil {
		tl.Steps = r.Timeline.Steps
	}
	change := "spec.version " + r.To
	if r.Mode == ModeNaive {
		change = "StatefulSet image " + r.To
	}
	tl.Events = append(tl.Events, Event{At: 0, What: change})
	if r.TotalSeconds > 0 {
		tl.Events = append(tl.Events, Event{At: round3(r.TotalSeconds), What: "all rolled"})
	}
	if r.OperatorDoneSeconds > 0 {
		tl.Events = append(tl.Events, Event{At: round3(r.OperatorDoneSeconds), What: "operator done"})
	}
	return tl
}
