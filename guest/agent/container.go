package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

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

var execIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// shareRelative checks that p names something inside the share.
func shareRelative(p string) (string, error) {
	clean := filepath.Clean("/" + p)
	if p == "" || filepath.IsAbs(p) || clean == "/" || strings.Contains(p, "..") {
		return "", fmt.Errorf("invalid share path %q", p)
	}
	return filepath.Join(protocol.ShareMount, clean), nil
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

// spawn starts a child in mode with cfg; it returns the status reader and the
// start pipe once the child reported ready (it then waits for a start byte).
type spawned struct {
	pid     int
	status  *bufio.Reader
	startW  *os.File
	console *os.File // the agent's end of the console socket
}

func (a *agent) spawn(p *process, mode string, cfg *childConfig, sys *syscall.SysProcAttr, env []string, cgroup string, nsenter bool) (*spawned, error) {
	var io_ *stdio
	var err error
	if p.terminal {
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			return nil, err
		}
		io_ = &stdio{child: [3]*os.File{null, null, null}, close: []*os.File{null}}
	} else if io_, err = p.makePipes(cfg.stdinWanted); err != nil {
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

	var nsSync *os.File
	if nsenter {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		defer r.Close()
		files = append(files, w.Fd())
		env = append(env, "_KABUTO_NSENTER_FD="+strconv.Itoa(len(files)-1))
		nsSync = r
		defer w.Close()
	}
	pid, err := syscall.ForkExec("/proc/self/exe", []string{"kabuto-agent", mode}, &syscall.ProcAttr{
		Env: env, Files: files, Sys: sys,
	})
	if err != nil {
		cfgW.Close()
		consoleA.Close()
		return nil, fmt.Errorf("start container process: %w", err)
	}
	if nsenter {
		// The pid we forked is an intermediate; the process is its child.
		a.procs.forget(pid)
		line, err := bufio.NewReader(nsSync).ReadString('\n')
		line = strings.TrimSpace(line)
		if msg, ok := strings.CutPrefix(line, "error: "); ok {
			err = errors.New(msg)
		}
		n, perr := strconv.Atoi(line)
		if err == nil && perr != nil {
			err = fmt.Errorf("enter the container: unexpected answer %q", line)
		}
		if err != nil {
			cfgW.Close()
			consoleA.Close()
			return nil, err
		}
		pid = n
	}
	p.pid = pid
	if cgroup != "" {
		if err := joinCgroup(cgroup, pid); err != nil {
			unix.Kill(pid, unix.SIGKILL)
			cfgW.Close()
			consoleA.Close()
			return nil, err
		}
	}
	a.procs.register(p)
	err = json.NewEncoder(cfgW).Encode(cfg)
	cfgW.Close()
	statusW.Close()
	consoleC.Close()
	status := bufio.NewReader(statusR)
	fail := func(err error) (*spawned, error) {
		unix.Kill(pid, unix.SIGKILL)
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
	}
	if err := readStatus(status); err != nil {
		return fail(err)
	}
	consoleA.Close()
	return &spawned{pid: pid, status: status, startW: startW}, nil
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

func (a *agent) create(req *protocol.CreateRequest) (*protocol.CreateResponse, error) {
	if a.ctr != nil {
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
		if isBindMount(m) && !shared[i] && !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("bind mount %s has a relative source that is not shared", m.Destination)
		}
	}
	if err := a.procs.reserve(protocol.InitProcess); err != nil {
		return nil, err
	}
	cg, err := makeContainerCgroup()
	if err != nil {
		a.procs.unreserve(protocol.InitProcess)
		return nil, err
	}
	if spec.Linux != nil {
		if err := applyResources(cg, spec.Linux.Resources); err != nil {
			a.procs.unreserve(protocol.InitProcess)
			return nil, err
		}
	}
	sys := &syscall.SysProcAttr{}
	cfg := &childConfig{Spec: spec, Process: spec.Process, Rootfs: rootfs, stdinWanted: req.Stdin}
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			flag, ok := nsFlags[ns.Type]
			if !ok {
				a.procs.unreserve(protocol.InitProcess)
				return nil, fmt.Errorf("unknown namespace type %q", ns.Type)
			}
			if ns.Path != "" {
				a.procs.unreserve(protocol.InitProcess)
				return nil, fmt.Errorf("joining the %s namespace by path is not supported in a kabuto VM", ns.Type)
			}
			if flag == unix.CLONE_NEWCGROUP {
				cfg.NewCgroupNS = true
				continue
			}
			sys.Cloneflags |= flag
		}
		if sys.Cloneflags&unix.CLONE_NEWUSER != 0 {
			for _, m := range spec.Linux.UIDMappings {
				sys.UidMappings = append(sys.UidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			for _, m := range spec.Linux.GIDMappings {
				sys.GidMappings = append(sys.GidMappings, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
			}
			sys.GidMappingsEnableSetgroups = true
		}
	}
	p := newProcess(protocol.InitProcess, spec.Process.Terminal)
	p.onExit = func() {
		// The rootfs is the host's: flush before the host reads the exit.
		unix.Sync()
	}
	sp, err := a.spawn(p, childInitArg, cfg, sys, []string{"PATH=/bin"}, cg, false)
	if err != nil {
		a.procs.unreserve(protocol.InitProcess)
		return nil, err
	}
	p.startRelays()
	a.ctr = &containerState{id: req.ContainerID, spec: spec, cgroup: cg, init: p, spawned: sp}
	return &protocol.CreateResponse{Pid: sp.pid}, nil
}

func (a *agent) start() error {
	c := a.ctr
	if c == nil {
		return errors.New("no container to start")
	}
	if c.started {
		return errors.New("the container was already started")
	}
	if c.init.isExited() {
		return errors.New("the container's process has exited")
	}
	c.started = true
	return c.spawned.commit()
}

func (a *agent) exec(req *protocol.ExecRequest) (*protocol.ExecResponse, error) {
	c := a.ctr
	if c == nil || !c.started || c.init.isExited() {
		return nil, errors.New("cannot exec in a container that is not running")
	}
	if !execIDPattern.MatchString(req.ID) || req.ID == protocol.InitProcess {
		return nil, fmt.Errorf("invalid exec id %q", req.ID)
	}
	if req.Process == nil || len(req.Process.Args) == 0 {
		return nil, errors.New("exec: process.args must not be empty")
	}
	if err := a.procs.reserve(req.ID); err != nil {
		return nil, err
	}
	p := newProcess(req.ID, req.Process.Terminal)
	cfg := &childConfig{Process: req.Process, stdinWanted: req.Stdin}
	env := []string{"PATH=/bin", "_KABUTO_NSENTER_PID=" + strconv.Itoa(c.init.pid)}
	sp, err := a.spawn(p, childExecArg, cfg, &syscall.SysProcAttr{}, env, c.cgroup, true)
	if err != nil {
		a.procs.unreserve(req.ID)
		return nil, err
	}
	p.startRelays()
	if err := sp.commit(); err != nil {
		return nil, err
	}
	return &protocol.ExecResponse{Pid: sp.pid}, nil
}

func (a *agent) signal(req *protocol.SignalRequest) error {
	sig := unix.Signal(req.Signal)
	if req.Signal <= 0 || req.Signal > 64 {
		return fmt.Errorf("invalid signal %d", req.Signal)
	}
	if req.All {
		if a.ctr == nil {
			return errors.New("no container")
		}
		for _, pid := range cgroupPids(a.ctr.cgroup) {
			unix.Kill(pid, sig)
		}
		return nil
	}
	p, err := a.procs.get(req.ID)
	if err != nil {
		return err
	}
	return p.signal(sig)
}

func (a *agent) ps() (*protocol.PsResponse, error) {
	if a.ctr == nil {
		return nil, errors.New("no container")
	}
	byPid := map[int]string{}
	for _, p := range a.procs.all() {
		if !p.isExited() {
			byPid[p.pid] = p.id
		}
	}
	resp := &protocol.PsResponse{Processes: []protocol.PsProcess{}}
	for _, pid := range cgroupPids(a.ctr.cgroup) {
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
	if a.ctr == nil {
		return nil, errors.New("no container")
	}
	return cgroupStats(a.ctr.cgroup), nil
}

