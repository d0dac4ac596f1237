package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunPrintsGuestKernel(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("uname", "-r")
	r := e.run("", "run", "--bundle", b, "uname")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var host syscall.Utsname
	syscall.Uname(&host)
	hostRel := strings.TrimRight(string(int8sToBytes(host.Release[:])), "\x00")
	got := strings.TrimSpace(r.stdout)
	if got == "" || got == hostRel {
		t.Fatalf("guest kernel %q, host kernel %q: not running in a VM", got, hostRel)
	}
	if !strings.HasSuffix(got, "-kabuto") {
		t.Errorf("guest kernel %q is not kabuto's", got)
	}
}

func int8sToBytes(a []int8) []byte {
	b := make([]byte, len(a))
	for i, c := range a {
		b[i] = byte(c)
	}
	return b
}

func TestExitCodeAndStreams(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 42")
	r := e.run("", "run", "--bundle", b, "exit42")
	if r.code != 42 {
		t.Fatalf("exit code %d, want 42 (stderr %q)", r.code, r.stderr)
	}
	if r.stdout != "to-stdout\n" || r.stderr != "to-stderr\n" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
}

func TestStdinPassesThrough(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sh", "-c", "tr a-z A-Z")
	input := strings.Repeat("hello from the host\n", 2000) // 40 KB, more than one read
	r := e.run(input, "run", "--bundle", b, "stdin")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != strings.ToUpper(input) {
		t.Errorf("got %d bytes back, want %d", len(r.stdout), len(input))
	}
}

func TestProcessSettings(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sh", "-c", `echo "user=$(id -u):$(id -g) groups=$(id -G) cwd=$(pwd) host=$(hostname) foo=$FOO"`)
	spec.Process.Env = append(spec.Process.Env, "FOO=bar baz")
	spec.Process.Cwd = "/home/user"
	spec.Process.User.UID, spec.Process.User.GID = 1000, 1000
	spec.Process.User.AdditionalGids = []uint32{2000}
	spec.Hostname = "vmhost"
	writeSpec(t, b, spec)
	r := e.run("", "run", "--bundle", b, "settings")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	want := "user=1000:1000 groups=1000 2000 cwd=/home/user host=vmhost foo=bar baz\n"
	if r.stdout != want {
		t.Errorf("got  %q\nwant %q", r.stdout, want)
	}
}

func TestLifecycleStates(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sh", "-c", "sleep 2")
	pidFile := filepath.Join(e.dir, "pid")
	e.must("create", "--bundle", b, "--pid-file", pidFile, "lc")
	st := e.state("lc")
	if st["status"] != "created" {
		t.Fatalf("after create: %v", st)
	}
	pidb, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(pidb)) != strings.TrimSpace(formatNum(st["pid"])) {
		t.Errorf("pid file %q, state pid %v", pidb, st["pid"])
	}
	if st["bundle"] != b || st["id"] != "lc" || st["ociVersion"] == "" {
		t.Errorf("state: %v", st)
	}
	e.must("start", "lc")
	if s := e.state("lc")["status"]; s != "running" {
		t.Errorf("after start: %v", s)
	}
	r := e.run("", "start", "lc")
	if r.code == 0 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("second start: %d %q", r.code, r.stderr)
	}
	e.waitStatus("lc", "stopped", 20*time.Second)
	if pid := e.state("lc")["pid"]; pid != float64(0) {
		t.Errorf("stopped container reports pid %v", pid)
	}
	out := e.must("list", "--format", "json")
	if !strings.Contains(out, `"id":"lc"`) || !strings.Contains(out, `"status":"stopped"`) {
		t.Errorf("list: %s", out)
	}
	if out := e.must("list", "-q"); strings.TrimSpace(out) != "lc" {
		t.Errorf("list -q: %q", out)
	}
	e.must("delete", "lc")
	r = e.run("", "state", "lc")
	if r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("state after delete: %d %q", r.code, r.stderr)
	}
}

func formatNum(v any) string {
	if f, ok := v.(float64); ok {
		return strconv.FormatInt(int64(f), 10)
	}
	return fmt.Sprint(v)
}

func TestKillSIGTERM(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sleep", "100")
	// The init of a pid namespace ignores signals it has no handler for
	// (with runc too); without one, sleep dies of SIGTERM like any process.
	var ns []specs.LinuxNamespace
	for _, n := range spec.Linux.Namespaces {
		if n.Type != specs.PIDNamespace {
			ns = append(ns, n)
		}
	}
	spec.Linux.Namespaces = ns
	writeSpec(t, b, spec)
	c := e.cmd("run", "--bundle", b, "sleeper")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	defer func() {
		c.Process.Kill()
		e.run("", "delete", "--force", "sleeper")
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		r := e.run("", "state", "sleeper")
		if r.code == 0 && strings.Contains(r.stdout, `"running"`) {
			break
		}
		select {
		case <-done:
			t.Fatalf("run ended early: %v", c.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("container never ran")
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.must("kill", "sleeper", "TERM")
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("run did not end after SIGTERM")
	}
	if code := c.ProcessState.ExitCode(); code != 143 {
		t.Errorf("exit code %d, want 143", code)
	}
}

func TestKillAndDeleteErrors(t *testing.T) {
	e := newEnv(t)
	r := e.run("", "kill", "nosuch", "KILL")
	if r.code == 0 || !strings.Contains(r.stderr, "nosuch does not exist") {
		t.Errorf("kill unknown: %d %q", r.code, r.stderr)
	}
	if r := e.run("", "delete", "--force", "nosuch"); r.code != 0 || r.stderr != "" || r.stdout != "" {
		t.Errorf("delete --force unknown: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if r := e.run("", "delete", "nosuch"); r.code == 0 {
		t.Errorf("delete unknown succeeded")
	}
	b, _ := e.bundle("sleep", "100")
	e.must("create", "--bundle", b, "k1")
	for _, sig := range []string{"FOO", "SIGBOGUS", "0", "99"} {
		if r := e.run("", "kill", "k1", sig); r.code == 0 || !strings.Contains(r.stderr, "unknown signal") {
			t.Errorf("kill %s: %d %q", sig, r.code, r.stderr)
		}
	}
	e.must("start", "k1")
	if r := e.run("", "delete", "k1"); r.code == 0 || !strings.Contains(r.stderr, "not stopped") {
		t.Errorf("delete of a running container without --force: %d %q", r.code, r.stderr)
	}
	e.must("kill", "k1", "KILL")
	e.waitStatus("k1", "stopped", 20*time.Second)
	if r := e.run("", "kill", "k1", "TERM"); r.code == 0 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("kill of a stopped container: %d %q", r.code, r.stderr)
	}
	e.must("delete", "k1")
}

func TestDeleteForceRunning(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "100")
	e.must("run", "--detach", "--bundle", b, "df")
	if s := e.state("df")["status"]; s != "running" {
		t.Fatalf("status %v", s)
	}
	e.must("delete", "--force", "df")
}

func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "100")
	e.must("run", "-d", "--bundle", b, "pr")
	e.must("pause", "pr")
	if s := e.state("pr")["status"]; s != "paused" {
		t.Errorf("after pause: %v", s)
	}
	if r := e.run("", "pause", "pr"); r.code == 0 {
		t.Error("pausing a paused container succeeded")
	}
	e.must("resume", "pr")
	if s := e.state("pr")["status"]; s != "running" {
		t.Errorf("after resume: %v", s)
	}
	e.must("delete", "-f", "pr")
}

func TestVMDeathShowsStopped(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "100")
	e.must("run", "-d", "--bundle", b, "dead")
	out, err := exec.Command("pgrep", "-f", "kabuto-dead").Output()
	if err != nil {
		t.Fatalf("qemu not found: %v", err)
	}
	for _, pid := range strings.Fields(string(out)) {
		exec.Command("kill", "-9", pid).Run()
	}
	e.waitStatus("dead", "stopped", 10*time.Second)
	e.must("delete", "dead")
}

func TestCycles(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("true")
	n := 20
	if testing.Short() {
		n = 3
	}
	for i := 0; i < n; i++ {
		e.must("create", "--bundle", b, "cycle")
		e.must("start", "cycle")
		e.waitStatus("cycle", "stopped", 20*time.Second)
		e.must("delete", "cycle")
	}
}
