package agent

import (
	"github.com/kabuto-runtime/kabuto/protocol"

	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseMountOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  []string
		flags uintptr
		prop  []uintptr
		data  string
	}{
		{"empty", nil, 0, nil, ""},
		{"runc dev tmpfs", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			unix.MS_NOSUID | unix.MS_STRICTATIME, nil, "mode=755,size=65536k"},
		{"devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			unix.MS_NOSUID | unix.MS_NOEXEC, nil, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"ro rbind", []string{"rbind", "ro", "rprivate"},
			unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY, []uintptr{unix.MS_PRIVATE | unix.MS_REC}, ""},
		{"later rw clears ro", []string{"ro", "rw"}, 0, nil, ""},
		{"clearing flags", []string{"nosuid", "suid", "nodev", "dev", "exec", "noexec"}, unix.MS_NOEXEC, nil, ""},
		{"defaults and kabuto-only", []string{"defaults", "tmpcopyup", "rro", "idmap"}, 0, nil, ""},
		{"propagation order kept", []string{"shared", "slave"}, 0, []uintptr{unix.MS_SHARED, unix.MS_SLAVE}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			flags, prop, data := parseMountOptions(tc.opts)
			if flags != tc.flags || data != tc.data || len(prop) != len(tc.prop) {
				t.Fatalf("got flags %#x prop %v data %q, want %#x %v %q", flags, prop, data, tc.flags, tc.prop, tc.data)
			}
			for i := range prop {
				if prop[i] != tc.prop[i] {
					t.Fatalf("prop %v, want %v", prop, tc.prop)
				}
			}
		})
	}
}

func TestIsBindMount(t *testing.T) {
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Type: "", Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
	} {
		if got := protocol.IsBindMount(tc.m); got != tc.want {
			t.Errorf("IsBindMount(%+v) = %v", tc.m, got)
		}
	}
}

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "a/b"), 0o755))
	must(os.Symlink("/a/b", filepath.Join(root, "abs")))
	must(os.Symlink("../../..", filepath.Join(root, "a/b/up")))
	must(os.Symlink("b", filepath.Join(root, "a/rel")))
	must(os.Symlink("loop", filepath.Join(root, "loop")))
	for _, tc := range []struct{ in, want string }{
		{"/", root},
		{"/a/b", root + "/a/b"},
		{"a/b/", root + "/a/b"},
		{"/../../etc", root + "/etc"},
		{"/abs/c", root + "/a/b/c"},
		{"/a/b/up/etc/passwd", root + "/etc/passwd"},
		{"/a/rel/x", root + "/a/b/x"},
		{"/missing/../a", root + "/a"},
	} {
		got, err := secureJoin(root, tc.in)
		if err != nil || got != tc.want {
			t.Errorf("secureJoin(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	if _, err := secureJoin(root, "/loop/x"); err == nil {
		t.Error("symlink loop: no error")
	}
}

func TestMountFlagsOf(t *testing.T) {
	got := mountFlagsOf(unix.ST_NOSUID | unix.ST_NOEXEC | unix.ST_RDONLY)
	if got != unix.MS_NOSUID|unix.MS_NOEXEC {
		t.Fatalf("got %#x", got)
	}
}

func TestMakeTarget(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "x/y/file")
	if err := makeTarget(f, false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("file target: %v %v", fi, err)
	}
	d := filepath.Join(dir, "x/dir")
	if err := makeTarget(d, true); err != nil {
		t.Fatal(err)
	}
	if err := makeTarget(d, false); err != nil {
		t.Fatalf("file bind onto an existing dir: %v", err)
	}
}

func TestAddMountData(t *testing.T) {
	for _, tc := range [][3]string{
		{"", "favordynmods", "favordynmods"},
		{"nsdelegate", "favordynmods", "nsdelegate,favordynmods"},
		{"favordynmods,nsdelegate", "favordynmods", "favordynmods,nsdelegate"},
	} {
		if got := addMountData(tc[0], tc[1]); got != tc[2] {
			t.Errorf("addMountData(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}
