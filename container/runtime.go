package container

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/hooks"
	"github.com/kabuto-runtime/kabuto/hostcgroup"
	"github.com/kabuto-runtime/kabuto/hostns"
	"github.com/kabuto-runtime/kabuto/netns"
	"github.com/kabuto-runtime/kabuto/network"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/shim"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Errors the CLI maps to runc's wording.
var (
	ErrNotRunning = errors.New("container not running")
	ErrNotStopped = errors.New("cannot delete container that is not stopped")
	ErrNotCreated = errors.New("cannot start a container that is not created")
	ErrNotPaused  = errors.New("container not paused")
	ErrPaused     = errors.New("container paused")
)

// Runtime carries what every operation needs.
type Runtime struct {
	Store  vmstate.Store
	Config *config.Config
	// Self is the kabuto binary, re-executed as the shim.
	Self string
	// ShimArgs are the global flags passed on to shims (--log, --log-format).
	ShimArgs []string
	// SystemdCgroup is runc's --systemd-cgroup.
	SystemdCgroup bool
	// Warn reports a non-fatal problem (logged, not printed on success).
	Warn func(format string, args ...any)
}

func (r *Runtime) warn(format string, args ...any) {
	if r.Warn != nil {
		r.Warn(format, args...)
	}
}

// CreateOptions are create's (and run's) flags.
type CreateOptions struct {
	ID            string
	Bundle        string
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFDs   int
	// Foreground is run without --detach: the shim shares this process's
	// stdio (a terminal, for terminal processes) and stays its child.
	Foreground bool
	// StartsNow is run: start follows create within the same verb, so
	// nothing but the create-time hooks can add an interface to a new
	// network namespace before the container starts.
	StartsNow bool
}

// Created is what Create hands back to `run`.
type Created struct {
	Shim *os.Process
}

// undo collects cleanups to run, last first, when an operation fails.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// Create builds the container: its state dir, host mounts, namespace and
// cgroup, a booted VM, the init's shim, and the init process in the guest,
// waiting for start. On failure nothing is left behind.
func (r *Runtime) Create(ctx context.Context, o CreateOptions) (_ *Created, err error) {
	if err := vmstate.ValidateID(o.ID); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return nil, err
	}
	rootfs, err := RootfsPath(spec, bundle)
	if err != nil {
		return nil, err
	}
	terminal := spec.Process.Terminal
	if terminal && o.ConsoleSocket == "" && !o.Foreground {
		return nil, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !terminal && o.ConsoleSocket != "" {
		return nil, errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	netnsPath := ""
	if ns, ok := hasNamespace(spec, specs.NetworkNamespace); ok && ns.Path != "" {
		if netns.SameAsHost(ns.Path) {
			return nil, errors.New("the host network namespace cannot be given to a VM container (--network host is not supported by kabuto)")
		}
		netnsPath = ns.Path
	}
	accel, err := qemu.DetectAccel(r.Config.Hypervisor.Accel)
	if err != nil {
		return nil, err
	}

	h, err := r.Store.Create(o.ID)
	if err != nil {
		return nil, err
	}
	var u undo
	u.add(func() { h.Remove() })
	// A failed create-time hook continues the lifecycle at its end: the
	// container is destroyed, then the poststop hooks run.
	var afterUndo func()
	defer func() {
		if err != nil {
			u.run()
			if afterUndo != nil {
				afterUndo()
			}
		}
	}()

	st := &vmstate.State{
		ID:          o.ID,
		Bundle:      bundle,
		Rootfs:      rootfs,
		Created:     time.Now().UTC(),
		Owner:       ownerName(),
		Annotations: spec.Annotations,
		OCIVersion:  spec.Version,
		Creating:    true,
		Hooks:       spec.Hooks,
		Accel:       accel.Name,
	}
	if err := h.Save(st); err != nil {
		return nil, err
	}

	// Host side of the share: the rootfs and every bind source, under one dir.
	req, err := r.prepareShare(h.Dir, spec, rootfs, bundle, o.NoPivot, st, &u)
	if err != nil {
		return nil, err
	}

	if ns, ok := hasNamespace(spec, specs.NetworkNamespace); ok && ns.Path == "" {
		netnsPath = filepath.Join(h.Dir, "netns")
		if err := netns.Create(netnsPath); err != nil {
			return nil, err
		}
		st.OwnNetNS = true
		u.add(func() { netns.Remove(netnsPath) })
	}
	st.NetNS = netnsPath
	// Cgroups are joined further down; undo them only after the processes
	// in them are gone (undo runs last-added first).
	u.add(func() { hostcgroup.Remove(st.Cgroups) })

	vm := r.vmFor(o.ID, h.Dir, spec, accel.Name)
	if netnsPath != "" && !(st.OwnNetNS && o.StartsNow && !hasCreateHooks(spec)) {
		// One NIC per interface the namespace holds now (podman's), at least
		// one: docker moves its veth in during the prestart hook (20.10) or
		// after create (28+), and microvm has no hotplug. A NIC takes its
		// interface's MAC when known. A VM for `run` of a new namespace
		// without create-time hooks gets none: nothing can move an
		// interface in before it starts, and a NIC with nothing to mirror
		// would only be parked at start (~50 ms of cold guest code under
		// TCG) for the container to see lo alone.
		var macs []string
		err := netns.Do(netnsPath, func() error {
			links, err := network.Candidates()
			for _, l := range links {
				macs = append(macs, l.Attrs().HardwareAddr.String())
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(macs) > network.MaxNICs {
			return nil, fmt.Errorf("the network namespace has %d interfaces; a VM takes at most %d", len(macs), network.MaxNICs)
		}
		if len(macs) == 0 {
			macs = []string{network.RandomMAC()}
		}
		for i, mac := range macs {
			if mac == "" {
				mac = network.RandomMAC()
			}
			vm.NICs = append(vm.NICs, qemu.NIC{MAC: mac, Tap: network.TapName(i)})
			st.GuestMACs = append(st.GuestMACs, mac)
		}
		st.ResolvConf = resolvConfSource(spec)
	}
	st.VCPUs, st.MemoryMiB = vm.VCPUs, vm.MemoryMiB
	// VM templating (template.go): restore a template instead of booting.
	tpl := r.fromTemplate(ctx, vm, st)
	if tpl != nil {
		defer tpl.release()
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var qpid int
	err = netns.Do(netnsPath, func() error {
		var lerr error
		qpid, lerr = qemu.Launch(qctx, vm)
		return lerr
	})
	if err != nil {
		return nil, err
	}
	if st.QEMU, err = vmstate.ProcessOf(qpid); err != nil {
		unix.Kill(qpid, unix.SIGKILL)
		return nil, fmt.Errorf("qemu exited right after starting: %s", consoleTail(h.Dir))
	}
	qproc := st.QEMU
	u.add(func() { stopQEMU(h.Dir, qproc) })

	// The shim of the init: the pid callers wait on.
	tty, err := r.terminalFor(o, terminal)
	if err != nil {
		return nil, err
	}
	if tty != nil {
		defer tty.Close()
	}
	// The init's shim is the container's pid on the host: its host
	// namespaces take the spec's shape (hostns).
	plan := hostns.For(spec.Linux.Namespaces, netnsPath)
	for t, p := range plan.Join {
		if t != specs.NetworkNamespace {
			r.warn("the %s namespace %s is joined by the container's host process only: inside its VM the container has a new one", t, p)
		}
	}
	shimCmd, syncConn, err := r.startShim(h.Dir, netnsPath, shimSpec{
		process: protocol.InitProcess, args: []string{"--owner"}, tty: tty,
		ownSession: !o.Foreground, ctty: o.ConsoleSocket != "",
		hostNS: &plan,
	})
	if err != nil {
		return nil, err
	}
	defer syncConn.Close()
	u.add(func() { shimCmd.Process.Kill(); shimCmd.Wait() })
	if st.Shim, err = vmstate.ProcessOf(shimCmd.Process.Pid); err != nil {
		return nil, fmt.Errorf("shim exited right after starting")
	}
	syncR := bufio.NewReader(syncConn)
	if err := shim.Expect(syncR, shim.MsgReady); err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	// Templating: the shim is connected to the agent channel; resume the VM.
	if tpl != nil {
		if err := tpl.restore(qctx, h.Dir); err != nil {
			return nil, err
		}
	}

	if err := r.joinCgroup(spec, o.ID, st, qpid, shimCmd.Process.Pid); err != nil {
		return nil, err
	}
	if err := h.Save(st); err != nil {
		return nil, err
	}

	client := agentclient.ForStateDir(h.Dir)
	hctx, hcancel := context.WithTimeout(ctx, r.Config.StartTimeout())
	err = helloVM(hctx, client, tpl != nil) // templating: reseed, clock
	hcancel()
	if err != nil {
		if !st.QEMU.Alive() {
			return nil, fmt.Errorf("the VM exited while booting: %s", consoleTail(h.Dir))
		}
		return nil, fmt.Errorf("the guest agent did not answer within %v (%v): %s", r.Config.StartTimeout(), err, consoleTail(h.Dir))
	}
	cctx, ccancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	err = client.Call(cctx, protocol.MethodCreate, req, &protocol.CreateResponse{})
	ccancel()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(syncConn, shim.MsgAttach)
	if err := shim.Expect(syncR, shim.MsgAttached); err != nil {
		return nil, fmt.Errorf("attach to the container's stdio: %w", err)
	}

	if spec.Hooks != nil {
		state := st.OCI(vmstate.Creating)
		afterUndo = func() {
			if err := hooks.RunAll(ctx, "poststop", spec.Hooks.Poststop, st.OCI(vmstate.Stopped), bundle); err != nil {
				r.warn("%v", err)
			}
		}
		if err := hooks.Run(ctx, "prestart", spec.Hooks.Prestart, state, bundle); err != nil {
			return nil, err
		}
		if err := hooks.Run(ctx, "createRuntime", spec.Hooks.CreateRuntime, state, bundle); err != nil {
			return nil, err
		}
		// createContainer hooks run on the host too, in the VM's host
		// namespaces (the container's own are in the guest), as Kata does.
		if err := hooks.Run(ctx, "createContainer", spec.Hooks.CreateContainer, state, bundle); err != nil {
			return nil, err
		}
		afterUndo = nil
	}

	if err := r.connectNetwork(ctx, h.Dir, st, false); err != nil {
		return nil, err
	}
	st.Creating = false
	if err := h.Save(st); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, shimCmd.Process.Pid); err != nil {
			return nil, err
		}
	}
	h.Unlock()
	// The shim outlives this verb; it is reaped by our parent (a subreaper)
	// or by `run`, never here.
	shimCmd.Process.Release()
	var proc *os.Process
	if o.Foreground {
		proc, _ = os.FindProcess(st.Shim.Pid)
	}
	return &Created{Shim: proc}, nil
}

// hasCreateHooks reports whether hooks run between the VM's launch and the
// container's start (docker 20.10 moves its veth in with a prestart hook).
func hasCreateHooks(spec *specs.Spec) bool {
	h := spec.Hooks
	return h != nil && len(h.Prestart)+len(h.CreateRuntime)+len(h.CreateContainer) > 0
}

func ownerName() string {
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}

func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return vmstate.WriteFileAtomic(abs, []byte(strconv.Itoa(pid)), 0o644)
}

// vmFor sizes the VM from the spec and the configuration.
func (r *Runtime) vmFor(id, dir string, spec *specs.Spec, accel string) *qemu.VM {
	hc := r.Config.Hypervisor
	vcpus, mem := hc.VCPUs, hc.MemoryMiB
	if res := spec.Linux.Resources; res != nil {
		if c := res.CPU; c != nil && c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
			n := int((uint64(*c.Quota) + *c.Period - 1) / *c.Period)
			vcpus = min(max(n, 1), hc.MaxVCPUs)
		}
		if m := res.Memory; m != nil && m.Limit != nil && *m.Limit > 0 {
			// The limit applies to the container's cgroup in the guest; the
			// guest kernel and agent need room beside it.
			mem = max(mem, int(*m.Limit>>20)+GuestOverheadMiB)
		}
	}
	vm := &qemu.VM{
		Name:              "kabuto-" + id,
		Binary:            hc.Path,
		Kernel:            hc.Kernel,
		Initrd:            hc.Initrd,
		Machine:           hc.MachineType,
		Accel:             accel,
		VCPUs:             vcpus,
		MemoryMiB:         mem,
		TBSizeMiB:         hc.TBSizeMiB,
		FreePageReporting: hc.FreePageReporting,
		NoTHP:             !hc.TransparentHugepages,
		TSCKHz:            qemu.HostTSCKHz(),
		Msize9P:           hc.Msize9P,
		KernelParams:      hc.KernelParams,
		Debug:             hc.DebugConsole,
		StateDir:          dir,
		ShareDir:          filepath.Join(dir, shareDirName),
		ShareTag:          protocol.ShareTag,
		PortName:          protocol.PortName,
	}
	if r.ownRootfsShare() {
		vm.RootfsDir = filepath.Join(dir, rootShareDirName)
		vm.RootfsTag = protocol.RootfsTag
	}
	return vm
}

// GuestOverheadMiB is the guest memory kabuto adds to a spec's memory limit
// for the guest kernel and agent.
const GuestOverheadMiB = 64

func (r *Runtime) joinCgroup(spec *specs.Spec, id string, st *vmstate.State, pids ...int) error {
	path, err := hostcgroup.ResolvePath(spec.Linux.CgroupsPath, id, r.SystemdCgroup)
	if err != nil {
		return err
	}
	mounts, err := hostcgroup.Mounts()
	if err != nil {
		return fmt.Errorf("list cgroup mounts: %w", err)
	}
	dirs, err := hostcgroup.Join(mounts, path, pids...)
	st.Cgroups = append(st.Cgroups, dirs...)
	st.CgroupPath = path
	if err != nil {
		return err
	}
	return hostcgroup.Apply(mounts, path, spec.Linux.Resources)
}

// terminalFor returns the host end of the process's terminal: a new pty whose
// master goes to the console socket (its slave, in raw mode, is the shim's),
// or, for a foreground run, this process's own stdin.
func (r *Runtime) terminalFor(o CreateOptions, terminal bool) (*os.File, error) {
	if !terminal {
		return nil, nil
	}
	if o.ConsoleSocket == "" {
		fd, err := unix.Dup(0)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), "tty"), nil
	}
	master, slave, err := openPty()
	if err != nil {
		return nil, err
	}
	defer master.Close()
	if err := sendConsole(o.ConsoleSocket, master); err != nil {
		slave.Close()
		return nil, err
	}
	return slave, nil
}

// shimSpec describes one shim to start.
type shimSpec struct {
	process string
	// args are the mode flags: --owner for the init's, --exec-request for
	// an exec's.
	args []string
	// tty is the host end of the process's terminal (nil without one).
	tty *os.File
	// ownSession detaches the shim from the caller's session; with ctty
	// the tty (a pty whose master went to a console socket) becomes its
	// controlling terminal, so that window changes reach it as SIGWINCH.
	ownSession, ctty bool
	// hostNS, when set, places the shim's namespaces (and includes the
	// network namespace); otherwise it starts in the network namespace only.
	hostNS *hostns.Plan
}

// startShim starts a shim in the container's network namespace, with fd 3
// its end of the sync socket (returned) and fd 4 the tty. Without a
// terminal, its stdio is this process's: the container's.
func (r *Runtime) startShim(dir, netnsPath string, s shimSpec) (*exec.Cmd, *os.File, error) {
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	ours, theirs := os.NewFile(uintptr(pair[0]), "sync"), os.NewFile(uintptr(pair[1]), "sync")
	defer theirs.Close()
	args := append(append([]string{}, r.ShimArgs...), "shim", "--state-dir", dir, "--process", s.process)
	args = append(args, s.args...)
	cmd := exec.Command(r.Self)
	cmd.ExtraFiles = []*os.File{theirs}
	if s.tty != nil {
		args = append(args, "--terminal")
		cmd.ExtraFiles = append(cmd.ExtraFiles, s.tty)
		devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			ours.Close()
			return nil, nil, err
		}
		defer devnull.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if stdinIsUsable() {
			args = append(args, "--stdin")
		}
	}
	if s.ownSession {
		cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true, Setctty: s.ctty && s.tty != nil, Ctty: 4}
	}
	cmd.Args = append([]string{r.Self}, args...)
	start := func() error { return netns.Do(netnsPath, cmd.Start) }
	if s.hostNS != nil {
		start = func() error { return hostns.Start(cmd, *s.hostNS) }
	}
	if err := start(); err != nil {
		ours.Close()
		return nil, nil, fmt.Errorf("start shim: %w", err)
	}
	return cmd, ours, nil
}

// stdinIsUsable reports whether fd 0 can feed the process: anything but a
// closed fd or /dev/null (whose EOF the guest process gets anyway).
func stdinIsUsable() bool {
	var st, null unix.Stat_t
	if unix.Fstat(0, &st) != nil {
		return false
	}
	if unix.Stat(os.DevNull, &null) == nil && st.Rdev == null.Rdev && st.Mode&unix.S_IFMT == unix.S_IFCHR {
		return false
	}
	return true
}

// consoleTail returns the last lines of the guest console, for errors.
func consoleTail(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, qemu.ConsoleLog))
	if err != nil || len(b) == 0 {
		return "the guest console is empty"
	}
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return "guest console: " + string(oneLineBytes(b))
}

func oneLineBytes(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch {
		case c == '\n' || c == '\r':
			if len(out) > 0 && out[len(out)-1] != ' ' {
				out = append(out, ' ', '|', ' ')
			}
		case c < 0x20 || c == 0x7f:
		default:
			out = append(out, c)
		}
	}
	return out
}

// stopQEMU ends the VM: a QMP quit, then SIGKILL if it lingers.
func stopQEMU(dir string, p vmstate.Process) {
	if !p.Alive() {
		return
	}
	if mon, err := qemu.Connect(dir, 2*time.Second); err == nil {
		mon.Execute("quit", nil)
		mon.Close()
	}
	if p.WaitGone(3 * time.Second) {
		return
	}
	unix.Kill(p.Pid, unix.SIGKILL)
	p.WaitGone(5 * time.Second)
}

// marshalSpec deep-copies a spec.
func copySpec(s *specs.Spec) (*specs.Spec, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var c specs.Spec
	return &c, json.Unmarshal(b, &c)
}

// connectNetwork mirrors the namespace's interface into the guest NIC, once
// the interface exists: after the prestart hooks, or at start. At start
// (final), a NIC with nothing to mirror is parked out of the container's
// sight.
func (r *Runtime) connectNetwork(ctx context.Context, dir string, st *vmstate.State, final bool) error {
	if len(st.GuestMACs) == 0 || st.NetConfigured {
		return nil
	}
	req := &protocol.NetworkRequest{}
	var links []string
	err := netns.Do(st.NetNS, func() error {
		cands, err := network.Candidates()
		if err != nil || len(cands) == 0 {
			return err
		}
		macs := make([]string, len(cands))
		for i, l := range cands {
			macs[i] = l.Attrs().HardwareAddr.String()
		}
		pairs, unpaired := network.Pair(st.GuestMACs, macs)
		for _, i := range unpaired {
			// Came after the VM was made: microvm cannot hotplug a NIC.
			r.warn("interface %s of the container's network namespace has no NIC in the VM (no hotplug); the container will not see it", cands[i].Attrs().Name)
		}
		for n, i := range pairs {
			if i < 0 {
				req.Park = append(req.Park, st.GuestMACs[n])
				continue
			}
			if err := network.Mirror(cands[i], network.TapName(n)); err != nil {
				return err
			}
			d, err := network.Describe(cands[i], st.GuestMACs[n])
			if err != nil {
				return err
			}
			req.Interfaces = append(req.Interfaces, d.Interfaces...)
			req.Routes = append(req.Routes, d.Routes...)
			links = append(links, cands[i].Attrs().Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("connect the container's network: %w", err)
	}
	if len(req.Interfaces) == 0 {
		if !final {
			return nil
		}
		// Nothing to mirror (docker's --network none): park every NIC.
		req.Park = st.GuestMACs
	} else {
		st.DNSRelay = dnsRelayServers(st.ResolvConf)
		req.DNSRelay = st.DNSRelay
	}
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	if err := agentclient.ForStateDir(dir).Call(cctx, protocol.MethodNetwork, req, nil); err != nil {
		return err
	}
	st.NetLinks = links
	st.NetConfigured = true
	return nil
}
