package qemu

// VM templating (docs/templating.md): a template VM boots with its RAM in a
// file mapped shared, sets itself up and is snapshotted: QEMU migrates its
// device state into a file while the RAM, which is the file, is skipped
// (the x-ignore-shared capability). A clone maps the same file private
// (copy-on-write: the template stays intact and unwritten pages stay shared
// between all clones) and loads the device state instead of booting.
//
// QEMU runs under -sandbox spawn=deny, so the state file cannot go through
// an exec: migration URI; QEMU 7.2 has no file: URI either. kabuto opens
// the file itself and hands QEMU the descriptor over QMP (getfd), then
// migrates to or from fd:<name>.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/vmstate"
)

// MemoryFile backs a VM's RAM with a file.
type MemoryFile struct {
	Path string
	// Shared maps the file shared: the guest's RAM is the file (a template).
	// Otherwise the mapping is private: the guest reads the file's pages
	// and writes its own copies (a clone).
	Shared bool
}

// memoryBackendID names the RAM backend object on the command line.
const memoryBackendID = "kabuto-ram"

// agentChardev is the id of the agent channel's chardev (Args).
const agentChardev = "agent"

// templateFdName is the name under which the state file's descriptor is
// given to QEMU (QMP getfd).
const templateFdName = "kabuto-template-state"

// memoryArgs returns the RAM backend arguments of a file-backed VM (none
// for ordinary anonymous RAM).
func (vm *VM) memoryArgs() []string {
	if vm.Memory == nil {
		return nil
	}
	share := "off"
	if vm.Memory.Shared {
		share = "on"
	}
	a := []string{"-object", fmt.Sprintf("memory-backend-file,id=%s,size=%dM,mem-path=%s,share=%s",
		memoryBackendID, vm.MemoryMiB, qemuEscape(vm.Memory.Path), share)}
	if vm.Incoming {
		a = append(a, "-incoming", "defer")
	}
	return a
}

// startMigration connects to the QMP of the VM whose state dir is dir, hands
// it state as the migration channel (RAM in shared memory is skipped), waits
// for the host end of the agent channel, and issues command (migrate or
// migrate-incoming) over that channel.
func startMigration(ctx context.Context, dir string, state *os.File, command string) (*qmpConn, error) {
	q, err := dialQMP(ctx, dir)
	if err != nil {
		return nil, err
	}
	err = q.passFd(templateFdName, state)
	if err == nil {
		err = q.ignoreShared()
	}
	if err == nil {
		err = q.waitAgentConnected(ctx)
	}
	if err == nil {
		_, err = q.run(command, map[string]any{"uri": "fd:" + templateFdName}, nil)
	}
	if err != nil {
		q.close()
		return nil, err
	}
	return q, nil
}

// Snapshot saves the device state of the running template VM whose state
// dir is dir into state, and quits it. Its RAM is already in its memory
// file; the snapshot skips it. The VM is not stopped first: migration stops
// it at the end, so the state records it running and a clone resumes at
// once.
func Snapshot(ctx context.Context, dir string, state *os.File) error {
	q, err := startMigration(ctx, dir, state, "migrate")
	if err != nil {
		return err
	}
	defer q.close()
	for {
		raw, err := q.run("query-migrate", nil, nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("qmp query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			_, err := q.run("quit", nil, nil)
			return err
		case "failed", "cancelled":
			return fmt.Errorf("snapshot the template VM: migration %s: %s", st.Status, st.ErrorDesc)
		}
		if err := sleepCtx(ctx, 2*time.Millisecond); err != nil {
			return fmt.Errorf("snapshot the template VM: %w", err)
		}
	}
}

// Restore loads a template's device state into the VM whose state dir is
// dir (started with Incoming and the template's memory file) and returns
// once the VM runs. The host end of the agent channel must be connected
// first (see waitAgentConnected).
func Restore(ctx context.Context, dir string, state *os.File) error {
	q, err := startMigration(ctx, dir, state, "migrate-incoming")
	if err != nil {
		return err
	}
	defer q.close()
	for {
		raw, err := q.run("query-status", nil, nil)
		if err != nil {
			// A failed load ends QEMU; its log says why.
			if msg := logLine(dir); msg != "" {
				return fmt.Errorf("restore the VM from its template: %s", msg)
			}
			return fmt.Errorf("restore the VM from its template: %w", err)
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("qmp query-status: %w", err)
		}
		switch st.Status {
		case "running":
			return nil
		case "paused", "postmigrate", "prelaunch":
			// A template snapshotted while stopped resumes stopped.
			_, err := q.run("cont", nil, nil)
			return err
		case "inmigrate":
		default:
			return fmt.Errorf("restore the VM from its template: the VM is %s", st.Status)
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("restore the VM from its template: %w", err)
		}
	}
}

func logLine(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil || len(b) == 0 {
		return ""
	}
	return firstLine(string(b))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// qmpConn is a bare QMP connection. The go-qemu monitor cannot pass file
// descriptors, which getfd needs.
type qmpConn struct {
	c *net.UnixConn
	r *bufio.Reader
}

func dialQMP(ctx context.Context, dir string) (*qmpConn, error) {
	path, release, err := vmstate.SocketPath(dir, QMPSocket)
	if err != nil {
		return nil, err
	}
	defer release()
	// Launch returns once the socket file exists: QEMU may not listen yet.
	var d net.Dialer
	var c net.Conn
	for wait := time.Second; ; wait -= time.Millisecond {
		c, err = d.DialContext(ctx, "unix", path)
		if err == nil || !errors.Is(err, unix.ECONNREFUSED) || wait <= 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err != nil {
		if msg := logLine(dir); msg != "" {
			return nil, fmt.Errorf("connect qmp: %w (qemu: %s)", err, msg)
		}
		return nil, fmt.Errorf("connect qmp: %w", err)
	}
	uc := c.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		uc.SetDeadline(dl)
	}
	q := &qmpConn{c: uc, r: bufio.NewReaderSize(uc, 64*1024)}
	// The greeting, then leave capabilities negotiation mode.
	if _, err := q.r.ReadBytes('\n'); err != nil {
		uc.Close()
		return nil, fmt.Errorf("connect qmp: %w", err)
	}
	if _, err := q.run("qmp_capabilities", nil, nil); err != nil {
		uc.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpConn) close() { q.c.Close() }

// run executes one command, with f's descriptor attached when f is set,
// and returns its "return" value. Events are skipped.
func (q *qmpConn) run(command string, args any, f *os.File) (json.RawMessage, error) {
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	if f != nil {
		_, _, err = q.c.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
	} else {
		_, err = q.c.Write(b)
	}
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		var resp struct {
			Event  string          `json:"event"`
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, err)
		}
		switch {
		case resp.Event != "":
			continue
		case resp.Error != nil:
			return nil, fmt.Errorf("qmp %s: %s", command, resp.Error.Desc)
		}
		return resp.Return, nil
	}
}

// waitAgentConnected waits until QEMU has accepted the host's connection
// to the agent channel. A template is snapshotted with the host connected
// and a clone must be restored so: the guest then never sees the channel's
// state change. Were the host to connect after the clone resumed, the
// guest would get QEMU's port-open message and the host's first bytes at
// once, and its virtio-console driver may show the bytes while the port
// still looks closed, which the agent takes for the end of the session.
func (q *qmpConn) waitAgentConnected(ctx context.Context) error {
	for {
		raw, err := q.run("query-chardev", nil, nil)
		if err != nil {
			return err
		}
		var devs []struct {
			Label    string `json:"label"`
			Filename string `json:"filename"`
		}
		if err := json.Unmarshal(raw, &devs); err != nil {
			return fmt.Errorf("qmp query-chardev: %w", err)
		}
		found := false
		for _, d := range devs {
			if d.Label != agentChardev {
				continue
			}
			found = true
			if !strings.HasPrefix(d.Filename, "disconnected:") {
				return nil
			}
		}
		if !found {
			return fmt.Errorf("qmp query-chardev: no %q chardev", agentChardev)
		}
		if err := sleepCtx(ctx, time.Millisecond); err != nil {
			return fmt.Errorf("the host is not connected to the agent channel: %w", err)
		}
	}
}

func (q *qmpConn) passFd(name string, f *os.File) error {
	_, err := q.run("getfd", map[string]any{"fdname": name}, f)
	return err
}

// ignoreShared keeps RAM that is a shared file out of the migration stream.
// Both ends must set it.
func (q *qmpConn) ignoreShared() error {
	_, err := q.run("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}, nil)
	if err != nil {
		return fmt.Errorf("%w (VM templating needs QEMU 4.0 or later)", err)
	}
	return nil
}

// TemplateFormat is bumped whenever kabuto changes how it makes templates
// or what it expects of a template's guest (the agent's state at the
// snapshot): older templates are then other keys, and stale.
const TemplateFormat = 1

// TemplateKey identifies everything that shapes a template VM's guest:
// QEMU's arguments with the per-VM host-side parts (name, state dir, share
// path, taps, memory file, the TSC frequency the host measured) replaced
// by fixed values, the identity (path, size, modification time, inode) of
// the QEMU binary, kernel and initrd, and TemplateFormat. The files are
// named in the error.
func TemplateKey(vm *VM) (string, []FileID, error) {
	c := *vm
	c.Name, c.StateDir, c.ShareDir = "template", "/template", "/template/share"
	if c.RootfsDir != "" {
		c.RootfsDir = "/template/rootshare"
	}
	c.TSCKHz = 0
	c.Incoming = false
	c.Memory = &MemoryFile{Path: "/template/memory", Shared: true}
	c.NICs = append([]NIC(nil), vm.NICs...)
	for i := range c.NICs {
		c.NICs[i].Tap = "tap" + strconv.Itoa(i)
	}
	bin, err := lookPath(vm.Binary)
	if err != nil {
		return "", nil, err
	}
	var ids []FileID
	for _, p := range []string{bin, vm.Kernel, vm.Initrd} {
		id, err := StatFileID(p)
		if err != nil {
			return "", nil, err
		}
		ids = append(ids, id)
	}
	b, err := json.Marshal(struct {
		Format int
		Args   []string
		Files  []FileID
	}{TemplateFormat, c.Args(), ids})
	if err != nil {
		return "", nil, err
	}
	return hashHex(b), ids, nil
}

// FileID pins one version of a file.
type FileID struct {
	Path    string `json:"path"`
	Size    int64  `json:"size"`
	MtimeNs int64  `json:"mtimeNs"`
	Inode   uint64 `json:"inode"`
}

// StatFileID returns path's identity.
func StatFileID(path string) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileID{}, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	return FileID{Path: path, Size: st.Size, MtimeNs: st.Mtim.Nano(), Inode: st.Ino}, nil
}

func lookPath(bin string) (string, error) {
	p, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("%w: %s", ErrNotFound, bin)
	}
	return filepath.Abs(p)
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
