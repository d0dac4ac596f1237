package container

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/hostcgroup"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/shim"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// ExecOptions are exec's flags, the process already assembled.
type ExecOptions struct {
	ID            string
	Process       *specs.Process
	Detach        bool
	PidFile       string
	ConsoleSocket string
	// PidfdSocket receives a pidfd of the exec's shim.
	PidfdSocket string
	// Cgroup is a sub-cgroup of the container's cgroup in the guest.
	Cgroup string
	// IgnorePaused is runc's --ignore-paused (a paused VM runs nothing:
	// it only changes the error).
	IgnorePaused bool
}

// BaseProcess returns the container's init process from its bundle, the
// template runc's exec flags modify.
func (r *Runtime) BaseProcess(id string) (*specs.Process, error) {
	st, err := r.Store.Load(id)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(st.Bundle)
	if err != nil {
		return nil, err
	}
	return spec.Process, nil
}

// Exec starts another process in the running container, with a shim of its
// own that stands for it. Without Detach it relays the process's stdio and
// returns its exit status.
func (r *Runtime) Exec(ctx context.Context, o ExecOptions) (int, error) {
	st, err := r.Store.Load(o.ID)
	if err != nil {
		return 0, err
	}
	// As with runc, a created container takes execs: its namespaces exist.
	switch status := st.Status(); status {
	case vmstate.Running, vmstate.Created:
	case vmstate.Paused:
		if o.IgnorePaused {
			return 0, errors.New("cannot exec in a paused container, even with --ignore-paused: its VM's vCPUs are stopped and nothing starts there until it is resumed")
		}
		return 0, errors.New("cannot exec in a paused container: its VM's vCPUs are stopped (resume it first)")
	default:
		return 0, fmt.Errorf("cannot exec in a %s container", status)
	}
	if o.Process == nil || len(o.Process.Args) == 0 {
		return 0, errors.New("exec: args must not be empty")
	}
	p := *o.Process
	p.Env = dedupEnv(p.Env)
	if p.Terminal && o.ConsoleSocket == "" && o.Detach {
		return 0, errors.New("cannot allocate tty if runc will detach without setting console socket")
	}
	if !p.Terminal && o.ConsoleSocket != "" {
		return 0, errors.New("cannot use console socket if runc will not detach or allocate tty")
	}
	var pidfdConn *net.UnixConn
	if o.PidfdSocket != "" {
		// Connected first, so that a bad socket fails before the exec.
		if pidfdConn, err = dialUnix(o.PidfdSocket); err != nil {
			return 0, fmt.Errorf("pidfd socket: %w", err)
		}
		defer pidfdConn.Close()
	}
	dir := r.Store.Dir(o.ID)
	execID := randomID()
	req := protocol.ExecRequest{ID: execID, Process: &p, Stdin: p.Terminal || stdinIsUsable(), Cgroup: o.Cgroup}
	reqPath := filepath.Join(dir, "exec-"+execID+".json")
	b, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	if err := vmstate.WriteFileAtomic(reqPath, b, 0o600); err != nil {
		return 0, err
	}
	defer os.Remove(reqPath)

	tty, err := r.terminalFor(CreateOptions{ConsoleSocket: o.ConsoleSocket}, p.Terminal)
	if err != nil {
		return 0, err
	}
	if tty != nil {
		defer tty.Close()
	}
	fromSocket := o.ConsoleSocket != ""
	cmd, syncConn, err := r.startShim(dir, st.NetNS, shimSpec{
		process: execID, args: []string{"--exec-request", reqPath}, tty: tty,
		ownSession: o.Detach || fromSocket, ctty: fromSocket,
	})
	if err != nil {
		return 0, err
	}
	defer syncConn.Close()
	if err := shim.Expect(bufio.NewReader(syncConn), shim.MsgAttached); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, err
	}
	if st.CgroupPath != "" {
		if mounts, err := hostcgroup.Mounts(); err == nil {
			hostcgroup.Join(mounts, st.CgroupPath, cmd.Process.Pid)
		}
	}
	if err := r.recordExec(o.ID, execID, cmd.Process.Pid); err != nil {
		r.warn("record exec: %v", err)
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, cmd.Process.Pid); err != nil {
			return 0, err
		}
	}
	if pidfdConn != nil {
		if err := sendPidfd(pidfdConn, cmd.Process.Pid); err != nil {
			return 0, err
		}
	}
	if o.Detach {
		cmd.Process.Release()
		return 0, nil
	}
	err = cmd.Wait()
	code := cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(unix.WaitStatus); ok && ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return 0, err
	}
	return code, nil
}

// dedupEnv keeps the last value of each variable at the place of its
// first: runc sets the variables one by one, so a later --env wins.
func dedupEnv(env []string) []string {
	out := make([]string, 0, len(env))
	index := map[string]int{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := index[k]; ok {
			out[i] = kv
			continue
		}
		index[k] = len(out)
		out = append(out, kv)
	}
	return out
}

func dialUnix(path string) (*net.UnixConn, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s is not a unix socket", path)
	}
	return uc, nil
}

// sendPidfd sends a pidfd of pid with SCM_RIGHTS, as runc's --pidfd-socket.
func sendPidfd(conn *net.UnixConn, pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd of the exec's shim: %w", err)
	}
	defer unix.Close(fd)
	if _, _, err := conn.WriteMsgUnix([]byte("pidfd"), unix.UnixRights(fd), nil); err != nil {
		return fmt.Errorf("send pidfd: %w", err)
	}
	return nil
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// recordExec notes an exec shim in the state (for ps and delete), dropping
// records of shims that are gone.
func (r *Runtime) recordExec(id, execID string, pid int) error {
	h, err := r.Store.Lock(id)
	if err != nil {
		return err
	}
	defer h.Unlock()
	st, err := h.Load()
	if err != nil {
		return err
	}
	proc, err := vmstate.ProcessOf(pid)
	if err != nil {
		return err
	}
	live := st.Execs[:0]
	for _, e := range st.Execs {
		if e.Shim.Alive() {
			live = append(live, e)
		}
	}
	st.Execs = append(live, vmstate.ExecRecord{ID: execID, Shim: proc})
	return h.Save(st)
}

// Processes returns the container's guest processes.
func (r *Runtime) Processes(ctx context.Context, id string) (*vmstate.State, *protocol.PsResponse, error) {
	st, err := r.Store.Load(id)
	if err != nil {
		return nil, nil, err
	}
	if st.Status() == vmstate.Stopped {
		return st, nil, ErrNotRunning
	}
	var ps protocol.PsResponse
	cctx, cancel := context.WithTimeout(ctx, r.Config.RequestTimeout())
	defer cancel()
	if err := agentclient.ForStateDir(r.Store.Dir(id)).Call(cctx, protocol.MethodPs, nil, &ps); err != nil {
		return st, nil, err
	}
	return st, &ps, nil
}
