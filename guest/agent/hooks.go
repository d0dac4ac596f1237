package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/hooks"
)

// startContainer hooks run in the guest: their path resolves in the
// container's mount namespace and they run in all of the container's
// namespaces and its cgroup, with the runtime's privileges, after `start`
// and before the container's process runs (the runtime spec's wording; the
// other phases run on the host, see hooks/). The OCI state comes from the
// host, which alone knows the host-side facts (pid, bundle).

// hookOutputMax bounds the output of a failed hook kept for its error.
const hookOutputMax = 4096

// runStartContainerHooks runs each hook in order and stops at the first
// failure, which it returns.
func (a *agent) runStartContainerHooks(c *containerState, state []byte) error {
	if c.spec == nil || c.spec.Hooks == nil {
		return nil
	}
	for i, h := range c.spec.Hooks.StartContainer {
		if err := a.runContainerHook(c, i, h, state); err != nil {
			return fmt.Errorf("startContainer hook #%d (%s): %w", i, h.Path, err)
		}
	}
	return nil
}

func (a *agent) runContainerHook(c *containerState, i int, h specs.Hook, state []byte) error {
	if !strings.HasPrefix(h.Path, "/") {
		return errors.New("path must be absolute")
	}
	timeout, err := hooks.Timeout(h)
	if err != nil {
		return err
	}
	// argv[0] is the hook's args[0]; the executable is its path.
	args := []string{h.Path}
	if len(h.Args) > 1 {
		args = append(args, h.Args[1:]...)
	}
	id := "hook-startContainer-" + strconv.Itoa(i)
	if err := a.procs.reserve(id); err != nil {
		return err
	}
	defer a.procs.release(id)
	p := newProcess(id, false)
	sp, err := a.spawnExec(p, &specs.Process{Args: args, Env: h.Env, Cwd: "/"}, nil, true, c, c.cgroup)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	var mu sync.Mutex
	room := hookOutputMax
	collected := make(chan struct{}, 2)
	for _, r := range []io.Reader{p.stdout, p.stderr} {
		go func() {
			io.Copy(&limitedWriter{mu: &mu, w: &out, n: &room}, r)
			collected <- struct{}{}
		}()
	}
	if err := sp.commit(); err != nil {
		p.closeFiles()
		return err
	}
	go func() {
		p.stdin.Write(state)
		p.closeStdin()
	}()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		unix.Kill(p.pid, unix.SIGKILL)
		<-p.exited
		p.closeFiles()
		return fmt.Errorf("timed out after %v", timeout)
	}
	// Output of a hook that left a child holding its pipes is not waited for.
	for n := 0; n < 2; n++ {
		select {
		case <-collected:
		case <-time.After(outputGrace):
		}
	}
	p.closeFiles()
	if st := p.status; st.ExitCode != 0 {
		mu.Lock()
		msg := strings.Join(strings.Fields(out.String()), " ")
		mu.Unlock()
		return fmt.Errorf("exit status %d: %s", st.ExitCode, msg)
	}
	return nil
}

// limitedWriter keeps the first n bytes and discards the rest; stdout and
// stderr write to one concurrently.
type limitedWriter struct {
	mu *sync.Mutex
	w  io.Writer
	n  *int
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *l.n > 0 {
		k := min(len(b), *l.n)
		l.w.Write(b[:k])
		*l.n -= k
	}
	return len(b), nil
}
