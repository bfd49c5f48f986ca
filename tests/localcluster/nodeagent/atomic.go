package nodeagent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// fileData is one file of a configMap, secret, downwardAPI or projected
// volume.
type fileData struct {
	Data []byte
	Mode os.FileMode
}

const dataLink = "..data"

// writeAtomic publishes payload in dir the way the kubelet does: the files
// live in a timestamped folder, `..data` links to it, and each top-level
// entry is a link through `..data`. An update writes a new folder and swaps
// `..data` with one rename, so a reader never sees half an update. It
// returns whether anything changed.
func writeAtomic(dir string, payload map[string]fileData, gid int) (bool, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, err
	}
	for p := range payload {
		if strings.HasPrefix(p, "..") || strings.HasPrefix(p, "/") || strings.Contains(p, "/../") || filepath.Clean(p) != p {
			return false, fmt.Errorf("invalid file path %q", p)
		}
	}
	if current, err := os.Readlink(filepath.Join(dir, dataLink)); err == nil && samePayload(filepath.Join(dir, current), payload, gid) {
		return false, nil
	}
	tsDir, err := os.MkdirTemp(dir, ".."+time.Now().UTC().Format("2006_01_02_15_04_05."))
	if err != nil {
		return false, err
	}
	if err := os.Chmod(tsDir, 0o755); err != nil {
		return false, err
	}
	for p, f := range payload {
		full := filepath.Join(tsDir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return false, err
		}
		if err := os.WriteFile(full, f.Data, f.Mode); err != nil {
			return false, err
		}
		if err := os.Chmod(full, f.Mode); err != nil {
			return false, err
		}
		if gid >= 0 {
			_ = os.Chown(full, -1, gid)
		}
	}
	tmpLink := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmpLink)
	if err := os.Symlink(filepath.Base(tsDir), tmpLink); err != nil {
		return false, err
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, dataLink)); err != nil {
		return false, err
	}
	top := map[string]bool{}
	for p := range payload {
		top[strings.SplitN(p, "/", 2)[0]] = true
	}
	for name := range top {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join(dataLink, name) {
			continue
		}
		_ = os.RemoveAll(link)
		if err := os.Symlink(filepath.Join(dataLink, name), link); err != nil {
			return false, err
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		n := e.Name()
		if n == dataLink || n == filepath.Base(tsDir) || top[n] {
			continue
		}
		if strings.HasPrefix(n, "..") || e.Type()&os.ModeSymlink != 0 {
			_ = os.RemoveAll(filepath.Join(dir, n))
		}
	}
	return true, nil
}

func samePayload(dir string, payload map[string]fileData, gid int) bool {
	var have []string
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			have = append(have, rel)
		}
		return nil
	})
	if len(have) != len(payload) {
		return false
	}
	sort.Strings(have)
	for _, p := range have {
		f, ok := payload[p]
		if !ok {
			return false
		}
		st, err := os.Stat(filepath.Join(dir, p))
		if err != nil || st.Mode().Perm() != f.Mode.Perm() {
			return false
		}
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || !bytes.Equal(data, f.Data) {
			return false
		}
	}
	return true
}
