package agent

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

func TestValidExecID(t *testing.T) {
	for id, want := range map[string]bool{
		"e1": true, "exec-1.2_3+x": true, "A": true, strings.Repeat("a", 128): true,
		"": false, "init": false, "-x": false, ".x": false, "a/b": false, "../x": false, "a b": false,
		strings.Repeat("a", 129): false, "é": false,
	} {
		if got := validExecID(id); got != want {
			t.Errorf("validExecID(%q) = %v", id, got)
		}
	}
}

func TestShareRelative(t *testing.T) {
	for in, want := range map[string]string{
		"rootfs":     protocol.ShareMount + "/rootfs",
		"m3":         protocol.ShareMount + "/m3",
		"a/./b":      protocol.ShareMount + "/a/b",
		"dots..name": protocol.ShareMount + "/dots..name",
	} {
		if got, err := shareRelative(in); err != nil || got != want {
			t.Errorf("shareRelative(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", ".", "/rootfs", "..", "../x", "a/../../x", "a/.."} {
		if _, err := shareRelative(in); err == nil {
			t.Errorf("shareRelative(%q) accepted", in)
		}
	}
}

func TestCloneAttrs(t *testing.T) {
	spec := &specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: "pid"}, {Type: "network", Path: "/var/run/netns/x"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}, {Type: "cgroup"},
	}}}
	sys, cgns, err := cloneAttrs(spec)
	if err != nil {
		t.Fatal(err)
	}
	want := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if sys.Cloneflags != want || !cgns {
		t.Fatalf("flags %#x cgroupns %v, want %#x true", sys.Cloneflags, cgns, want)
	}
	// No namespaces at all: still a mount namespace of its own.
	sys, _, _ = cloneAttrs(&specs.Spec{Linux: &specs.Linux{}})
	if sys.Cloneflags != unix.CLONE_NEWNS {
		t.Fatalf("flags %#x", sys.Cloneflags)
	}
	// A host path: a new namespace of that type in the guest; a user
	// namespace by path: none.
	sys, _, err = cloneAttrs(&specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
		{Type: "pid", Path: "/proc/1/ns/pid"}, {Type: "ipc", Path: "/proc/1/ns/ipc"}, {Type: "user", Path: "/proc/1/ns/user"},
	}}})
	if want := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC); err != nil || sys.Cloneflags != want {
		t.Fatalf("namespaces by path: flags %#x %v, want %#x", sys.Cloneflags, err, want)
	}
	for _, bad := range []specs.LinuxNamespace{{Type: "bogus"}, {Type: "user"}} {
		_, _, err := cloneAttrs(&specs.Spec{Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{bad}}})
		if err == nil {
			t.Errorf("namespace %+v accepted", bad)
		}
	}
	sys, _, err = cloneAttrs(&specs.Spec{Linux: &specs.Linux{
		Namespaces:  []specs.LinuxNamespace{{Type: "user"}},
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
	}})
	if err != nil || sys.Cloneflags&unix.CLONE_NEWUSER == 0 || len(sys.UidMappings) != 1 || sys.UidMappings[0].HostID != 1000 {
		t.Fatalf("user namespace: %+v %v", sys, err)
	}
}

func TestReadNsenterAnswer(t *testing.T) {
	for _, tc := range []struct {
		in  string
		pid int
		err string
	}{
		{"123\n", 123, ""},
		{"error: join pid namespace: Operation not permitted\n", 0, "enter the container: join pid namespace: Operation not permitted"},
		{"", 0, "enter the container: the helper exited without an answer"},
		{"x\n", 0, `enter the container: unexpected answer "x"`},
		{"-4\n", 0, `enter the container: unexpected answer "-4"`},
	} {
		pid, err := readNsenterAnswer(strings.NewReader(tc.in))
		if pid != tc.pid || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("readNsenterAnswer(%q) = %d, %v", tc.in, pid, err)
		}
	}
}
