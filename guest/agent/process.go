package agent

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// Output of an exited process keeps flowing while it comes; once the pipe
// has been idle this long (a daemonized child may hold it open forever) or
// outputCap has passed, the stream is cut.
const (
	outputIdle = 300 * time.Millisecond
	outputCap  = 5 * time.Second
)

// process is one process the agent started for the host: the container's
// init or an exec'd process.
type process struct {
	id       string
	pid      int
	terminal bool

	stdin  *os.File // write end of the stdin pipe, or the pty master
	stdout *os.File // read end of the stdout pipe, or the pty master
	stderr *os.File

	outCh, errCh, inCh chan net.Conn
	attached           map[string]bool
	mu                 sync.Mutex

	outWG   sync.WaitGroup
	exited  chan struct{}
	done    chan struct{}
	status  protocol.WaitResponse
	onExit  func()
	lastOut chan struct{} // pinged whenever output moves
}

func newProcess(id string, terminal bool) *process {
	return &process{
		id: id, terminal: terminal,
		outCh: make(chan net.Conn, 1), errCh: make(chan net.Conn, 1), inCh: make(chan net.Conn, 1),
		attached: map[string]bool{},
		exited:   make(chan struct{}), done: make(chan struct{}),
		lastOut: make(chan struct{}, 1),
	}
}

// startRelays begins moving output to attached streams and stdin from one.
func (p *process) startRelays() {
	p.relayOut(p.stdout, p.outCh)
	if p.stderr != nil {
		p.relayOut(p.stderr, p.errCh)
	}
	if p.stdin != nil {
		go func() {
			var conn net.Conn
			select {
			case conn = <-p.inCh:
			case <-p.exited:
				p.closeStdin()
				return
			}
			io.Copy(p.stdin, conn)
			conn.Close()
			if !p.terminal {
				p.closeStdin()
			}
		}()
	}
	go func() {
		<-p.exited
		p.outWG.Wait()
		close(p.done)
	}()
}

// activity is an io.Writer wrapper that notes output progress.
type activity struct {
	w io.Writer
	p *process
}

func (a activity) Write(b []byte) (int, error) {
	select {
	case a.p.lastOut <- struct{}{}:
	default:
	}
	return a.w.Write(b)
}

func (p *process) relayOut(r *os.File, ch chan net.Conn) {
	p.outWG.Add(1)
	go func() {
		defer p.outWG.Done()
		var conn net.Conn
		select {
		case conn = <-ch:
		case <-p.exited:
			// Nobody attached: give the host a moment, then drop it.
			select {
			case conn = <-ch:
			case <-time.After(outputIdle):
				r.Close()
				return
			}
		}
		copied := make(chan struct{})
		go func() {
			io.Copy(activity{conn, p}, r)
			close(copied)
		}()
		select {
		case <-copied:
		case <-p.exited:
			p.cutWhenIdle(r, copied)
		}
		r.Close()
		conn.Close()
	}()
}

// cutWhenIdle closes r once the process has exited and the output stayed
// idle for outputIdle, or after outputCap.
func (p *process) cutWhenIdle(r *os.File, copied chan struct{}) {
	capT := time.NewTimer(outputCap)
	defer capT.Stop()
	for {
		idle := time.NewTimer(outputIdle)
		select {
		case <-copied:
			idle.Stop()
			return
		case <-p.lastOut:
			idle.Stop()
			continue
		case <-idle.C:
		case <-capT.C:
			idle.Stop()
		}
		r.Close()
		<-copied
		return
	}
}

func (p *process) attachCheck(method string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch method {
	case protocol.MethodAttachErr:
		if p.terminal {
			return errors.New("a terminal process has no separate stderr")
		}
	case protocol.MethodAttachStdin:
		if p.stdin == nil {
			return errors.New("the process was created without stdin")
		}
	}
	if p.attached[method] {
		return fmt.Errorf("%s of %s is already attached", method, p.id)
	}
	p.attached[method] = true
	return nil
}

func (p *process) attach(method string, conn net.Conn) {
	switch method {
	case protocol.MethodAttachOut:
		p.outCh <- conn
	case protocol.MethodAttachErr:
		p.errCh <- conn
	case protocol.MethodAttachStdin:
		p.inCh <- conn
	}
}

func (p *process) closeStdin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stdin != nil && !p.terminal {
		p.stdin.Close()
	}
}

func (p *process) wait() protocol.WaitResponse {
	<-p.done
	return p.status
}

func (p *process) isExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

func (p *process) resize(rows, cols uint16) error {
	if !p.terminal {
		return errors.New("not a terminal process")
	}
	return unix.IoctlSetWinsize(int(p.stdin.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
}

func (p *process) signal(sig unix.Signal) error {
	if p.isExited() {
		return errors.New("process already finished")
	}
	if err := unix.Kill(p.pid, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errors.New("process already finished")
		}
		return err
	}
	return nil
}

// exitStatus turns a wait status into the shell's convention.
func exitStatus(ws unix.WaitStatus) protocol.WaitResponse {
	if ws.Signaled() {
		return protocol.WaitResponse{ExitCode: 128 + int(ws.Signal()), Signal: int(ws.Signal())}
	}
	return protocol.WaitResponse{ExitCode: ws.ExitStatus()}
}

// procTable maps exec ids and pids to processes and reaps every child.
type procTable struct {
	mu    sync.Mutex
	byID  map[string]*process
	byPid map[int]*process
	// exits of children reaped before they were registered.
	early map[int]unix.WaitStatus
}

func newProcTable() *procTable {
	return &procTable{byID: map[string]*process{}, byPid: map[int]*process{}, early: map[int]unix.WaitStatus{}}
}

func (t *procTable) get(id string) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.byID[id]
	if !ok {
		return nil, fmt.Errorf("no process %q", id)
	}
	return p, nil
}

func (t *procTable) reserve(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[id]; ok {
		return fmt.Errorf("process id %q is already in use", id)
	}
	t.byID[id] = nil
	return nil
}

func (t *procTable) unreserve(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID[id] == nil {
		delete(t.byID, id)
	}
}

// register records p (whose pid is set) and settles an exit that came first.
func (t *procTable) register(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[p.id] = p
	if ws, ok := t.early[p.pid]; ok {
		delete(t.early, p.pid)
		go t.finish(p, ws)
		return
	}
	t.byPid[p.pid] = p
}

// forget drops the early exit of pid (a helper process we do not track).
func (t *procTable) forget(pid int) {
	t.mu.Lock()
	delete(t.early, pid)
	t.mu.Unlock()
}

func (t *procTable) finish(p *process, ws unix.WaitStatus) {
	if p.onExit != nil {
		p.onExit()
	}
	p.status = exitStatus(ws)
	close(p.exited)
}

// reap is the PID 1 reaper: it collects every child and orphan.
func (t *procTable) reap() {
	ch := make(chan os.Signal, 64)
	signal.Notify(ch, unix.SIGCHLD)
	for {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if pid <= 0 || err != nil {
				break
			}
			t.mu.Lock()
			p, ok := t.byPid[pid]
			if ok {
				delete(t.byPid, pid)
			} else if len(t.early) < 4096 {
				t.early[pid] = ws
			}
			t.mu.Unlock()
			if ok {
				go t.finish(p, ws)
			}
		}
		<-ch
	}
}

// all returns every live process the agent started.
func (t *procTable) all() []*process {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ps []*process
	for _, p := range t.byID {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}
