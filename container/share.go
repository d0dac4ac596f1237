package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// shareDirName is the directory of the state dir that QEMU exports to the
// guest over 9p. It holds only bind mounts: rootfs, and m<N> for the source
// of the spec's mount N.
const shareDirName = "shared"

// rootShareDirName is the directory QEMU exports as the rootfs's own 9p
// device (protocol.RootfsTag) when the rootfs has a cache mode of its own
// (hypervisor.rootfs_cache = "loose"). It holds one bind mount: rootfs.
const rootShareDirName = "rootshare"

// ownRootfsShare says whether the rootfs gets its own 9p device.
func (r *Runtime) ownRootfsShare() bool {
	return r.Config.Hypervisor.RootfsCache == protocol.RootfsCacheLoose
}

// prepareShare bind-mounts the rootfs and every bind source into the share
// and returns the create request carrying the spec rewritten for the guest.
func (r *Runtime) prepareShare(dir string, spec *specs.Spec, rootfs, bundle string, noPivot bool, st *vmstate.State, u *undo) (*protocol.CreateRequest, error) {
	share := filepath.Join(dir, shareDirName)
	// Traversable by anyone: a container in a user namespace is not the
	// guest's root, and must still reach its rootfs below (not list it).
	if err := os.Mkdir(share, 0o711); err != nil {
		return nil, err
	}
	guestSpec, err := copySpec(spec)
	if err != nil {
		return nil, err
	}
	bindIn := func(share, src, name string) error {
		target := filepath.Join(share, name)
		if err := bindMount(src, target); err != nil {
			return err
		}
		st.Mounts = append(st.Mounts, target)
		u.add(func() { unmount(target) })
		return nil
	}
	bind := func(src, name string) error { return bindIn(share, src, name) }
	rootShare, rootfsCache := share, ""
	if r.ownRootfsShare() {
		// The rootfs's own device: mounted in the guest with its own cache
		// mode, while the bind sources keep the coherent one.
		rootShare, rootfsCache = filepath.Join(dir, rootShareDirName), r.Config.Hypervisor.RootfsCache
		if err := os.Mkdir(rootShare, 0o711); err != nil {
			return nil, err
		}
		st.RootfsCache = rootfsCache
	}
	if err := bindIn(rootShare, rootfs, "rootfs"); err != nil {
		return nil, fmt.Errorf("share rootfs: %w", err)
	}
	guestSpec.Root.Path = "rootfs"
	// The guest runs only the startContainer hooks; the others name host
	// programs (and may carry host secrets in their env).
	guestSpec.Hooks = nil
	if spec.Hooks != nil && len(spec.Hooks.StartContainer) > 0 {
		guestSpec.Hooks = &specs.Hooks{StartContainer: spec.Hooks.StartContainer}
	}
	req := &protocol.CreateRequest{
		ContainerID: st.ID,
		Spec:        guestSpec,
		RootfsShare: "rootfs",
		RootfsCache: rootfsCache,
		Stdin:       stdinIsUsable() || spec.Process.Terminal,
		NoPivot:     noPivot,
	}
	for i, m := range spec.Mounts {
		if !protocol.IsBindMount(m) {
			continue
		}
		src := m.Source
		if !filepath.IsAbs(src) {
			src = filepath.Join(bundle, src)
		}
		// m<i>/<the source's name>: inside the guest, the mount's root in
		// mountinfo ends like the source's path, as with runc.
		dir := "m" + strconv.Itoa(i)
		if err := os.Mkdir(filepath.Join(share, dir), 0o711); err != nil {
			return nil, err
		}
		base := filepath.Base(filepath.Clean(src))
		if base == "/" || base == "." || base == ".." {
			base = "root"
		}
		name := dir + "/" + base
		if err := bind(src, name); err != nil {
			return nil, fmt.Errorf("mount src=%s, dst=%s: %w", m.Source, m.Destination, err)
		}
		guestSpec.Mounts[i].Source = name
		req.SharedSources = append(req.SharedSources, i)
	}
	return req, nil
}

// bindMount binds src (a directory or a file) at target, recursively, and
// makes the new mount private so it never propagates into other namespaces.
func bindMount(src, target string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return errors.Unwrap(err)
	}
	if fi.IsDir() {
		err = os.Mkdir(target, 0o700)
	} else {
		var f *os.File
		f, err = os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
		}
	}
	if err != nil {
		return err
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		os.Remove(target)
		return fmt.Errorf("bind mount: %w", err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		unmount(target)
		return fmt.Errorf("make bind mount private: %w", err)
	}
	return nil
}

// unmount detaches target and removes the mount point.
func unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
