package container

// VM templating (docs/templating.md): with factory.enable_template, a
// container's VM is restored from a snapshot of a booted template VM
// instead of booting. Templates live under factory.template_path, one
// directory per key (qemu.TemplateKey: everything that shapes the guest),
// each on its own tmpfs:
//
//	<path>/<key>.lock   flock: shared while a clone starts, exclusive to
//	                    make or remove the template
//	<path>/<key>/       the tmpfs
//	    memory          the template VM's RAM (clones map it private)
//	    state           its device state (QEMU migration stream, no RAM)
//	    meta.json       written last: the template is complete
//	    console.log, qemu.log, share/ (the empty 9p export it booted with)
//
// The template is made by the first create that needs it, under the
// exclusive lock, and removed by `kabuto template destroy`; a template whose
// QEMU, kernel or initrd changed on disk is removed when another is made.
// Running clones keep their mappings of a removed template's memory (the
// tmpfs is detached, and freed with the last clone).

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/agentclient"
	"github.com/kabuto-runtime/kabuto/netns"
	"github.com/kabuto-runtime/kabuto/network"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// Files of a template directory.
const (
	templateMemory = "memory"
	templateState  = "state"
	templateMeta   = "meta.json"
	templateShare  = "share"
	templateNetNS  = "netns"
)

// templateMAC is the MAC of a template VM's NIC i. Every clone's NIC starts
// with it; the agent gives the NIC its host interface's MAC when the
// network is connected.
func templateMAC(i int) string { return fmt.Sprintf("02:6b:62:74:00:%02x", i) }

// TemplateMeta describes a complete template (meta.json).
type TemplateMeta struct {
	Key       string        `json:"key"`
	Format    int           `json:"format"`
	Created   time.Time     `json:"created"`
	VCPUs     int           `json:"vcpus"`
	MemoryMiB int           `json:"memoryMiB"`
	NICs      int           `json:"nics"`
	Machine   string        `json:"machine"`
	Accel     string        `json:"accel"`
	Files     []qemu.FileID `json:"files"`
	BootTime  time.Duration `json:"bootTimeNs"`
}

// stale reports whether a file the template was made from has changed, or
// kabuto makes templates differently now.
func (m *TemplateMeta) stale() bool {
	if m.Format != qemu.TemplateFormat {
		return true
	}
	for _, f := range m.Files {
		if id, err := qemu.StatFileID(f.Path); err != nil || id != f {
			return true
		}
	}
	return false
}

// vmTemplate is a complete template held (shared lock) for one clone.
type vmTemplate struct {
	dir   string
	lock  *os.File
	state *os.File
}

// release lets the template go once the clone has loaded it.
func (t *vmTemplate) release() {
	if t.state != nil {
		t.state.Close()
		t.state = nil
	}
	if t.lock != nil {
		t.lock.Close()
		t.lock = nil
	}
}

// templates is the template store of a configuration.
type templates struct {
	path    string
	timeout time.Duration
}

func (r *Runtime) templates() templates {
	return templates{path: r.Config.Factory.TemplatePath, timeout: r.Config.StartTimeout()}
}

// fromTemplate turns vm, when templating applies to it, into a clone of the
// matching template, making the template first if there is none, and
// returns the template, held until release. It returns nil (boot as usual)
// when templating is off, when the VM is not of the configured shape, or
// when no template can be made (with a warning).
func (r *Runtime) fromTemplate(ctx context.Context, vm *qemu.VM, st *vmstate.State) *vmTemplate {
	hc := r.Config.Hypervisor
	if !r.Config.Factory.EnableTemplate || vm.VCPUs != hc.VCPUs || vm.MemoryMiB != hc.MemoryMiB {
		return nil
	}
	clone := templateShape(vm)
	key, files, err := qemu.TemplateKey(clone)
	if err != nil {
		// Launch reports missing files better.
		return nil
	}
	t, err := r.templates().acquire(ctx, key, clone, files, r.warn)
	if err != nil {
		r.warn("VM templating: %v; booting the VM instead", err)
		return nil
	}
	clone.Memory = &qemu.MemoryFile{Path: filepath.Join(t.dir, templateMemory)}
	clone.Incoming = true
	*vm = *clone
	st.GuestMACs = st.GuestMACs[:0]
	for _, n := range vm.NICs {
		st.GuestMACs = append(st.GuestMACs, n.MAC)
	}
	return t
}

// templateShape returns a copy of vm shaped as a template's clone: the
// template flag, the template's NIC MACs, and no free page reporting (in
// QEMU before 9.1 reporting punches holes in the memory file even when it
// is mapped private, which would zero the template's pages under every
// other clone).
func templateShape(vm *qemu.VM) *qemu.VM {
	c := *vm
	c.Template = true
	c.FreePageReporting = false
	c.NICs = make([]qemu.NIC, len(vm.NICs))
	for i, n := range vm.NICs {
		c.NICs[i] = qemu.NIC{MAC: templateMAC(i), Tap: n.Tap}
	}
	return &c
}

// restoreTemplate loads the template into the launched clone whose state
// dir is dir, then lets the template go.
func (t *vmTemplate) restore(ctx context.Context, dir string) error {
	defer t.release()
	return qemu.Restore(ctx, dir, t.state)
}

// helloVM waits for the agent. A clone's first hello carries fresh entropy
// for the guest kernel's RNG and the host's time (see protocol.HelloRequest).
func helloVM(ctx context.Context, client *agentclient.Client, restored bool) error {
	if !restored {
		_, err := client.Hello(ctx)
		return err
	}
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	var h protocol.HelloResponse
	req := &protocol.HelloRequest{Entropy: seed, TimeUnixNano: time.Now().UnixNano()}
	if err := client.Call(ctx, protocol.MethodHello, req, &h); err != nil {
		return err
	}
	if h.Version != protocol.Version {
		return fmt.Errorf("guest agent speaks protocol version %d, this kabuto speaks %d (rebuild the guest image)", h.Version, protocol.Version)
	}
	return nil
}

// lockFile opens and flocks <path>/<key>.lock, retrying when a destroy
// removed the file between the open and the lock.
func (ts templates) lockFile(key string, how int) (*os.File, error) {
	p := filepath.Join(ts.path, key+".lock")
	for {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("template lock: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), how); err != nil {
			f.Close()
			return nil, fmt.Errorf("template lock: %w", err)
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(p, &b) == nil && a.Ino == b.Ino && a.Dev == b.Dev {
			return f, nil
		}
		f.Close()
	}
}

// readMeta returns the template's metadata if it is complete.
func readMeta(dir string) (*TemplateMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, templateMeta))
	if err != nil {
		return nil, err
	}
	var m TemplateMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("template %s: %w", dir, err)
	}
	return &m, nil
}

// acquire returns the complete template of key, shared-locked, with its
// state file open; it makes the template if there is none.
func (ts templates) acquire(ctx context.Context, key string, vm *qemu.VM, files []qemu.FileID, warn func(string, ...any)) (*vmTemplate, error) {
	if err := os.MkdirAll(ts.path, 0o700); err != nil {
		return nil, err
	}
	dir := filepath.Join(ts.path, key)
	for attempt := 0; ; attempt++ {
		lock, err := ts.lockFile(key, unix.LOCK_SH)
		if err != nil {
			return nil, err
		}
		if _, err := readMeta(dir); err == nil {
			state, err := os.Open(filepath.Join(dir, templateState))
			if err != nil {
				lock.Close()
				return nil, err
			}
			return &vmTemplate{dir: dir, lock: lock, state: state}, nil
		}
		if attempt > 0 {
			lock.Close()
			return nil, fmt.Errorf("template %s vanished after it was made", key)
		}
		// Make it, under the exclusive lock (another create may be at it).
		lock.Close()
		if err := ts.make(ctx, key, vm, files); err != nil {
			return nil, err
		}
		ts.removeStale(key, warn)
	}
}

// make boots the template VM of key and snapshots it, unless another
// process did so while this one waited for the lock.
func (ts templates) make(ctx context.Context, key string, vm *qemu.VM, files []qemu.FileID) (err error) {
	lock, err := ts.lockFile(key, unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lock.Close()
	dir := filepath.Join(ts.path, key)
	if _, err := readMeta(dir); err == nil {
		return nil
	}
	// Whatever a failed attempt left.
	if err := removeTemplateDir(dir); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, ts.timeout)
	defer cancel()
	start := time.Now()
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			removeTemplateDir(dir)
		}
	}()
	// The tmpfs holds the RAM file (the guest's RAM size, sparse) and the
	// small device state.
	opts := fmt.Sprintf("size=%dm,mode=0700", vm.MemoryMiB+16)
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount the template's tmpfs on %s: %w", dir, err)
	}
	if err := os.Mkdir(filepath.Join(dir, templateShare), 0o755); err != nil {
		return err
	}
	tvm := *vm
	tvm.Name = "kabuto-template-" + key[:12]
	tvm.StateDir = dir
	tvm.ShareDir = filepath.Join(dir, templateShare)
	if tvm.RootfsDir != "" {
		tvm.RootfsDir = tvm.ShareDir // as empty as the share: nothing mounts it
	}
	tvm.Memory = &qemu.MemoryFile{Path: filepath.Join(dir, templateMemory), Shared: true}
	tvm.Incoming = false
	// The template's taps live in a namespace of their own.
	nsPath := ""
	if len(tvm.NICs) > 0 {
		nsPath = filepath.Join(dir, templateNetNS)
		if err := netns.Create(nsPath); err != nil {
			return err
		}
		defer netns.Remove(nsPath)
	}
	var pid int
	err = netns.Do(nsPath, func() error {
		var lerr error
		pid, lerr = qemu.Launch(ctx, &tvm)
		return lerr
	})
	if err != nil {
		return fmt.Errorf("start the template VM: %w", err)
	}
	proc, perr := vmstate.ProcessOf(pid)
	defer func() {
		if perr == nil && proc.Alive() {
			unix.Kill(pid, unix.SIGKILL)
			proc.WaitGone(5 * time.Second)
		}
	}()
	// The host end of the agent channel stays connected, silent, until the
	// snapshot: a clone is resumed connected (qemu.Restore), so its guest
	// never sees the channel change state.
	apath, arelease, err := vmstate.SocketPath(dir, qemu.AgentSocket)
	if err != nil {
		return err
	}
	agentConn, err := net.DialTimeout("unix", apath, 10*time.Second)
	arelease()
	if err != nil {
		return fmt.Errorf("connect to the template VM's agent channel: %w", err)
	}
	defer agentConn.Close()
	if err := waitTemplateReady(ctx, dir, proc); err != nil {
		return err
	}
	state, err := os.OpenFile(filepath.Join(dir, templateState), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer state.Close()
	if err := qemu.Snapshot(ctx, dir, state); err != nil {
		return err
	}
	if perr == nil && !proc.WaitGone(5*time.Second) {
		unix.Kill(pid, unix.SIGKILL)
		proc.WaitGone(5 * time.Second)
	}
	if err := state.Sync(); err != nil {
		return err
	}
	for _, s := range []string{qemu.AgentSocket, qemu.QMPSocket} {
		os.Remove(filepath.Join(dir, s))
	}
	m := TemplateMeta{
		Key: key, Format: qemu.TemplateFormat, Created: time.Now().UTC(), VCPUs: tvm.VCPUs, MemoryMiB: tvm.MemoryMiB,
		NICs: len(tvm.NICs), Machine: tvm.Machine, Accel: tvm.Accel, Files: files,
		BootTime: time.Since(start),
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return vmstate.WriteFileAtomic(filepath.Join(dir, templateMeta), b, 0o600)
}

// waitTemplateReady waits for the template guest's agent to say, on the
// console, that it is set up and idle.
func waitTemplateReady(ctx context.Context, dir string, proc vmstate.Process) error {
	console := filepath.Join(dir, qemu.ConsoleLog)
	for {
		if b, err := os.ReadFile(console); err == nil && strings.Contains(string(b), protocol.TemplateReadyMarker) {
			return nil
		}
		if !proc.Alive() {
			return fmt.Errorf("the template VM exited while booting: %s", consoleTail(dir))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the template VM was not ready in time (%v): %s", ctx.Err(), consoleTail(dir))
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// removeTemplateDir detaches the template's tmpfs (clones keep their
// mappings) and removes the directory.
func removeTemplateDir(dir string) error {
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount template %s: %w", dir, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove template %s: %w", dir, err)
	}
	return nil
}

// removeStale removes, without waiting for locks, the templates other than
// keep whose QEMU, kernel or initrd changed: nothing can use them again.
func (ts templates) removeStale(keep string, warn func(string, ...any)) {
	for _, t := range ts.list() {
		if t.Key == keep || t.Meta == nil || !t.Meta.stale() {
			continue
		}
		if err := ts.remove(t.Key, false); err != nil && !errors.Is(err, unix.EWOULDBLOCK) {
			warn("remove stale template %s: %v", t.Key, err)
		}
	}
}

// remove deletes the template of key under its exclusive lock (waiting for
// it when wait is set).
func (ts templates) remove(key string, wait bool) error {
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	lock, err := ts.lockFile(key, how)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := removeTemplateDir(filepath.Join(ts.path, key)); err != nil {
		return err
	}
	// Removed while locked: a waiter sees the file is gone and retries.
	return os.Remove(lock.Name())
}

// TemplateInfo is one template as `kabuto template status` shows it.
type TemplateInfo struct {
	Key  string        `json:"key"`
	Dir  string        `json:"dir"`
	Meta *TemplateMeta `json:"meta,omitempty"`
	// Complete is false for a template being made (or a failed attempt).
	Complete bool `json:"complete"`
	Stale    bool `json:"stale"`
	// MemoryBytes is the host memory its RAM file holds.
	MemoryBytes int64 `json:"memoryBytes"`
}

// list returns the templates under the path, by key.
func (ts templates) list() []TemplateInfo {
	ents, _ := os.ReadDir(ts.path)
	var out []TemplateInfo
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(ts.path, e.Name())
		t := TemplateInfo{Key: e.Name(), Dir: dir}
		if m, err := readMeta(dir); err == nil {
			t.Meta, t.Complete, t.Stale = m, true, m.stale()
		}
		var st unix.Stat_t
		if unix.Stat(filepath.Join(dir, templateMemory), &st) == nil {
			t.MemoryBytes = st.Blocks * 512
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Templates lists the templates of the configuration.
func (r *Runtime) Templates() []TemplateInfo { return r.templates().list() }

// DestroyTemplates removes every template of the configuration, waiting
// for clones being started from them. Running clones are unaffected.
func (r *Runtime) DestroyTemplates() error {
	ts := r.templates()
	var errs []error
	for _, t := range ts.list() {
		if err := ts.remove(t.Key, true); err != nil {
			errs = append(errs, err)
		}
	}
	// Lock files of templates that were never completed.
	ents, _ := os.ReadDir(ts.path)
	for _, e := range ents {
		if key, ok := strings.CutSuffix(e.Name(), ".lock"); ok && !e.IsDir() {
			if err := ts.remove(key, true); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) == 0 {
		os.Remove(ts.path) // only if empty
	}
	return errors.Join(errs...)
}

// MakeTemplate makes the template for a VM of the configured shape with
// nics NICs (what a container with that many network interfaces uses), if
// there is none yet, and returns its key.
func (r *Runtime) MakeTemplate(ctx context.Context, nics int) (string, error) {
	accel, err := qemu.DetectAccel(r.Config.Hypervisor.Accel)
	if err != nil {
		return "", err
	}
	if nics < 0 || nics > network.MaxNICs {
		return "", fmt.Errorf("a VM has 0 to %d NICs, not %d", network.MaxNICs, nics)
	}
	vm := r.vmFor("template", "/template", &specs.Spec{Linux: &specs.Linux{}}, accel.Name)
	for i := 0; i < nics; i++ {
		vm.NICs = append(vm.NICs, qemu.NIC{Tap: network.TapName(i)})
	}
	clone := templateShape(vm)
	key, files, err := qemu.TemplateKey(clone)
	if err != nil {
		return "", err
	}
	t, err := r.templates().acquire(ctx, key, clone, files, r.warn)
	if err != nil {
		return "", err
	}
	t.release()
	return key, nil
}
