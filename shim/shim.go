// Package shim is the host process that stands for one container process:
// its pid is what `create` and `exec` write to --pid-file. It relays the
// caller's stdio (or a terminal) to the process in the guest, forwards the
// signals it receives, and exits with the process's exit status, so that
// containerd's shim and conmon can reap it like runc's init.
//
// The shim of a container's init also owns the VM's guest channel: it
// connects to QEMU's virtio-serial socket, runs the yamux client on it and
// serves the hub socket, where every connection (from another verb or an
// exec shim) becomes one stream to the agent.
package shim

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Sync messages between a verb and the shim it started (one line each).
const (
	MsgReady    = "ready"
	MsgAttach   = "attach"
	MsgAttached = "attached"
)

// ExitVMGone is the shim's exit status when the guest went away before the
// process's status could be read.
const ExitVMGone = 255

// Options is how a verb starts a shim.
type Options struct {
	StateDir string
	// Process is protocol.InitProcess or an exec id.
	Process string
	// Owner says the shim owns the guest channel (the init's shim).
	Owner bool
	// Terminal: the process has a pty in the guest; TTY is the host fd that
	// stands for it (a pty slave from --console-socket, or the caller's
	// terminal under a foreground `run`).
	Terminal bool
	TTY      *os.File
	// Stdin says the process reads the shim's fd 0.
	Stdin bool
	// Sync is the socket to the verb that started the shim.
	Sync *os.File
	// Exec is the exec request an exec shim sends before attaching.
	Exec *protocol.ExecRequest
	// Log receives the shim's own errors (never the container's stdio).
	Log func(format string, args ...any)
}

// YamuxConfig is the session configuration on both ends of the guest channel:
// no keepalives, since a paused VM answers nothing for as long as it is paused.
func YamuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.EnableKeepAlive = false
	c.LogOutput = io.Discard
	c.MaxStreamWindowSize = 1 << 20
	c.StreamOpenTimeout = 0
	c.ConnectionWriteTimeout = 30 * time.Second
	return c
}

// Run is the whole life of a shim; it returns the exit status to exit with.
func Run(opts Options) int {
	if opts.Log == nil {
		opts.Log = func(string, ...any) {}
	}
	// Go exits on SIGPIPE from fds 1 and 2 unless it is notified; a reader
	// that went away must not kill the shim.
	signal.Notify(make(chan os.Signal, 1), unix.SIGPIPE)

	sync := bufio.NewReader(opts.Sync)
	reply := func(msg string) {
		if opts.Sync != nil {
			fmt.Fprintln(opts.Sync, msg)
		}
	}
	fail := func(err error) int {
		reply("error: " + oneLine(err.Error()))
		opts.Log("shim: %v", err)
		return ExitVMGone
	}

	var client *agentclient.Client
	var hub *hub
	if opts.Owner {
		h, err := startHub(opts.StateDir)
		if err != nil {
			return fail(err)
		}
		hub = h
		client = agentclient.New(h.dialDirect)
		reply(MsgReady)
		line, err := sync.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != MsgAttach {
			// The verb gave up (create failed): nothing to relay.
			return ExitVMGone
		}
	} else {
		client = agentclient.ForStateDir(opts.StateDir)
	}

	ctx := context.Background()
	if opts.Exec != nil {
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := client.Call(actx, protocol.MethodExec, opts.Exec, &protocol.ExecResponse{})
		cancel()
		if err != nil {
			return fail(err)
		}
	}
	r, err := attach(ctx, client, opts)
	if err != nil {
		return fail(err)
	}
	reply(MsgAttached)
	if opts.Sync != nil {
		opts.Sync.Close()
	}
	code := r.run(ctx)
	if hub != nil {
		hub.drain(time.Second)
	}
	return code
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ") }

// hub owns the yamux session to the agent and serves hub.sock.
type hub struct {
	sess   *yamux.Session
	ln     net.Listener
	active atomic.Int64
}

func startHub(dir string) (*hub, error) {
	path, release, err := vmstate.SocketPath(dir, qemu.AgentSocket)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	release()
	if err != nil {
		return nil, fmt.Errorf("connect to the guest channel: %w", err)
	}
	sess, err := yamux.Client(conn, YamuxConfig())
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("guest channel session: %w", err)
	}
	hpath, hrelease, err := vmstate.SocketPath(dir, agentclient.HubSocket)
	if err != nil {
		sess.Close()
		return nil, err
	}
	os.Remove(hpath)
	ln, err := net.Listen("unix", hpath)
	hrelease()
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("listen on hub socket: %w", err)
	}
	h := &hub{sess: sess, ln: ln}
	go h.serve()
	go h.serveGuestStreams(dir)
	return h, nil
}

func (h *hub) dialDirect(ctx context.Context) (net.Conn, error) {
	s, err := h.sess.OpenStream()
	if err != nil {
		return nil, fmt.Errorf("open guest stream: %w", err)
	}
	return s, nil
}

func (h *hub) serve() {
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.active.Add(1)
		go func() {
			defer h.active.Add(-1)
			s, err := h.sess.OpenStream()
			if err != nil {
				c.Close()
				return
			}
			splice(c.(*net.UnixConn), s)
		}()
	}
}

// drain lets in-flight hub connections (exec shims waiting for exits that
// the init's end triggered) finish, for at most max.
func (h *hub) drain(max time.Duration) {
	h.ln.Close()
	deadline := time.Now().Add(max)
	for h.active.Load() > 0 && time.Now().Before(deadline) {
		// Usually a few milliseconds: every exit waits on this.
		time.Sleep(time.Millisecond)
	}
	h.sess.Close()
}

// splice copies both ways, propagating half-closes, until both directions end.
func splice(c *net.UnixConn, s *yamux.Stream) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(s, c)
		s.Close() // yamux Close is a half-close (FIN)
	}()
	go func() {
		defer wg.Done()
		io.Copy(c, s)
		c.CloseWrite()
	}()
	wg.Wait()
	c.Close()
	s.Close()
}

// relay moves one process's stdio between host fds and guest streams.
type relay struct {
	opts   Options
	client *agentclient.Client
	stdin  net.Conn
	stdout net.Conn
	stderr net.Conn
}

// attach opens the process's streams, all at once: each is a round trip to
// the guest, and none depends on another.
func attach(ctx context.Context, client *agentclient.Client, opts Options) (*relay, error) {
	r := &relay{opts: opts, client: client}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	type stream struct {
		method string
		conn   *net.Conn
		err    error
	}
	streams := []*stream{{method: protocol.MethodAttachOut, conn: &r.stdout}}
	if !opts.Terminal {
		streams = append(streams, &stream{method: protocol.MethodAttachErr, conn: &r.stderr})
	}
	if opts.Stdin || opts.Terminal {
		streams = append(streams, &stream{method: protocol.MethodAttachStdin, conn: &r.stdin})
	}
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*s.conn, s.err = client.Attach(actx, s.method, opts.Process)
		}()
	}
	wg.Wait()
	for _, s := range streams {
		if s.err != nil {
			for _, o := range streams {
				if o.err == nil {
					(*o.conn).Close()
				}
			}
			return nil, s.err
		}
	}
	return r, nil
}

// run relays until the process has exited and its output is delivered, and
// returns the exit status.
func (r *relay) run(ctx context.Context) int {
	var out sync.WaitGroup
	in, outW, errW := io.Reader(os.Stdin), io.Writer(os.Stdout), io.Writer(os.Stderr)
	if r.opts.Terminal {
		in, outW = r.opts.TTY, r.opts.TTY
	}
	out.Add(1)
	go func() {
		defer out.Done()
		io.Copy(outW, r.stdout)
	}()
	if r.stderr != nil {
		out.Add(1)
		go func() {
			defer out.Done()
			io.Copy(errW, r.stderr)
		}()
	}
	if r.stdin != nil {
		go func() {
			io.Copy(r.stdin, in)
			// EOF on our stdin: the process sees EOF (for a terminal, the
			// pty stays open; the guest's line discipline handles ^D).
			if !r.opts.Terminal {
				r.stdin.Close()
			}
		}()
	}
	stopSignals := r.forwardSignals(ctx)
	defer stopSignals()

	code := ExitVMGone
	w, err := r.client.Wait(ctx, r.opts.Process)
	if err != nil {
		r.opts.Log("shim: wait for %s: %v", r.opts.Process, err)
	} else {
		code = w.ExitCode
	}
	// The agent closes output streams at EOF or shortly after the exit;
	// bound the wait anyway in case the guest misbehaves.
	done := make(chan struct{})
	go func() { out.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.opts.Log("shim: output of %s not drained after exit", r.opts.Process)
	}
	return code
}

// forwardSignals sends the signals the shim receives to the process, and
// turns window-size changes of the terminal into resize requests.
func (r *relay) forwardSignals(ctx context.Context) func() {
	ch := make(chan os.Signal, 32)
	signal.Notify(ch)
	if r.opts.Terminal {
		r.resize(ctx)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				sig, ok := s.(unix.Signal)
				if !ok {
					continue
				}
				switch sig {
				case unix.SIGCHLD, unix.SIGPIPE, unix.SIGURG:
					continue
				case unix.SIGWINCH:
					if r.opts.Terminal {
						r.resize(ctx)
					}
					continue
				}
				sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := r.client.Signal(sctx, r.opts.Process, int(sig), false); err != nil {
					r.opts.Log("shim: forward %v: %v", sig, err)
				}
				cancel()
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}

func (r *relay) resize(ctx context.Context) {
	ws, err := unix.IoctlGetWinsize(int(r.opts.TTY.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Row == 0 || ws.Col == 0 {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.client.Call(sctx, protocol.MethodResize, protocol.ResizeRequest{ID: r.opts.Process, Rows: ws.Row, Cols: ws.Col}, nil); err != nil {
		r.opts.Log("shim: resize: %v", err)
	}
}

// ErrSync is returned by WaitReady when the shim reports a failure.
var ErrSync = errors.New("shim failed")

// Expect reads one line from a shim's sync socket and checks it is want.
func Expect(r *bufio.Reader, want string) error {
	line, err := r.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			return fmt.Errorf("%w: it exited before answering", ErrSync)
		}
		return fmt.Errorf("%w: %v", ErrSync, err)
	}
	line = strings.TrimSpace(line)
	if line == want {
		return nil
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return errors.New(msg)
	}
	return fmt.Errorf("%w: unexpected answer %q", ErrSync, line)
}
