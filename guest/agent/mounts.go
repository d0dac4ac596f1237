package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

type mountFlag struct {
	clear bool
	flag  uintptr
}

var mountFlags = map[string]mountFlag{
	"async": {true, unix.MS_SYNCHRONOUS}, "atime": {true, unix.MS_NOATIME}, "bind": {false, unix.MS_BIND},
	"defaults": {false, 0}, "dev": {true, unix.MS_NODEV}, "diratime": {true, unix.MS_NODIRATIME},
	"dirsync": {false, unix.MS_DIRSYNC}, "exec": {true, unix.MS_NOEXEC}, "iversion": {false, unix.MS_I_VERSION},
	"lazytime": {false, unix.MS_LAZYTIME}, "loud": {true, unix.MS_SILENT}, "mand": {false, unix.MS_MANDLOCK},
	"noatime": {false, unix.MS_NOATIME}, "nodev": {false, unix.MS_NODEV}, "nodiratime": {false, unix.MS_NODIRATIME},
	"noexec": {false, unix.MS_NOEXEC}, "noiversion": {true, unix.MS_I_VERSION}, "nolazytime": {true, unix.MS_LAZYTIME},
	"nomand": {true, unix.MS_MANDLOCK}, "norelatime": {true, unix.MS_RELATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid": {false, unix.MS_NOSUID}, "rbind": {false, unix.MS_BIND | unix.MS_REC}, "relatime": {false, unix.MS_RELATIME},
	"remount": {false, unix.MS_REMOUNT}, "ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"silent": {false, unix.MS_SILENT}, "strictatime": {false, unix.MS_STRICTATIME}, "suid": {true, unix.MS_NOSUID},
	"sync": {false, unix.MS_SYNCHRONOUS},
}

var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// Options kabuto understands but the kernel must not see.
var ignoredOptions = map[string]bool{"tmpcopyup": true, "rro": true, "rrw": true, "idmap": true, "ridmap": true}

// parseMountOptions splits OCI mount options into flags, propagation flags
// and the data string.
func parseMountOptions(opts []string) (flags uintptr, prop []uintptr, data string) {
	var d []string
	for _, o := range opts {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				flags &^= f.flag
			} else {
				flags |= f.flag
			}
			continue
		}
		if p, ok := propagationFlags[o]; ok {
			prop = append(prop, p)
			continue
		}
		if ignoredOptions[o] {
			continue
		}
		d = append(d, o)
	}
	return flags, prop, strings.Join(d, ",")
}

// secureJoin resolves unsafe under root, following symlinks as if root
// were "/": the result never leaves root.
func secureJoin(root, unsafe string) (string, error) {
	var path strings.Builder
	rest := unsafe
	links := 0
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(strings.TrimLeft(rest, "/"), "/")
		switch part {
		case "", ".":
			continue
		case "..":
			cur := path.String()
			path.Reset()
			path.WriteString(filepath.Dir("/" + cur)[1:])
			continue
		}
		next := strings.TrimPrefix(path.String()+"/"+part, "/")
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			path.Reset()
			path.WriteString(next)
			continue
		}
		links++
		if links > 255 {
			return "", fmt.Errorf("too many symlinks resolving %s", unsafe)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if filepath.IsAbs(target) {
			path.Reset()
		}
		rest = target + "/" + rest
	}
	return filepath.Join(root, path.String()), nil
}

// setupRootfs builds the container's mount tree and pivots into it.
func setupRootfs(spec *specs.Spec, rootfs string, noPivot bool) error {
	prop := uintptr(unix.MS_SLAVE | unix.MS_REC)
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		p, ok := propagationFlags[spec.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("invalid rootfsPropagation %q", spec.Linux.RootfsPropagation)
		}
		prop = p
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return fmt.Errorf("set / propagation: %w", err)
	}
	if err := unix.Mount(rootfs, rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs: %w", err)
	}
	devMounted := false
	for _, m := range spec.Mounts {
		if err := mountOne(rootfs, m); err != nil {
			return fmt.Errorf("mount %s (%s): %w", m.Destination, m.Type, err)
		}
		if filepath.Clean(m.Destination) == "/dev" && m.Type == "tmpfs" {
			devMounted = true
		}
	}
	if devMounted {
		if err := createDefaultDevices(rootfs); err != nil {
			return err
		}
	}
	if spec.Linux != nil {
		for _, d := range spec.Linux.Devices {
			if err := createDevice(rootfs, d); err != nil {
				return fmt.Errorf("create device %s: %w", d.Path, err)
			}
		}
	}
	// Like runc, create the process's cwd while the rootfs is still writable.
	if spec.Process != nil && spec.Process.Cwd != "" {
		cwd, err := secureJoin(rootfs, spec.Process.Cwd)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return fmt.Errorf("create cwd %s: %w", spec.Process.Cwd, err)
		}
	}
	return pivot(rootfs, noPivot)
}

// finalizeRootfs runs after sysctls are written (runc's order: /proc/sys is
// usually among the read-only paths): read-only and masked paths, then the
// read-only root and the final root propagation.
func finalizeRootfs(spec *specs.Spec) error {
	if spec.Linux != nil {
		for _, p := range spec.Linux.ReadonlyPaths {
			if err := readonlyPath(p); err != nil {
				return err
			}
		}
		for _, p := range spec.Linux.MaskedPaths {
			if err := maskPath(p); err != nil {
				return err
			}
		}
	}
	if spec.Root.Readonly {
		flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
		var st unix.Statfs_t
		if err := unix.Statfs("/", &st); err == nil {
			flags |= mountFlagsOf(st.Flags)
		}
		if err := unix.Mount("", "/", "", flags, ""); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	// The new root's propagation as asked, shared included: pivot_root
	// refuses a shared parent, but the root it made may become shared.
	if spec.Linux != nil && spec.Linux.RootfsPropagation != "" {
		if prop, ok := propagationFlags[spec.Linux.RootfsPropagation]; ok {
			if err := unix.Mount("", "/", "", prop, ""); err != nil {
				return fmt.Errorf("set the root's propagation to %s: %w", spec.Linux.RootfsPropagation, err)
			}
		}
	}
	return nil
}

// mountOne mounts m under rootfs. Bind sources that came from the host are
// relative to the share (the host rewrote them), anything else is a guest path.
func mountOne(rootfs string, m specs.Mount) error {
	dest, err := secureJoin(rootfs, m.Destination)
	if err != nil {
		return err
	}
	flags, prop, data := parseMountOptions(m.Options)
	if protocol.IsBindMount(m) {
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(protocol.ShareMount, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return err
		}
		if err := makeTarget(dest, fi.IsDir()); err != nil {
			return err
		}
		if err := unix.Mount(src, dest, "", unix.MS_BIND|(flags&unix.MS_REC), ""); err != nil {
			return err
		}
		if rest := flags &^ (unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT); rest != 0 {
			if err := unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|rest, ""); err != nil {
				return fmt.Errorf("remount: %w", err)
			}
		}
	} else {
		fstype, src := m.Type, m.Source
		if fstype == "cgroup" {
			// The guest runs cgroup v2 only.
			fstype, src = "cgroup2", "cgroup2"
		}
		if fstype == "cgroup2" {
			data = addMountData(data, cgroup2Options)
		}
		if err := makeTarget(dest, true); err != nil {
			return err
		}
		err := unix.Mount(src, dest, fstype, flags, data)
		if err != nil && fstype == "mqueue" && errors.Is(err, unix.EPERM) {
			// No IPC namespace of its own: bind the agent's mqueue.
			err = unix.Mount("/dev/mqueue", dest, "", unix.MS_BIND, "")
		}
		if err != nil && fstype == "cgroup2" && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY)) {
			// Likewise for cgroup2 in a user namespace: bind the
			// container's own cgroup.
			var own string
			if own, err = ownCgroup(); err == nil {
				err = unix.Mount(filepath.Join("/sys/fs/cgroup", own), dest, "", unix.MS_BIND, "")
			}
			if err == nil && flags&unix.MS_RDONLY != 0 {
				err = unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags&(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
			}
		}
		if err != nil && fstype == "sysfs" && errors.Is(err, unix.EPERM) {
			// In a user namespace not owning the network namespace (the
			// container shares the VM's), sysfs cannot be mounted: bind
			// the guest's, as runc does for rootless containers.
			err = unix.Mount("/sys", dest, "", unix.MS_BIND|unix.MS_REC, "")
			if err == nil && flags&unix.MS_RDONLY != 0 {
				err = unix.Mount("", dest, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags&(unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC), "")
			}
		}
		if err != nil {
			return err
		}
		if fstype == "devpts" {
			ptmx := filepath.Join(filepath.Dir(dest), "ptmx")
			os.Remove(ptmx)
			if err := os.Symlink("pts/ptmx", ptmx); err != nil {
				return err
			}
		}
	}
	for _, p := range prop {
		if err := unix.Mount("", dest, "", p, ""); err != nil {
			return fmt.Errorf("set propagation: %w", err)
		}
	}
	return nil
}

func makeTarget(dest string, dir bool) error {
	if dir {
		return os.MkdirAll(dest, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(dest, os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		if errors.Is(err, unix.EISDIR) {
			return nil
		}
		return err
	}
	return f.Close()
}

var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0},
}

func createDefaultDevices(rootfs string) error {
	mode := os.FileMode(0o666)
	for _, d := range defaultDevices {
		d.FileMode = &mode
		if err := createDevice(rootfs, d); err != nil {
			return fmt.Errorf("create %s: %w", d.Path, err)
		}
	}
	for link, target := range map[string]string{
		"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0", "/dev/stdout": "/proc/self/fd/1",
		"/dev/stderr": "/proc/self/fd/2", "/dev/core": "/proc/kcore",
	} {
		p := filepath.Join(rootfs, link)
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := os.Symlink(target, p); err != nil {
			return err
		}
	}
	ptmx := filepath.Join(rootfs, "/dev/ptmx")
	if _, err := os.Lstat(ptmx); err != nil {
		os.Symlink("pts/ptmx", ptmx)
	}
	return nil
}

func createDevice(rootfs string, d specs.LinuxDevice) error {
	dest, err := secureJoin(rootfs, d.Path)
	if err != nil {
		return err
	}
	var t uint32
	switch d.Type {
	case "c", "u":
		t = unix.S_IFCHR
	case "b":
		t = unix.S_IFBLK
	case "p":
		t = unix.S_IFIFO
	default:
		return fmt.Errorf("unknown device type %q", d.Type)
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(d.FileMode.Perm())
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o755); err != nil {
		return err
	}
	os.Remove(dest)
	old := unix.Umask(0)
	err = unix.Mknod(dest, t|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	unix.Umask(old)
	if errors.Is(err, unix.EPERM) && t == unix.S_IFCHR {
		// In a user namespace: bind the agent's node of the same number.
		return bindDevice(dest, d)
	}
	if err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return os.Lchown(dest, uid, gid)
}

// bindDevice binds the guest's /dev node with d's numbers over dest.
func bindDevice(dest string, d specs.LinuxDevice) error {
	src := ""
	for _, c := range defaultDevices {
		if c.Major == d.Major && c.Minor == d.Minor {
			src = c.Path
		}
	}
	if src == "" {
		return fmt.Errorf("cannot create device %d:%d here (no mknod permission)", d.Major, d.Minor)
	}
	if err := makeTarget(dest, false); err != nil {
		return err
	}
	return unix.Mount(src, dest, "", unix.MS_BIND, "")
}

func pivot(rootfs string, noPivot bool) error {
	if err := unix.Chdir(rootfs); err != nil {
		return err
	}
	if noPivot {
		if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move rootfs: %w", err)
		}
		if err := unix.Chroot("."); err != nil {
			return err
		}
		return unix.Chdir("/")
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	// The old root is stacked on "."; keep unmounts from propagating to the
	// agent's namespace, then detach it.
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// readonlyPath makes p read-only, keeping its other mount flags (a
// remount that dropped nosuid/nodev/noexec would be refused in a user
// namespace, and would loosen them otherwise).
func readonlyPath(p string) error {
	if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("readonly path %s: %w", p, err)
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err == nil {
		flags |= mountFlagsOf(st.Flags)
	}
	if err := unix.Mount("", p, "", flags, ""); err != nil {
		return fmt.Errorf("readonly path %s: %w", p, err)
	}
	return nil
}

// mountFlagsOf maps statfs f_flags to the per-mount flags a bind remount
// must repeat.
func mountFlagsOf(f int64) uintptr {
	var m uintptr
	for st, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if f&st != 0 {
			m |= ms
		}
	}
	return m
}

func maskPath(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return nil
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("mask path %s: %w", p, err)
	}
	return nil
}

// ownCgroup is the calling process's cgroup v2 path.
func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return filepath.Clean("/" + p), nil
		}
	}
	return "", errors.New("no cgroup v2 entry in /proc/self/cgroup")
}

// addMountData appends opt to a mount's data unless it is there already.
func addMountData(data, opt string) string {
	if data == "" {
		return opt
	}
	for _, o := range strings.Split(data, ",") {
		if o == opt {
			return data
		}
	}
	return data + "," + opt
}
