package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Volume writes backups as files of a directory of the cluster's snapshot volume. A
// snapshot is written to <name>.partial, synced, its SHA-256 written to <name>.sha256, and
// only then renamed to <name>.
type Volume struct {
	// Dir is where the volume is mounted plus VolumeDir.
	Dir string
	// Claim and SubPath name the directory for Location: pvc://<Claim>/<SubPath>/<name>.
	Claim   string
	SubPath string
}

var _ Target = (*Volume)(nil)

// Put implements Target.
func (v *Volume) Put(_ context.Context, name string, r io.Reader, sum func() Sum) (err error) {
	if err := os.MkdirAll(v.Dir, 0o700); err != nil {
		return err
	}
	final := filepath.Join(v.Dir, name)
	partial := final + ".partial"
	defer func() {
		if err != nil {
			_ = os.Remove(partial)
		}
	}()
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("sync %s: %w", partial, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", partial, err)
	}
	s := sum()
	if err := writeFileSync(final+ChecksumSuffix, []byte(s.SHA256+"  "+name+"\n")); err != nil {
		return err
	}
	if err := os.Rename(partial, final); err != nil {
		return err
	}
	return syncDir(v.Dir)
}

// List implements Target.
func (v *Volume) List(_ context.Context, cluster string) ([]Item, error) {
	entries, err := os.ReadDir(v.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Item
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if t, ok := ParseSnapshotName(cluster, e.Name()); ok {
			out = append(out, Item{Name: e.Name(), Time: t})
		}
	}
	return out, nil
}

// Delete implements Target: the snapshot first, so that a checksum file never outlives
// the snapshot by more than an interrupted retention.
func (v *Volume) Delete(_ context.Context, name string) error {
	if strings.ContainsRune(name, '/') {
		return fmt.Errorf("%q is not a file name", name)
	}
	p := filepath.Join(v.Dir, name)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(p + ChecksumSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(v.Dir)
}

// Location implements Target.
func (v *Volume) Location(name string) string {
	return "pvc://" + v.Claim + "/" + path.Join(v.SubPath, name)
}

func writeFileSync(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
