// Command untar stands in for the image the Operator SDK scorecard runs as
// the init container of each test pod (`--untar-image`, by default a UBI 8
// image) on the local cluster, whose node runs images as executables. The
// init container only sets args, `tar xvzf /scorecard/bundle.tar.gz -C
// /scorecard-bundle`, which the image's shell finds on its PATH; this
// command is that image's entrypoint and understands exactly that form:
//
//	untar [tar] [-]x[v][z]f ARCHIVE [-C DIR]
//
// It extracts regular files, directories and symbolic links; an entry that
// would land outside DIR is an error.
package main

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tar:", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) > 0 && args[0] == "tar" {
		args = args[1:]
	}
	if len(args) < 2 {
		return errors.New("usage: tar x[v][z]f ARCHIVE [-C DIR]")
	}
	mode := strings.TrimPrefix(args[0], "-")
	if !strings.HasPrefix(mode, "x") || !strings.HasSuffix(mode, "f") || strings.Trim(mode, "xvzf") != "" {
		return fmt.Errorf("unsupported mode %q: only extraction (x[v][z]f) is supported", args[0])
	}
	verbose, gz := strings.Contains(mode, "v"), strings.Contains(mode, "z")
	archive, dir := args[1], "."
	switch rest := args[2:]; {
	case len(rest) == 2 && rest[0] == "-C":
		dir = rest[1]
	case len(rest) != 0:
		return fmt.Errorf("unsupported arguments %q", rest)
	}
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	var r io.Reader = f
	if gz {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return fmt.Errorf("%s: %w", archive, err)
		}
		defer zr.Close()
		r = zr
	}
	return extract(tar.NewReader(r), dir, verbose, out)
}

func extract(tr *tar.Reader, dir string, verbose bool, out io.Writer) error {
	root, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		target := filepath.Join(root, h.Name)
		if target != root && !strings.HasPrefix(target, root+string(filepath.Separator)) {
			return fmt.Errorf("%s: path outside %s", h.Name, dir)
		}
		if verbose {
			fmt.Fprintln(out, h.Name)
		}
		perm := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, perm|0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(target, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unsupported entry type %q", h.Name, h.Typeflag)
		}
	}
}
