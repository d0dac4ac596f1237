package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The reaper helper: the test binary re-executed with these variables
// becomes a child subreaper, runs one kabuto command (a detached exec),
// prints "pid N" (read from the pid file), then reaps that orphaned shim
// and prints "status N", with 128+signal for a signal. A detached exec's
// shim is what containerd's shim reaps: its status must be the process's.
const (
	reaperPidFile = "KABUTO_TEST_REAPER_PIDFILE"
	reaperArgv    = "KABUTO_TEST_REAPER_ARGV"
	reaperOut     = "KABUTO_TEST_REAPER_OUT"
)

func init() {
	pidFile := os.Getenv(reaperPidFile)
	if pidFile == "" {
		return
	}
	var argv []string
	json.Unmarshal([]byte(os.Getenv(reaperArgv)), &argv)
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Printf("error subreaper: %v\n", err)
		os.Exit(0)
	}
	out, err := os.OpenFile(os.Getenv(reaperOut), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(0)
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.Stdout, c.Stderr = out, out
	if err := c.Run(); err != nil {
		fmt.Printf("error kabuto: %v\n", err)
		os.Exit(0)
	}
	b, _ := os.ReadFile(pidFile)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		fmt.Printf("error pid file %q\n", b)
		os.Exit(0)
	}
	fmt.Printf("pid %d\n", pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		fmt.Printf("error wait4: %v\n", err)
		os.Exit(0)
	}
	code := ws.ExitStatus()
	if ws.Signaled() {
		code = 128 + int(ws.Signal())
	}
	fmt.Printf("status %d\n", code)
	os.Exit(0)
}

// reaped is a detached exec run under the reaper helper.
type reaped struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines *bufio.Scanner
	pid   int
	out   string // the exec's own stdout and stderr (a file)
}

// reap runs `kabuto args...` (a detached exec writing its shim's pid to
// pidFile) under the reaper helper and returns once the pid is known.
func (e *env) reap(pidFile string, args ...string) *reaped {
	e.t.Helper()
	argv, _ := json.Marshal(e.cmd(args...).Args)
	out := filepath.Join(e.dir, fmt.Sprintf("reaped-%d.out", time.Now().UnixNano()))
	c := exec.Command(os.Args[0], "-test.run=^$")
	c.Env = append(os.Environ(), reaperPidFile+"="+pidFile, reaperArgv+"="+string(argv), reaperOut+"="+out)
	stdout, err := c.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	r := &reaped{t: e.t, cmd: c, lines: bufio.NewScanner(stdout), out: out}
	line := r.line()
	if _, err := fmt.Sscanf(line, "pid %d", &r.pid); err != nil {
		b, _ := os.ReadFile(out)
		c.Wait()
		e.t.Fatalf("reaper: %q; kabuto said %s", line, b)
	}
	return r
}

func (r *reaped) line() string {
	done := make(chan bool, 1)
	go func() { done <- r.lines.Scan() }()
	select {
	case <-done:
		return r.lines.Text()
	case <-time.After(2 * time.Minute):
		r.cmd.Process.Kill()
		r.t.Fatal("reaper helper timed out")
		return ""
	}
}

// status waits for the shim's exit status.
func (r *reaped) status() int {
	r.t.Helper()
	line := r.line()
	r.cmd.Wait()
	var code int
	if _, err := fmt.Sscanf(line, "status %d", &code); err != nil {
		r.t.Fatalf("reaper: %q", line)
	}
	return code
}

func (r *reaped) output() string {
	b, _ := os.ReadFile(r.out)
	return string(b)
}

// expectExit runs kabuto and checks its exit status and that stderr has msg.
func (e *env) expectExit(code int, msg string, args ...string) result {
	e.t.Helper()
	r := e.run("", args...)
	if r.code != code || !strings.Contains(r.stderr, msg) {
		e.t.Errorf("kabuto %v: exit %d, stderr %q; want exit %d and %q", args, r.code, r.stderr, code, msg)
	}
	return r
}

// capLine returns a capability mask (CapEff, ...) of /proc/<pid>/status.
func capLine(status, field string) uint64 {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return math.MaxUint64
}

func listenUnix(t *testing.T, path string) *net.UnixListener {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestVerbsExecFlags covers every flag of exec against one container,
// then ps, update, events, kill --all and the state through pause.
func TestVerbsExecFlags(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sleep", "1000")
	// exec --no-new-privs must be what sets it, and --cgroup needs a
	// writable cgroup to make a sub-cgroup in.
	spec.Process.NoNewPrivileges = false
	for i, m := range spec.Mounts {
		if m.Destination == "/sys/fs/cgroup" {
			spec.Mounts[i].Options = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
		}
	}
	writeSpec(t, b, spec)
	pidFile := filepath.Join(e.dir, "init.pid")
	e.must("create", "--bundle", b, "--pid-file", pidFile, "vx")
	defer e.run("", "delete", "--force", "vx")
	st := e.state("vx")
	if st["status"] != "created" || st["pid"] == float64(0) {
		t.Fatalf("after create: %v", st)
	}
	e.must("start", "vx")
	if st := e.state("vx"); st["status"] != "running" {
		t.Fatalf("after start: %v", st)
	}

	t.Run("process.json", func(t *testing.T) {
		e := *e
		e.t = t
		p := specs.Process{Args: []string{"sh", "-c", `echo "$X $(pwd) $(id -u):$(id -g)"`}, Cwd: "/tmp", Env: []string{"PATH=/bin", "X=fromjson"},
			User: specs.User{UID: 1000, GID: 1000}}
		pj := filepath.Join(e.dir, "process.json")
		data, _ := json.Marshal(p)
		os.WriteFile(pj, data, 0o644)
		// The process flags are ignored with --process, as runc ignores them.
		r := e.run("", "exec", "--process", pj, "--env", "X=fromflag", "--cwd", "/", "vx")
		if r.code != 0 || r.stdout != "fromjson /tmp 1000:1000\n" {
			t.Errorf("exec -p: %d %q %q", r.code, r.stdout, r.stderr)
		}
		p.Cwd = ""
		data, _ = json.Marshal(p)
		os.WriteFile(pj, data, 0o644)
		e.expectExit(255, "exec failed: Cwd property must not be empty", "exec", "-p", pj, "vx")
		os.WriteFile(pj, []byte("{not json"), 0o644)
		e.expectExit(255, "process.json is malformed", "exec", "-p", pj, "vx")
		// LSM fields of process.json are ignored (docker sets apparmorProfile
		// on AppArmor hosts), as the container's own are.
		p.Cwd, p.ApparmorProfile, p.SelinuxLabel = "/", "docker-default", "system_u:system_r:container_t:s0"
		data, _ = json.Marshal(p)
		os.WriteFile(pj, data, 0o644)
		if r := e.run("", "exec", "-p", pj, "vx"); r.code != 0 || r.stdout != "fromjson / 1000:1000\n" {
			t.Errorf("exec -p with LSM fields: %d %q %q", r.code, r.stdout, r.stderr)
		}
	})

	t.Run("env cwd user", func(t *testing.T) {
		e := *e
		e.t = t
		r := e.run("", "exec", "--env", "A=1,2", "-e", "A=3,4", "-e", "TERM=dumb", "--cwd", "/home/user",
			"--user", "1000:1000", "--additional-gids", "2000", "-g", "3000", "vx",
			"sh", "-c", `echo "$A|$TERM|$(pwd)|$(id -u):$(id -g)|$(id -G)"; env | grep -c '^A='`)
		if r.code != 0 || r.stdout != "3,4|dumb|/home/user|1000:1000|1000 2000 3000\n1\n" {
			t.Errorf("exec --env/--cwd/--user/-g: %d %q %q", r.code, r.stdout, r.stderr)
		}
		if r := e.run("", "exec", "--user", "1000", "vx", "id", "-u"); r.stdout != "1000\n" {
			t.Errorf("exec --user uid only: %q %q", r.stdout, r.stderr)
		}
		e.expectExit(255, "exec failed: parsing root as int for uid failed", "exec", "--user", "root", "vx", "true")
		e.expectExit(255, "chdir to cwd", "exec", "--cwd", "/nonexistent", "vx", "true")
		e.expectExit(255, "executable file not found", "exec", "vx", "no-such-command")
		e.expectExit(255, "exec failed: container ghost does not exist", "exec", "ghost", "true")
		e.expectExit(9, "", "exec", "vx", "sh", "-c", "exit 9")
	})

	t.Run("cap no-new-privs lsm preserve-fds", func(t *testing.T) {
		e := *e
		e.t = t
		base := e.must("exec", "vx", "cat", "/proc/self/status")
		withCaps := e.must("exec", "--cap", "CAP_NET_ADMIN", "-c", "sys_time", "vx", "cat", "/proc/self/status")
		netAdmin, sysTime := uint64(1)<<12, uint64(1)<<25
		for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
			if capLine(base, f)&netAdmin != 0 || capLine(withCaps, f) != capLine(base, f)|netAdmin|sysTime {
				t.Errorf("%s: base %x, with --cap %x", f, capLine(base, f), capLine(withCaps, f))
			}
		}
		if capLine(withCaps, "CapInh") != capLine(base, "CapInh") {
			t.Errorf("--cap changed the inheritable set: %x -> %x", capLine(base, "CapInh"), capLine(withCaps, "CapInh"))
		}
		if !strings.Contains(base, "NoNewPrivs:\t0") {
			t.Errorf("no_new_privs set without the flag")
		}
		if out := e.must("exec", "--no-new-privs", "vx", "cat", "/proc/self/status"); !strings.Contains(out, "NoNewPrivs:\t1") {
			t.Errorf("--no-new-privs not applied")
		}
		e.expectExit(255, "AppArmor is not supported", "exec", "--apparmor", "unconfined", "vx", "true")
		e.expectExit(255, "selinux is disabled or not supported", "exec", "--process-label", "system_u:system_r:container_t:s0", "vx", "true")
		e.expectExit(255, "--preserve-fds is not supported", "exec", "--preserve-fds", "1", "vx", "true")
		if r := e.run("", "exec", "--preserve-fds", "0", "vx", "true"); r.code != 0 {
			t.Errorf("--preserve-fds 0: %d %q", r.code, r.stderr)
		}
	})

	t.Run("detach pid-file status", func(t *testing.T) {
		e := *e
		e.t = t
		pf := filepath.Join(e.dir, "exec.pid")
		r := e.reap(pf, "exec", "--detach", "--pid-file", pf, "vx", "sh", "-c", "sleep 1; echo done; exit 7")
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", r.pid))
		if !strings.Contains(string(cmdline), "shim") || !strings.Contains(string(cmdline), e.root) {
			t.Errorf("pid file names %d: %q, not the exec's shim", r.pid, cmdline)
		}
		var js []int
		json.Unmarshal([]byte(e.must("ps", "--format", "json", "vx")), &js)
		if !containsInt(js, r.pid) {
			t.Errorf("ps --format json %v lacks the exec shim %d", js, r.pid)
		}
		if code := r.status(); code != 7 || r.output() != "done\n" {
			t.Errorf("detached exec shim exited %d (want 7), output %q", code, r.output())
		}
		// A signal to the shim reaches the process; the shim reports it.
		r = e.reap(pf, "exec", "-d", "--pid-file", pf, "vx", "sleep", "100")
		time.Sleep(300 * time.Millisecond)
		unix.Kill(r.pid, unix.SIGTERM)
		if code := r.status(); code != 143 {
			t.Errorf("detached exec killed with SIGTERM: shim exited %d, want 143", code)
		}
	})

	t.Run("tty console-socket pidfd-socket", func(t *testing.T) {
		e := *e
		e.t = t
		e.expectExit(255, "cannot allocate tty if runc will detach without setting console socket", "exec", "-d", "-t", "vx", "true")
		sock := filepath.Join(e.dir, "exec-console.sock")
		ln := listenUnix(t, sock)
		e.expectExit(255, "cannot use console socket if runc will not detach or allocate tty", "exec", "--console-socket", sock, "vx", "true")
		pidfdSock := filepath.Join(e.dir, "pidfd.sock")
		pln := listenUnix(t, pidfdSock)
		masterc := make(chan *os.File, 1)
		go func() { masterc <- recvConsole(t, ln) }()
		pidfdc := make(chan *os.File, 1)
		go func() { pidfdc <- recvConsole(t, pln) }()
		pf := filepath.Join(e.dir, "tty.pid")
		r := e.reap(pf, "exec", "-d", "-t", "--console-socket", sock, "--pidfd-socket", pidfdSock, "--pid-file", pf, "vx", "sh")
		master := <-masterc
		defer master.Close()
		pidfd := <-pidfdc
		defer pidfd.Close()
		info, _ := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", pidfd.Fd()))
		if !regexp.MustCompile(fmt.Sprintf(`(?m)^Pid:\s+%d$`, r.pid)).Match(info) {
			t.Errorf("pidfd is not the shim's (%d): %s", r.pid, info)
		}
		var out bytes.Buffer
		readDone := make(chan struct{})
		go func() { io.Copy(&out, master); close(readDone) }()
		master.Write([]byte("tty; test -t 0 && echo IS-A-TTY; exit 3\n"))
		if code := r.status(); code != 3 {
			t.Errorf("tty exec's shim exited %d, want 3", code)
		}
		select {
		case <-readDone:
		case <-time.After(10 * time.Second):
			t.Error("the terminal did not close after the exec's shim exited")
		}
		if got := out.String(); !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "IS-A-TTY") {
			t.Errorf("terminal output: %q", got)
		}
	})

	t.Run("cgroup ps kill-all", func(t *testing.T) {
		e := *e
		e.t = t
		e.must("exec", "vx", "mkdir", "/sys/fs/cgroup/sub")
		for _, arg := range []string{"sub", "pids,memory:/sub/"} {
			if out := e.must("exec", "--cgroup", arg, "vx", "cat", "/proc/self/cgroup"); out != "0::/sub\n" {
				t.Errorf("exec --cgroup %s: %q", arg, out)
			}
		}
		e.expectExit(255, "does not exist", "exec", "--cgroup", "nosuch", "vx", "true")
		e.expectExit(255, "must stay inside", "exec", "--cgroup", "../x", "vx", "true")
		e.expectExit(255, "path must be the same", "exec", "--cgroup", "pids:sub", "--cgroup", "memory:other", "vx", "true")
		e.must("exec", "-d", "--cgroup", "sub", "vx", "sleep", "301")

		table := e.must("ps", "vx")
		if !strings.Contains(table, "sleep 1000") || !strings.Contains(table, "init") || !strings.Contains(table, "sleep 301") {
			t.Errorf("ps table lacks the init or the process in the sub-cgroup:\n%s", table)
		}
		if out := e.must("ps", "vx", "-o", "pid,comm"); !strings.Contains(out, "COMMAND") || !strings.Contains(out, "sleep") {
			t.Errorf("ps -o pid,comm: %q", out)
		}
		e.expectExit(1, "", "ps", "--format", "yaml", "vx")

		// The init (pid 1 of its namespace, no handler) ignores SIGTERM;
		// every other process, in any cgroup of the container, dies of it.
		e.must("kill", "--all", "vx", "TERM")
		deadline := time.Now().Add(20 * time.Second)
		for strings.Contains(e.must("ps", "vx"), "sleep 301") && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if table := e.must("ps", "vx"); strings.Contains(table, "sleep 301") || !strings.Contains(table, "sleep 1000") {
			t.Errorf("after kill --all TERM:\n%s", table)
		}
	})

	t.Run("update", func(t *testing.T) {
		e := *e
		e.t = t
		e.must("update", "--memory", "48m", "--memory-reservation", "32M", "--memory-swap", "-1", "--cpu-share", "512",
			"--cpu-quota", "20000", "--cpu-period", "100000", "--cpuset-cpus", "0", "--cpuset-mems", "0",
			"--pids-limit", "99", "--blkio-weight", "500", "vx")
		want := map[string]string{
			"memory.max": "50331648", "memory.low": "33554432", "cpu.weight": "20", "cpu.max": "20000 100000",
			"pids.max": "99", "io.weight": "default 4950",
		}
		check := func() {
			for f, v := range want {
				if got := strings.TrimSpace(e.must("exec", "vx", "cat", "/sys/fs/cgroup/"+f)); got != v {
					t.Errorf("%s = %q, want %q", f, got, v)
				}
			}
		}
		check()
		// What bounds the VM as a whole goes to its host cgroup: the CPU
		// time and the host CPUs (cpuset names host CPUs, so the guest
		// leaves it alone).
		for f, v := range map[string]string{
			"cpu/kabuto/vx/cpu.cfs_quota_us": "20000", "cpu/kabuto/vx/cpu.shares": "512",
			"cpuset/kabuto/vx/cpuset.cpus": "0", "cpuset/kabuto/vx/cpuset.mems": "0", "pids/kabuto/vx/pids.max": "99",
		} {
			b, err := os.ReadFile("/sys/fs/cgroup/" + f)
			if _, v1 := os.Stat("/sys/fs/cgroup/cpu"); err != nil && v1 == nil {
				t.Errorf("host cgroup file: %v", err)
			}
			if err == nil && strings.TrimSpace(string(b)) != v {
				t.Errorf("host %s = %q, want %q", f, strings.TrimSpace(string(b)), v)
			}
		}
		// --resources: a file, then standard input; the flags are ignored.
		res := filepath.Join(e.dir, "res.json")
		os.WriteFile(res, []byte(`{"memory":{"limit":41943040},"pids":{"limit":77}}`), 0o644)
		e.must("update", "--resources", res, "--pids-limit", "5", "vx")
		want["memory.max"], want["pids.max"] = "41943040", "77"
		if r := e.run(`{"cpu":{"quota":-1,"period":50000},"pids":{"limit":-1}}`, "update", "-r", "-", "vx"); r.code != 0 {
			t.Errorf("update -r -: %d %q", r.code, r.stderr)
		}
		want["cpu.max"], want["pids.max"] = "max 50000", "max"
		check()
		e.expectExit(1, "no memory hotplug", "update", "--memory", "8g", "vx")
		e.expectExit(1, "realtime CPU limits", "update", "--cpu-rt-period", "1000", "vx")
		os.WriteFile(res+".rt", []byte(`{"cpu":{"realtimeRuntime":950}}`), 0o644)
		e.expectExit(1, "realtime CPU limits", "update", "-r", res+".rt", "vx")
		e.expectExit(1, "Intel RDT is not supported", "update", "--l3-cache-schema", "L3:0=f", "vx")
		e.expectExit(1, "invalid value for memory", "update", "--memory", "12zz", "vx")
		e.expectExit(1, "range is from 10 to 1000", "update", "--blkio-weight", "5", "vx")
		e.expectExit(1, "does not exist", "update", "--memory", "64m", "ghost")
	})

	t.Run("events", func(t *testing.T) {
		e := *e
		e.t = t
		var ev struct {
			Type string         `json:"type"`
			ID   string         `json:"id"`
			Data map[string]any `json:"data"`
		}
		out := e.must("events", "--stats", "vx")
		if err := json.Unmarshal([]byte(out), &ev); err != nil || ev.Type != "stats" || ev.ID != "vx" {
			t.Fatalf("events --stats: %v %q", err, out)
		}
		for _, k := range []string{"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"} {
			if _, ok := ev.Data[k]; !ok {
				t.Errorf("stats lack %q: %s", k, out)
			}
		}
		var s struct {
			CPU struct {
				Usage struct {
					Total, User, Kernel uint64
				}
			}
			Memory struct {
				Usage struct{ Limit, Usage uint64 }
				Raw   map[string]uint64
			}
			Pids struct{ Current, Limit uint64 }
		}
		raw, _ := json.Marshal(ev.Data)
		json.Unmarshal(raw, &s)
		if s.CPU.Usage.Total == 0 || s.Memory.Usage.Usage == 0 || s.Memory.Usage.Limit != 41943040 || s.Memory.Raw["anon"] == 0 ||
			s.Pids.Current == 0 || s.Pids.Limit != 0 {
			t.Errorf("stats figures: %+v", s)
		}
		e.expectExit(1, "greater than 0", "events", "--interval", "0s", "vx")
	})

	t.Run("pause", func(t *testing.T) {
		e := *e
		e.t = t
		e.must("pause", "vx")
		if st := e.state("vx"); st["status"] != "paused" {
			t.Errorf("after pause: %v", st["status"])
		}
		e.expectExit(255, "cannot exec in a paused container", "exec", "vx", "true")
		e.expectExit(255, "even with --ignore-paused", "exec", "--ignore-paused", "vx", "true")
		e.expectExit(1, "paused container", "events", "--stats", "vx")
		e.expectExit(1, "that is not stopped: paused", "delete", "vx")
		e.must("resume", "vx")
		if st := e.state("vx"); st["status"] != "running" {
			t.Errorf("after resume: %v", st["status"])
		}
	})

	t.Run("oom events until exit", func(t *testing.T) {
		e := *e
		e.t = t
		e.must("update", "--memory", "24m", "vx")
		c := e.cmd("events", "--interval", "300ms", "vx")
		evOut, err := os.Create(filepath.Join(e.dir, "events.out"))
		if err != nil {
			t.Fatal(err)
		}
		defer evOut.Close()
		c.Stdout, c.Stderr = evOut, evOut
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		defer c.Process.Kill()
		// More than the limit in a shell variable: the OOM killer ends it.
		r := e.run("", "exec", "vx", "sh", "-c", `x=$(head -c 40000000 /dev/zero | tr '\0' a); echo survived ${#x}`)
		if r.code != 137 {
			t.Errorf("memory hog: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(evOut.Name())
			if strings.Contains(string(b), `{"type":"oom","id":"vx"}`) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		e.must("kill", "--all", "vx", "KILL")
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("events ended with %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("events did not end when the container stopped")
		}
		b, _ := os.ReadFile(evOut.Name())
		var oom, stats int
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var ev struct{ Type, ID string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.ID != "vx" {
				t.Errorf("event line %q: %v", l, err)
			}
			switch ev.Type {
			case "oom":
				oom++
			case "stats":
				stats++
			}
		}
		if oom == 0 || stats == 0 {
			t.Errorf("events: %d oom, %d stats:\n%s", oom, stats, b)
		}
	})

	e.waitStatus("vx", "stopped", 20*time.Second)
	if pid := e.state("vx")["pid"]; pid != float64(0) {
		t.Errorf("stopped container reports pid %v", pid)
	}
	e.expectExit(1, "not running", "kill", "vx", "TERM")
	if r := e.run("", "kill", "--all", "vx", "KILL"); r.code != 0 {
		t.Errorf("kill --all of a stopped container: %d %q", r.code, r.stderr)
	}
	e.expectExit(1, "is not running", "events", "--stats", "vx")
	e.expectExit(1, "is not running", "events", "vx")
	e.expectExit(255, "cannot exec in a stopped container", "exec", "vx", "true")
	e.must("delete", "vx")
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestVerbsCreatedContainer: exec and events work on a created container;
// delete refuses it without --force (the runtime spec; runc deletes it) and
// leaves it as it was, and delete --force removes it.
func TestVerbsCreatedContainer(t *testing.T) {
	e := newEnv(t)
	marker := filepath.Join(e.dir, "poststop")
	b, spec := e.bundle("sh", "-c", "touch /tmp/started; sleep 1000")
	spec.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "touch " + marker}}}}
	writeSpec(t, b, spec)
	e.must("create", "--bundle", b, "vc")
	defer e.run("", "delete", "--force", "vc")
	if out := e.must("exec", "vc", "sh", "-c", "test -e /tmp/started || echo init-not-started"); out != "init-not-started\n" {
		t.Errorf("exec in a created container: %q", out)
	}
	var ev struct{ Type, ID string }
	if out := e.must("events", "--stats", "vc"); json.Unmarshal([]byte(out), &ev) != nil || ev.Type != "stats" {
		t.Errorf("events --stats of a created container: %q", out)
	}
	if r := e.run("", "delete", "vc"); r.code == 0 || !strings.Contains(r.stderr, "not stopped: created") {
		t.Errorf("delete of a created container without --force: %d %q", r.code, r.stderr)
	}
	if st := e.state("vc"); st["status"] != "created" {
		t.Errorf("a refused delete changed the container: %v", st["status"])
	}
	e.must("delete", "--force", "vc")
	if r := e.run("", "state", "vc"); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("state after deleting a created container: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("poststop hook did not run at delete: %v", err)
	}
}

// TestVerbsNoContainer: verbs that need no container.
func TestVerbsNoContainer(t *testing.T) {
	e := newEnv(t)
	var f struct {
		OCIVersionMin string   `json:"ociVersionMin"`
		OCIVersionMax string   `json:"ociVersionMax"`
		Hooks         []string `json:"hooks"`
		MountOptions  []string `json:"mountOptions"`
		Linux         struct {
			Namespaces   []string `json:"namespaces"`
			Capabilities []string `json:"capabilities"`
			Cgroup       map[string]bool
			Seccomp      struct {
				Enabled   bool     `json:"enabled"`
				Actions   []string `json:"actions"`
				Operators []string `json:"operators"`
				Archs     []string `json:"archs"`
			} `json:"seccomp"`
			Apparmor struct{ Enabled bool } `json:"apparmor"`
			Selinux  struct{ Enabled bool } `json:"selinux"`
			IntelRdt struct{ Enabled bool } `json:"intelRdt"`
		} `json:"linux"`
		Annotations map[string]string `json:"annotations"`
	}
	out := e.must("features")
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("features: %v\n%s", err, out)
	}
	joined := func(s []string) string { return " " + strings.Join(s, " ") + " " }
	if f.OCIVersionMin != "1.0.0" || f.OCIVersionMax != specs.Version || len(f.Hooks) != 6 ||
		!strings.Contains(joined(f.MountOptions), " rbind ") || !strings.Contains(joined(f.Linux.Namespaces), " pid ") ||
		len(f.Linux.Capabilities) != 41 || !f.Linux.Cgroup["v2"] {
		t.Errorf("features: %+v", f)
	}
	sc := f.Linux.Seccomp
	if !sc.Enabled || len(sc.Actions) != 8 || strings.Contains(joined(sc.Actions), "NOTIFY") || len(sc.Operators) != 7 ||
		joined(sc.Archs) != " SCMP_ARCH_X32 SCMP_ARCH_X86 SCMP_ARCH_X86_64 " {
		t.Errorf("features seccomp: %+v", sc)
	}
	if f.Linux.Apparmor.Enabled || f.Linux.Selinux.Enabled || f.Linux.IntelRdt.Enabled {
		t.Errorf("features claims an LSM or RDT: %+v", f.Linux)
	}
	if f.Annotations["io.github.kabuto-runtime.kabuto.checkpoint.enabled"] != "false" || f.Annotations["org.opencontainers.runc.checkpoint.enabled"] != "false" {
		t.Errorf("features annotations: %v", f.Annotations)
	}

	img := filepath.Join(e.dir, "images")
	for _, args := range [][]string{
		{"checkpoint", "--image-path", img, "--work-path", img + "-work", "--leave-running", "--tcp-established", "--manage-cgroups-mode", "soft", "anyid"},
		{"checkpoint", "--pre-dump", "--parent-path", img, "anyid"},
		{"restore", "--image-path", img, "--bundle", e.dir, "--detach", "--pid-file", filepath.Join(e.dir, "pid"), "--console-socket", filepath.Join(e.dir, "sock"), "anyid"},
	} {
		r := e.run("", args...)
		if r.code != 1 || !strings.Contains(r.stderr, "checkpoint/restore is not supported by kabuto") || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("kabuto %v: %d %q", args, r.code, r.stderr)
		}
	}
	for _, p := range []string{img, img + "-work", filepath.Join(e.dir, "pid")} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("checkpoint/restore left %s behind", p)
		}
	}
	e.expectExit(1, "requires exactly 1 argument", "checkpoint")
	e.expectExit(1, "does not exist", "events", "--stats", "ghost")
}
