package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var nsFiles = map[specs.LinuxNamespaceType]string{
	specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.MountNamespace: "mnt", specs.PIDNamespace: "pid",
	specs.NetworkNamespace: "net", specs.UserNamespace: "user", specs.CgroupNamespace: "cgroup",
}

func nsOf(t *testing.T, pid int, name string) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// statePid creates the container and returns the pid `state` reports.
func (e *env) statePid(b, id string) int {
	e.t.Helper()
	e.must("create", "--bundle", b, id)
	pid, _ := e.state(id)["pid"].(float64)
	if pid <= 0 {
		e.t.Fatalf("state pid %v", pid)
	}
	return int(pid)
}

// The host process `state` reports stands for the container: its host
// namespaces take the spec's shape (new ones without a path, the one at the
// path with one, kabuto's own for types not listed), while the container
// itself runs in the guest's.
func TestStatePidNamespaces(t *testing.T) {
	e := newEnv(t)
	self := os.Getpid()

	// Every type without a path (a user namespace with mappings too).
	b, spec := e.bundle("sleep", "100")
	spec.Linux.Namespaces = nil
	for typ := range nsFiles {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: typ})
	}
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1000}}
	spec.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1000}}
	writeSpec(t, b, spec)
	pid := e.statePid(b, "nsnew")
	for _, name := range nsFiles {
		if nsOf(t, pid, name) == nsOf(t, self, name) {
			t.Errorf("state pid shares the runtime's %s namespace", name)
		}
	}
	// The container still works, as root of its user namespace in the guest.
	e.must("start", "nsnew")
	if r := e.run("", "exec", "nsnew", "sh", "-c", "id -u; cat /proc/self/uid_map"); r.code != 0 || !strings.HasPrefix(r.stdout, "0\n") || !strings.Contains(r.stdout, "1000") {
		t.Errorf("exec in the user namespace: %d %q %s", r.code, r.stdout, r.stderr)
	}
	e.must("delete", "--force", "nsnew")

	// No namespaces listed: the runtime's.
	b, spec = e.bundle("true")
	spec.Linux.Namespaces = nil
	spec.Hostname = ""
	writeSpec(t, b, spec)
	pid = e.statePid(b, "nsinherit")
	for _, name := range nsFiles {
		if nsOf(t, pid, name) != nsOf(t, self, name) {
			t.Errorf("state pid does not inherit the runtime's %s namespace", name)
		}
	}
	e.must("delete", "--force", "nsinherit")

	// By path: the state pid is in the namespaces of another process.
	holder := exec.Command("unshare", "--ipc", "--uts", "--mount", "--pid", "--net", "--fork", "sleep", "100")
	holder.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(-holder.Process.Pid, syscall.SIGKILL)
		holder.Wait()
	}()
	hp := holder.Process.Pid
	deadline := time.Now().Add(5 * time.Second)
	for nsOf(t, hp, "ipc") == nsOf(t, self, "ipc") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // unshare has not yet unshared
	}
	b, spec = e.bundle("true")
	spec.Linux.Namespaces = nil
	for typ, name := range map[specs.LinuxNamespaceType]string{
		specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.MountNamespace: "mnt",
		specs.PIDNamespace: "pid_for_children", specs.NetworkNamespace: "net",
	} {
		spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", hp, name)})
	}
	spec.Linux.Sysctl = nil
	writeSpec(t, b, spec)
	pid = e.statePid(b, "nspath")
	for theirs, ours := range map[string]string{"ipc": "ipc", "uts": "uts", "mnt": "mnt", "pid_for_children": "pid", "net": "net"} {
		if nsOf(t, pid, ours) != nsOf(t, hp, theirs) {
			t.Errorf("state pid is not in the %s namespace given by path", ours)
		}
	}
	e.must("start", "nspath")
	e.waitStatus("nspath", "stopped", 30*time.Second)
	e.must("delete", "nspath")
}
