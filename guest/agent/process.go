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

// After a process exits, its output streams stay open while its pipe still
// holds data, and up to outputGrace for more (a daemonized grandchild may keep
// the pipe open forever, so EOF may never come). outputDrainCap bounds how
// long a pipe that never empties is drained past that point.
const (
	outputGrace    = 500 * time.Millisecond
	outputDrainCap = 5 * time.Second
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
	mu                 sync.Mutex
	attached           map[string]bool // guarded by mu
	stdinClosed        bool            // guarded by mu

	outWG    sync.WaitGroup
	exited   chan struct{}
	exitedAt time.Time // set before exited is closed
	done     chan struct{}
	status   protocol.WaitResponse
	onExit   func()
}

func newProcess(id string, terminal bool) *process {
	return &process{
		id: id, terminal: terminal,
		outCh: make(chan net.Conn, 1), errCh: make(chan net.Conn, 1), inCh: make(chan net.Conn, 1),
		attached: map[string]bool{},
		exited:   make(chan struct{}), done: make(chan struct{}),
	}
}

// startRelays begins moving output to attached streams and stdin from one.
func (p *process) startRelays() {
	p.relayOut(p.stdout, p.outCh, protocol.MethodAttachOut)
	if p.stderr != nil {
		p.relayOut(p.stderr, p.errCh, protocol.MethodAttachErr)
	}
	if p.stdin != nil {
		go p.relayIn()
	}
	go func() {
		<-p.exited
		p.outWG.Wait()
		close(p.done)
	}()
}

// relayIn feeds an attached stdin stream to the process. The host closing
// the stream closes the process's stdin (not a terminal's: that is also its
// output); the process exiting closes the stream.
func (p *process) relayIn() {
	var conn net.Conn
	select {
	case conn = <-p.inCh:
	case <-p.exited:
		p.closeStdin()
		// A stdin attached from now on has nobody to feed: end it.
		if conn = <-p.inCh; conn != nil {
			conn.Close()
		}
		return
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(p.stdin, conn)
		close(copied)
	}()
	select {
	case <-copied:
		p.closeStdin()
	case <-p.exited:
		p.closeStdin()
	}
	conn.Close()
}

// relayOut copies one output of the process to its attached stream. Output
// written before the host attaches waits in the pipe, never lost. Waiters
// wait for the copy to end unless nobody had attached when the process
// exited: then the output is kept for a late attach but nobody waits for it.
func (p *process) relayOut(r *os.File, ch chan net.Conn, method string) {
	p.outWG.Add(1)
	go func() {
		var conn net.Conn
		select {
		case conn = <-ch:
		case <-p.exited:
			p.mu.Lock()
			attached := p.attached[method]
			p.mu.Unlock()
			if !attached {
				p.outWG.Done()
				conn = <-ch
				p.copyOutput(r, conn)
				return
			}
			conn = <-ch
		}
		p.copyOutput(r, conn)
		p.outWG.Done()
	}()
}

// copyOutput copies r to conn until EOF (or EIO, a pty whose slave is
// closed). Once exited is closed, the copy ends when r has been empty for
// outputGrace after the exit, whatever still holds its write end.
func (p *process) copyOutput(r *os.File, conn net.Conn) {
	defer r.Close()
	defer conn.Close()
	stop := make(chan struct{})
	defer close(stop)
	var drainUntil time.Time
	go func() {
		select {
		case <-p.exited:
			r.SetReadDeadline(p.exitedAt.Add(outputGrace))
		case <-stop:
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return
			}
			continue
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return // EOF, EIO, closed
		}
		// Past the grace period: keep draining what is already buffered.
		if drainUntil.IsZero() {
			drainUntil = time.Now().Add(outputDrainCap)
		}
		if pending(r) == 0 || time.Now().After(drainUntil) {
			return
		}
		r.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	}
}

// pending returns how many bytes are waiting to be read from f.
func pending(f *os.File) int {
	sc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	sc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.TIOCINQ)
	})
	return n
}

// closeFiles releases the agent's ends of a process that never ran.
func (p *process) closeFiles() {
	for _, f := range []*os.File{p.stdin, p.stdout, p.stderr} {
		if f != nil {
			f.Close()
		}
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
	if p.stdin != nil && !p.terminal && !p.stdinClosed {
		p.stdinClosed = true
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
	sc, err := p.stdin.SyscallConn()
	if err != nil {
		return err
	}
	// Fd() would make the pollable master blocking: use Control.
	cerr := sc.Control(func(fd uintptr) {
		err = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if cerr != nil {
		return errors.New("process already finished")
	}
	return err
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
	byID  map[string]*process // nil while reserved
	byPid map[int]*process
	// early holds exits reaped before their process was registered; pruned
	// by age, since orphans the agent inherits are never registered.
	early map[int]earlyExit
	// ignore lists helper pids (nsenter intermediates) whose exit nobody wants.
	ignore map[int]bool
}

type earlyExit struct {
	ws unix.WaitStatus
	at time.Time
}

const earlyExitTTL = time.Minute

func newProcTable() *procTable {
	return &procTable{byID: map[string]*process{}, byPid: map[int]*process{}, early: map[int]earlyExit{}, ignore: map[int]bool{}}
}

func (t *procTable) get(id string) (*process, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := t.byID[id]
	if p == nil {
		return nil, fmt.Errorf("no process %q", id)
	}
	return p, nil
}

// reserve claims id for a process being created.
func (t *procTable) reserve(id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.byID[id]; ok {
		return fmt.Errorf("process id %q is already in use", id)
	}
	t.byID[id] = nil
	return nil
}

// release frees id after a failed creation.
func (t *procTable) release(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.byID[id]; p != nil && t.byPid[p.pid] == p {
		delete(t.byPid, p.pid)
	}
	delete(t.byID, id)
}

// register records p (whose pid is set) and settles an exit that came first.
func (t *procTable) register(p *process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.byID[p.id] = p
	if e, ok := t.early[p.pid]; ok {
		delete(t.early, p.pid)
		go t.finish(p, e.ws)
		return
	}
	t.byPid[p.pid] = p
}

// forget says that nobody will register pid.
func (t *procTable) forget(pid int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.early[pid]; ok {
		delete(t.early, pid)
		return
	}
	t.ignore[pid] = true
}

func (t *procTable) finish(p *process, ws unix.WaitStatus) {
	if p.onExit != nil {
		p.onExit()
	}
	p.status = exitStatus(ws)
	p.exitedAt = time.Now()
	close(p.exited)
}

// reaped routes the exit of pid; t.mu is held.
func (t *procTable) reaped(pid int, ws unix.WaitStatus, now time.Time) *process {
	if p, ok := t.byPid[pid]; ok {
		delete(t.byPid, pid)
		return p
	}
	if t.ignore[pid] {
		delete(t.ignore, pid)
		return nil
	}
	for old, e := range t.early {
		if now.Sub(e.at) > earlyExitTTL {
			delete(t.early, old)
		}
	}
	t.early[pid] = earlyExit{ws, now}
	return nil
}

// reap is the PID 1 reaper: it collects every child and orphan. Nothing else
// in the agent may wait for a child.
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
			p := t.reaped(pid, ws, time.Now())
			t.mu.Unlock()
			if p != nil {
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
