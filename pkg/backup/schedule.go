// Package backup holds what the operator and the backup executor share about backups: the
// schedule, the names of snapshots, retention, and the two targets a snapshot is streamed
// to (the cluster's snapshot volume and S3-compatible object storage).
package backup

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser reads the five-field cron expressions of spec.backup.schedule and the @daily-style
// descriptors; the schema admits the same shapes.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is a parsed spec.backup.schedule, evaluated in UTC.
type Schedule struct {
	expr string
	s    cron.Schedule
}

// ParseSchedule parses a cron expression; the error says what is wrong with it.
func ParseSchedule(expr string) (Schedule, error) {
	if strings.HasPrefix(expr, "@every") {
		return Schedule{}, fmt.Errorf("spec.backup.schedule %q: @every is not supported; use a five-field cron expression such as '0 */6 * * *'", expr)
	}
	s, err := parser.Parse(expr)
	if err != nil {
		return Schedule{}, fmt.Errorf("spec.backup.schedule %q is not a valid cron expression: %v", expr, err)
	}
	return Schedule{expr: expr, s: s}, nil
}

// Next is the first time of the schedule strictly after t.
func (s Schedule) Next(t time.Time) time.Time { return s.s.Next(t.UTC()) }

// maxMissed bounds the walk over missed times, so that a schedule that fires every minute
// and was not looked at for a year costs nothing noticeable.
const maxMissed = 100000

// Due says which time of the schedule a backup should run for now: the latest time in
// (last, now], or zero when there is none. last is the time a backup last ran for (or when
// the schedule was first seen). Missed times before the latest are skipped, like a CronJob
// with concurrencyPolicy Forbid: a backup is a full snapshot, and only the newest counts.
// next is the first time after now.
func (s Schedule) Due(last, now time.Time) (due, next time.Time) {
	t := s.Next(last)
	for i := 0; !t.After(now) && i < maxMissed; i++ {
		due = t
		t = s.Next(t)
	}
	if !t.After(now) {
		// More than maxMissed times were missed: start again from now.
		due, t = now.UTC().Truncate(time.Minute), s.Next(now)
	}
	return due, t
}
