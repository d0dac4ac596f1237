package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// Main is the agent's entry point as PID 1. Child modes (the container's
// init and exec'd processes, re-executed from this binary) branch off first.
func Main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case childInitArg:
			childMain()
			return
		case childExecArg:
			// guest/nsenter's constructor runs this mode and never returns.
			fmt.Fprintln(os.NewFile(fdStatus, "status"), "error: the agent was built without its exec child (guest/nsenter, cgo)")
			os.Exit(1)
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kabuto-agent: runs as PID 1 of a kabuto guest")
		os.Exit(1)
	}
	// serve returns only on a fatal error; PID 1 exiting would panic the
	// kernel, so power off instead.
	fmt.Fprintf(os.Stderr, "kabuto-agent: fatal: %v\n", serve())
	syncRootfs()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// agent is the state of the running agent.
type agent struct {
	procs   *procTable
	mu      sync.Mutex
	ctr     *containerState // guarded by mu
	msize   int
	release string
	started time.Time
	helloed sync.Once
	// setupDone is closed when lateSetup has run; setupErr is its result.
	setupDone chan struct{}
	setupErr  error
	// sess is the current host session (the DNS relay opens streams on it).
	sessMu sync.Mutex
	sess   *yamux.Session
	dns    *dnsRelay
	// template: booted as a VM template (kabuto.template=1, template.go).
	template bool
}

// startLateSetup runs the rest of the guest's set-up in the background;
// serve calls it once, as soon as the host channel is found.
func (a *agent) startLateSetup() {
	go func() {
		a.setupErr = lateSetup()
		if a.setupErr == nil && a.template {
			// Templating: the share is mounted by create, after the
			// restore (a mounted 9p share blocks the snapshot).
			templateReady()
		} else if a.setupErr == nil {
			// Ahead of create, which retries should this fail.
			if err := mountShare(a.msize); err != nil {
				logf("%v", err)
			}
		}
		logf("late setup done %v after serve began: %v", time.Since(a.started), a.setupErr)
		close(a.setupDone)
	}()
}

// ready waits for the guest to be ready for a container (startLateSetup).
func (a *agent) ready() error {
	<-a.setupDone
	if a.setupErr != nil {
		return fmt.Errorf("guest setup: %w", a.setupErr)
	}
	return nil
}

func serve() error {
	a := &agent{procs: newProcTable(), msize: 512 * 1024, started: time.Now(), setupDone: make(chan struct{})}
	a.dns = newDNSRelay(a)
	if err := earlySetup(); err != nil {
		return err
	}
	debug = cmdline("kabuto.debug") == "1" // needs /proc
	a.template = cmdline(protocol.TemplateParam) == "1"
	if v, err := strconv.Atoi(cmdline("kabuto.msize")); err == nil && v >= 8192 && v <= 4<<20 {
		a.msize = v
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	a.release = unix.ByteSliceToString(uts.Release[:])
	// Catch (not ignore: SIG_IGN would be inherited by every container
	// process) the signals whose Go default would end PID 1.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, unix.SIGPIPE, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)
	go func() {
		for sig := range sigs {
			logf("ignoring %v", sig)
		}
	}()
	go a.procs.reap()

	dev, err := findPort(protocol.PortName, 5*time.Second)
	if err != nil {
		return err
	}
	port, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	logf("guest ready in %v (kernel %s, uptime %s)", time.Since(a.started), a.release, uptime())
	cfg := yamux.DefaultConfig()
	// The VM may be paused for hours: no keepalive.
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	if debug {
		cfg.LogOutput = os.Stderr
	}
	cfg.MaxStreamWindowSize = 1 << 20
	cfg.ConnectionWriteTimeout = 30 * time.Second
	cfg.StreamCloseTimeout = time.Minute
	// The rest of the setup begins now: the host's shim is usually still
	// starting (its hello comes 10-20 ms later), and create waits for it.
	a.startLateSetup()
	// The host normally connects once, before the agent is up. Should it go
	// away and come back, serve it a new session: processes live on.
	for {
		sess, err := yamux.Server(&hostPort{f: port}, cfg)
		if err != nil {
			return err
		}
		a.setSession(sess)
		for {
			s, err := sess.AcceptStream()
			if err != nil {
				logf("host channel closed: %v", err)
				break
			}
			go a.handle(s)
		}
		sess.Close()
	}
}

// hostPort is the agent's end of the virtio-serial port for one session.
// Reads return EOF while no host is connected: before the host's first
// byte that only means "not yet" and the read waits for it; after, EOF
// ends the session. Close leaves the port open for the next session.
type hostPort struct {
	f    *os.File
	seen bool
}

func (p *hostPort) Read(b []byte) (int, error) {
	for {
		n, err := p.f.Read(b)
		if n > 0 {
			p.seen = true
			return n, nil
		}
		if p.seen || (err != nil && err != io.EOF) {
			if err == nil {
				err = io.EOF
			}
			return 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *hostPort) Write(b []byte) (int, error) { return p.f.Write(b) }
func (p *hostPort) Close() error                { return nil }

// handle serves one stream: a request frame, a response frame, then for
// attach methods a byte pipe.
func (a *agent) handle(s *yamux.Stream) {
	var req protocol.Request
	if err := protocol.ReadFrame(s, &req); err != nil {
		s.Close()
		return
	}
	if req.Version != protocol.Version {
		protocol.WriteFrame(s, protocol.Reply(nil, fmt.Errorf("agent speaks protocol version %d, not %d", protocol.Version, req.Version)))
		s.Close()
		return
	}
	logf("request %s", req.Method)
	switch req.Method {
	case protocol.MethodAttachStdin, protocol.MethodAttachOut, protocol.MethodAttachErr:
		a.attach(s, req)
		return
	case protocol.MethodEvents:
		// A stream of events: streamEvents answers, then writes frames.
		err := a.ready()
		if err == nil {
			err = a.streamEvents(s)
		}
		if err != nil {
			protocol.WriteFrame(s, protocol.Reply(nil, err))
		}
		s.Close()
		return
	}
	var result any
	var err error
	switch req.Method {
	case protocol.MethodHello, protocol.MethodShutdown:
	default:
		err = a.ready()
	}
	if err == nil {
		result, err = a.dispatch(req.Method, req.Params)
	}
	protocol.WriteFrame(s, protocol.Reply(result, err))
	s.Close()
	logf("answered %s", req.Method)
}

func decode(params json.RawMessage, v any) error {
	if len(params) == 0 {
		return errors.New("missing parameters")
	}
	if err := json.Unmarshal(params, v); err != nil {
		return fmt.Errorf("bad parameters: %w", err)
	}
	return nil
}

func (a *agent) dispatch(method string, params json.RawMessage) (any, error) {
	switch method {
	case protocol.MethodHello:
		a.helloed.Do(func() { logf("first hello %v after serve began (uptime %s)", time.Since(a.started), uptime()) })
		// Templating: a restored VM's first hello reseeds and sets the clock.
		if err := helloParams(params); err != nil {
			return nil, err
		}
		return protocol.HelloResponse{Version: protocol.Version, KernelRelease: a.release}, nil
	case protocol.MethodCreate:
		var req protocol.CreateRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.create(&req)
	case protocol.MethodStart:
		var req protocol.StartRequest
		if len(params) > 0 && string(params) != "null" {
			if err := decode(params, &req); err != nil {
				return nil, err
			}
		}
		return nil, a.start(&req)
	case protocol.MethodExec:
		var req protocol.ExecRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.exec(&req)
	case protocol.MethodSignal:
		var req protocol.SignalRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return nil, a.signal(&req)
	case protocol.MethodWait:
		var ref protocol.ProcessRef
		if err := decode(params, &ref); err != nil {
			return nil, err
		}
		p, err := a.procs.get(ref.ID)
		if err != nil {
			return nil, err
		}
		return p.wait(), nil
	case protocol.MethodResize:
		var req protocol.ResizeRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		p, err := a.procs.get(req.ID)
		if err != nil {
			return nil, err
		}
		return nil, p.resize(req.Rows, req.Cols)
	case protocol.MethodCloseStdin:
		var ref protocol.ProcessRef
		if err := decode(params, &ref); err != nil {
			return nil, err
		}
		p, err := a.procs.get(ref.ID)
		if err != nil {
			return nil, err
		}
		p.closeStdin()
		return nil, nil
	case protocol.MethodPs:
		return a.ps()
	case protocol.MethodStats:
		return a.stats()
	case protocol.MethodUpdate:
		var req protocol.UpdateRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		c := a.container()
		if c == nil {
			return nil, errors.New("no container")
		}
		return nil, applyResources(c.cgroup, req.Resources)
	case protocol.MethodFreeze, protocol.MethodThaw:
		c := a.container()
		if c == nil {
			return nil, errors.New("no container")
		}
		return nil, freeze(c.cgroup, method == protocol.MethodFreeze)
	case protocol.MethodNetwork:
		var req protocol.NetworkRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		if err := configureNetwork(&req); err != nil {
			return nil, err
		}
		return nil, a.startDNSRelay(req.DNSRelay)
	case protocol.MethodSync:
		return nil, syncRootfs()
	case protocol.MethodShutdown:
		go func() {
			time.Sleep(10 * time.Millisecond)
			syncRootfs()
			unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}()
		return nil, nil
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

// attach turns the stream into a process's stdio pipe.
func (a *agent) attach(s *yamux.Stream, req protocol.Request) {
	var ref protocol.ProcessRef
	err := decode(req.Params, &ref)
	var p *process
	if err == nil {
		p, err = a.procs.get(ref.ID)
	}
	if err == nil {
		err = p.attachCheck(req.Method)
	}
	if err != nil {
		protocol.WriteFrame(s, protocol.Reply(nil, err))
		s.Close()
		return
	}
	if err := protocol.WriteFrame(s, protocol.Reply(nil, nil)); err != nil {
		s.Close()
		return
	}
	p.attach(req.Method, s)
}

var _ net.Conn = (*yamux.Stream)(nil)
