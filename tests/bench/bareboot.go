package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/shim"
)

// bareVM is a QEMU guest started with kabuto's command line for the same
// configuration, minus what a container adds (no NIC, nothing in the share).
type bareVM struct {
	pid  int
	dir  string
	sess *yamux.Session
	conn net.Conn
}

// startBareVM launches the VM and returns once the agent answered hello.
func startBareVM(work string, cfg *config.Config) (*bareVM, error) {
	dir, err := os.MkdirTemp(work, "boot-")
	if err != nil {
		return nil, err
	}
	share := filepath.Join(dir, "shared")
	if err := os.Mkdir(share, 0o700); err != nil {
		return nil, err
	}
	hc := cfg.Hypervisor
	accel, err := qemu.DetectAccel(hc.Accel)
	if err != nil {
		return nil, err
	}
	vm := &qemu.VM{
		Name: "kabuto-bench", Binary: hc.Path, Kernel: hc.Kernel, Initrd: hc.Initrd,
		Machine: hc.MachineType, Accel: accel.Name, VCPUs: hc.VCPUs, MemoryMiB: hc.MemoryMiB,
		TBSizeMiB: hc.TBSizeMiB, FreePageReporting: hc.FreePageReporting, NoTHP: !hc.TransparentHugepages,
		TSCKHz: qemu.HostTSCKHz(), Msize9P: hc.Msize9P, KernelParams: hc.KernelParams,
		StateDir: dir, ShareDir: share, ShareTag: protocol.ShareTag, PortName: protocol.PortName,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, err := qemu.Launch(ctx, vm)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b := &bareVM{pid: pid, dir: dir}
	if err := b.hello(); err != nil {
		b.stop()
		return nil, err
	}
	return b, nil
}

func (b *bareVM) hello() error {
	conn, err := net.Dial("unix", filepath.Join(b.dir, qemu.AgentSocket))
	if err != nil {
		return err
	}
	b.conn = conn
	sess, err := yamux.Client(conn, shim.YamuxConfig())
	if err != nil {
		return err
	}
	b.sess = sess
	s, err := sess.OpenStream()
	if err != nil {
		return err
	}
	defer s.Close()
	req, err := protocol.NewRequest(protocol.MethodHello, nil)
	if err != nil {
		return err
	}
	if err := protocol.WriteFrame(s, req); err != nil {
		return err
	}
	s.SetDeadline(time.Now().Add(time.Minute))
	var resp protocol.Response
	if err := protocol.ReadFrame(s, &resp); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	return nil
}

// stop kills QEMU, waits for it to go and removes its directory.
func (b *bareVM) stop() {
	if b.sess != nil {
		b.sess.Close()
	}
	if b.conn != nil {
		b.conn.Close()
	}
	if p, err := os.FindProcess(b.pid); err == nil {
		p.Kill()
	}
	for i := 0; i < 500; i++ {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", b.pid)); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	os.RemoveAll(b.dir)
}
