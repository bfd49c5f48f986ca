package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// containerView maps paths as a container sees them to paths on the host,
// so that the agent can find a container's command where the container
// would: in its volumes, in its image's files, then (unless the image is
// FROM scratch) in the node's own tree, which stands for the image's base
// layers.
type containerView struct {
	mounts  []mountSpec
	root    string
	scratch bool
}

// hostPath returns the host path of the container path p and whether
// something exists there.
func (v containerView) hostPath(p string) (string, bool) {
	p = filepath.Clean("/" + p)
	best := -1
	for i, m := range v.mounts {
		t := filepath.Clean(m.Target)
		if (p == t || strings.HasPrefix(p, strings.TrimSuffix(t, "/")+"/")) &&
			(best < 0 || len(t) >= len(filepath.Clean(v.mounts[best].Target))) {
			best = i
		}
	}
	if best >= 0 {
		rel := strings.TrimPrefix(p, filepath.Clean(v.mounts[best].Target))
		hp := filepath.Join(v.mounts[best].Source, rel)
		_, err := os.Stat(hp)
		return hp, err == nil
	}
	if v.root != "" {
		hp := filepath.Join(v.root, p)
		if _, err := os.Stat(hp); err == nil || v.scratch {
			return hp, err == nil
		}
	}
	_, err := os.Stat(p)
	return p, err == nil
}

// imageMounts lays the files of an image's root directory over the node's
// tree: an entry is bind-mounted at the same path in the container unless a
// directory of that name exists there already, in which case its entries
// are laid over that directory's, and so on down. Entries at or under one
// of the container's other mount targets are left out: volumes hide an
// image's files, as with a container runtime.
func imageMounts(root string, others []string) ([]mountSpec, error) {
	var out []mountSpec
	var walk func(rel string) error
	walk = func(rel string) error {
		entries, err := os.ReadDir(filepath.Join(root, rel))
		if err != nil {
			return err
		}
		for _, e := range entries {
			r := filepath.Join(rel, e.Name())
			target := "/" + r
			if underAny(target, others) {
				continue
			}
			if e.IsDir() {
				if st, err := os.Stat(target); err == nil && st.IsDir() {
					if err := walk(r); err != nil {
						return err
					}
					continue
				}
			}
			out = append(out, mountSpec{Source: filepath.Join(root, r), Target: target, ReadOnly: true, Image: true})
		}
		return nil
	}
	if err := walk(""); err != nil {
		return nil, fmt.Errorf("image files in %s: %w", root, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Target < out[j].Target })
	return out, nil
}

func underAny(p string, targets []string) bool {
	for _, t := range targets {
		t = filepath.Clean(t)
		if p == t || strings.HasPrefix(p, strings.TrimSuffix(t, "/")+"/") {
			return true
		}
	}
	return false
}
