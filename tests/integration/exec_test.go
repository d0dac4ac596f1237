package integration

import (
	"encoding/json"
	"strings"
	"testing"
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
