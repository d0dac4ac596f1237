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
		case childInitArg, childExecArg:
			childMain(os.Args[1])
			return
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kabuto-agent: runs as PID 1 of a kabuto guest")
		os.Exit(1)
	}
	debug = cmdline("kabuto.debug") == "1"
	if err := serve(); err != nil {
		fmt.Fprintf(os.Stderr, "kabuto-agent: fatal: %v\n", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// agent is the state of the running agent.
type agent struct {
	procs   *procTable
	ctr     *containerState
	msize   int
	release string
}

func serve() error {
	start := time.Now()
	if err := setupGuest(); err != nil {
		return err
	}
	a := &agent{procs: newProcTable(), msize: 512 * 1024}
	if v, err := strconv.Atoi(cmdline("kabuto.msize")); err == nil && v >= 8192 {
		a.msize = v
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	a.release = unix.ByteSliceToString(uts.Release[:])
	go a.procs.reap()

	dev, err := findPort(protocol.PortName)
	if err != nil {
		return err
	}
	port, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	if debug {
		cfg.LogOutput = os.Stderr
	}
	cfg.MaxStreamWindowSize = 1 << 20
	cfg.ConnectionWriteTimeout = 30 * time.Second
	sess, err := yamux.Server(port, cfg)
	if err != nil {
		return err
	}
	logf("ready in %v (kernel %s)", time.Since(start), a.release)
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP, unix.SIGINT, unix.SIGTERM)
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			return fmt.Errorf("guest channel closed: %w", err)
		}
		go a.handle(s)
	}
}

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
	}
	result, err := a.dispatch(req.Method, req.Params)
	protocol.WriteFrame(s, protocol.Reply(result, err))
	s.Close()
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
		return protocol.HelloResponse{Version: protocol.Version, KernelRelease: a.release}, nil
	case protocol.MethodCreate:
		var req protocol.CreateRequest
		if err := decode(params, &req); err != nil {
			return nil, err
		}
		return a.create(&req)
	case protocol.MethodStart:
		return nil, a.start()
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
		if a.ctr == nil {
			return nil, errors.New("no container")
		}
		return nil, applyResources(a.ctr.cgroup, req.Resources)
	case protocol.MethodFreeze, protocol.MethodThaw:
		if a.ctr == nil {
			return nil, errors.New("no container")
		}
		return nil, freeze(a.ctr.cgroup, method == protocol.MethodFreeze)
	case protocol.MethodShutdown:
		go func() {
			time.Sleep(10 * time.Millisecond)
			unix.Sync()
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
