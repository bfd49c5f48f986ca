package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/openbao-operator/openbao-operator/pkg/openbao"
)

// snapshot saves a Raft snapshot to --out. It streams into <out>.partial, syncs it and
// renames it, so that <out> only ever names a complete snapshot; an existing non-empty <out>
// is kept, which makes a retried Job a no-op.
func (r *runner) snapshot(ctx context.Context) error {
	out := r.opts.Out
	if size, ok := completeFile(out); ok {
		r.printf("raft snapshot %s already exists (%d bytes); keeping it", out, size)
		return nil
	}
	cl, err := r.client()
	if err != nil {
		return err
	}
	if err := r.login(ctx, cl); err != nil {
		return err
	}
	partial := out + ".partial"
	var size int64
	attempt := 0
	err = retry(ctx, func() error {
		attempt++
		if attempt > 1 {
			// The role's tokens live minutes: log in again before another long transfer.
			if err := r.login(ctx, cl); err != nil {
				return err
			}
		}
		var werr error
		size, werr = writeSnapshot(ctx, cl, partial)
		return werr
	})
	if err != nil {
		_ = os.Remove(partial)
		return fmt.Errorf("save raft snapshot from %s: %w", r.opts.Address, err)
	}
	if size == 0 {
		_ = os.Remove(partial)
		return fmt.Errorf("save raft snapshot from %s: the snapshot is empty", r.opts.Address)
	}
	if err := os.Rename(partial, out); err != nil {
		return fmt.Errorf("save raft snapshot: %w", err)
	}
	if err := syncDir(filepath.Dir(out)); err != nil {
		return fmt.Errorf("save raft snapshot: %w", err)
	}
	written, ok := completeFile(out)
	if !ok {
		return fmt.Errorf("save raft snapshot: %s is missing or empty after the rename", out)
	}
	r.printf("saved raft snapshot to %s (%d bytes)", out, written)
	return nil
}

// completeFile reports the size of path if it is a non-empty regular file.
func completeFile(path string) (int64, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return 0, false
	}
	return fi.Size(), true
}

// writeSnapshot streams a snapshot into path (truncating what an earlier attempt left) and
// syncs it to disk.
func writeSnapshot(ctx context.Context, cl openbao.Client, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return 0, err
	}
	if err := cl.Snapshot(ctx, f); err != nil {
		_ = f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return 0, fmt.Errorf("sync %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("close %s: %w", path, err)
	}
	return fi.Size(), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(fmt.Errorf("sync directory %s", dir), err)
	}
	return nil
}
