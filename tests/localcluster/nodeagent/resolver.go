package nodeagent

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ImageDir is where a container sees the directory that holds its image's executable, as
// a container runtime shows the image's filesystem; it comes first on DefaultPath.
const ImageDir = "/.image"

// DefaultPath is a container's PATH unless its image or spec sets another.
const DefaultPath = ImageDir + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Image is what an image reference resolves to on this machine: an
// executable on the host, a directory of files standing for the image's
// filesystem, or both.
type Image struct {
	// Entrypoint is the image's ENTRYPOINT; Entrypoint[0] is an absolute
	// path of an executable on the host. It may be empty when Root is set
	// (an image of files only, such as an OLM bundle image): a container of
	// such an image must then name its command.
	Entrypoint []string
	// Cmd is the image's CMD: the arguments used when a container sets
	// neither command nor args.
	Cmd []string
	// Env holds the image's environment ("NAME=value"), overridden by the
	// container's env.
	Env []string
	// User and Group are the image's numeric USER, used when the pod sets
	// no runAsUser (and runAsGroup); nil runs as root.
	User, Group *int64
	// Root is a host directory holding the image's files as its layers
	// would unpack them: each entry is shown, read-only, at the same path
	// under the container's root (Root/manifests at /manifests, Root/bin/olm
	// at /bin/olm), and commands are looked up there first.
	Root string
	// Scratch marks an image built FROM scratch: the container sees Root
	// alone (with /proc, /sys, /dev, its volumes and the generated /etc
	// files), not the node's directories underneath it.
	Scratch bool
}

// ImageResolver maps an image reference to an Image. An error means the
// image is unknown: the container then waits with reason ErrImagePull, as on
// a node whose registry does not have the image.
type ImageResolver interface {
	Resolve(ref string) (Image, error)
}

// MapResolver resolves exact image references. A reference with a tag or
// digest that is not in the map falls back to its name without the tag
// ("busybox:1.36" -> "busybox").
type MapResolver map[string]Image

// Resolve implements ImageResolver.
func (m MapResolver) Resolve(ref string) (Image, error) {
	if img, ok := m[ref]; ok {
		return checkImage(ref, img)
	}
	if img, ok := m[imageName(ref)]; ok {
		return checkImage(ref, img)
	}
	return Image{}, fmt.Errorf("image %q is not known on this node", ref)
}

// PatternRule maps every reference matching Pattern to an Image; Build gets
// the submatches (index 0 is the whole reference).
type PatternRule struct {
	Pattern *regexp.Regexp
	Build   func(match []string) Image
}

// PatternResolver tries its rules in order; the first match wins.
type PatternResolver []PatternRule

// Resolve implements ImageResolver.
func (p PatternResolver) Resolve(ref string) (Image, error) {
	for _, rule := range p {
		if m := rule.Pattern.FindStringSubmatch(ref); m != nil {
			return checkImage(ref, rule.Build(m))
		}
	}
	return Image{}, fmt.Errorf("image %q is not known on this node", ref)
}

// Resolvers tries each resolver in order and returns the first success.
type Resolvers []ImageResolver

// Resolve implements ImageResolver.
func (rs Resolvers) Resolve(ref string) (Image, error) {
	var errs []string
	for _, r := range rs {
		img, err := r.Resolve(ref)
		if err == nil {
			return img, nil
		}
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 {
		return Image{}, fmt.Errorf("image %q is not known on this node", ref)
	}
	return Image{}, fmt.Errorf("%s", strings.Join(errs, "; "))
}

// OpenBaoRule maps `[registry/]openbao/openbao:<version>` and
// `[registry/]openbao:<version>` to dir/<version>/bao, the layout that
// `make openbao-bins` writes. The image's entrypoint is `bao` itself, so a
// container that only sets args (`server -config=...`) runs as with the
// official image.
func OpenBaoRule(dir string) PatternRule {
	return PatternRule{
		Pattern: regexp.MustCompile(`^(?:[^/]+/)*openbao:v?([0-9][^@/]*)(?:@sha256:[0-9a-f]+)?$`),
		Build: func(m []string) Image {
			return Image{Entrypoint: []string{filepath.Join(dir, m[1], "bao")}, Cmd: []string{"server", "-dev"}}
		},
	}
}

// imageName strips the tag and digest from a reference.
func imageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

func checkImage(ref string, img Image) (Image, error) {
	if img.Root != "" {
		if !filepath.IsAbs(img.Root) {
			return Image{}, fmt.Errorf("image %q: root %s is not an absolute path", ref, img.Root)
		}
		st, err := os.Stat(img.Root)
		if err != nil {
			return Image{}, fmt.Errorf("image %q: files missing: %w", ref, err)
		}
		if !st.IsDir() {
			return Image{}, fmt.Errorf("image %q: %s is not a directory", ref, img.Root)
		}
		if len(img.Entrypoint) == 0 {
			return img, nil
		}
	} else if img.Scratch {
		return Image{}, fmt.Errorf("image %q: a scratch image needs a root directory", ref)
	}
	if len(img.Entrypoint) == 0 || !filepath.IsAbs(img.Entrypoint[0]) {
		return Image{}, fmt.Errorf("image %q has no absolute entrypoint on this node", ref)
	}
	st, err := os.Stat(img.Entrypoint[0])
	if err != nil {
		return Image{}, fmt.Errorf("image %q: executable missing: %w", ref, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return Image{}, fmt.Errorf("image %q: %s is not an executable file", ref, img.Entrypoint[0])
	}
	return img, nil
}

// imageID is a stable identifier of the resolved executable and files,
// reported as the container's imageID.
func imageID(img Image) string {
	h := sha256.New()
	h.Write([]byte(strings.Join(img.Entrypoint, "\x00")))
	if len(img.Entrypoint) > 0 {
		if st, err := os.Stat(img.Entrypoint[0]); err == nil {
			fmt.Fprintf(h, "\x00%d\x00%d", st.Size(), st.ModTime().UnixNano())
		}
	}
	if img.Root != "" {
		fmt.Fprintf(h, "\x00root\x00%s\x00%t", img.Root, img.Scratch)
		_ = filepath.WalkDir(img.Root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if info, err := d.Info(); err == nil {
				fmt.Fprintf(h, "\x00%s\x00%d\x00%d", p, info.Size(), info.ModTime().UnixNano())
			}
			return nil
		})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}
