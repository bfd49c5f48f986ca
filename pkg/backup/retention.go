package backup

import (
	"slices"
	"time"
)

// Retention says which backups are kept: those among the newest KeepLast, and those younger
// than MaxAge. A zero field does not keep anything by itself; with both zero every backup is
// kept. The newest backup is always kept.
type Retention struct {
	KeepLast int
	MaxAge   time.Duration
}

// Item is one backup found on a target.
type Item struct {
	// Name is the object key or the file path.
	Name string
	// Time is the backup's time, from its name.
	Time time.Time
}

// Expired returns the backups that the retention removes at now, oldest first.
func (r Retention) Expired(items []Item, now time.Time) []Item {
	if r.KeepLast <= 0 && r.MaxAge <= 0 {
		return nil
	}
	sorted := slices.Clone(items)
	slices.SortStableFunc(sorted, func(a, b Item) int { return b.Time.Compare(a.Time) }) // newest first
	var out []Item
	for i, it := range sorted {
		if i == 0 {
			continue // the newest backup is always kept
		}
		if r.KeepLast > 0 && i < r.KeepLast {
			continue
		}
		if r.MaxAge > 0 && now.Sub(it.Time) < r.MaxAge {
			continue
		}
		out = append(out, it)
	}
	slices.Reverse(out)
	return out
}
