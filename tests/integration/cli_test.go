package integration

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestVersion(t *testing.T) {
	e := newEnv(t)
	re := regexp.MustCompile(`^kabuto version \S+\ncommit: \S+\nspec: 1\.\d+\.\d+\S*\ngo: go\S+\n$`)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		if out := e.must(args...); !re.MatchString(out) {
			t.Errorf("kabuto %v printed %q", args, out)
		}
	}
}

// TestLogFileJSON: docker and containerd read the last error line of --log.
func TestLogFileJSON(t *testing.T) {
	e := newEnv(t)
	logf := filepath.Join(e.dir, "log.json")
	r := e.run("", "--log", logf, "--log-format", "json", "kill", "ghost", "9")
	if r.code == 0 {
		t.Fatal("kill of an unknown container succeeded")
	}
	b, err := os.ReadFile(logf)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	var last map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("log line %q: %v", lines[len(lines)-1], err)
	}
	if last["level"] != "error" || !strings.Contains(last["msg"].(string), "ghost does not exist") {
		t.Errorf("log line %v", last)
	}
	if !strings.Contains(r.stderr, "ghost does not exist") {
		t.Errorf("stderr %q", r.stderr)
	}
}

// pipeClosesQuickly runs kabuto with stdout and stderr on a pipe and checks
// that the pipe reaches EOF when kabuto exits: nothing it leaves behind may
// hold it (containerd's shim reads these outputs to EOF).
func pipeClosesQuickly(t *testing.T, e *env, args ...string) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := e.cmd(args...)
	c.Stdout, c.Stderr = pw, pw
	devnull, _ := os.Open(os.DevNull)
	defer devnull.Close()
	c.Stdin = devnull
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if err := c.Wait(); err != nil {
		t.Fatalf("kabuto %v: %v", args, err)
	}
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, pr); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Errorf("kabuto %v: its stdout is still held open after it exited", args)
	}
	pr.Close()
}

func TestVerbsReleaseOutput(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sleep", "100")
	spec.Process.Terminal = true
	writeSpec(t, b, spec)
	sock := filepath.Join(e.dir, "c.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if m := recvConsole(t, ln); m != nil {
			defer m.Close()
			io.Copy(io.Discard, m)
		}
	}()
	// A terminal create's own stdout is not the container's: it must close.
	pipeClosesQuickly(t, e, "create", "--bundle", b, "--console-socket", sock, "rel")
	for _, args := range [][]string{{"start", "rel"}, {"pause", "rel"}, {"resume", "rel"}, {"kill", "rel", "KILL"}} {
		pipeClosesQuickly(t, e, args...)
	}
	e.waitStatus("rel", "stopped", 20*time.Second)
	pipeClosesQuickly(t, e, "delete", "rel")
	pipeClosesQuickly(t, e, "delete", "--force", "rel")
}

// TestShimIgnoresLeakedFds: a descriptor the caller leaked (containerd's
// ttrpc socket) must not reach the shim or QEMU.
func TestShimIgnoresLeakedFds(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "100")
	leak, err := os.CreateTemp(e.dir, "leak-")
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	c := e.cmd("create", "--bundle", b, "fds")
	c.ExtraFiles = []*os.File{leak}
	// The container's stdio is a file: a pipe would stay open with the shim.
	c.Stdout, c.Stderr = leak, leak
	if err := c.Run(); err != nil {
		b, _ := os.ReadFile(leak.Name())
		t.Fatalf("create: %v %s", err, b)
	}
	defer e.run("", "delete", "--force", "fds")
	pids, _ := exec.Command("pgrep", "-f", e.root).Output()
	for _, pid := range strings.Fields(string(pids)) {
		fds, _ := filepath.Glob("/proc/" + pid + "/fd/*")
		for _, fd := range fds {
			if target, _ := os.Readlink(fd); target == leak.Name() && !strings.HasSuffix(fd, "/1") && !strings.HasSuffix(fd, "/2") {
				t.Errorf("process %s holds the leaked fd %s", pid, fd)
			}
		}
	}
}
