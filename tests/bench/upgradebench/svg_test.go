package upgradebench

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/openbao-operator/openbao-operator/pkg/resources"
	"github.com/openbao-operator/openbao-operator/tests/loadclient"
)

var update = flag.Bool("update", false, "rewrite the golden pictures under testdata")

var testResult = &Result{
	Machine: Machine{CPUs: 2, MemoryGiB: 23.5, CPUModel: "AMD EPYC"}, LoadAvgStart: "0.52 0.40 0.31 1/200 1234", Rate: 62.5,
}

// syntheticRolling is a three-server Rolling upgrade, highest ordinal first, whose leader
// bao-0 is stepped down at its turn (17 s) and leadership reaches bao-2 at 18.6 s.
func syntheticRolling() *Run {
	start := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	ready := func(at ...float64) []ReadyChange {
		var out []ReadyChange
		for i, t := range at {
			out = append(out, ReadyChange{At: t, Ready: i%2 == 0})
		}
		return out
	}
	ok := make([]int, 141)
	failed := make([]int, 141)
	for i := range ok {
		ok[i] = 12
	}
	// No successful write from 17.9 s to 18.5 s; one failed request in the bin at 18 s.
	for i := 92; i < 94; i++ {
		ok[i] = 0
	}
	failed[92] = 1
	return &Run{
		Mode: ModeRolling, Replicas: 3, From: "2.6.2", To: "2.7.2", Start: start,
		TotalSeconds: 25, OperatorDoneSeconds: 26,
		LeaderChanges: []LeaderChange{{AtSeconds: 18.6, From: "bao-0", FromVersion: "2.6.2", To: "bao-2", ToVersion: "2.7.2"}},
		Load:          Load{Requests: 2200, Acknowledged: 1750, FailedRequests: 1, LongestWriteGapSecs: 0.6, WriteGapAtSecs: 17.9},
		Timeline: &Timeline{
			From: -5, To: 30,
			Servers: []ServerLife{
				{Pod: "bao-0", Version: "2.6.2", Seen: -5, Ready: ready(-5), Stop: ptr.To(20.0), Gone: ptr.To(22.0)},
				{Pod: "bao-0", Version: "2.7.2", Seen: 22.5, Ready: ready(24)},
				{Pod: "bao-1", Version: "2.6.2", Seen: -5, Ready: ready(-5), Stop: ptr.To(12.0), Gone: ptr.To(14.0)},
				{Pod: "bao-1", Version: "2.7.2", Seen: 14.5, Ready: ready(16)},
				{Pod: "bao-2", Version: "2.6.2", Seen: -5, Ready: ready(-5), Stop: ptr.To(4.0), Gone: ptr.To(6.0)},
				{Pod: "bao-2", Version: "2.7.2", Seen: 6.5, Ready: ready(8)},
			},
			Active: []ActiveChange{{At: -4.8, Pod: "bao-0", Version: "2.6.2"}, {At: 18, Pod: ""}, {At: 18.6, Pod: "bao-2", Version: "2.7.2"}},
			Steps: []StepChange{
				{At: 0.5, Step: "PreChecks"}, {At: 3.5, Step: "UpdatePod", Pod: "bao-2"}, {At: 8.5, Step: "WaitCaughtUp", Pod: "bao-2"},
				{At: 11.5, Step: "UpdatePod", Pod: "bao-1"}, {At: 16.5, Step: "StepDown", Pod: "bao-0"},
				{At: 19.5, Step: "UpdatePod", Pod: "bao-0"}, {At: 26},
			},
			Jobs:   []JobLife{{Name: "bao-stepdown-1a2b-0", Action: "step-down", Target: "bao-0", Start: 17, End: ptr.To(19.0)}},
			Writes: WriteSeries{Start: -5, Bin: 0.25, OK: ok, Failed: failed},
			Events: []Event{{At: 0, What: "spec.version 2.7.2"}, {At: 25, What: "all rolled"}, {At: 26, What: "operator done"}},
		},
	}
}

// syntheticFailovers are a kill and a network cut of bao-0.
func syntheticFailovers() []*FailoverRun {
	at := time.Date(2026, 11, 30, 21, 0, 0, 0, time.UTC)
	series := WriteSeries{Start: -5, Bin: 0.25, OK: make([]int, 121), Failed: make([]int, 121)}
	for i := range series.OK {
		series.OK[i] = 12
	}
	for i := 20; i < 27; i++ {
		series.OK[i] = 0
	}
	series.Failed[21], series.Failed[25] = 2, 1
	tl := func(fault *Event, restart []ServerLife) *Timeline {
		return &Timeline{
			From: -5, To: 25,
			Servers: append([]ServerLife{
				{Pod: "bao-1", Version: "2.7.2", Seen: -5, Ready: []ReadyChange{{At: -5, Ready: true}}},
				{Pod: "bao-2", Version: "2.7.2", Seen: -5, Ready: []ReadyChange{{At: -5, Ready: true}}},
			}, restart...),
			Active: []ActiveChange{{At: -4.9, Pod: "bao-0", Version: "2.7.2"}, {At: 0.1, Pod: ""}, {At: 1.6, Pod: "bao-1", Version: "2.7.2"}},
			Steps:  []StepChange{{At: 0.05, Step: "leader=bao-0"}, {At: 0.3, Step: "leader=-"}, {At: 6.6, Step: "leader=bao-1"}},
			Writes: series,
			Events: []Event{*fault, {At: 1.6, What: "bao-1 active"}, {At: 9, What: "recovered"}},
		}
	}
	return []*FailoverRun{
		{Fault: FaultKill, Replicas: 3, Version: "2.7.2", Victim: "bao-0", At: at, NewActive: "bao-1",
			NewActiveSeconds: ptr.To(1.6), OperatorLeaderSeconds: ptr.To(6.6), RecoveredSeconds: ptr.To(9.0),
			Load: Load{Requests: 1800, FailedRequests: 3, LongestWriteGapSecs: 1.8, WriteGapAtSecs: 0},
			Timeline: tl(&Event{At: 0, What: "kill bao-0"}, []ServerLife{{Pod: "bao-0", Version: "2.7.2", Seen: -5,
				Ready: []ReadyChange{{At: -5, Ready: true}, {At: 0.4, Ready: false}, {At: 5, Ready: true}}}})},
		{Fault: FaultNetCut, Replicas: 3, Version: "2.7.2", Victim: "bao-0", At: at.Add(time.Minute), NewActive: "bao-1",
			NewActiveSeconds: ptr.To(1.6), OperatorLeaderSeconds: ptr.To(6.6), RecoveredSeconds: ptr.To(9.0),
			Load: Load{Requests: 1800, FailedRequests: 3, LongestWriteGapSecs: 1.8, WriteGapAtSecs: 0},
			Timeline: tl(&Event{At: 0, What: "netcut bao-0", Until: ptr.To(8.0)}, []ServerLife{{Pod: "bao-0", Version: "2.7.2", Seen: -5,
				Ready: []ReadyChange{{At: -5, Ready: true}}}})},
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run `go test ./tests/bench/upgradebench -run %s -update` to write it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the picture drawn now; look at both and rewrite it with -update if the change is intended", path)
	}
}

func TestUpgradeSVGGolden(t *testing.T) {
	golden(t, "upgrade-rolling-3.svg", UpgradeSVG(testResult, syntheticRolling()))
}

func TestFailoverSVGGolden(t *testing.T) {
	golden(t, "failover-3.svg", FailoverSVG(testResult, syntheticFailovers()))
}

// node is an element of a parsed SVG document.
type node struct {
	name     string
	attrs    map[string]string
	children []*node
	text     string
}

// parseSVG parses the document, failing the test if it is not well-formed XML.
func parseSVG(t *testing.T, data []byte) *node {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(data))
	root := &node{}
	stack := []*node{root}
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: tok.Name.Local, attrs: map[string]string{}}
			for _, a := range tok.Attr {
				n.attrs[a.Name.Local] = a.Value
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			stack[len(stack)-1].text += string(tok)
		}
	}
	if len(root.children) != 1 || root.children[0].name != "svg" || root.children[0].attrs["version"] != "1.1" {
		t.Fatalf("the document is not one <svg version=\"1.1\"> element")
	}
	return root.children[0]
}

// find returns the elements under n that satisfy ok, depth first.
func (n *node) find(ok func(*node) bool) []*node {
	var out []*node
	for _, c := range n.children {
		if ok(c) {
			out = append(out, c)
		}
		out = append(out, c.find(ok)...)
	}
	return out
}

func (n *node) byID(t *testing.T, id string) *node {
	t.Helper()
	found := n.find(func(c *node) bool { return c.attrs["id"] == id })
	if len(found) != 1 {
		t.Fatalf("%d elements with id %q, want 1", len(found), id)
	}
	return found[0]
}

func hasClass(c *node, class string) bool {
	return strings.Contains(" "+c.attrs["class"]+" ", " "+class+" ")
}

func attrNum(t *testing.T, n *node, a string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(n.attrs[a], 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", a, n.attrs[a], err)
	}
	return v
}

// TestUpgradeSVGStructure checks the lanes and that segments sit where their times say.
func TestUpgradeSVGStructure(t *testing.T) {
	r := syntheticRolling()
	doc := parseSVG(t, UpgradeSVG(testResult, r))
	sc := plotScale{from: -5, to: 30}
	near := func(got, want float64) bool { return got > want-0.06 && got < want+0.06 }

	for _, id := range []string{"p0-server-bao-0", "p0-server-bao-1", "p0-server-bao-2", "p0-writes", "p0-steps", "p0-jobs", "legend"} {
		doc.byID(t, id)
	}
	// The new bao-2: its version segment starts at 6.5 s, not Ready until 8 s.
	lane := doc.byID(t, "p0-server-bao-2")
	var versionAt, notReadyTo []float64
	for _, c := range lane.children {
		switch {
		case hasClass(c, "version"):
			versionAt = append(versionAt, attrNum(t, c, "x"))
		case hasClass(c, "notready"):
			notReadyTo = append(notReadyTo, attrNum(t, c, "x")+attrNum(t, c, "width"))
		}
	}
	if len(versionAt) != 2 || !near(versionAt[1], sc.x(6.5)) {
		t.Errorf("bao-2's version segments start at %v, want two, the second at x=%.1f (6.5 s)", versionAt, sc.x(6.5))
	}
	// Not Ready: the old server from its stop (4 s) to gone (6 s), the new one to 8 s.
	if len(notReadyTo) != 2 || !near(notReadyTo[0], sc.x(6)) || !near(notReadyTo[1], sc.x(8)) {
		t.Errorf("bao-2's not-Ready spans end at %v, want x=%.1f and x=%.1f", notReadyTo, sc.x(6), sc.x(8))
	}
	// Leadership: bao-0 until 18 s, nobody until 18.6 s, then bao-2 to the end.
	active := doc.find(func(c *node) bool { return hasClass(c, "active") })
	if len(active) != 2 {
		t.Fatalf("%d active spans, want 2", len(active))
	}
	if x, w := attrNum(t, active[1], "x"), attrNum(t, active[1], "width"); !near(x, sc.x(18.6)) || !near(x+w, sc.x(30)) {
		t.Errorf("bao-2 active from x=%.1f to %.1f, want %.1f to %.1f", x, x+w, sc.x(18.6), sc.x(30))
	}
	if y0, y1 := attrNum(t, active[1], "y"), attrNum(t, doc.byID(t, "p0-server-bao-2").children[1], "y"); y0 < y1 || y0 > y1+2 {
		t.Errorf("bao-2's active span at y=%.1f is not on its lane (y=%.1f)", y0, y1)
	}
	// The failed request and the longest gap.
	failedReqs := doc.find(func(c *node) bool { return hasClass(c, "failed") })
	if len(failedReqs) != 1 || !near(attrNum(t, failedReqs[0], "x"), sc.x(18)) {
		t.Errorf("failed requests drawn: %d, want one at x=%.1f (18 s)", len(failedReqs), sc.x(18))
	}
	labels := doc.find(func(c *node) bool { return hasClass(c, "gap-label") })
	if len(labels) != 1 || labels[0].text != "longest write gap 0.60 s" {
		t.Errorf("gap labels %v, want one \"longest write gap 0.60 s\"", texts(labels))
	}
	// Steps: six labelled segments, the step-down one from 16.5 s to 19.5 s; one Job.
	steps := doc.byID(t, "p0-steps").find(func(c *node) bool { return hasClass(c, "segment") })
	if len(steps) != 6 {
		t.Fatalf("%d step segments, want 6", len(steps))
	}
	if x, w := attrNum(t, steps[4], "x"), attrNum(t, steps[4], "width"); !near(x, sc.x(16.5)) || !near(x+w, sc.x(19.5)) {
		t.Errorf("StepDown bao-0 from x=%.1f to %.1f, want %.1f to %.1f", x, x+w, sc.x(16.5), sc.x(19.5))
	}
	stepLabels := texts(doc.byID(t, "p0-steps").find(func(c *node) bool { return hasClass(c, "segment-label") }))
	if want := "PreChecks|UpdatePod bao-2|WaitCaughtUp bao-2|UpdatePod bao-1|StepDown bao-0|UpdatePod bao-0"; strings.Join(stepLabels, "|") != want {
		t.Errorf("step labels %q, want %q", stepLabels, want)
	}
	jobLabels := texts(doc.byID(t, "p0-jobs").find(func(c *node) bool { return hasClass(c, "segment-label") }))
	if len(jobLabels) != 1 || jobLabels[0] != "step-down bao-0" {
		t.Errorf("Job labels %q, want [step-down bao-0]", jobLabels)
	}
	events := doc.find(func(c *node) bool { return hasClass(c, "event") })
	if len(events) != 3 || !near(attrNum(t, events[0], "x1"), sc.x(0)) || !near(attrNum(t, events[2], "x1"), sc.x(26)) {
		t.Errorf("%d event lines, want 3 at 0, 25 and 26 s", len(events))
	}
	ticks := texts(doc.find(func(c *node) bool { return hasClass(c, "tick") }))
	if strings.Join(ticks, " ") != "-5 0 5 10 15 20 25 30" {
		t.Errorf("axis ticks %v, want every 5 s from -5 to 30", ticks)
	}
	title := doc.find(func(c *node) bool { return c.name == "text" })[0].text
	if title != "Rolling upgrade of 3 servers, OpenBao 2.6.2 → 2.7.2" {
		t.Errorf("title %q", title)
	}
}

// plotScale is where a time must land, from the layout written out here rather than from
// the code under test: the plot runs from x=170 to x=980.
type plotScale struct{ from, to float64 }

func (s plotScale) x(t float64) float64 { return 170 + (t-s.from)/(s.to-s.from)*810 }

func texts(ns []*node) []string {
	var out []string
	for _, n := range ns {
		out = append(out, n.text)
	}
	return out
}

// TestFailoverSVGStructure: one panel per fault; the network cut is a shaded span.
func TestFailoverSVGStructure(t *testing.T) {
	doc := parseSVG(t, FailoverSVG(testResult, syntheticFailovers()))
	doc.byID(t, "p0-server-bao-0")
	doc.byID(t, "p1-server-bao-0")
	// The killed server loses Ready at 0.4 s and has it back at 5 s.
	var notReady []*node
	for _, c := range doc.byID(t, "p0-server-bao-0").children {
		if hasClass(c, "notready") {
			notReady = append(notReady, c)
		}
	}
	sc := plotScale{from: -5, to: 25}
	if len(notReady) != 1 || fmt.Sprintf("%.1f", attrNum(t, notReady[0], "x")) != fmt.Sprintf("%.1f", sc.x(0.4)) {
		t.Errorf("killed server's not-Ready spans: %d, want one from x=%.1f", len(notReady), sc.x(0.4))
	}
	spans := doc.byID(t, "p1").find(func(c *node) bool { return hasClass(c, "span") })
	if len(spans) != 1 || fmt.Sprintf("%.1f", attrNum(t, spans[0], "width")) != fmt.Sprintf("%.1f", sc.x(8)-sc.x(0)) {
		t.Errorf("network cut spans: %d, want one 8 s wide", len(spans))
	}
	if len(doc.byID(t, "p0").find(func(c *node) bool { return hasClass(c, "span") })) != 0 {
		t.Error("the kill panel has a span")
	}
	lane := texts(doc.byID(t, "p0-steps").find(func(c *node) bool { return hasClass(c, "segment-label") }))
	if strings.Join(lane, " ") != "leader=bao-0 leader=- leader=bao-1" {
		t.Errorf("status.leader lane %q", lane)
	}
}

// TestSVGEscapes: names and messages are escaped; the document stays well-formed.
func TestSVGEscapes(t *testing.T) {
	r := syntheticRolling()
	r.Timeline.Servers[0].Pod = `bao-<0>&"x"`
	r.Timeline.Steps[1].Step = "Wait<&>"
	r.Error = `halted: "a" < b & c`
	out := UpgradeSVG(testResult, r)
	doc := parseSVG(t, out)
	doc.byID(t, `p0-server-bao-<0>&"x"`)
	if !bytes.Contains(out, []byte("bao-&lt;0&gt;&amp;&#34;x&#34;")) || !bytes.Contains(out, []byte("Wait&lt;&amp;&gt;")) {
		t.Error("a name is not escaped")
	}
	if !strings.Contains(strings.Join(texts(doc.find(func(c *node) bool { return c.name == "text" })), "\n"), `FAILED: halted: "a" < b & c`) {
		t.Error("the error does not read back as written")
	}
}

func TestNotReady(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    ServerLife
		end  float64
		want string
	}{
		{"never Ready", ServerLife{Seen: 1}, 5, "[[1 5]]"},
		{"Ready later", ServerLife{Seen: 1, Ready: []ReadyChange{{At: 3, Ready: true}}}, 5, "[[1 3]]"},
		{"stopped", ServerLife{Seen: 1, Ready: []ReadyChange{{At: 1, Ready: true}}, Stop: ptr.To(4.0)}, 5, "[[4 5]]"},
		{"lost Ready and back", ServerLife{Seen: 0, Ready: []ReadyChange{{At: 0, Ready: true}, {At: 2, Ready: false}, {At: 3, Ready: true}}}, 5, "[[2 3]]"},
		{"terminating while its Ready condition holds", ServerLife{Seen: 0, Ready: []ReadyChange{{At: 0, Ready: true}, {At: 4.5, Ready: false}}, Stop: ptr.To(4.0)}, 5, "[[4 5]]"},
		{"lost Ready then stopped", ServerLife{Seen: 0, Ready: []ReadyChange{{At: 0, Ready: true}, {At: 2, Ready: false}}, Stop: ptr.To(4.0)}, 5, "[[2 5]]"},
	} {
		if got := fmt.Sprint(notReady(tc.s, tc.end)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestWriteSeries(t *testing.T) {
	zero := time.Date(2026, 11, 30, 20, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return zero.Add(time.Duration(s * float64(time.Second))) }
	reqs := []loadclient.Request{
		{Start: at(-1), Duration: 100 * time.Millisecond, Write: true},               // bin 0 (-0.9 s)
		{Start: at(0.1), Duration: 200 * time.Millisecond, Write: true},              // bin 5 (0.3 s)
		{Start: at(0.1), Duration: 10 * time.Millisecond, Write: false},              // a read: not counted
		{Start: at(0.2), Duration: 2 * time.Second, Write: false, Err: "timeout"},    // failed, bin 12 (2.2 s)
		{Start: at(5), Duration: 10 * time.Millisecond, Write: true, Err: "refused"}, // outside the window
	}
	w := writeSeries(zero, -1, 2.5, reqs)
	if len(w.OK) != 15 || w.OK[0] != 1 || w.OK[5] != 1 || w.Failed[12] != 1 {
		t.Errorf("ok %v failed %v", w.OK, w.Failed)
	}
	total := 0
	for i := range w.OK {
		total += w.OK[i] + w.Failed[i]
	}
	if total != 3 {
		t.Errorf("%d requests binned, want 3", total)
	}
}

// TestRecorderPictureObservations: readiness changes of a pod, and a Job's action, target
// and end, as the informers deliver them.
func TestRecorderPictureObservations(t *testing.T) {
	rec := &recorder{pods: map[types.UID]*podLife{}, stepDown: map[string]time.Time{}, jobs: map[string]*jobLife{}}
	pod := func(ready corev1.ConditionStatus) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "bao-0", UID: "u0", Labels: map[string]string{resources.LabelComponent: resources.ComponentServer}},
			Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}},
		}
	}
	for _, s := range []corev1.ConditionStatus{corev1.ConditionFalse, corev1.ConditionTrue, corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionTrue} {
		rec.onPod(pod(s), false)
	}
	var got []bool
	for _, c := range rec.pods["u0"].ReadyChanges {
		got = append(got, c.Ready)
	}
	if fmt.Sprint(got) != "[true false true]" {
		t.Errorf("Ready changes %v, want [true false true]", got)
	}
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: "bao-stepdown-1a2b-0"}}
	job.Spec.Template.Spec.Containers = []corev1.Container{{Args: []string{"executor", "step-down", "--address", "https://bao-0.bao-internal.ns.svc:8200"}}}
	rec.onJob(job)
	job = job.DeepCopy()
	job.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	rec.onJob(job)
	_, _, jobs := rec.pictureSnapshot()
	if len(jobs) != 1 || jobs[0].Action != "step-down" || jobs[0].Target != "bao-0" || jobs[0].End.IsZero() || jobs[0].Failed {
		t.Errorf("jobs %+v, want one finished step-down of bao-0", jobs)
	}
	if _, ok := rec.stepDown["bao-0"]; !ok {
		t.Error("the step-down Job's target was not recorded for the figures")
	}
}

// TestWriteSVGsFromJSON: the pictures drawn from a result read back from its JSON are the
// ones drawn from the result itself (bench-upgrade --render), named after the JSON file.
func TestWriteSVGsFromJSON(t *testing.T) {
	res := *testResult
	res.Runs = []*Run{syntheticRolling(), {Mode: ModeNaive, Replicas: 3, Error: "no timeline: not drawn"}}
	res.Failovers = syntheticFailovers()
	data, err := json.Marshal(&res)
	if err != nil {
		t.Fatal(err)
	}
	back := &Result{}
	if err := json.Unmarshal(data, back); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	written, err := WriteSVGs(back, filepath.Join(dir, "upgrade-20261130T200000Z.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "upgrade-20261130T200000Z-rolling-3.svg"), filepath.Join(dir, "upgrade-20261130T200000Z-failover-3.svg")}
	if fmt.Sprint(written) != fmt.Sprint(want) {
		t.Fatalf("written %v, want %v", written, want)
	}
	for i, direct := range [][]byte{UpgradeSVG(&res, res.Runs[0]), FailoverSVG(&res, res.Failovers)} {
		got, err := os.ReadFile(written[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, direct) {
			t.Errorf("%s drawn from the JSON differs from the picture drawn from the run", written[i])
		}
	}
}
