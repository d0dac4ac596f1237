package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// makeRootfs writes a busybox rootfs with every applet linked in /bin (the
// benchmarks use sh, sleep, dd, tar, adjtimex, awk, cat, mkdir, rm).
func makeRootfs(rootfs string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "data"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	return nil
}

// bundleOpts shape one bench bundle.
type bundleOpts struct {
	args []string
	// sysAdmin gives the process CAP_SYS_ADMIN and a writable /proc/sys, for
	// echo 3 > /proc/sys/vm/drop_caches in the guest.
	sysAdmin bool
	// binds are host dir -> container path.
	binds map[string]string
	// noNetNS leaves out the network namespace: kabuto then gives the VM
	// no NIC (the container shares the guest's network namespace).
	noNetNS bool
	// noopHook adds a prestart hook that does nothing: with a create-time
	// hook, `run` keeps a NIC in the VM (the hook could move an interface
	// in), parked at start when nothing came.
	noopHook bool
}

// makeBundle writes config.json for the rootfs at dir/rootfs (made if
// absent). Both kabuto and runc run it.
func makeBundle(dir string, o bundleOpts) error {
	rootfs := filepath.Join(dir, "rootfs")
	if _, err := os.Stat(filepath.Join(rootfs, "bin/busybox")); err != nil {
		if err := makeRootfs(rootfs); err != nil {
			return err
		}
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_MKNOD"}
	if o.sysAdmin {
		caps = append(caps, "CAP_SYS_ADMIN")
	}
	spec := specs.Spec{
		Version: "1.0.2",
		Process: &specs.Process{
			User: specs.User{UID: 0, GID: 0},
			Args: o.args,
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
		},
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "bench",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
		},
	}
	if o.noNetNS {
		spec.Linux.Namespaces = spec.Linux.Namespaces[:len(spec.Linux.Namespaces)-1]
	}
	if o.noopHook {
		spec.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}}
	}
	for src, dst := range o.binds {
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rw"}})
	}
	b, err := json.MarshalIndent(spec, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}
