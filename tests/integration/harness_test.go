// Package integration drives the real kabuto binary against real QEMU
// guests. It needs root, QEMU, the guest kernel and initrd (make guest) and
// busybox-static; `make integration` sets the paths.
package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	kabutoBin = os.Getenv("KABUTO_BIN")
	kernel    = os.Getenv("KABUTO_KERNEL")
	initrd    = os.Getenv("KABUTO_INITRD")
	busybox   = "/bin/busybox"
)

func TestMain(m *testing.M) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, p := range []string{kabutoBin, kernel, initrd, busybox} {
		if p == "" {
			missing = append(missing, "KABUTO_BIN/KABUTO_KERNEL/KABUTO_INITRD")
			break
		}
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "integration tests need %s (run `make integration` as root)\n", strings.Join(missing, ", "))
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// env is one test's kabuto world: its own --root and configuration.
type env struct {
	t      *testing.T
	root   string
	config string
	dir    string
	// ids are the containers this env created (their default host cgroups
	// are kabuto/<id>).
	ids map[string]bool
}

func newEnv(t *testing.T, extraConfig ...string) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{t: t, root: filepath.Join(dir, "root"), config: filepath.Join(dir, "kabuto.toml"), dir: dir, ids: map[string]bool{}}
	conf := fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n%s\n[agent]\nstart_timeout_seconds = 60\n",
		kernel, initrd, strings.Join(extraConfig, "\n"))
	if err := os.WriteFile(e.config, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.checkNoLeaks() })
	return e
}

// cmd builds a kabuto command with the env's global flags.
func (e *env) cmd(args ...string) *exec.Cmd {
	if len(args) > 1 && (args[0] == "create" || args[0] == "run") {
		e.ids[args[len(args)-1]] = true
	}
	full := append([]string{"--root", e.root, "--config", e.config}, args...)
	return exec.Command(kabutoBin, full...)
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs kabuto to completion (bounded) with stdin.
func (e *env) run(stdin string, args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := e.cmd(args...)
	// Files, not pipes: a container's shim keeps create's stdout (it is the
	// container's), and a pipe would keep Wait waiting for it.
	out, err := os.CreateTemp(e.dir, "stdout-")
	if err != nil {
		e.t.Fatal(err)
	}
	errf, err := os.CreateTemp(e.dir, "stderr-")
	if err != nil {
		e.t.Fatal(err)
	}
	defer out.Close()
	defer errf.Close()
	c.Stdout, c.Stderr = out, errf
	if stdin != "" {
		c.Stdin = strings.NewReader(stdin)
	}
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	read := func(f *os.File) string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
	select {
	case <-done:
	case <-ctx.Done():
		c.Process.Kill()
		<-done
		e.t.Fatalf("kabuto %v timed out; stderr: %s", args, read(errf))
	}
	return result{read(out), read(errf), c.ProcessState.ExitCode()}
}

// must runs kabuto and fails the test unless it exits 0.
func (e *env) must(args ...string) string {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		e.t.Fatalf("kabuto %v: exit %d: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

var (
	rootfsOnce sync.Once
	rootfsDir  string
	rootfsErr  error
)

// sharedRootfs is a busybox root filesystem, made once per test binary.
func sharedRootfs(t *testing.T) string {
	rootfsOnce.Do(func() {
		rootfsDir, rootfsErr = os.MkdirTemp("", "kabuto-rootfs-")
		if rootfsErr != nil {
			return
		}
		if rootfsErr = os.Chmod(rootfsDir, 0o755); rootfsErr != nil {
			return
		}
		rootfsErr = makeRootfs(rootfsDir)
	})
	if rootfsErr != nil {
		t.Fatal(rootfsErr)
	}
	return rootfsDir
}

func makeRootfs(dir string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp", "root", "home/user", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	b, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", a))
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return os.Chown(filepath.Join(dir, "home/user"), 1000, 1000)
}

// bundle makes a bundle whose rootfs is a bind of the shared busybox tree
// (a relative "rootfs" symlink would not do: the runtime resolves root.path)
// and whose config runs args without a terminal.
func (e *env) bundle(args ...string) (string, *specs.Spec) {
	e.t.Helper()
	b := filepath.Join(e.dir, fmt.Sprintf("bundle-%d", time.Now().UnixNano()))
	if err := os.MkdirAll(b, 0o755); err != nil {
		e.t.Fatal(err)
	}
	r := e.run("", "spec", "--bundle", b)
	if r.code != 0 {
		e.t.Fatalf("kabuto spec: %s", r.stderr)
	}
	spec := readSpec(e.t, b)
	spec.Root.Path = sharedRootfs(e.t)
	spec.Root.Readonly = false
	spec.Process.Terminal = false
	spec.Process.Args = args
	writeSpec(e.t, b, spec)
	return b, spec
}

func readSpec(t *testing.T, bundle string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func writeSpec(t *testing.T, bundle string, s *specs.Spec) {
	t.Helper()
	data, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// state returns the parsed output of `kabuto state`.
func (e *env) state(id string) map[string]any {
	e.t.Helper()
	out := e.must("state", id)
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		e.t.Fatalf("state output %q: %v", out, err)
	}
	return st
}

// waitStatus polls `kabuto state` until the status is want.
func (e *env) waitStatus(id, want string, within time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		last, _ = e.state(id)["status"].(string)
		if last == want {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.t.Fatalf("container %s: status %q, want %q", id, last, want)
}

// checkNoLeaks asserts that nothing kabuto made for this env remains:
// processes (QEMU, shims), mounts, state directories.
func (e *env) checkNoLeaks() {
	t := e.t
	// Processes are checked by their command line naming our root.
	deadline := time.Now().Add(5 * time.Second)
	var leaked []string
	for {
		leaked = leaked[:0]
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			cmd := strings.ReplaceAll(string(b), "\x00", " ")
			if strings.Contains(cmd, e.root) {
				leaked = append(leaked, filepath.Base(filepath.Dir(p))+": "+cmd)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range leaked {
		t.Errorf("leaked process %s", l)
		// Reported; now end it, so that it cannot disturb later tests.
		if pid, err := strconv.Atoi(strings.SplitN(l, ":", 2)[0]); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, e.root) {
			t.Errorf("leaked mount: %s", l)
			// Detach it before TempDir's removal runs: removing through a
			// leaked bind of the shared rootfs would empty it for every
			// later test.
			if f := strings.Fields(l); len(f) > 4 {
				syscall.Unmount(strings.ReplaceAll(f[4], "\\040", " "), syscall.MNT_DETACH)
			}
		}
	}
	ents, _ := os.ReadDir(e.root)
	for _, d := range ents {
		t.Errorf("leaked state: %s", filepath.Join(e.root, d.Name()))
	}
	// Only this env's containers: other runs may share the machine.
	for id := range e.ids {
		if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/*?[") {
			continue // refused ids (TestBadIDs)
		}
		dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*/kabuto", id))
		for _, d := range dirs {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				t.Errorf("leaked cgroup: %s", d)
			}
		}
	}
}

func specsBind(src, dst string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "rw"}}
}
