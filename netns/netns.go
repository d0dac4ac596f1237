// Package netns manages the host network namespace a container's VM lives
// in: the one named by the spec, or one kabuto creates and pins with a bind
// mount in the state directory. QEMU and the shim are started inside it, so
// that /proc/<pid>/ns/net of the container's pid is the container's
// namespace, as docker's prestart hook and podman expect. Host only.
package netns

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Create makes a new network namespace and bind-mounts it at path.
func Create(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// This thread's namespace changes; it is never given back to the
		// scheduler (the goroutine exits locked, so the thread dies).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("pin network namespace: %w", err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// Remove unpins a namespace made by Create.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Do runs fn on an OS thread that has entered the namespace at path (the
// current one if path is empty). Processes fn starts from that thread are
// born in the namespace.
func Do(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	ns, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not unlocked: the thread is tainted and dies with the goroutine.
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// SameAsHost reports whether path is the host's network namespace: the one
// kabuto itself runs in (its callers, containerd's shim and conmon, live in
// the host's), or that of the host's init (docker's --network host passes
// /var/run/docker/netns/default).
func SameAsHost(path string) bool {
	var a unix.Stat_t
	if unix.Stat(path, &a) != nil {
		return false
	}
	for _, host := range []string{"/proc/self/ns/net", "/proc/1/ns/net"} {
		var b unix.Stat_t
		if unix.Stat(host, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return true
		}
	}
	return false
}
