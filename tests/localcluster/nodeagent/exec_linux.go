package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// helperArg0 is argv[0] of the agent's binary re-executed as the container
// launcher: in a new mount and UTS namespace (made by the kernel at fork),
// it joins the pod's network namespace, builds the container's root
// filesystem from the host's directories plus the pod's volumes, drops
// privileges and execs the container's process. The package's init function
// catches it, so every binary that links this package (the agent, its tests)
// can act as the launcher without further wiring.
const helperArg0 = "nodeagent-container-launcher"

func init() {
	if len(os.Args) == 0 || os.Args[0] != helperArg0 {
		return
	}
	err := runLauncher()
	// Only reached on failure: tell the agent through the error pipe.
	errPipe := os.NewFile(4, "errpipe")
	fmt.Fprint(errPipe, err.Error())
	os.Exit(128)
}

// mountSpec bind-mounts Source (a host path) at Target (a container path).
type mountSpec struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"readOnly,omitempty"`
	// Image marks a file or directory of the container's image: never
	// written to, so mount points inside it are made on a tmpfs copy.
	Image bool `json:"image,omitempty"`
}

// launchSpec is what the launcher needs to start one container process.
type launchSpec struct {
	NetNS    string `json:"netns,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Root     string `json:"root"`
	// Base is the directory whose entries make the container's root: the
	// node's "/" (the default) or the files of an image FROM scratch.
	Base         string      `json:"base,omitempty"`
	Hide         []string    `json:"hide,omitempty"`
	Mounts       []mountSpec `json:"mounts,omitempty"`
	ReadOnlyRoot bool        `json:"readOnlyRoot,omitempty"`
	Path         string      `json:"path"`
	Args         []string    `json:"args"`
	Env          []string    `json:"env"`
	Dir          string      `json:"dir,omitempty"`
	UID          *uint32     `json:"uid,omitempty"`
	GID          *uint32     `json:"gid,omitempty"`
	Groups       []uint32    `json:"groups,omitempty"`

	// view is how the agent finds commands in this container (exec probes).
	view containerView
}

// launch starts the launcher for spec with stdout and stderr going to out.
// It returns once the container's process has been exec'd (or failed to).
func launch(spec *launchSpec, out io.Writer) (*exec.Cmd, error) {
	data, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		specR.Close()
		specW.Close()
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       []string{helperArg0},
		Env:        []string{"GOMAXPROCS=1"},
		Stdout:     out,
		Stderr:     out,
		ExtraFiles: []*os.File{specR, errW},
		SysProcAttr: &syscall.SysProcAttr{
			Unshareflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS,
			Pdeathsig:    syscall.SIGKILL,
			Setpgid:      true,
		},
	}
	startErr := cmd.Start()
	specR.Close()
	errW.Close()
	if startErr != nil {
		specW.Close()
		errR.Close()
		return nil, startErr
	}
	_, _ = specW.Write(data)
	specW.Close()
	msg, _ := io.ReadAll(errR)
	errR.Close()
	if len(msg) > 0 {
		_ = cmd.Wait()
		return nil, errors.New(string(msg))
	}
	return cmd, nil
}

func runLauncher() error {
	runtime.LockOSThread()
	syscall.CloseOnExec(4)
	// Closed through its os.File: a bare close(3) would leave the File's
	// finalizer to close descriptor 3 again at some garbage collection,
	// by then the container's executable (opened next, so also 3).
	specFile := os.NewFile(3, "spec")
	data, err := io.ReadAll(specFile)
	_ = specFile.Close()
	if err != nil {
		return fmt.Errorf("read launch spec: %w", err)
	}
	var spec launchSpec
	if err := json.Unmarshal(data, &spec); err != nil {
		return fmt.Errorf("decode launch spec: %w", err)
	}
	ppid := os.Getppid()
	if spec.NetNS != "" {
		fd, err := unix.Open(spec.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open network namespace: %w", err)
		}
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("join network namespace: %w", err)
		}
		_ = unix.Close(fd)
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	exe, err := unix.Open(spec.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open executable %s: %w", spec.Path, err)
	}
	if err := buildRoot(&spec); err != nil {
		return err
	}
	if spec.GID != nil {
		groups := make([]int, 0, len(spec.Groups))
		for _, g := range spec.Groups {
			groups = append(groups, int(g))
		}
		if err := syscall.Setgroups(groups); err != nil {
			return fmt.Errorf("setgroups: %w", err)
		}
		if err := syscall.Setgid(int(*spec.GID)); err != nil {
			return fmt.Errorf("setgid: %w", err)
		}
	}
	if spec.UID != nil {
		if err := syscall.Setuid(int(*spec.UID)); err != nil {
			return fmt.Errorf("setuid: %w", err)
		}
	}
	// A credential change clears the parent-death signal: set it again so
	// the container dies with the agent.
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() != ppid {
		os.Exit(137)
	}
	err = execveat(exe, spec.Args, spec.Env)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOEXEC) {
		// Scripts cannot be run from a close-on-exec descriptor.
		err = syscall.Exec(spec.Path, spec.Args, spec.Env)
	}
	return fmt.Errorf("exec %s: %w", spec.Path, err)
}

func execveat(fd int, argv, envv []string) error {
	argvp, err := syscall.SlicePtrFromStrings(argv)
	if err != nil {
		return err
	}
	envvp, err := syscall.SlicePtrFromStrings(envv)
	if err != nil {
		return err
	}
	empty, _ := syscall.BytePtrFromString("")
	_, _, errno := syscall.Syscall6(unix.SYS_EXECVEAT, uintptr(fd), uintptr(unsafe.Pointer(empty)),
		uintptr(unsafe.Pointer(&argvp[0])), uintptr(unsafe.Pointer(&envvp[0])), unix.AT_EMPTY_PATH, 0)
	return errno
}

// rootfs tracks which directories of the container's root are the
// launcher's own tmpfs (safe to create entries in) and which are host
// directories bind-mounted read-only.
type rootfs struct {
	ours   map[string]bool
	tmpfs  []string
	binds  []string
	stages int
}

// buildRoot makes a tmpfs root holding a bind mount of each top-level
// directory of the base (the host's, or a scratch image's files), pivots
// into it, mounts the volumes, hides the agent's state folder and makes the
// base's directories read-only.
func buildRoot(spec *launchSpec) error {
	root := spec.Root
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	r := &rootfs{ours: map[string]bool{"/": true}, tmpfs: []string{"/"}}
	base := spec.Base
	if base == "" {
		base = "/"
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return err
	}
	if base != "/" {
		// An image FROM scratch still gets the kernel's file systems, as
		// a container runtime mounts them.
		kept := entries[:0]
		for _, e := range entries {
			switch e.Name() {
			case "proc", "sys", "dev":
			default:
				kept = append(kept, e)
			}
		}
		entries = kept
		for _, name := range []string{"dev", "proc", "sys"} {
			dst := filepath.Join(root, name)
			if err := os.Mkdir(dst, 0o755); err != nil {
				return err
			}
			if err := unix.Mount("/"+name, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind /%s: %w", name, err)
			}
		}
	}
	for _, e := range entries {
		src := filepath.Join(base, e.Name())
		dst := filepath.Join(root, e.Name())
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case fi.IsDir():
			if err := os.Mkdir(dst, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind %s: %w", src, err)
			}
			switch {
			case base == "/" && (e.Name() == "proc" || e.Name() == "sys" || e.Name() == "dev"):
			default:
				r.binds = append(r.binds, "/"+e.Name())
			}
		default:
			if err := touch(dst); err != nil {
				return err
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind %s: %w", src, err)
			}
			r.binds = append(r.binds, "/"+e.Name())
		}
	}
	sources, staged, err := openSources(spec, root, base)
	if err != nil {
		return err
	}
	if err := os.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	return finishRoot(spec, r, sources, staged)
}

// openSources opens every volume source before anything is mounted over
// it (a later mount, such as /tmp, could hide a source). With the node's
// tree as the base, sources are reached through the new root, whose mounts
// stay reachable after the pivot. A scratch root holds none of the node's
// directories: each source is then bind-mounted on a staging entry of the
// new root first (removed once the volumes are in place).
func openSources(spec *launchSpec, root, base string) ([]int, string, error) {
	sources := make([]int, len(spec.Mounts))
	if base != "/" {
		const stage = ".volumes"
		if len(spec.Mounts) == 0 {
			return sources, "", nil
		}
		if err := os.Mkdir(filepath.Join(root, stage), 0o700); err != nil {
			return nil, "", err
		}
		for i, m := range spec.Mounts {
			st, err := os.Stat(m.Source)
			if err != nil {
				return nil, "", fmt.Errorf("volume source for %s: %w", m.Target, err)
			}
			dst := filepath.Join(root, stage, fmt.Sprint(i))
			if st.IsDir() {
				err = os.Mkdir(dst, 0o755)
			} else {
				err = touch(dst)
			}
			if err != nil {
				return nil, "", err
			}
			if err := unix.Mount(m.Source, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return nil, "", fmt.Errorf("bind %s: %w", m.Source, err)
			}
			if sources[i], err = unix.Open(dst, unix.O_PATH|unix.O_CLOEXEC, 0); err != nil {
				return nil, "", fmt.Errorf("volume source for %s: %w", m.Target, err)
			}
		}
		return sources, "/" + stage, nil
	}
	// Open every volume source through the new root (whose mounts stay
	// reachable after the pivot).
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, "", err
	}
	defer unix.Close(rootFd)
	for i, m := range spec.Mounts {
		fd, err := unix.Openat2(rootFd, m.Source, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
		if errors.Is(err, unix.ENOSYS) {
			fd, err = unix.Open(filepath.Join(root, m.Source), unix.O_PATH|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return nil, "", fmt.Errorf("volume source for %s: %w", m.Target, err)
		}
		sources[i] = fd
	}
	return sources, "", nil
}

// finishRoot mounts the volumes in the pivoted root, hides the agent's
// state, sets the working directory and the read-only flags.
func finishRoot(spec *launchSpec, r *rootfs, sources []int, staged string) error {
	// The base's directories are never writable from a container (the
	// container's own root, a tmpfs, is, unless readOnlyRootFilesystem).
	// This comes before the volumes, which may be mounted on top of them.
	for _, b := range r.binds {
		if err := remountReadOnly(b); err != nil {
			return fmt.Errorf("read-only %s: %w", b, err)
		}
	}

	order := make([]int, len(spec.Mounts))
	for i := range order {
		order[i] = i
	}
	depth := func(i int) int { return strings.Count(filepath.Clean(spec.Mounts[i].Target), "/") }
	sort.SliceStable(order, func(i, j int) bool { return depth(order[i]) < depth(order[j]) })
	for _, i := range order {
		m := spec.Mounts[i]
		var st unix.Stat_t
		if err := unix.Fstat(sources[i], &st); err != nil {
			return fmt.Errorf("volume source for %s: %w", m.Target, err)
		}
		target, err := r.ensure(m.Target, st.Mode&unix.S_IFMT != unix.S_IFDIR)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
		src := fmt.Sprintf("/proc/self/fd/%d", sources[i])
		if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind %s at %s: %w", m.Source, m.Target, err)
		}
		_ = unix.Close(sources[i])
		if st.Mode&unix.S_IFMT == unix.S_IFDIR && !m.Image {
			// Mount points of nested volumes are made inside this one
			// (an image's directory is mirrored on a tmpfs instead).
			r.ours[target] = true
		}
		// A bind mount inherits the read-only flag of the host directory
		// it was reached through: set the volume's own mode explicitly.
		if err := remountBind(target, m.ReadOnly); err != nil {
			return fmt.Errorf("remount %s: %w", m.Target, err)
		}
	}
	if staged != "" {
		// Never RemoveAll here: a staging entry that is still a mount
		// would take the volume's files with it.
		for i := range spec.Mounts {
			p := filepath.Join(staged, fmt.Sprint(i))
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount %s: %w", p, err)
			}
			if err := os.Remove(p); err != nil {
				return err
			}
		}
		if err := os.Remove(staged); err != nil {
			return err
		}
	}
	for _, h := range spec.Hide {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			if err := unix.Mount("tmpfs", h, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k"); err != nil {
				return fmt.Errorf("hide %s: %w", h, err)
			}
		}
	}
	if spec.Dir != "" {
		dir, err := r.ensure(spec.Dir, false)
		if err != nil {
			return fmt.Errorf("working directory %s: %w", spec.Dir, err)
		}
		if err := os.Chdir(dir); err != nil {
			return fmt.Errorf("working directory %s: %w", spec.Dir, err)
		}
	}
	if spec.ReadOnlyRoot {
		for _, t := range r.tmpfs {
			if err := remountReadOnly(t); err != nil {
				return fmt.Errorf("read-only %s: %w", t, err)
			}
		}
	}
	return nil
}

// ensure returns the real path of p inside the container root, creating it
// (a directory, or an empty file when file is set) if missing. Symbolic
// links are followed inside the new root. A missing entry under a host
// directory is created on a tmpfs copy of that directory ("mirror"), so
// the host is never changed.
func (r *rootfs) ensure(p string, file bool) (string, error) {
	queue := splitPath(p)
	cur := "/"
	for hops := 0; len(queue) > 0; {
		c := queue[0]
		queue = queue[1:]
		next := filepath.Join(cur, c)
		fi, err := os.Lstat(next)
		switch {
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			if hops++; hops > 40 {
				return "", fmt.Errorf("too many symbolic links in %s", p)
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", err
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(cur, target)
			}
			queue = append(splitPath(target), queue...)
			cur = "/"
		case err == nil:
			cur = next
		case os.IsNotExist(err):
			if !r.ours[cur] {
				if err := r.mirror(cur); err != nil {
					return "", err
				}
			}
			if file && len(queue) == 0 {
				if err := touch(next); err != nil {
					return "", err
				}
			} else {
				if err := os.Mkdir(next, 0o755); err != nil {
					return "", err
				}
				r.ours[next] = true
			}
			cur = next
		default:
			return "", err
		}
	}
	return cur, nil
}

// mirror replaces the host directory d by a tmpfs holding a bind mount of
// each of its entries.
func (r *rootfs) mirror(d string) error {
	r.stages++
	stage := fmt.Sprintf("/.mirror-%d", r.stages)
	if err := os.Mkdir(stage, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", stage, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mirror %s: %w", d, err)
	}
	if st, err := os.Stat(d); err == nil {
		_ = os.Chmod(stage, st.Mode().Perm()|(st.Mode()&os.ModeSticky))
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			_ = os.Lchown(stage, int(sys.Uid), int(sys.Gid))
		}
	}
	entries, err := os.ReadDir(d)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src := filepath.Join(d, e.Name())
		dst := filepath.Join(stage, e.Name())
		fi, err := os.Lstat(src)
		if err != nil {
			continue
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(src)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, dst); err != nil {
				return err
			}
		case fi.IsDir():
			if err := os.Mkdir(dst, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("mirror %s: %w", src, err)
			}
			if err := r.protect(d, dst); err != nil {
				return fmt.Errorf("mirror %s: %w", src, err)
			}
		default:
			if err := touch(dst); err != nil {
				return err
			}
			if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("mirror %s: %w", src, err)
			}
			if err := r.protect(d, dst); err != nil {
				return fmt.Errorf("mirror %s: %w", src, err)
			}
		}
	}
	if err := unix.Mount(stage, d, "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("mirror %s: %w", d, err)
	}
	_ = os.Remove(stage)
	r.ours[d] = true
	r.tmpfs = append(r.tmpfs, d)
	return nil
}

// protect makes a mirrored entry of the node's directory d read-only. The node's /dev stays
// as writable as it was before the mirror (a container's /dev/null, /dev/shm, /dev/pts); it
// is mirrored when a container's termination-message file is mounted at /dev/termination-log.
func (r *rootfs) protect(d, entry string) error {
	if d == "/dev" {
		return nil
	}
	return remountReadOnly(entry)
}

func remountReadOnly(p string) error { return remountBind(p, true) }

// remountBind sets a mount read-only or read-write, keeping its other flags.
func remountBind(p string, readOnly bool) error {
	var st unix.Statfs_t
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Statfs(p, &st); err == nil {
		for _, f := range []struct{ st, ms int64 }{
			{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV}, {unix.ST_NOEXEC, unix.MS_NOEXEC},
			{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
		} {
			if st.Flags&f.st != 0 {
				flags |= uintptr(f.ms)
			}
		}
	}
	return unix.Mount("", p, "", flags, "")
}

func splitPath(p string) []string {
	var parts []string
	for _, s := range strings.Split(filepath.Clean("/"+p), "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}

func touch(p string) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}

func killPid(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }
