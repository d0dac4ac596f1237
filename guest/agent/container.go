package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// containerState is the one container of this VM.
type containerState struct {
	id      string
	spec    *specs.Spec
	cgroup  string
	init    *process
	spawned *spawned // the init, waiting for its start byte
	started bool
}

// container returns the VM's container, nil before create.
func (a *agent) container() *containerState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.ctr
}

// validExecID accepts simple names: 1-128 of [A-Za-z0-9_.+-], starting
// with a letter or digit, and not the init's name.
func validExecID(id string) bool {
	if id == "" || len(id) > 128 || id == protocol.InitProcess {
		return false
	}
	for i, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '_' || c == '.' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

// shareRelative checks that p names something inside the share (relative,
// no ".." component) and returns its guest path.
func shareRelative(p string) (string, error) {
	if p == "" || filepath.IsAbs(p) || filepath.Clean(p) == "." {
		return "", fmt.Errorf("invalid share path %q", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid share path %q", p)
		}
	}
	return filepath.Join(protocol.ShareMount, p), nil
}

var nsFlags = map[specs.LinuxNamespaceType]uintptr{
	specs.PIDNamespace: unix.CLONE_NEWPID, specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace: unix.CLONE_NEWNS, specs.IPCNamespace: unix.CLONE_NEWIPC,
	specs.UTSNamespace: unix.CLONE_NEWUTS, specs.UserNamespace: unix.CLONE_NEWUSER,
	specs.CgroupNamespace: unix.CLONE_NEWCGROUP, specs.TimeNamespace: unix.CLONE_NEWTIME,
}

// stdioPipes makes the child's fds 0-2 and the agent's ends.
type stdio struct {
	child [3]*os.File
	close []*os.File // the child's ends, closed in the agent after fork
}

func (p *process) makePipes(withStdin bool) (*stdio, error) {
	s := &stdio{}
	if withStdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.child[0], p.stdin = r, w
		s.close = append(s.close, r)
	} else {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		s.child[0] = null
		s.close = append(s.close, null)
	}
	for i, dst := range []**os.File{&p.stdout, &p.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		*dst = r
		s.child[i+1] = w
		s.close = append(s.close, w)
	}
	return s, nil
}

// spawn starts a child; it returns the status reader and the start pipe
// once the child reported ready (it then waits for a start byte).
type spawned struct {
	pid    int
	status *bufio.Reader
	startW *os.File
}

// spawnSpec is one child to start.
type spawnSpec struct {
	mode string
	// config goes to the child's fd 3: a JSON childConfig (init) or an
	// nsenter.ExecConfig blob (exec).
	config []byte
	// stdin: the agent gives the child a stdin pipe.
	stdin       bool
	consoleSize *specs.Box
	sys         *syscall.SysProcAttr
	env         []string
	cgroup      string
	// nsenterPid: enter the namespaces of this process (exec), 0 for none.
	nsenterPid int
}

// spawnExec starts an exec'd process (or a startContainer hook) in the
// namespaces of the container's init and in cgroup.
func (a *agent) spawnExec(p *process, proc *specs.Process, sc *specs.LinuxSeccomp, stdin bool, c *containerState, cgroup string) (*spawned, error) {
	cfg, err := execConfig(proc, sc)
	if err != nil {
		return nil, err
	}
	return a.spawn(p, spawnSpec{mode: childExecArg, config: cfg, stdin: stdin, consoleSize: proc.ConsoleSize,
		sys: &syscall.SysProcAttr{}, env: []string{"PATH=/bin"}, cgroup: cgroup, nsenterPid: c.init.pid})
}

func (a *agent) spawn(p *process, s spawnSpec) (*spawned, error) {
	var io_ *stdio
	var err error
	if p.terminal {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		io_ = &stdio{child: [3]*os.File{null, null, null}, close: []*os.File{null}}
	} else if io_, err = p.makePipes(s.stdin); err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range io_.close {
			f.Close()
		}
	}()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgR.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer statusW.Close()
	startR, startW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer startR.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	consoleA, consoleC := os.NewFile(uintptr(pair[0]), "console"), os.NewFile(uintptr(pair[1]), "console")
	defer consoleC.Close()
	files := []uintptr{io_.child[0].Fd(), io_.child[1].Fd(), io_.child[2].Fd(), cfgR.Fd(), statusW.Fd(), startR.Fd(), consoleC.Fd()}

	var nsSync, nsSyncW *os.File
	env := s.env
	nsenter := s.nsenterPid != 0
	if nsenter {
		if nsSync, nsSyncW, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer nsSync.Close()
		defer nsSyncW.Close()
		files = append(files, nsSyncW.Fd())
		env = append(env[:len(env):len(env)], "_KABUTO_NSENTER_PID="+strconv.Itoa(s.nsenterPid),
			"_KABUTO_NSENTER_FD="+strconv.Itoa(len(files)-1))
	}
	t0 := time.Now()
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"kabuto-agent", s.mode}, &syscall.ProcAttr{
		Env: env, Files: files, Sys: s.sys,
	})
	if err != nil {
		cfgW.Close()
		consoleA.Close()
		return nil, fmt.Errorf("start container process: %w", err)
	}
	if nsenter {
		// The pid we forked is an intermediate; the process is its child.
		a.procs.forget(pid)
		nsSyncW.Close()
		pid, err = readNsenterAnswer(nsSync)
		if err != nil {
			cfgW.Close()
			consoleA.Close()
			return nil, err
		}
	}
	p.pid = pid
	if s.cgroup != "" {
		if err := joinCgroup(s.cgroup, pid); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			cfgW.Close()
			consoleA.Close()
			return nil, err
		}
	}
	a.procs.register(p)
	_, err = cfgW.Write(s.config)
	cfgW.Close()
	statusW.Close()
	consoleC.Close()
	status := bufio.NewReader(statusR)
	fail := func(err error) (*spawned, error) {
		unix.Kill(pid, unix.SIGKILL)
		p.closeFiles()
		startW.Close()
		consoleA.Close()
		return nil, err
	}
	if err != nil {
		return fail(err)
	}
	if p.terminal {
		master, err := recvFd(consoleA)
		if err != nil {
			// The child failed before sending: its status says why.
			if serr := readStatus(status); serr != nil {
				return fail(serr)
			}
			return fail(err)
		}
		p.stdin, p.stdout = master, master
		if cs := s.consoleSize; cs != nil {
			p.resize(uint16(cs.Height), uint16(cs.Width))
		}
	}
	if err := readStatus(status); err != nil {
		return fail(err)
	}
	logf("%s %s ready in %v", s.mode, p.id, time.Since(t0))
	consoleA.Close()
	return &spawned{pid: pid, status: status, startW: startW}, nil
}

// readNsenterAnswer reads the pid (or error) the nsenter intermediate reports.
func readNsenterAnswer(r io.Reader) (int, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return 0, fmt.Errorf("enter the container: %s", msg)
	}
	if line == "" && err != nil {
		return 0, errors.New("enter the container: the helper exited without an answer")
	}
	pid, perr := strconv.Atoi(line)
	if perr != nil || pid <= 0 {
		return 0, fmt.Errorf("enter the container: unexpected answer %q", line)
	}
	return pid, nil
}

// recvFd receives one fd sent with SCM_RIGHTS.
func recvFd(sock *os.File) (*os.File, error) {
	buf := make([]byte, 16)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(sock.Fd()), buf, oob, 0)
	if err != nil {
		return nil, err
	}
	if n == 0 && oobn == 0 {
		return nil, errors.New("no terminal received from the container")
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, errors.New("malformed terminal message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, errors.New("malformed terminal message")
	}
	unix.CloseOnExec(fds[0])
	// Non-blocking, so that os.NewFile makes it pollable (read deadlines).
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

// commit sends the start byte and waits for the exec (status EOF) or an error.
func (s *spawned) commit() error {
	_, err := s.startW.Write([]byte{1})
	s.startW.Close()
	if err != nil {
		return errors.New("the container process is gone")
	}
	line, rerr := s.status.ReadString('\n')
	if rerr == io.EOF && line == "" {
		return nil
	}
	if msg, ok := strings.CutPrefix(strings.TrimSpace(line), "error: "); ok {
		return errors.New(msg)
	}
	return nil
}

// cloneAttrs turns the spec's namespaces into clone flags. The container
// always gets its own mount namespace (it must pivot away from the agent's
// root) and never its own network namespace: the VM is the network sandbox,
// its NICs mirror the host-side namespace the spec names (by a host path
// meaningless here). The cgroup namespace is unshared by the child itself
// once it is in the container's cgroup. Other namespaces given by path name
// host objects the guest cannot reach: the host's stand-in process (the
// shim) joins those (see hostns), and the container gets a new namespace of
// the type here — except a user namespace, which without mappings of its own
// it runs without.
func cloneAttrs(spec *specs.Spec) (sys *syscall.SysProcAttr, newCgroupNS bool, err error) {
	sys = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS}
	if spec.Linux == nil {
		return sys, false, nil
	}
	for _, ns := range spec.Linux.Namespaces {
		flag, ok := nsFlags[ns.Type]
		if !ok {
			return nil, false, fmt.Errorf("unknown namespace type %q", ns.Type)
		}
		switch {
		case flag == unix.CLONE_NEWNET:
			continue
		case ns.Path != "" && flag == unix.CLONE_NEWUSER:
			continue
		case flag == unix.CLONE_NEWCGROUP:
			newCgroupNS = true
		default:
			sys.Cloneflags |= flag
		}
	}
	if sys.Cloneflags&unix.CLONE_NEWUSER != 0 {
		if len(spec.Linux.UIDMappings) == 0 || len(spec.Linux.GIDMappings) == 0 {
			return nil, false, errors.New("a user namespace needs uidMappings and gidMappings")
		}
		for _, m := range spec.Linux.UIDMappings {
			sys.UidMappings = append(sys.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		for _, m := range spec.Linux.GIDMappings {
			sys.GidMappings = append(sys.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		sys.GidMappingsEnableSetgroups = true
		// The child is created with the agent's (host-side root) ids, which
		// the namespace does not map: become its root before the exec, or
		// the container init would run without capabilities.
		if !mapsRoot(spec.Linux.UIDMappings) || !mapsRoot(spec.Linux.GIDMappings) {
			return nil, false, errors.New("the user namespace mappings must map uid and gid 0")
		}
		sys.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return sys, newCgroupNS, nil
}

func mapsRoot(ms []specs.LinuxIDMapping) bool {
	for _, m := range ms {
		if m.ContainerID == 0 && m.Size > 0 {
			return true
		}
	}
	return false
}

func (a *agent) create(req *protocol.CreateRequest) (*protocol.CreateResponse, error) {
	if a.container() != nil {
		return nil, errors.New("this VM already has a container")
	}
	spec := req.Spec
	if spec == nil || spec.Process == nil || spec.Root == nil {
		return nil, errors.New("create: incomplete spec")
	}
	if err := mountShare(a.msize); err != nil {
		return nil, err
	}
	rootfs, err := shareRelative(req.RootfsShare)
	if err != nil {
		return nil, err
	}
	if req.RootfsCache != "" {
		// The rootfs has a 9p device of its own, mounted with its cache mode.
		if err := mountRootfsShare(a.msize, req.RootfsCache); err != nil {
			return nil, err
		}
		rootfs = filepath.Join(protocol.RootfsMount, strings.TrimPrefix(rootfs, protocol.ShareMount+"/"))
	}
	shared := map[int]bool{}
	for _, i := range req.SharedSources {
		if i < 0 || i >= len(spec.Mounts) {
			return nil, fmt.Errorf("shared source index %d out of range", i)
		}
		if _, err := shareRelative(spec.Mounts[i].Source); err != nil {
			return nil, err
		}
		shared[i] = true
	}
	for i, m := range spec.Mounts {
		if protocol.IsBindMount(m) && !shared[i] && !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("bind mount %s has a relative source that is not shared", m.Destination)
		}
	}
	if err := a.procs.reserve(protocol.InitProcess); err != nil {
		return nil, err
	}
	cg, err := makeContainerCgroup()
	if err != nil {
		a.procs.release(protocol.InitProcess)
		return nil, err
	}
	if spec.Linux != nil {
		if err := applyResources(cg, spec.Linux.Resources); err != nil {
			a.procs.release(protocol.InitProcess)
			return nil, err
		}
	}
	cfg, err := initConfig(spec, rootfs, req.NoPivot)
	if err != nil {
		a.procs.release(protocol.InitProcess)
		return nil, err
	}
	sys, newCgroupNS, err := cloneAttrs(spec)
	if err != nil {
		a.procs.release(protocol.InitProcess)
		return nil, err
	}
	cfg.NewCgroupNS = newCgroupNS
	p := newProcess(protocol.InitProcess, spec.Process.Terminal)
	p.onExit = func() {
		// The rootfs is the host's: flush before the host reads the exit
		// (with a write-back rootfs, this is when the host gets the data).
		if err := syncRootfs(); err != nil {
			fmt.Fprintf(os.Stderr, "kabuto-agent: at the container's exit: %v\n", err)
		}
	}
	config, err := json.Marshal(cfg)
	if err != nil {
		a.procs.release(protocol.InitProcess)
		return nil, err
	}
	sp, err := a.spawn(p, spawnSpec{mode: childInitArg, config: config, stdin: req.Stdin, consoleSize: spec.Process.ConsoleSize,
		sys: sys, env: []string{"PATH=/bin"}, cgroup: cg})
	if err != nil {
		a.procs.release(protocol.InitProcess)
		return nil, err
	}
	p.startRelays()
	a.mu.Lock()
	a.ctr = &containerState{id: req.ContainerID, spec: spec, cgroup: cg, init: p, spawned: sp}
	a.mu.Unlock()
	return &protocol.CreateResponse{Pid: sp.pid}, nil
}

func (a *agent) start(req *protocol.StartRequest) error {
	c := a.container()
	if c == nil {
		return errors.New("no container to start")
	}
	a.mu.Lock()
	already := c.started
	c.started = true
	a.mu.Unlock()
	if already {
		return errors.New("the container was already started")
	}
	if c.init.isExited() {
		return errors.New("the container's process has exited")
	}
	if err := a.runStartContainerHooks(c, req.State); err != nil {
		// The spec: generate an error and stop the container.
		unix.Kill(c.init.pid, unix.SIGKILL)
		return err
	}
	if err := c.spawned.commit(); err != nil {
		return err
	}
	// Not for a terminal: its caller sizes the terminal right after start
	// returns (docker -t), and the program should find it sized.
	if !c.init.terminal {
		waitSettled(c.init, startSettleMax)
	}
	return nil
}

// startSettleMax bounds how long start waits for the process to settle.
const startSettleMax = 100 * time.Millisecond

// waitSettled waits, at most max, until the just-executed process first
// sleeps (or exits). The container's process is PID 1 of its namespace, and
// the kernel discards a signal such a process has no handler for yet: a
// signal sent right after `start` must not find it still setting up its
// handlers. On hardware that takes a millisecond or two; under emulation
// tens, so `start` returns once the process waits for something.
func waitSettled(p *process, max time.Duration) {
	deadline := time.Now().Add(max)
	stat := fmt.Sprintf("/proc/%d/stat", p.pid)
	for time.Now().Before(deadline) && !p.isExited() {
		b, err := os.ReadFile(stat)
		if err != nil {
			return
		}
		// The state follows the command's closing parenthesis.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
			switch b[i+2] {
			case 'S', 'Z', 'X', 'T', 't':
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (a *agent) exec(req *protocol.ExecRequest) (*protocol.ExecResponse, error) {
	c := a.container()
	// A created container takes execs too (runc's rule): its init has
	// built the namespaces and waits for its start byte.
	if c == nil || c.init.isExited() {
		return nil, errors.New("cannot exec in a container that is not running")
	}
	if !validExecID(req.ID) {
		return nil, fmt.Errorf("invalid exec id %q", req.ID)
	}
	if req.Process == nil || len(req.Process.Args) == 0 {
		return nil, errors.New("exec: process.args must not be empty")
	}
	cg, err := subCgroup(c.cgroup, req.Cgroup)
	if err != nil {
		return nil, err
	}
	if err := a.procs.reserve(req.ID); err != nil {
		return nil, err
	}
	p := newProcess(req.ID, req.Process.Terminal)
	sp, err := a.spawnExec(p, req.Process, specSeccomp(c.spec), req.Stdin, c, cg)
	if err != nil {
		a.procs.release(req.ID)
		return nil, err
	}
	p.startRelays()
	if err := sp.commit(); err != nil {
		return nil, err
	}
	return &protocol.ExecResponse{Pid: sp.pid}, nil
}

// subCgroup resolves exec's --cgroup: an existing cgroup below the
// container's (the container's own for an empty sub).
func subCgroup(cg, sub string) (string, error) {
	if sub == "" {
		return cg, nil
	}
	for _, part := range strings.Split(sub, "/") {
		if part == ".." {
			return "", fmt.Errorf("invalid sub-cgroup %q: it must stay inside the container's cgroup", sub)
		}
	}
	clean := filepath.Clean("/" + sub)
	if clean == "/" {
		return cg, nil
	}
	path := filepath.Join(cg, clean)
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return "", fmt.Errorf("sub-cgroup %q of the container does not exist", sub)
	}
	if _, err := os.Stat(filepath.Join(path, "cgroup.procs")); err != nil {
		return "", fmt.Errorf("%q is not a cgroup", sub)
	}
	return path, nil
}

func (a *agent) signal(req *protocol.SignalRequest) error {
	sig := unix.Signal(req.Signal)
	if req.Signal <= 0 || req.Signal > 64 {
		return fmt.Errorf("invalid signal %d", req.Signal)
	}
	if req.All {
		c := a.container()
		if c == nil {
			return errors.New("no container")
		}
		return signalAll(c.cgroup, sig)
	}
	p, err := a.procs.get(req.ID)
	if err != nil {
		return err
	}
	return p.signal(sig)
}

// treePids lists the pids of cg and of every cgroup below it (exec
// --cgroup, or the container's own sub-cgroups).
func treePids(cg string) []int {
	var pids []int
	filepath.WalkDir(cg, func(path string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			pids = append(pids, cgroupPids(path)...)
		}
		return nil
	})
	return pids
}

// signalAll sends sig to every process of the container, as runc's kill
// --all does: SIGKILL through cgroup.kill (atomic, forks cannot escape it),
// other signals with the cgroup frozen so that no new process is missed.
func signalAll(cg string, sig unix.Signal) error {
	if sig == unix.SIGKILL {
		if err := writeCgroupFile(filepath.Join(cg, "cgroup.kill"), "1"); err == nil {
			return nil
		}
	}
	if err := freeze(cg, true); err != nil {
		logf("kill --all: freeze: %v", err)
	}
	for _, pid := range treePids(cg) {
		unix.Kill(pid, sig)
	}
	if err := freeze(cg, false); err != nil {
		return fmt.Errorf("thaw the container after signalling it: %w", err)
	}
	return nil
}

func (a *agent) ps() (*protocol.PsResponse, error) {
	c := a.container()
	if c == nil {
		return nil, errors.New("no container")
	}
	byPid := map[int]string{}
	for _, p := range a.procs.all() {
		if !p.isExited() {
			byPid[p.pid] = p.id
		}
	}
	resp := &protocol.PsResponse{Processes: []protocol.PsProcess{}}
	for _, pid := range treePids(c.cgroup) {
		pp := protocol.PsProcess{Pid: pid, Exec: byPid[pid]}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
			pp.Cmd = strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				f := strings.Fields(l)
				if len(f) >= 2 && f[0] == "PPid:" {
					pp.PPid, _ = strconv.Atoi(f[1])
				}
				if len(f) >= 2 && f[0] == "Uid:" {
					pp.UID, _ = strconv.Atoi(f[1])
				}
			}
		}
		resp.Processes = append(resp.Processes, pp)
	}
	return resp, nil
}

func (a *agent) stats() (*protocol.StatsResponse, error) {
	c := a.container()
	if c == nil {
		return nil, errors.New("no container")
	}
	return cgroupStats(c.cgroup), nil
}
