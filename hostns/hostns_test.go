package hostns

import (
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestFor(t *testing.T) {
	p := For([]specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace, Path: "/proc/7/ns/ipc"},
		{Type: specs.NetworkNamespace, Path: "/ignored, the netns path wins"}, {Type: specs.UserNamespace, Path: "/proc/7/ns/user"},
		{Type: specs.MountNamespace}, {Type: specs.TimeNamespace},
	}, "/run/x/netns")
	if p.Clone != unix.CLONE_NEWPID|unix.CLONE_NEWNS {
		t.Errorf("clone flags %#x", p.Clone)
	}
	want := map[specs.LinuxNamespaceType]string{specs.IPCNamespace: "/proc/7/ns/ipc", specs.NetworkNamespace: "/run/x/netns"}
	if !reflect.DeepEqual(p.Join, want) {
		t.Errorf("joins %v", p.Join)
	}
	if p := For(nil, ""); p.Clone != 0 || len(p.Join) != 0 {
		t.Errorf("no namespaces: %+v", p)
	}
}

// Start really places the process: a new UTS and user namespace (ids
// mapped to themselves), and the IPC namespace at a path.
func TestStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	holder := exec.Command("unshare", "--ipc", "sleep", "30")
	if err := holder.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { holder.Process.Kill(); holder.Wait() }()
	hp := holder.Process.Pid
	for i := 0; i < 100 && readNS(t, hp, "ipc") == readNS(t, os.Getpid(), "ipc"); i++ {
		exec.Command("sleep", "0.02").Run()
	}
	cmd := exec.Command("sh", "-c", "cat /proc/self/uid_map; sleep 30")
	out, _ := cmd.StdoutPipe()
	p := For([]specs.LinuxNamespace{{Type: specs.UTSNamespace}, {Type: specs.UserNamespace}, {Type: specs.IPCNamespace, Path: "/proc/" + itoa(hp) + "/ns/ipc"}}, "")
	if err := Start(cmd, p); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	buf := make([]byte, 100)
	n, _ := out.Read(buf)
	self, pid := os.Getpid(), cmd.Process.Pid
	if readNS(t, pid, "uts") == readNS(t, self, "uts") || readNS(t, pid, "user") == readNS(t, self, "user") {
		t.Error("no new uts or user namespace")
	}
	if readNS(t, pid, "ipc") != readNS(t, hp, "ipc") {
		t.Error("not in the ipc namespace at the path")
	}
	if readNS(t, pid, "mnt") != readNS(t, self, "mnt") {
		t.Error("left the mount namespace it was not asked to")
	}
	if got := string(buf[:n]); got == "" || got[len(got)-11:] != "4294967295\n" {
		t.Errorf("uid_map %q, want every id mapped to itself", got)
	}
}

func readNS(t *testing.T, pid int, name string) string {
	l, err := os.Readlink("/proc/" + itoa(pid) + "/ns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestCheckPaths(t *testing.T) {
	ok := []specs.LinuxNamespace{{Type: specs.UTSNamespace, Path: "/proc/self/ns/uts"}, {Type: specs.UserNamespace, Path: "/proc/self/ns/user"}, {Type: specs.PIDNamespace}}
	if err := CheckPaths(ok); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []specs.LinuxNamespace{
		{Type: specs.UserNamespace, Path: "/proc/self/ns/uts"},
		{Type: specs.NetworkNamespace, Path: "/proc/self/ns/pid"},
		{Type: specs.IPCNamespace, Path: "/etc/hostname"},
		{Type: specs.MountNamespace, Path: "/no/such/ns"},
	} {
		if err := CheckPaths([]specs.LinuxNamespace{bad}); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}
