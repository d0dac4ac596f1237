// Command bench measures, in one run, the wall time of `kabuto run` of
// /bin/true against `runc run` of the same bundle and against a bare boot of
// the same guest kernel and initrd (QEMU start until the agent answers), and
// prints medians and ratios. `make bench` runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/qemu"
	"github.com/kabuto-runtime/kabuto/shim"
)

func main() {
	runs := flag.Int("runs", 7, "timed runs per measurement (after one warm-up)")
	flag.Parse()
	kabuto, kernel, initrd := os.Getenv("KABUTO_BIN"), os.Getenv("KABUTO_KERNEL"), os.Getenv("KABUTO_INITRD")
	if kabuto == "" || kernel == "" || initrd == "" {
		fatal("set KABUTO_BIN, KABUTO_KERNEL and KABUTO_INITRD (make bench does)")
	}
	work, err := os.MkdirTemp("", "kabuto-bench-")
	check(err)
	defer os.RemoveAll(work)
	bundle := filepath.Join(work, "bundle")
	check(makeBundle(bundle))
	conf := filepath.Join(work, "kabuto.toml")
	check(os.WriteFile(conf, []byte(fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n", kernel, initrd)), 0o644))

	fmt.Printf("kabuto bench: %d runs each (median [min–max]), accel %s\n", *runs, accelName())
	n := 0
	kabutoRun := measure(*runs, func() error {
		n++
		return runCmd(kabuto, "--root", filepath.Join(work, "kroot"), "--config", conf, "run", "--bundle", bundle, fmt.Sprintf("b%d", n))
	})
	var runcRun []time.Duration
	if runc, err := exec.LookPath("runc"); err == nil {
		runcRun = measure(*runs, func() error {
			n++
			return runCmd(runc, "--root", filepath.Join(work, "rroot"), "run", "--bundle", bundle, fmt.Sprintf("r%d", n))
		})
	}
	boot := measure(*runs, func() error { return bareBoot(work, kernel, initrd) })

	report("kabuto run /bin/true", kabutoRun)
	report("runc run /bin/true", runcRun)
	report("bare QEMU boot to agent", boot)
	if len(runcRun) > 0 {
		fmt.Printf("ratio kabuto run / runc run           %.2fx\n", ratio(kabutoRun, runcRun))
	}
	fmt.Printf("ratio kabuto run / bare boot          %.2fx\n", ratio(kabutoRun, boot))
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "bench:", msg)
	os.Exit(1)
}

func check(err error) {
	if err != nil {
		fatal(err.Error())
	}
}

func accelName() string {
	a, err := qemu.DetectAccel("auto")
	if err != nil {
		return "?"
	}
	return a.Name
}

func runCmd(bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return nil
}

// measure runs f once to warm up, then runs times, and returns the timings.
func measure(runs int, f func() error) []time.Duration {
	check(f())
	var ds []time.Duration
	for i := 0; i < runs; i++ {
		start := time.Now()
		check(f())
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds
}

func median(ds []time.Duration) time.Duration { return ds[len(ds)/2] }

func ratio(a, b []time.Duration) float64 {
	return float64(median(a)) / float64(median(b))
}

func report(name string, ds []time.Duration) {
	if len(ds) == 0 {
		fmt.Printf("%-38s (not available)\n", name)
		return
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/1e6) }
	fmt.Printf("%-38s %6s ms [%s–%s]\n", name, ms(median(ds)), ms(ds[0]), ms(ds[len(ds)-1]))
}

// makeBundle writes a busybox bundle running /bin/true.
func makeBundle(dir string) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(filepath.Join(rootfs, "bin"), 0o755); err != nil {
		return err
	}
	for _, d := range []string{"proc", "sys", "dev", "tmp", "etc"} {
		os.MkdirAll(filepath.Join(rootfs, d), 0o755)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	for _, a := range []string{"sh", "true"} {
		os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
	}
	spec := map[string]any{
		"ociVersion": "1.0.2",
		"process": map[string]any{
			"terminal": false, "user": map[string]any{"uid": 0, "gid": 0}, "args": []string{"/bin/true"},
			"env": []string{"PATH=/bin"}, "cwd": "/",
		},
		"root":     map[string]any{"path": "rootfs"},
		"hostname": "bench",
		"mounts": []map[string]any{
			{"destination": "/proc", "type": "proc", "source": "proc"},
			{"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": []string{"nosuid", "mode=755"}},
		},
		"linux": map[string]any{"namespaces": []map[string]string{
			{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "network"},
		}},
	}
	b, err := json.MarshalIndent(spec, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

// bareBoot starts QEMU with kabuto's command line for the same kernel and
// initrd, and stops the clock when the agent answers hello.
func bareBoot(work, kernel, initrd string) error {
	dir, err := os.MkdirTemp(work, "boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	share := filepath.Join(dir, "shared")
	os.Mkdir(share, 0o700)
	accel, _ := qemu.DetectAccel("auto")
	vm := &qemu.VM{
		Name: "kabuto-bench", Binary: "qemu-system-x86_64", Kernel: kernel, Initrd: initrd,
		Machine: "microvm", Accel: accel.Name, VCPUs: 1, MemoryMiB: 128, TSCKHz: qemu.HostTSCKHz(),
		StateDir: dir, ShareDir: share, ShareTag: protocol.ShareTag, PortName: protocol.PortName,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pid, err := qemu.Launch(ctx, vm)
	if err != nil {
		return err
	}
	defer func() {
		p, _ := os.FindProcess(pid)
		p.Kill()
		for i := 0; i < 500; i++ {
			if _, err := os.Stat(fmt.Sprintf("/proc/%d/stat", pid)); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	conn, err := net.Dial("unix", filepath.Join(dir, qemu.AgentSocket))
	if err != nil {
		return err
	}
	defer conn.Close()
	sess, err := yamux.Client(conn, shim.YamuxConfig())
	if err != nil {
		return err
	}
	defer sess.Close()
	s, err := sess.OpenStream()
	if err != nil {
		return err
	}
	req, _ := protocol.NewRequest(protocol.MethodHello, nil)
	if err := protocol.WriteFrame(s, req); err != nil {
		return err
	}
	s.SetDeadline(time.Now().Add(time.Minute))
	var resp protocol.Response
	return protocol.ReadFrame(s, &resp)
}
