package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/vmstate"
)

// ErrNotFound is returned when the QEMU binary cannot be found.
var ErrNotFound = errors.New("qemu binary not found")

// Launch starts QEMU detached (own session, stdio to <state>/qemu.log) and
// returns its pid once QEMU has created its sockets. QEMU's own -daemonize
// forks after the seccomp sandbox is in place, which spawn=deny forbids, so
// kabuto detaches it instead. The caller decides the network namespace by
// calling Launch from a thread that is in it.
func Launch(ctx context.Context, vm *VM) (int, error) {
	bin, err := exec.LookPath(vm.Binary)
	if err != nil {
		return 0, fmt.Errorf("%w: %s", ErrNotFound, vm.Binary)
	}
	for _, f := range []struct{ what, key, path string }{{"guest kernel", "kernel", vm.Kernel}, {"guest initrd", "initrd", vm.Initrd}} {
		if _, err := os.Stat(f.path); err != nil {
			return 0, fmt.Errorf("%s %s: %w (run `make guest install` or set hypervisor.%s in the configuration)",
				f.what, f.path, errors.Unwrap(err), f.key)
		}
	}
	args := vm.Args()
	if vm.Machine != "microvm" {
		// -bios is resolved in QEMU's data dir.
		for i := range args {
			if args[i] == "qboot.rom" {
				args[i] = "/usr/share/qemu/qboot.rom"
			}
		}
	}
	logPath := filepath.Join(vm.StateDir, LogFile)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Dir = vm.StateDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := startNoTHP(cmd, vm.NoTHP); err != nil {
		return 0, fmt.Errorf("start qemu: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	fail := func(msg string) (int, error) {
		cmd.Process.Kill()
		<-exited
		if b, _ := os.ReadFile(logPath); len(strings.TrimSpace(string(b))) > 0 {
			msg = firstLine(string(b))
		}
		return 0, fmt.Errorf("qemu failed to start: %s", msg)
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			return fail("it exited at once")
		case <-ctx.Done():
			return fail("it did not create its sockets in time")
		case <-tick.C:
		}
		if exists(filepath.Join(vm.StateDir, AgentSocket)) && exists(filepath.Join(vm.StateDir, QMPSocket)) {
			return cmd.Process.Pid, nil
		}
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func firstLine(s string) string {
	lines := strings.Split(s, "\n")
	for _, l := range lines {
		// QEMU prefixes errors with its binary name.
		if l = strings.TrimSpace(l); l != "" {
			if i := strings.Index(l, ": "); i > 0 && strings.HasPrefix(l, "qemu-system") {
				l = l[i+2:]
			}
			return l
		}
	}
	return s
}

// Monitor is a QMP connection to one VM.
type Monitor struct {
	mon *qmp.SocketMonitor
}

// Connect opens the QMP socket of the VM whose state dir is dir.
func Connect(dir string, timeout time.Duration) (*Monitor, error) {
	path, release, err := vmstate.SocketPath(dir, QMPSocket)
	if err != nil {
		return nil, err
	}
	defer release()
	mon, err := qmp.NewSocketMonitor("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect qmp: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- mon.Connect() }()
	select {
	case err = <-done:
	case <-time.After(timeout):
		mon.Disconnect()
		return nil, errors.New("connect qmp: timed out")
	}
	if err != nil {
		return nil, fmt.Errorf("connect qmp: %w", err)
	}
	return &Monitor{mon: mon}, nil
}

// Close ends the QMP connection.
func (m *Monitor) Close() error { return m.mon.Disconnect() }

// Execute runs one QMP command and returns its "return" value.
func (m *Monitor) Execute(command string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	raw, err := m.mon.Run(b)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	return resp.Return, nil
}

// Status returns the VM's run state (running, paused, shutdown, …).
func (m *Monitor) Status() (string, error) {
	raw, err := m.Execute("query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// thpMu serializes the PR_SET_THP_DISABLE window: the flag is the whole
// process's, and every child forked while it is set inherits it.
var thpMu sync.Mutex

// startNoTHP starts cmd, with transparent huge pages disabled for it when
// noTHP is set (the flag is inherited at fork and kept across exec; QEMU's
// own MADV_HUGEPAGE then has no effect).
func startNoTHP(cmd *exec.Cmd, noTHP bool) error {
	if !noTHP {
		return cmd.Start()
	}
	thpMu.Lock()
	defer thpMu.Unlock()
	if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("disable transparent huge pages: %w", err)
	}
	defer unix.Prctl(unix.PR_SET_THP_DISABLE, 0, 0, 0, 0)
	return cmd.Start()
}
