package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseScheduleRejectsBadCron(t *testing.T) {
	for _, expr := range []string{"", "* * * *", "61 * * * *", "0 */6 * * * *", "@every 1h", "0 25 * * *"} {
		if _, err := ParseSchedule(expr); err == nil {
			t.Errorf("ParseSchedule(%q) = nil error, want one", expr)
		} else if !strings.Contains(err.Error(), "spec.backup.schedule") {
			t.Errorf("ParseSchedule(%q): %v does not name the field", expr, err)
		}
	}
	for _, expr := range []string{"0 */6 * * *", "@daily", "*/5 * * * 1-5", "0 3 * * SUN"} {
		if _, err := ParseSchedule(expr); err != nil {
			t.Errorf("ParseSchedule(%q): %v", expr, err)
		}
	}
}

func TestScheduleDue(t *testing.T) {
	s, err := ParseSchedule("0 */6 * * *")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, last, now, due, next string
	}{
		{"not yet", "2026-11-30T06:00:00Z", "2026-11-30T11:59:59Z", "", "2026-11-30T12:00:00Z"},
		{"exactly at the time", "2026-11-30T06:00:00Z", "2026-11-30T12:00:00Z", "2026-11-30T12:00:00Z", "2026-11-30T18:00:00Z"},
		{"a little after", "2026-11-30T06:00:00Z", "2026-11-30T12:03:00Z", "2026-11-30T12:00:00Z", "2026-11-30T18:00:00Z"},
		{"missed times: only the latest", "2026-11-29T00:00:00Z", "2026-11-30T13:00:00Z", "2026-11-30T12:00:00Z", "2026-11-30T18:00:00Z"},
		{"first seen between times", "2026-11-30T07:30:00Z", "2026-11-30T08:00:00Z", "", "2026-11-30T12:00:00Z"},
		{"last not on the schedule", "2026-11-30T07:30:00Z", "2026-11-30T12:00:01Z", "2026-11-30T12:00:00Z", "2026-11-30T18:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			due, next := s.Due(mustTime(t, c.last), mustTime(t, c.now))
			var wantDue time.Time
			if c.due != "" {
				wantDue = mustTime(t, c.due)
			}
			if !due.Equal(wantDue) {
				t.Errorf("due = %v, want %v", due, wantDue)
			}
			if !next.Equal(mustTime(t, c.next)) {
				t.Errorf("next = %v, want %s", next, c.next)
			}
		})
	}
}

func TestScheduleDueAfterVeryLongGap(t *testing.T) {
	s, err := ParseSchedule("* * * * *")
	if err != nil {
		t.Fatal(err)
	}
	now := mustTime(t, "2026-11-30T12:00:30Z")
	due, next := s.Due(now.AddDate(-1, 0, 0), now)
	if !due.Equal(mustTime(t, "2026-11-30T12:00:00Z")) || !next.Equal(mustTime(t, "2026-11-30T12:01:00Z")) {
		t.Errorf("due, next = %v, %v", due, next)
	}
}

func TestSnapshotNames(t *testing.T) {
	at := mustTime(t, "2026-11-30T06:00:00Z")
	name := SnapshotName("bao", at)
	if name != "bao-20261130T060000Z.snap" {
		t.Fatalf("SnapshotName = %q", name)
	}
	if got, ok := ParseSnapshotName("bao", "x/y/"+name); !ok || !got.Equal(at) {
		t.Errorf("ParseSnapshotName(%q) = %v, %v", name, got, ok)
	}
	for _, other := range []string{
		"bao-2-20261130T060000Z.snap", // another cluster whose name starts like this one
		name + ".partial",
		name + ChecksumSuffix,
		"bao-latest.snap",
		"other-20261130T060000Z.snap",
	} {
		if _, ok := ParseSnapshotName("bao", other); ok {
			t.Errorf("ParseSnapshotName(bao, %q) accepted it", other)
		}
	}
	if p := ObjectPrefix("openbao/", "ns", "bao"); p != "openbao/ns/bao/" {
		t.Errorf("ObjectPrefix = %q", p)
	}
}

// A pre-upgrade snapshot has a name of its own, which retention's listing never matches.
func TestPreUpgradeNames(t *testing.T) {
	name := PreUpgradeName("bao", "2.6.2", "5d41402a")
	if name != "bao-pre-upgrade-2.6.2-5d41402a.snap" {
		t.Fatalf("PreUpgradeName = %q", name)
	}
	if got := PreUpgradeName("bao", "2.7.0+ent/x", "r1"); got != "bao-pre-upgrade-2.7.0-ent-x-r1.snap" {
		t.Errorf("PreUpgradeName of a version with other characters = %q", got)
	}
	if !IsPreUpgradeName("bao", name) {
		t.Errorf("IsPreUpgradeName(bao, %q) = false", name)
	}
	if _, ok := ParseSnapshotName("bao", name); ok {
		t.Errorf("ParseSnapshotName accepted the pre-upgrade snapshot %q: retention would delete it", name)
	}
	for _, other := range []string{
		SnapshotName("bao", mustTime(t, "2026-11-30T06:00:00Z")),
		"bao-pre-upgrade-.snap",
		"bao-pre-upgrade-2.6.2-r1.snap.partial",
		"bao-pre-upgrade-../x.snap",
		"other-pre-upgrade-2.6.2-r1.snap",
	} {
		if IsPreUpgradeName("bao", other) {
			t.Errorf("IsPreUpgradeName(bao, %q) accepted it", other)
		}
	}
}

func TestRetentionKeepsPreUpgradeSnapshots(t *testing.T) {
	ctx := context.Background()
	v := &Volume{Dir: filepath.Join(t.TempDir(), VolumeDir), Claim: "bao-snapshots", SubPath: VolumeDir}
	now := mustTime(t, "2026-11-30T12:00:00Z")
	pre := PreUpgradeName("bao", "2.6.2", "r1")
	names := []string{pre, SnapshotName("bao", now.Add(-2*time.Hour)), SnapshotName("bao", now)}
	for _, n := range names {
		if err := v.Put(ctx, n, strings.NewReader(n), sumOf([]byte(n))); err != nil {
			t.Fatal(err)
		}
	}
	deleted, err := ApplyRetention(ctx, v, "bao", names[2], Retention{KeepLast: 1, MaxAge: time.Minute}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"pvc://bao-snapshots/backups/" + names[1]}; !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	if _, err := os.Stat(filepath.Join(v.Dir, pre)); err != nil {
		t.Errorf("retention removed the pre-upgrade snapshot: %v", err)
	}
}

func TestRetentionExpired(t *testing.T) {
	now := mustTime(t, "2026-11-30T12:00:00Z")
	var items []Item
	for h := range 6 { // ages 0h, 6h, ..., 30h, in shuffled order
		at := now.Add(-time.Duration(h*6) * time.Hour)
		items = append(items, Item{Name: SnapshotName("bao", at), Time: at})
	}
	slices.Reverse(items[2:])
	names := func(its []Item) []string {
		var out []string
		for _, it := range its {
			out = append(out, it.Name)
		}
		return out
	}
	cases := []struct {
		name string
		r    Retention
		want []string
	}{
		{"nothing set keeps everything", Retention{}, nil},
		{"keep last 2", Retention{KeepLast: 2}, []string{"bao-20261129T060000Z.snap", "bao-20261129T120000Z.snap", "bao-20261129T180000Z.snap", "bao-20261130T000000Z.snap"}},
		{"younger than 13h", Retention{MaxAge: 13 * time.Hour}, []string{"bao-20261129T060000Z.snap", "bao-20261129T120000Z.snap", "bao-20261129T180000Z.snap"}},
		{"union of both", Retention{KeepLast: 4, MaxAge: 7 * time.Hour}, []string{"bao-20261129T060000Z.snap", "bao-20261129T120000Z.snap"}},
		{"the newest is kept even when old", Retention{MaxAge: time.Minute}, []string{"bao-20261129T060000Z.snap", "bao-20261129T120000Z.snap", "bao-20261129T180000Z.snap", "bao-20261130T000000Z.snap", "bao-20261130T060000Z.snap"}},
		{"keep more than there are", Retention{KeepLast: 10}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := names(c.r.Expired(items, now))
			if !slices.Equal(got, c.want) {
				t.Errorf("Expired = %v\nwant      %v", got, c.want)
			}
		})
	}
}

func sumOf(data []byte) func() Sum {
	h := sha256.Sum256(data)
	return func() Sum { return Sum{Size: int64(len(data)), SHA256: hex.EncodeToString(h[:])} }
}

func TestVolumeTarget(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	v := &Volume{Dir: filepath.Join(dir, VolumeDir), Claim: "bao-snapshots", SubPath: VolumeDir}
	now := mustTime(t, "2026-11-30T12:00:00Z")
	var written []string
	for h := range 3 {
		name := SnapshotName("bao", now.Add(-time.Duration(h)*time.Hour))
		data := bytes.Repeat([]byte{byte(h + 1)}, 1000+h)
		if err := v.Put(ctx, name, bytes.NewReader(data), sumOf(data)); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(v.Dir, name))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read back %s: %v (%d bytes)", name, err, len(got))
		}
		sum, err := os.ReadFile(filepath.Join(v.Dir, name+ChecksumSuffix))
		if err != nil || !strings.HasPrefix(string(sum), sumOf(data)().SHA256+"  "+name) {
			t.Fatalf("checksum file of %s: %q, %v", name, sum, err)
		}
		written = append(written, name)
	}

	// A snapshot that breaks off leaves nothing under its name, nor a partial file.
	broken := SnapshotName("bao", now.Add(time.Hour))
	boom := errors.New("connection reset")
	err := v.Put(ctx, broken, io.MultiReader(bytes.NewReader([]byte("half")), errReader{boom}), sumOf(nil))
	if !errors.Is(err, boom) {
		t.Fatalf("Put of a broken stream: %v, want %v", err, boom)
	}
	entries, _ := os.ReadDir(v.Dir)
	if len(entries) != 6 {
		t.Errorf("after a failed Put the directory holds %d entries, want the 3 snapshots and 3 checksums", len(entries))
	}

	deleted, err := ApplyRetention(ctx, v, "bao", written[0], Retention{KeepLast: 1}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pvc://bao-snapshots/backups/" + written[2], "pvc://bao-snapshots/backups/" + written[1]}
	if !slices.Equal(deleted, want) {
		t.Errorf("deleted %v, want %v", deleted, want)
	}
	items, err := v.List(ctx, "bao")
	if err != nil || len(items) != 1 || items[0].Name != written[0] {
		t.Errorf("after retention List = %v, %v", items, err)
	}
	if _, err := os.Stat(filepath.Join(v.Dir, written[1]+ChecksumSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the checksum file of a deleted snapshot is left: %v", err)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
