// Package agent is kabuto-agent, PID 1 of every kabuto guest. It sets the
// guest up, serves the host's requests on the virtio-serial channel
// (protocol package), builds the container from its OCI spec and runs,
// watches and reaps its processes. Guest only: nothing here runs on the host.
package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// debug is set by kabuto.debug=1 on the kernel command line.
var debug bool

// Each line ends with the guest's monotonic clock (the base of the kernel's
// printk times), so that a boot can be profiled from the console alone.
func logf(format string, args ...any) {
	if debug {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
		fmt.Fprintf(os.Stderr, "kabuto-agent: "+format+" [%d.%06d]\n", append(args, ts.Sec, ts.Nsec/1000)...)
	}
}

// switchRoot moves the agent off the initramfs onto a tmpfs root. pivot_root
// refuses to move away from the initramfs (it has no parent mount), and every
// container needs pivot_root; a tmpfs mounted over it and moved to "/" has
// one. The agent binary stays on the initramfs, reachable as /proc/self/exe.
func switchRoot() error {
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", "/newroot", "tmpfs", 0, "mode=755,size=16m"); err != nil {
		return fmt.Errorf("mount root tmpfs: %w", err)
	}
	for _, d := range []string{"proc", "sys", "dev", "run", "tmp", "etc"} {
		if err := os.Mkdir(filepath.Join("/newroot", d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod("/newroot/tmp", 0o1777); err != nil {
		return err
	}
	if err := unix.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

type mnt struct {
	src, dst, fstype string
	flags            uintptr
	data             string
}

// earlySetup mounts what the agent needs to find its channel to the host.
// It is on the boot's critical path: keep it short.
func earlySetup() error {
	if err := switchRoot(); err != nil {
		return err
	}
	const nse = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	return mountAll([]mnt{
		{"proc", "/proc", "proc", nse, ""},
		{"sysfs", "/sys", "sysfs", nse, ""},
		{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	})
}

// cgroup2Options are the guest's cgroup2 mount options. favordynmods:
// moving a process into a cgroup (every exec, the init) or enabling
// controllers takes a lock whose writers otherwise wait for an RCU grace
// period, tens of milliseconds under emulation with HZ=100; forks and exits
// pay a little instead. A new mount of the hierarchy in the guest's cgroup
// namespace sets its options anew, so the container's cgroup2 mounts carry
// them too (mountOne).
const cgroup2Options = "favordynmods"

// lateSetup prepares the rest of the guest for a container while the agent
// already answers the host.
func lateSetup() error {
	const nse = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	if err := mountAll([]mnt{
		{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
		{"cgroup2", "/sys/fs/cgroup", "cgroup2", nse, cgroup2Options},
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"tmpfs", "/dev/shm", "tmpfs", nse, "mode=1777"},
	}); err != nil {
		return err
	}
	os.Remove("/dev/ptmx")
	if err := os.Symlink("pts/ptmx", "/dev/ptmx"); err != nil {
		return err
	}
	return loopbackUp()
}

func mountAll(ms []mnt) error {
	for _, m := range ms {
		if err := os.MkdirAll(m.dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.src, m.dst, m.fstype, m.flags, m.data); err != nil {
			return fmt.Errorf("mount %s: %w", m.dst, err)
		}
	}
	return nil
}

// loopbackUp brings lo up (SIOCSIFFLAGS; the guest has no ip tool).
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// findPort returns the device of the virtio-serial port named name. QEMU
// names ports with a control message that may trail the device's probe.
func findPort(name string, timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		ents, _ := os.ReadDir("/sys/class/virtio-ports")
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join("/sys/class/virtio-ports", e.Name(), "name"))
			if err == nil && strings.TrimSpace(string(b)) == name {
				return "/dev/" + e.Name(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("virtio-serial port %q not found", name)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// uptime is the kernel's /proc/uptime, for boot timing logs.
func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0] + "s"
}

// mountShare mounts the host's 9p share once.
var shareMounted bool

func mountShare(msize int) error {
	if shareMounted {
		return nil
	}
	if err := mount9p(protocol.ShareTag, protocol.ShareMount, msize, "mmap"); err != nil {
		return fmt.Errorf("mount 9p share: %w", err)
	}
	shareMounted = true
	return nil
}

// mountRootfsShare mounts the rootfs's own 9p share (protocol.RootfsTag)
// with its cache mode, once.
var rootfsMounted atomic.Bool

func mountRootfsShare(msize int, cache string) error {
	if rootfsMounted.Load() {
		return nil
	}
	if cache != protocol.RootfsCacheLoose {
		return fmt.Errorf("unknown rootfs cache mode %q", cache)
	}
	if err := mount9p(protocol.RootfsTag, protocol.RootfsMount, msize, cache); err != nil {
		return fmt.Errorf("mount the rootfs's 9p share: %w", err)
	}
	// Write-back: the guest holds the container's writes in its page cache
	// until they are written back. Write them back soon (each page is a 9p
	// write of its own whenever it goes, so waiting gains no batching): the
	// host then sees a running container's files within about two seconds
	// (docker cp, docker diff). Syncs at the init's exit and at pause make
	// it exact where it matters.
	for f, v := range map[string]string{
		"/proc/sys/vm/dirty_expire_centisecs":    "100",
		"/proc/sys/vm/dirty_writeback_centisecs": "100",
	} {
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			logf("%s: %v", f, err)
		}
	}
	rootfsMounted.Store(true)
	return nil
}

func mount9p(tag, dir string, msize int, cache string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	opts := fmt.Sprintf("trans=virtio,version=9p2000.L,msize=%d,cache=%s,access=client,posixacl", msize, cache)
	err := unix.Mount(tag, dir, "9p", unix.MS_NODEV, opts)
	if errors.Is(err, unix.EINVAL) {
		opts = strings.TrimSuffix(opts, ",posixacl")
		err = unix.Mount(tag, dir, "9p", unix.MS_NODEV, opts)
	}
	return err
}

// syncRootfs writes the rootfs's dirty pages back to the host and reports
// a write-back error (sync(2) reports none). The rest of the guest is
// synced as well: mmap'd pages of the bind mounts.
func syncRootfs() error {
	var err error
	if rootfsMounted.Load() {
		var fd int
		fd, err = unix.Open(protocol.RootfsMount, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Syncfs(fd)
			unix.Close(fd)
		}
		if err != nil {
			err = fmt.Errorf("syncfs the rootfs: %w", err)
		}
	}
	unix.Sync()
	return err
}

// cmdline returns the value of key=value on the kernel command line.
func cmdline(key string) string {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}
