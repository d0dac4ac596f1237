package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExecPsUpdate(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "1000")
	e.must("run", "-d", "--bundle", b, "ex")
	defer e.run("", "delete", "-f", "ex")

	r := e.run("", "exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 9")
	if r.code != 9 || r.stdout != "out\n" || r.stderr != "err\n" {
		t.Errorf("exec: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = e.run("piped\n", "exec", "--env", "V=1", "--cwd", "/tmp", "--user", "1000:1000", "ex", "sh", "-c", `read x; echo "$x $V $(pwd) $(id -u):$(id -g)"`)
	if r.stdout != "piped 1 /tmp 1000:1000\n" {
		t.Errorf("exec with flags: %q %s", r.stdout, r.stderr)
	}
	if r := e.run("", "exec", "ex", "no-such-cmd"); r.code == 0 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("exec of a missing command: %d %q", r.code, r.stderr)
	}
	if r := e.run("", "exec", "nosuch", "true"); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("exec in an unknown container: %d %q", r.code, r.stderr)
	}

	var pids []int
	if err := json.Unmarshal([]byte(e.must("ps", "--format", "json", "ex")), &pids); err != nil || len(pids) < 2 {
		t.Errorf("ps json: %v %v", pids, err)
	}
	if table := e.must("ps", "ex"); !strings.Contains(table, "sleep 1000") {
		t.Errorf("ps table: %q", table)
	}

	e.must("update", "--pids-limit", "42", "ex")
	if r := e.run("", "exec", "ex", "cat", "/sys/fs/cgroup/pids.max"); strings.TrimSpace(r.stdout) != "42" {
		t.Errorf("pids.max after update: %q %s", r.stdout, r.stderr)
	}
	r = e.run(`{"memory":{"limit":67108864},"cpu":{"quota":50000,"period":100000}}`, "update", "--resources", "-", "ex")
	if r.code != 0 {
		t.Errorf("update --resources -: %s", r.stderr)
	}
	if r := e.run("", "exec", "ex", "cat", "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max"); r.stdout != "67108864\n50000 100000\n" {
		t.Errorf("limits after update: %q %s", r.stdout, r.stderr)
	}
	if r := e.run("", "update", "--memory", "8589934592", "ex"); r.code == 0 || !strings.Contains(r.stderr, "no memory hotplug") {
		t.Errorf("update beyond the VM's RAM: %d %q", r.code, r.stderr)
	}
}

func TestCheckAndEnv(t *testing.T) {
	e := newEnv(t)
	out := e.must("check")
	for _, want := range []string{"qemu", "accelerator", "guest kernel", "guest initrd", "tun", "cgroups"} {
		if !strings.Contains(out, want) {
			t.Errorf("check lacks %q:\n%s", want, out)
		}
	}
	if env := e.must("env"); !strings.Contains(env, kernel) {
		t.Errorf("env does not show the configured kernel:\n%s", env)
	}
	var cfg map[string]any
	if err := json.Unmarshal([]byte(e.must("env", "--json")), &cfg); err != nil || cfg["hypervisor"] == nil {
		t.Errorf("env --json: %v %v", cfg, err)
	}
}

// TestExecProcessSettings: every setting of an exec'd process (exec -p),
// as the guest's exec child applies them, and failed execs that leave no
// process, shim or request behind.
func TestExecProcessSettings(t *testing.T) {
	e := newEnv(t)
	b, _ := e.bundle("sleep", "1000")
	e.must("run", "-d", "--bundle", b, "ps1")
	defer e.run("", "delete", "-f", "ps1")

	umask, oom := uint32(0o077), 123
	caps := []string{"CAP_NET_BIND_SERVICE"}
	p := specs.Process{
		Args: []string{"sh", "-c", `echo "$X|$(pwd)|$(id -u):$(id -g)|$(id -G)|$(umask)|$(ulimit -Sn)/$(ulimit -Hn)|$(cat /proc/self/oom_score_adj)"; grep -E '^(Cap|NoNewPrivs)' /proc/self/status`},
		Env:  []string{"PATH=/bin", "X=from-process-json"}, Cwd: "/tmp",
		User:            specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000, 3000}, Umask: &umask},
		Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 654}},
		OOMScoreAdj:     &oom,
		NoNewPrivileges: true,
		Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_NET_BIND_SERVICE", "CAP_KILL"},
			Effective: caps, Permitted: caps, Inheritable: caps, Ambient: caps},
	}
	pj := filepath.Join(e.dir, "process.json")
	data, _ := json.Marshal(p)
	os.WriteFile(pj, data, 0o644)
	r := e.run("", "exec", "-p", pj, "ps1")
	if r.code != 0 {
		t.Fatalf("exec -p: %d %q", r.code, r.stderr)
	}
	lines := strings.SplitN(r.stdout, "\n", 2)
	if want := "from-process-json|/tmp|1000:1000|1000 2000 3000|0077|321/654|123"; lines[0] != want {
		t.Errorf("got  %q\nwant %q", lines[0], want)
	}
	netBind := uint64(1) << 10
	for field, want := range map[string]uint64{"CapBnd": netBind | 1<<5, "CapEff": netBind, "CapPrm": netBind, "CapInh": netBind, "CapAmb": netBind} {
		if got := capLine(r.stdout, field); got != want {
			t.Errorf("%s = %x, want %x", field, got, want)
		}
	}
	if !strings.Contains(r.stdout, "NoNewPrivs:\t1") {
		t.Errorf("no_new_privs not set:\n%s", r.stdout)
	}

	// Failures before the exec (no such command, cwd, not executable) and
	// after the start (a noexec mount) are reported, and leave nothing.
	psBefore := e.must("ps", "--format", "json", "ps1")
	e.must("exec", "ps1", "sh", "-c", "printf '#!/bin/sh\\n' > /dev/shm/script && chmod 755 /dev/shm/script")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"ps1", "no-such-command"}, `exec: "no-such-command": executable file not found in $PATH`},
		{[]string{"--cwd", "/no/such/dir", "ps1", "true"}, `chdir to cwd ("/no/such/dir") set in config.json failed: no such file or directory`},
		{[]string{"ps1", "/etc"}, `exec: "/etc": /etc is a directory`},
		{[]string{"ps1", "/dev/shm/script"}, `exec "/dev/shm/script": permission denied`},
		{[]string{"--user", "1000", "ps1", "/proc/self/status"}, `exec: "/proc/self/status": /proc/self/status: permission denied`},
	} {
		e.expectExit(255, tc.want, append([]string{"exec"}, tc.args...)...)
	}
	comms := e.must("exec", "ps1", "sh", "-c", `for p in /proc/[0-9]*; do [ $p = /proc/$$ ] || cat $p/comm; done`)
	if strings.Join(strings.Fields(comms), " ") != "sleep" {
		t.Errorf("processes in the container after failed execs:\n%s", comms)
	}
	if left, _ := filepath.Glob(filepath.Join(e.root, "ps1", "exec-*.json")); len(left) != 0 {
		t.Errorf("exec requests left behind: %v", left)
	}
	if ps := e.must("ps", "--format", "json", "ps1"); ps != psBefore {
		t.Errorf("ps after failed execs %s, before %s", ps, psBefore)
	}
}
