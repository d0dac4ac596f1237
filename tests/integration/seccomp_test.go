package integration

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func uintPtr(v uint) *uint { return &v }

// A default-allow profile that denies mkdir and SIGUSR1 (an argument rule):
// the init and exec'd processes see the errors, everything else works.
func TestSeccompDenyList(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sh", "-c", `mkdir /tmp/d; echo "mkdir=$?"; kill -USR1 $$; echo "usr1=$?"; kill -0 $$ && echo "sig0 ok"; `+
		`echo hi >/tmp/f && cat /tmp/f; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status`)
	// runc's default spec sets no_new_privs: without it the filter goes in
	// before the privileges are dropped.
	spec.Process.NoNewPrivileges = false
	spec.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.EPERM))},
			{Names: []string{"kill"}, Action: specs.ActErrno, ErrnoRet: uintPtr(uint(unix.EPERM)),
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: uint64(unix.SIGUSR1), Op: specs.OpEqualTo}}},
		},
	}
	writeSpec(t, b, spec)
	r := e.run("", "run", "--bundle", b, "deny")
	if r.code != 0 {
		t.Fatalf("exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"mkdir=1", "usr1=1", "sig0 ok", "hi", "Seccomp:\t2", "NoNewPrivs:\t0"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("init output lacks %q:\n%s", want, r.stdout)
		}
	}
	if !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("mkdir's error: %q", r.stderr)
	}

	// Exec'd processes get the container's profile too.
	spec.Process.Args = []string{"sleep", "1000"}
	writeSpec(t, b, spec)
	e.must("run", "-d", "--bundle", b, "deny2")
	defer e.run("", "delete", "-f", "deny2")
	r = e.run("", "exec", "deny2", "mkdir", "/tmp/x")
	if r.code == 0 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("exec mkdir: exit %d, stderr %q", r.code, r.stderr)
	}
	r = e.run("", "exec", "deny2", "sh", "-c", "touch /tmp/y && ls /tmp/y && grep Seccomp: /proc/self/status /proc/1/status")
	if r.code != 0 || !strings.Contains(r.stdout, "/tmp/y") || strings.Count(r.stdout, "Seccomp:\t2") != 2 {
		t.Errorf("exec of allowed commands: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// dockerDefault is docker's default profile (the copy in guest/seccomp's
// test data) as docker gives it to an amd64 container with the spec's
// capabilities: rules gated on other architectures or on capabilities the
// container lacks are left out.
func dockerDefault(t *testing.T, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	data, err := os.ReadFile("../../guest/seccomp/testdata/docker-default.json")
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
		DefaultErrnoRet *uint                    `json:"defaultErrnoRet"`
		Syscalls        []struct {
			specs.LinuxSyscall
			Includes, Excludes struct{ Caps, Arches []string }
		} `json:"syscalls"`
	}
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	s := &specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}}
	for _, sc := range p.Syscalls {
		in, ex := sc.Includes, sc.Excludes
		keep := (len(in.Arches) == 0 || slices.Contains(in.Arches, "amd64")) && !slices.Contains(ex.Arches, "amd64")
		for _, c := range in.Caps {
			keep = keep && slices.Contains(caps, c)
		}
		for _, c := range ex.Caps {
			keep = keep && !slices.Contains(caps, c)
		}
		if keep {
			s.Syscalls = append(s.Syscalls, sc.LinuxSyscall)
		}
	}
	return s
}

// A default-deny allow list (docker's profile, without mkdir/mkdirat and
// with another default errno): a non-root process with dropped capabilities
// runs under it, with and without no_new_privs.
func TestSeccompAllowList(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sh", "-c", `echo "uid=$(id -u)"; cat /etc/group | head -n 1; mkdir /tmp/d || echo mkdir-denied; `+
		`ls / >/dev/null && echo ls-ok; grep -E "^(Seccomp|NoNewPrivs):" /proc/self/status`)
	spec.Process.User.UID, spec.Process.User.GID = 1000, 1000
	prof := dockerDefault(t, spec.Process.Capabilities.Bounding)
	prof.DefaultErrnoRet = uintPtr(uint(unix.EOPNOTSUPP))
	for i := range prof.Syscalls {
		prof.Syscalls[i].Names = slices.DeleteFunc(slices.Clone(prof.Syscalls[i].Names), func(n string) bool {
			return n == "mkdir" || n == "mkdirat"
		})
	}
	spec.Linux.Seccomp = prof
	for _, nnp := range []bool{false, true} {
		spec.Process.NoNewPrivileges = nnp
		writeSpec(t, b, spec)
		r := e.run("", "run", "--bundle", b, "allow")
		if r.code != 0 {
			t.Fatalf("nnp=%v: exit %d: %s%s", nnp, r.code, r.stdout, r.stderr)
		}
		nnpLine := "NoNewPrivs:\t0"
		if nnp {
			nnpLine = "NoNewPrivs:\t1"
		}
		for _, want := range []string{"uid=1000", "root:x:0:", "mkdir-denied", "ls-ok", "Seccomp:\t2", nnpLine} {
			if !strings.Contains(r.stdout, want) {
				t.Errorf("nnp=%v: output lacks %q:\n%s", nnp, want, r.stdout)
			}
		}
		if !strings.Contains(r.stderr, "Operation not supported") {
			t.Errorf("nnp=%v: mkdir's error: %q", nnp, r.stderr)
		}
	}
}

// Without no_new_privs the filter goes in before the agent drops to the
// process's user, so a profile that denies setresuid stops that; with
// no_new_privs it goes in after, and only the container is denied.
func TestSeccompLoadOrder(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sh", "-c", `id -u`)
	spec.Process.User.UID, spec.Process.User.GID = 1000, 1000
	spec.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"setresuid", "setuid", "setreuid"}, Action: specs.ActErrno},
	}}
	spec.Process.NoNewPrivileges = false
	writeSpec(t, b, spec)
	r := e.run("", "run", "--bundle", b, "order1")
	if r.code == 0 || !strings.Contains(r.stderr, "setuid 1000: operation not permitted") {
		t.Errorf("setresuid denied before the drop: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	e.run("", "delete", "-f", "order1")

	spec.Process.NoNewPrivileges = true
	writeSpec(t, b, spec)
	r = e.run("", "run", "--bundle", b, "order2")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "1000" {
		t.Errorf("with no_new_privs: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// A profile the guest would refuse fails create before a VM starts, and
// leaves nothing behind (the env's leak check).
func TestSeccompBadProfiles(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("true")
	for i, c := range []struct {
		prof specs.LinuxSeccomp
		msg  string
	}{
		{specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}, `seccomp: defaultAction: unknown action "SCMP_ACT_BOGUS"`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_VAX"}}, `seccomp: unknown architecture "SCMP_ARCH_VAX"`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_SOMETIMES"}}}}}, `unknown operator "SCMP_CMP_SOMETIMES"`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}},
			"SCMP_ACT_NOTIFY (seccomp user notification) is not supported"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/seccomp-agent.sock"}, "listenerPath is not supported"},
	} {
		spec.Linux.Seccomp = &c.prof
		writeSpec(t, b, spec)
		id := "bad" + string(rune('0'+i))
		e.expectFail(c.msg, "create", "--bundle", b, id)
		if r := e.run("", "state", id); r.code == 0 {
			t.Errorf("%s exists after a failed create: %s", id, r.stdout)
		}
	}
}
