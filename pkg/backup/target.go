package backup

import (
	"context"
	"io"
	"time"
)

// Target is where backups are written. Put streams a snapshot under its final name only
// once it is complete; a failed Put leaves nothing under that name.
type Target interface {
	// Put stores everything r yields as name, then records size and sha256 with it. r's
	// error (such as a snapshot that broke off) fails the Put.
	Put(ctx context.Context, name string, r io.Reader, sum func() Sum) error
	// List returns the backups of cluster on the target.
	List(ctx context.Context, cluster string) ([]Item, error)
	// Delete removes one backup (and what was recorded with it).
	Delete(ctx context.Context, name string) error
	// Location names a backup for status and for a restore: s3://<bucket>/<key> or
	// pvc://<claim>/<path>.
	Location(name string) string
}

// Sum is what Put records with a snapshot; sum is called once r has been read to its end.
type Sum struct {
	Size   int64
	SHA256 string
}

// Result is what a backup Job reports to the operator, as JSON in its termination message.
type Result struct {
	// Location of the snapshot (see Target.Location).
	Location string `json:"location,omitempty"`
	// Endpoint of the object storage, when the target is S3.
	Endpoint string `json:"endpoint,omitempty"`
	Size     int64  `json:"size,omitempty"`
	SHA256   string `json:"sha256,omitempty"`
	// Deleted are the locations retention removed.
	Deleted []string `json:"deleted,omitempty"`
	// RetentionError says why retention did not finish; the backup itself succeeded.
	RetentionError string `json:"retentionError,omitempty"`
	// Error says why the backup failed.
	Error string `json:"error,omitempty"`
}

// ApplyRetention deletes the backups of cluster that r does not keep, never keep (the
// backup just written). It returns the locations it deleted.
func ApplyRetention(ctx context.Context, t Target, cluster, keep string, r Retention, now time.Time) ([]string, error) {
	items, err := t.List(ctx, cluster)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, it := range r.Expired(items, now) {
		if it.Name == keep {
			continue
		}
		if err := t.Delete(ctx, it.Name); err != nil {
			return deleted, err
		}
		deleted = append(deleted, t.Location(it.Name))
	}
	return deleted, nil
}
