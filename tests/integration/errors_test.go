package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// expectFail runs kabuto and checks it fails with msg on one line of stderr.
func (e *env) expectFail(msg string, args ...string) {
	e.t.Helper()
	r := e.run("", args...)
	if r.code == 0 {
		e.t.Errorf("kabuto %v succeeded, want failure %q", args, msg)
		return
	}
	if !strings.Contains(r.stderr, msg) {
		e.t.Errorf("kabuto %v: stderr %q, want %q", args, r.stderr, msg)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 0 {
		e.t.Errorf("kabuto %v: error spans %d lines: %q", args, n+1, r.stderr)
	}
}

func TestBadBundles(t *testing.T) {
	e := newEnv(t)
	empty := t.TempDir()
	e.expectFail("config.json not found", "create", "--bundle", empty, "c1")

	b, spec := e.bundle("true")
	os.WriteFile(filepath.Join(b, "config.json"), []byte(`{"ociVersion": "1.0.2", "process": {`), 0o644)
	e.expectFail("config.json is malformed", "create", "--bundle", b, "c2")

	spec.Process.Args = nil
	writeSpec(t, b, spec)
	e.expectFail("process.args must not be empty", "create", "--bundle", b, "c3")

	spec.Process.Args = []string{"true"}
	spec.Process.Cwd = "relative/dir"
	writeSpec(t, b, spec)
	e.expectFail("config.json is invalid", "create", "--bundle", b, "c4")

	spec.Process.Cwd = "/"
	spec.Root.Path = filepath.Join(t.TempDir(), "nonexistent")
	writeSpec(t, b, spec)
	e.expectFail("does not exist", "create", "--bundle", b, "c5")

	spec.Root.Path = sharedRootfs(t)
	spec.Process.Args = []string{"no-such-binary"}
	writeSpec(t, b, spec)
	e.expectFail(`exec: "no-such-binary": executable file not found in $PATH`, "create", "--bundle", b, "c6")

	spec.Process.Args = []string{"true"}
	spec.Process.Terminal = true
	writeSpec(t, b, spec)
	e.expectFail("cannot allocate tty", "create", "--bundle", b, "c7")
	spec.Process.Terminal = false

	spec.Mounts = append(spec.Mounts, specsBind(filepath.Join(t.TempDir(), "missing"), "/data"))
	writeSpec(t, b, spec)
	e.expectFail("no such file or directory", "create", "--bundle", b, "c8")
}

func TestBadIDs(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "10")
	for _, tc := range []struct{ id, msg string }{
		{"", "container id cannot be empty"},
		{"a/b", "invalid container id"},
		{"..", "invalid container id"},
		{"../escape", "invalid container id"},
		{"with space", "invalid container id"},
		{strings.Repeat("x", 1025), "invalid container id"},
	} {
		e.expectFail(tc.msg, "create", "--bundle", b, tc.id)
		e.expectFail(tc.msg, "state", tc.id)
		e.expectFail(tc.msg, "delete", tc.id)
	}
	if _, err := os.Stat(filepath.Join(e.root, "..", "escape")); err == nil {
		t.Error("a path trick created a directory outside the root")
	}
	e.must("create", "--bundle", b, "dup")
	e.expectFail("already exists", "create", "--bundle", b, "dup")
	if s := e.state("dup")["status"]; s != "created" {
		t.Errorf("the first container was disturbed: %v", s)
	}
	e.must("delete", "--force", "dup")
}

func TestMissingKernelAndQEMU(t *testing.T) {
	e := newEnv(t, `path = "/nonexistent/qemu-system-x86_64"`)
	b, _ := e.bundle("true")
	e.expectFail("qemu binary not found", "create", "--bundle", b, "noqemu")

	e2 := newEnv(t)
	conf, _ := os.ReadFile(e2.config)
	os.WriteFile(e2.config, []byte(strings.Replace(string(conf), kernel, "/nonexistent/vmlinux", 1)), 0o644)
	b2, _ := e2.bundle("true")
	e2.expectFail("guest kernel /nonexistent/vmlinux", "create", "--bundle", b2, "nokernel")

	e3 := newEnv(t, `machine_type = "bogus"`)
	e3.expectFail("machine_type", "create", "--bundle", b2, "badconf")
}

// TestGuestNeverAnswers boots a guest whose init is not the agent: create
// must give up within the configured timeout and tear the VM down.
func TestGuestNeverAnswers(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "initrd")
	os.MkdirAll(filepath.Join(root, "bin"), 0o755)
	bb, _ := os.ReadFile(busybox)
	os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755)
	os.WriteFile(filepath.Join(root, "init"), []byte("#!/bin/busybox sh\n/bin/busybox sleep 1000\n"), 0o755)
	img := filepath.Join(dir, "silent.img")
	cmd := exec.Command("sh", "-c", "cd "+root+" && find . | cpio --quiet -o -H newc > "+img)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v %s", err, out)
	}
	e := newEnv(t)
	conf, _ := os.ReadFile(e.config)
	c := strings.Replace(string(conf), initrd, img, 1)
	c = strings.Replace(c, "start_timeout_seconds = 60", "start_timeout_seconds = 4", 1)
	os.WriteFile(e.config, []byte(c), 0o644)
	b, _ := e.bundle("true")
	start := time.Now()
	e.expectFail("did not answer within 4s", "create", "--bundle", b, "silent")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("create took %v to give up", d)
	}
}
