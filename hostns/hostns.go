// Package hostns shapes the host namespaces of the process that stands for a
// container on the host: the init's shim, whose pid `state` reports and
// callers inspect through /proc/<pid>/ns (docker's setkey hook reads its
// network namespace; conformance tools compare every type). The container's
// real namespaces are in the guest; on the host the shim is placed
//
//   - in the namespace at the path, for each type the spec names by path
//     (a user namespace excepted: a multithreaded process cannot join one);
//   - in a new namespace, for each type the spec lists without a path (a new
//     user namespace maps every id to itself, so the shim keeps its files
//     and loses only its privileges over the host's other namespaces);
//   - in kabuto's own namespace, for each type the spec does not list.
//
// The network namespace is always a path here: the spec's, or the one
// kabuto made and pinned for the container. Host only.
package hostns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var flags = map[specs.LinuxNamespaceType]uintptr{
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
}

// joinOrder enters the mount namespace last: the paths of the others are
// opened before, and it changes what later paths would resolve to.
var joinOrder = []specs.LinuxNamespaceType{
	specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace, specs.PIDNamespace,
	specs.CgroupNamespace, specs.MountNamespace,
}

// Plan is where a process goes: namespaces to join by path, and the clone
// flags of the new ones.
type Plan struct {
	Join  map[specs.LinuxNamespaceType]string
	Clone uintptr
}

// For plans the stand-in of a container with these namespaces; netnsPath
// is its network namespace ("" for the host's).
func For(namespaces []specs.LinuxNamespace, netnsPath string) Plan {
	p := Plan{Join: map[specs.LinuxNamespaceType]string{}}
	for _, ns := range namespaces {
		flag, ok := flags[ns.Type]
		if !ok || ns.Type == specs.NetworkNamespace {
			continue // time namespaces do not matter to the host
		}
		switch {
		case ns.Path == "":
			p.Clone |= flag
		case ns.Type != specs.UserNamespace:
			p.Join[ns.Type] = ns.Path
		}
	}
	if netnsPath != "" {
		p.Join[specs.NetworkNamespace] = netnsPath
	}
	return p
}

// Start starts cmd from an OS thread that has joined the plan's namespaces,
// with the plan's new ones added to its clone flags. The thread is never
// reused.
func Start(cmd *exec.Cmd, p Plan) error {
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	type join struct {
		f    *os.File
		flag uintptr
		t    specs.LinuxNamespaceType
	}
	var joins []join
	for _, t := range joinOrder {
		path, ok := p.Join[t]
		if !ok {
			continue
		}
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open the %s namespace: %w", t, err)
		}
		files = append(files, f)
		joins = append(joins, join{f, flags[t], t})
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Cloneflags |= p.Clone
	if p.Clone&unix.CLONE_NEWUSER != 0 {
		all := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
		cmd.SysProcAttr.UidMappings = all
		cmd.SysProcAttr.GidMappings = all
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
	}
	if len(joins) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		// Not unlocked: the thread's namespaces changed, so it dies with
		// this goroutine instead of running other goroutines.
		runtime.LockOSThread()
		for _, j := range joins {
			if j.flag == unix.CLONE_NEWNS {
				// A thread sharing its filesystem context with others
				// cannot change its mount namespace.
				if err := unix.Unshare(unix.CLONE_FS); err != nil {
					errc <- fmt.Errorf("unshare the filesystem context: %w", err)
					return
				}
			}
			if err := unix.Setns(int(j.f.Fd()), int(j.flag)); err != nil {
				errc <- fmt.Errorf("join the %s namespace %s: %w", j.t, j.f.Name(), err)
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// CheckPaths checks that every namespace path of the spec names a namespace
// of its type (a wrong path must fail create, not be joined).
func CheckPaths(namespaces []specs.LinuxNamespace) error {
	for _, ns := range namespaces {
		flag, ok := flags[ns.Type]
		if !ok || ns.Path == "" {
			continue
		}
		f, err := os.Open(ns.Path)
		if err != nil {
			return fmt.Errorf("the %s namespace path: %w", ns.Type, err)
		}
		t, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
		f.Close()
		if err != nil {
			return fmt.Errorf("the %s namespace path %s is not a namespace: %w", ns.Type, ns.Path, err)
		}
		if uintptr(t) != flag {
			return fmt.Errorf("the %s namespace path %s is a namespace of another type", ns.Type, ns.Path)
		}
	}
	return nil
}
