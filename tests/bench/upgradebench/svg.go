package upgradebench

import (
	"fmt"
	"html"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The picture of a run: plain SVG 1.1 (no script, no CSS beyond presentation
// attributes), so that it renders in a README on GitHub and in any browser. One panel per
// timeline; in each, from top to bottom: the events, one lane per server pod, the
// application's writes, the operator's steps, its Jobs, and the time axis.

// Layout, in SVG user units (pixels).
const (
	svgWidth    = 1000.0
	plotLeft    = 170.0
	plotRight   = svgWidth - 20
	labelX      = 10.0
	lineH       = 13.0 // one row of small text
	serverLaneH = 18.0
	laneGap     = 8.0
	writesLaneH = 40.0
	barH        = 12.0 // the bar of a steps or Jobs lane
	axisH       = 34.0
	fontFamily  = "Helvetica, Arial, sans-serif"
)

// Colours.
const (
	colNoVersion = "#bdbdbd"
	colWrites    = "#636363"
	colFailed    = "#de2d26"
	colGap       = "#e6550d"
	colStepA     = "#fdae6b"
	colStepB     = "#fdd0a2"
	colJob       = "#9e9ac8"
	colEvent     = "#636363"
	colCut       = "#fee0d2"
	colGrid      = "#e0e0e0"
	colActive    = "#000000"
)

// versionColours are given to the versions of a picture in order: the version upgraded
// from, then the version upgraded to, then any other.
var versionColours = []string{"#6baed6", "#74c476", "#fd8d3c", "#9e9ac8", "#fdd0a2"}

// timeScale maps seconds of a timeline to x.
type timeScale struct{ from, to float64 }

func (s timeScale) x(t float64) float64 {
	if s.to <= s.from {
		return plotLeft
	}
	t = math.Max(s.from, math.Min(s.to, t))
	return plotLeft + (t-s.from)/(s.to-s.from)*(plotRight-plotLeft)
}

// panel is one timeline with its heading.
type panel struct {
	heading []string // lines above the panel
	tl      *Timeline
	zero    string // what second 0 is, for the axis label
	// gapAt and gap are the longest write gap, from the run's figures.
	gapAt, gap float64
}

// picture is one SVG document.
type picture struct {
	title    []string
	versions []string
	panels   []panel
}

// UpgradeSVG draws the picture of an upgrade run; nil when the run recorded no timeline.
func UpgradeSVG(res *Result, r *Run) []byte {
	if r.Timeline == nil {
		return nil
	}
	what := fmt.Sprintf("%s upgrade of %d servers", r.Mode, r.Replicas)
	if r.Mode == ModeNaive {
		what = fmt.Sprintf("Naive roll of %d servers (operator paused, StatefulSet partition 0)", r.Replicas)
	}
	figures := fmt.Sprintf("all rolled after %.1f s", r.TotalSeconds)
	if r.OperatorDoneSeconds > 0 {
		figures += fmt.Sprintf(", operator done after %.1f s", r.OperatorDoneSeconds)
	}
	figures += fmt.Sprintf("; %d leadership change(s); longest write gap %.2f s; %d of %d requests failed; %d of %d acknowledged writes lost",
		len(r.LeaderChanges), r.Load.LongestWriteGapSecs, r.Load.FailedRequests, r.Load.Requests, r.Load.Lost, r.Load.Acknowledged)
	if r.Error != "" {
		figures += "; FAILED: " + r.Error
	}
	p := picture{
		title:    []string{fmt.Sprintf("%s, OpenBao %s → %s", what, r.From, r.To), machineLine(res, r.Start), figures},
		versions: []string{r.From, r.To},
		panels: []panel{{tl: r.Timeline, zero: "seconds since the version change",
			gapAt: r.Load.WriteGapAtSecs, gap: r.Load.LongestWriteGapSecs}},
	}
	return p.render()
}

// FailoverSVG draws the failover runs of one cluster, one panel per fault; nil when none
// recorded a timeline.
func FailoverSVG(res *Result, runs []*FailoverRun) []byte {
	var p picture
	for _, r := range runs {
		if r.Timeline == nil {
			continue
		}
		if len(p.panels) == 0 {
			p.title = []string{fmt.Sprintf("Failover of the active server under load, %d servers on OpenBao %s", r.Replicas, r.Version),
				machineLine(res, r.At)}
			p.versions = []string{r.Version}
		}
		line := fmt.Sprintf("%s of %s: ", r.Fault, r.Victim)
		if r.NewActiveSeconds != nil {
			line += fmt.Sprintf("%s active after %.2f s, ", r.NewActive, *r.NewActiveSeconds)
		}
		if r.OperatorLeaderSeconds != nil {
			line += fmt.Sprintf("status.leader after %.2f s, ", *r.OperatorLeaderSeconds)
		}
		line += fmt.Sprintf("longest write gap %.2f s, %d of %d requests failed, %d lost", r.Load.LongestWriteGapSecs, r.Load.FailedRequests, r.Load.Requests, r.Load.Lost)
		if r.RecoveredSeconds != nil {
			line += fmt.Sprintf(", recovered after %.1f s", *r.RecoveredSeconds)
		}
		if r.Error != "" {
			line += "; FAILED: " + r.Error
		}
		p.panels = append(p.panels, panel{heading: []string{line}, tl: r.Timeline, zero: "seconds since the fault",
			gapAt: r.Load.WriteGapAtSecs, gap: r.Load.LongestWriteGapSecs})
	}
	if len(p.panels) == 0 {
		return nil
	}
	return p.render()
}

func machineLine(res *Result, at time.Time) string {
	m := res.Machine
	s := fmt.Sprintf("%s · %d CPUs, %.1f GiB", at.UTC().Format("2006-01-02 15:04 UTC"), m.CPUs, m.MemoryGiB)
	if m.CPUModel != "" {
		s += " (" + m.CPUModel + ")"
	}
	if f := strings.Fields(res.LoadAvgStart); len(f) > 0 {
		s += " · load average " + f[0] + " at the start"
	}
	return s + fmt.Sprintf(" · load %.1f requests/s (4 writes : 1 read)", res.Rate)
}

// WriteSVGs writes the picture of every run of res beside its JSON file jsonPath
// (<dir>/upgrade-<time>.json): <dir>/upgrade-<time>-<mode>-<replicas>.svg for each upgrade
// run, <dir>/upgrade-<time>-failover-<replicas>.svg for the failover runs of each cluster.
func WriteSVGs(res *Result, jsonPath string) ([]string, error) {
	base := strings.TrimSuffix(jsonPath, filepath.Ext(jsonPath))
	var written []string
	write := func(name string, data []byte) error {
		if data == nil {
			return nil
		}
		path := base + "-" + name + ".svg"
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	for _, r := range res.Runs {
		if err := write(fmt.Sprintf("%s-%d", strings.ToLower(r.Mode), r.Replicas), UpgradeSVG(res, r)); err != nil {
			return written, err
		}
	}
	byReplicas := map[int][]*FailoverRun{}
	var counts []int
	for _, r := range res.Failovers {
		if byReplicas[r.Replicas] == nil {
			counts = append(counts, r.Replicas)
		}
		byReplicas[r.Replicas] = append(byReplicas[r.Replicas], r)
	}
	for _, n := range counts {
		if err := write(fmt.Sprintf("failover-%d", n), FailoverSVG(res, byReplicas[n])); err != nil {
			return written, err
		}
	}
	return written, nil
}

// svgBuf accumulates SVG elements.
type svgBuf struct{ strings.Builder }

func (b *svgBuf) f(format string, args ...any) { fmt.Fprintf(b, format, args...) }

// esc escapes text and attribute values.
func esc(s string) string { return html.EscapeString(s) }

// num formats a coordinate.
func num(v float64) string {
	if math.Abs(v) < 0.05 {
		v = 0 // no "-0"
	}
	s := fmt.Sprintf("%.1f", v)
	return strings.TrimSuffix(s, ".0")
}

func (b *svgBuf) rect(x0, y, x1, h float64, attrs string) {
	b.f(`<rect x="%s" y="%s" width="%s" height="%s" %s/>`+"\n", num(x0), num(y), num(math.Max(x1-x0, 0.5)), num(h), attrs)
}

func (b *svgBuf) text(x, y float64, size int, attrs, s string) {
	b.f(`<text x="%s" y="%s" font-size="%d" %s>%s</text>`+"\n", num(x), num(y), size, attrs, esc(s))
}

func (p *picture) colour(version string) string {
	if version == "" {
		return colNoVersion
	}
	for i, v := range p.versions {
		if v == version {
			return versionColours[i%len(versionColours)]
		}
	}
	p.versions = append(p.versions, version)
	return versionColours[(len(p.versions)-1)%len(versionColours)]
}

func (p *picture) render() []byte {
	var body svgBuf
	y := 8.0
	for i, line := range p.title {
		size, weight := 12, ""
		if i == 0 {
			size, weight = 15, `font-weight="bold" `
		}
		for _, l := range wrap(line, size) {
			y += float64(size) + 4
			body.text(labelX, y, size, weight+`fill="#252525"`, l)
		}
	}
	y += 6
	for i := range p.panels {
		y = p.panels[i].render(&body, p, i, y) + 10
	}
	y = p.legend(&body, y)

	var out svgBuf
	out.f(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	out.f(`<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%s" height="%s" viewBox="0 0 %s %s" font-family="%s">`+"\n",
		num(svgWidth), num(y), num(svgWidth), num(y), fontFamily)
	out.f(`<defs><pattern id="notready" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">` +
		`<rect width="6" height="6" fill="#ffffff" fill-opacity="0.55"/><line x1="0" y1="0" x2="0" y2="6" stroke="#525252" stroke-width="2"/></pattern></defs>` + "\n")
	out.f(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	out.WriteString(body.String())
	out.f("</svg>\n")
	return []byte(out.String())
}

// labelRows places labels, each starting at x and w wide, on the first row where it does
// not overlap the one before; it returns each label's row and the number of rows.
func labelRows(xs, ws []float64) ([]int, int) {
	var ends []float64
	rows := make([]int, len(xs))
	for i := range xs {
		r := 0
		for r < len(ends) && ends[r] > xs[i] {
			r++
		}
		if r == len(ends) {
			ends = append(ends, 0)
		}
		ends[r] = xs[i] + ws[i] + 6
		rows[i] = r
	}
	return rows, len(ends)
}

// textWidth estimates the width of s at font size 10.
func textWidth(s string) float64 { return 5.6 * float64(len([]rune(s))) }

// render draws the panel with its top at y and returns its bottom: the heading, the
// events' labels, the lanes (servers, writes, steps, Jobs) over the axis' grid, the
// events' spans and lines over the lanes, and the time axis.
func (pn *panel) render(b *svgBuf, p *picture, idx int, y float64) float64 {
	tl := pn.tl
	sc := timeScale{from: tl.From, to: tl.To}
	id := fmt.Sprintf("p%d", idx)
	b.f(`<g id="%s">`+"\n", id)
	for _, line := range pn.heading {
		for _, l := range wrap(line, 12) {
			y += 16
			b.text(labelX, y, 12, `font-weight="bold" fill="#252525"`, l)
		}
	}
	y += 4

	// Events: labels on top, lines drawn once the panel's height is known.
	evs, nEv := pn.eventLabels(b, sc, y)
	y += lineH*float64(nEv) + 2
	lanesTop := y

	ticks := axisTicks(tl)
	var lanes svgBuf
	laneY, y := pn.serverLanes(&lanes, p, sc, id, y)
	pn.activeBorders(&lanes, sc, laneY)
	pn.writesLane(&lanes, sc, id, y)
	y += writesLaneH + laneGap
	y = segmentLane(&lanes, sc, id+"-steps", stepsLabel(tl), stepSegments(tl), y) + laneGap
	y = segmentLane(&lanes, sc, id+"-jobs", "operator Jobs", jobSegments(tl), y)
	lanesBottom := y

	// Grid, spans and event lines behind/over the lanes, then the lanes.
	for _, t := range ticks {
		b.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1"/>`+"\n", num(sc.x(t)), num(lanesTop), num(sc.x(t)), num(lanesBottom), colGrid)
	}
	b.WriteString(lanes.String())
	eventMarks(b, sc, evs, nEv, lanesTop, lanesBottom)

	y = timeAxis(b, sc, ticks, pn.zero, lanesBottom)
	b.f("</g>\n")
	return y + axisH
}

// eventMark is one event of a panel: where its line goes, its label, and the end of its
// span, if it has one.
type eventMark struct {
	x     float64
	label string
	until *float64
}

// eventLabels draws the labels of the panel's events on rows from y on, and returns the
// events and the number of rows of labels.
func (pn *panel) eventLabels(b *svgBuf, sc timeScale, y float64) ([]eventMark, int) {
	var evs []eventMark
	var xs, ws []float64
	for _, e := range pn.tl.Events {
		label := fmt.Sprintf("%s (%s s)", e.What, num(e.At))
		x := sc.x(e.At)
		lx := x + 2
		if lx+textWidth(label) > svgWidth-4 {
			lx = x - 2 - textWidth(label) // near the right edge: the label goes left of its line
		}
		evs = append(evs, eventMark{x: x, label: label, until: e.Until})
		xs, ws = append(xs, lx), append(ws, textWidth(label))
	}
	evRows, nEv := labelRows(xs, ws)
	for i, e := range evs {
		b.text(xs[i], y+lineH*float64(evRows[i]+1)-3, 10, `class="event-label" fill="`+colEvent+`"`, e.label)
	}
	return evs, nEv
}

// eventMarks draws the spans of the events that have one, then every event's line, from
// the top of the nEv rows of labels above lanesTop to the bottom of the lanes.
func eventMarks(b *svgBuf, sc timeScale, evs []eventMark, nEv int, lanesTop, lanesBottom float64) {
	for _, e := range evs {
		if e.until != nil {
			b.rect(e.x, lanesTop, sc.x(*e.until), lanesBottom-lanesTop, `class="span" fill="`+colCut+`" fill-opacity="0.45"`)
		}
	}
	for _, e := range evs {
		b.f(`<line class="event" x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="1" stroke-dasharray="4 3"/>`+"\n",
			num(e.x), num(lanesTop-lineH*float64(nEv)-2), num(e.x), num(lanesBottom), colEvent)
	}
}

// axisTicks returns the seconds of the time axis' ticks.
func axisTicks(tl *Timeline) []float64 {
	step := tickStep(tl.To - tl.From)
	var ticks []float64
	for t := math.Ceil(tl.From/step) * step; t <= tl.To+1e-9; t += step {
		ticks = append(ticks, t)
	}
	return ticks
}

// serverLanes draws one lane per server pod, in the order of their names, from y on: the
// version each pod ran, hatched while it was not Ready. It returns each lane's top and
// the bottom of the last lane.
func (pn *panel) serverLanes(lanes *svgBuf, p *picture, sc timeScale, id string, y float64) (map[string]float64, float64) {
	tl := pn.tl
	var names []string
	byName := map[string][]ServerLife{}
	for _, s := range tl.Servers {
		if byName[s.Pod] == nil {
			names = append(names, s.Pod)
		}
		byName[s.Pod] = append(byName[s.Pod], s)
	}
	sort.Strings(names)
	laneY := map[string]float64{}
	for _, name := range names {
		laneY[name] = y
		lanes.f(`<g class="lane server" id="%s-server-%s">`+"\n", id, esc(name))
		lanes.text(labelX, y+serverLaneH-5, 11, `fill="#252525"`, name)
		for _, s := range byName[name] {
			end := tl.To
			if s.Gone != nil {
				end = *s.Gone
			}
			x0, x1 := sc.x(s.Seen), sc.x(end)
			lanes.rect(x0, y, x1, serverLaneH, fmt.Sprintf(`class="version" fill="%s"`, p.colour(s.Version)))
			for _, nr := range notReady(s, end) {
				lanes.rect(sc.x(nr[0]), y, sc.x(nr[1]), serverLaneH, `class="notready" fill="url(#notready)"`)
			}
			if x1-x0 > textWidth(s.Version)+6 {
				lanes.text(x0+3, y+serverLaneH-5, 10, `fill="#08306b"`, s.Version)
			}
		}
		lanes.f("</g>\n")
		y += serverLaneH + laneGap
	}
	return laneY, y
}

// activeBorders draws leadership: a thick border on the active server's lane.
func (pn *panel) activeBorders(lanes *svgBuf, sc timeScale, laneY map[string]float64) {
	tl := pn.tl
	for i, a := range tl.Active {
		ly, ok := laneY[a.Pod]
		if a.Pod == "" || !ok {
			continue
		}
		end := tl.To
		if i+1 < len(tl.Active) {
			end = tl.Active[i+1].At
		}
		lanes.rect(sc.x(a.At), ly+1, sc.x(end), serverLaneH-2,
			fmt.Sprintf(`class="active" fill="none" stroke="%s" stroke-width="2.5"`, colActive))
	}
}

// writesLane draws the application's lane, writesLaneH high, at y: successful writes per
// bin as a band, failed requests in red, the longest gap.
func (pn *panel) writesLane(lanes *svgBuf, sc timeScale, id string, y float64) {
	tl := pn.tl
	lanes.f(`<g class="lane writes" id="%s-writes">`+"\n", id)
	lanes.text(labelX, y+14, 11, `fill="#252525"`, "application")
	lanes.text(labelX, y+27, 9, `fill="#636363"`, fmt.Sprintf("successful writes / %g s", tl.Writes.Bin))
	lanes.f(`<path class="ok" d="%s" fill="%s" fill-opacity="0.6" stroke="none"/>`+"\n", writesPath(sc, tl.Writes, y+writesLaneH), colWrites)
	for i, n := range tl.Writes.Failed {
		if n == 0 {
			continue
		}
		t0 := tl.Writes.Start + float64(i)*tl.Writes.Bin
		x0 := sc.x(t0)
		lanes.f(`<rect class="failed" x="%s" y="%s" width="%s" height="%s" fill="%s"><title>%d failed at %s s</title></rect>`+"\n",
			num(x0), num(y+10), num(math.Max(sc.x(t0+tl.Writes.Bin)-x0, 2)), num(writesLaneH-10), colFailed, n, num(t0))
	}
	if pn.gap > 0 {
		gx0, gx1 := sc.x(pn.gapAt), sc.x(pn.gapAt+pn.gap)
		gy := y + 5
		lanes.f(`<path class="gap" d="M%s %s V%s H%s V%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n",
			num(gx0), num(gy+5), num(gy), num(gx1), num(gy+5), colGap)
		lanes.text(gx1+3, gy+4, 10, `class="gap-label" fill="`+colGap+`"`, fmt.Sprintf("longest write gap %.2f s", pn.gap))
	}
	lanes.f("</g>\n")
}

// writesPath is the outline of the band of successful writes per bin, standing on base
// and as high as the lane at the busiest bin.
func writesPath(sc timeScale, w WriteSeries, base float64) string {
	peak := 1
	for _, n := range w.OK {
		peak = max(peak, n)
	}
	var path strings.Builder
	fmt.Fprintf(&path, "M%s %s", num(sc.x(w.Start)), num(base))
	for i, n := range w.OK {
		t0 := w.Start + float64(i)*w.Bin
		h := float64(n) / float64(peak) * (writesLaneH - 12)
		fmt.Fprintf(&path, " L%s %s L%s %s", num(sc.x(t0)), num(base-h), num(sc.x(t0+w.Bin)), num(base-h))
	}
	fmt.Fprintf(&path, " L%s %s Z", num(sc.x(w.Start+float64(len(w.OK))*w.Bin)), num(base))
	return path.String()
}

// stepSegments returns the operator's steps as segments, each until the next step, in
// alternating colours.
func stepSegments(tl *Timeline) []segment {
	var segs []segment
	for i, s := range tl.Steps {
		if s.Step == "" {
			continue
		}
		end := tl.To
		if i+1 < len(tl.Steps) {
			end = tl.Steps[i+1].At
		}
		label := s.Step
		if s.Pod != "" {
			label += " " + s.Pod
		}
		fill := colStepA
		if len(segs)%2 == 1 {
			fill = colStepB
		}
		segs = append(segs, segment{s.At, end, label, fill})
	}
	return segs
}

// stepsLabel names the steps lane: the operator's steps, or status.leader when the steps
// are the leader the operator reported (a failover run).
func stepsLabel(tl *Timeline) string {
	if len(tl.Steps) > 0 && strings.HasPrefix(tl.Steps[0].Step, "leader=") {
		return "status.leader"
	}
	return "operator steps"
}

// jobSegments returns the operator's Jobs as segments, failed ones in red.
func jobSegments(tl *Timeline) []segment {
	var segs []segment
	for _, j := range tl.Jobs {
		end := tl.To
		if j.End != nil {
			end = *j.End
		}
		label := j.Name
		if j.Action != "" {
			label = j.Action
			if j.Target != "" {
				label += " " + j.Target
			}
		}
		fill := colJob
		if j.Failed {
			fill = colFailed
			label += " (failed)"
		}
		segs = append(segs, segment{j.Start, end, label, fill})
	}
	return segs
}

// timeAxis draws the time axis just below y with its ticks and the label of second 0,
// and returns the axis line's y.
func timeAxis(b *svgBuf, sc timeScale, ticks []float64, zero string, y float64) float64 {
	y += 2
	b.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#252525" stroke-width="1"/>`+"\n", num(plotLeft), num(y), num(plotRight), num(y))
	for _, t := range ticks {
		x := sc.x(t)
		b.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#252525" stroke-width="1"/>`+"\n", num(x), num(y), num(x), num(y+4))
		b.text(x, y+15, 10, `class="tick" text-anchor="middle" fill="#252525"`, num(t))
	}
	b.text((plotLeft+plotRight)/2, y+29, 10, `text-anchor="middle" fill="#525252"`, zero)
	return y
}

// segment is one labelled span of a steps or Jobs lane.
type segment struct {
	from, to    float64
	label, fill string
}

// segmentLane draws segments as a bar with their labels on rows beneath it, and returns
// the lane's bottom.
func segmentLane(b *svgBuf, sc timeScale, id, name string, segs []segment, y float64) float64 {
	b.f(`<g class="lane segments" id="%s">`+"\n", esc(id))
	b.text(labelX, y+barH-2, 11, `fill="#252525"`, name)
	xs, ws := make([]float64, len(segs)), make([]float64, len(segs))
	for i, s := range segs {
		xs[i], ws[i] = sc.x(s.from), textWidth(s.label)
	}
	rows, n := labelRows(xs, ws)
	if len(segs) == 0 {
		b.text(plotLeft+2, y+barH-2, 10, `fill="#969696"`, "none")
	}
	for i, s := range segs {
		x0, x1 := sc.x(s.from), sc.x(s.to)
		b.f(`<rect class="segment" x="%s" y="%s" width="%s" height="%s" fill="%s" stroke="#ffffff" stroke-width="0.5"><title>%s: %s–%s s</title></rect>`+"\n",
			num(x0), num(y), num(math.Max(x1-x0, 1)), num(barH), s.fill, esc(s.label), num(s.from), num(s.to))
		ly := y + barH + lineH*float64(rows[i]+1) - 3
		b.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#969696" stroke-width="0.5"/>`+"\n", num(x0), num(y+barH), num(x0), num(ly))
		b.text(x0+2, ly, 10, `class="segment-label" fill="#252525"`, s.label)
	}
	b.f("</g>\n")
	return y + barH + lineH*float64(max(n, 1)) + 2
}

// notReady returns the spans of a pod's life when it was not Ready: before its first
// Ready, between a loss of Ready and the next, and from its stop on (a terminating pod
// leaves the Service's ready endpoints even while its Ready condition still holds).
func notReady(s ServerLife, end float64) [][2]float64 {
	var spans [][2]float64
	limit := end
	if s.Stop != nil && *s.Stop < end {
		limit = *s.Stop
	}
	from, ready := s.Seen, false
	for _, c := range s.Ready {
		if c.At >= limit {
			break
		}
		switch {
		case c.Ready && !ready:
			if c.At > from {
				spans = append(spans, [2]float64{from, c.At})
			}
			ready = true
		case !c.Ready && ready:
			from, ready = c.At, false
		}
	}
	if ready {
		from = limit
	}
	if end > from {
		spans = append(spans, [2]float64{from, end})
	}
	return spans
}

// tickStep is the axis' tick interval for a window of span seconds: at most about 15
// ticks.
func tickStep(span float64) float64 {
	for _, s := range []float64{0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600} {
		if span/s <= 15 {
			return s
		}
	}
	return 1200
}

// legend draws the key at y and returns the picture's bottom.
func (p *picture) legend(b *svgBuf, y float64) float64 {
	b.f(`<g id="legend">` + "\n")
	x := labelX
	y += 4
	item := func(w float64, draw func(x float64), label string) {
		if x+w+textWidth(label)+8 > svgWidth-10 {
			x, y = labelX, y+18
		}
		draw(x)
		b.text(x+w+4, y+10, 10, `fill="#252525"`, label)
		x += w + textWidth(label) + 18
	}
	for _, v := range p.versions {
		item(22, func(x float64) { b.rect(x, y, x+22, 12, `fill="`+p.colour(v)+`"`) }, "server on "+v)
	}
	item(22, func(x float64) {
		b.rect(x, y, x+22, 12, `fill="`+colNoVersion+`"`)
		b.rect(x, y, x+22, 12, `fill="url(#notready)"`)
	}, "not Ready / terminating")
	item(22, func(x float64) {
		b.rect(x, y+1, x+22, 10, `fill="none" stroke="`+colActive+`" stroke-width="2.5"`)
	}, "active (Raft leader)")
	item(22, func(x float64) { b.rect(x, y, x+22, 12, `fill="`+colWrites+`" fill-opacity="0.6"`) }, "successful writes")
	item(6, func(x float64) { b.rect(x, y, x+4, 12, `fill="`+colFailed+`"`) }, "failed requests")
	item(22, func(x float64) {
		b.f(`<path d="M%s %s V%s H%s V%s" fill="none" stroke="%s" stroke-width="1.5"/>`+"\n", num(x), num(y+10), num(y+4), num(x+22), num(y+10), colGap)
	}, "longest write gap")
	item(22, func(x float64) { b.rect(x, y, x+22, 12, `fill="`+colStepA+`"`) }, "operator step / status.leader")
	item(22, func(x float64) { b.rect(x, y, x+22, 12, `fill="`+colJob+`"`) }, "Job")
	item(22, func(x float64) {
		b.f(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-dasharray="4 3"/>`+"\n", num(x+11), num(y), num(x+11), num(y+12), colEvent)
	}, "event")
	if p.hasSpans() {
		item(22, func(x float64) { b.rect(x, y, x+22, 12, `fill="`+colCut+`" fill-opacity="0.45"`) }, "network cut")
	}
	b.f("</g>\n")
	return y + 22
}

func (p *picture) hasSpans() bool {
	for _, pn := range p.panels {
		for _, e := range pn.tl.Events {
			if e.Until != nil {
				return true
			}
		}
	}
	return false
}

// wrap breaks a line of text at font size size after commas or semicolons, or before a
// middle dot, so that each
// piece fits the picture's width.
func wrap(s string, size int) []string {
	limit := int((svgWidth - 2*labelX) / (0.56 * float64(size)))
	var out []string
	for len([]rune(s)) > limit {
		cut := -1
		for i, r := range s {
			if i > 0 && len([]rune(s[:i])) > limit {
				break
			}
			switch {
			case (r == ',' || r == ';') && i+1 < len(s) && s[i+1] == ' ':
				cut = i + 1
			case r == '·' && i > 0:
				cut = i
			}
		}
		if cut < 0 {
			break
		}
		out = append(out, s[:cut])
		s = "  " + strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s[cut:]), "·"))
	}
	return append(out, s)
}
