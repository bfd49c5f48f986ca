// Package steptrace records the sequence of an upgrade's steps and side effects in a
// strategy simulation and compares it with a golden file under testdata, so that a change of
// step order shows in review even when every invariant still holds. `go test -update`
// rewrites the files.
package steptrace

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	openbaov1alpha1 "github.com/openbao-operator/openbao-operator/apis/openbao/v1alpha1"
)

// Recorder collects one line per new step (step name and pod) and one per event.
type Recorder struct {
	lines  []string
	last   string
	events int
}

// Pass records what one pass of the manager changed: its step, when it differs from the
// previous pass', and the events emitted since.
func (r *Recorder) Pass(u *openbaov1alpha1.UpgradeStatus, events []string) {
	key := "no upgrade"
	if u != nil {
		key = strings.TrimSpace(u.Step + " " + u.CurrentPod)
	}
	if key != r.last {
		r.lines = append(r.lines, "step  "+key)
		r.last = key
	}
	for _, e := range events[r.events:] {
		r.lines = append(r.lines, "event "+e)
	}
	r.events = len(events)
}

// Check compares the recorded trace with the golden file path, or rewrites it when update
// is set.
func (r *Recorder) Check(t *testing.T, path string, update bool) {
	t.Helper()
	got := strings.Join(r.lines, "\n") + "\n"
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read the golden trace (run the test with -update to create it): %v", err)
	}
	if string(want) != got {
		t.Errorf("the step trace differs from %s (rerun with -update if the change is intended):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
