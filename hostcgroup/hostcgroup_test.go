package hostcgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseMountinfo(t *testing.T) {
	mi := `24 1 0:22 / /sys rw - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
31 24 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 24 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 24 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
`
	ms, err := parseMountinfo(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 4 || !ms[0].V2 || ms[1].Controllers[0] != "memory" || ms[2].Dir != "/sys/fs/cgroup/cpu,cpuacct" ||
		len(ms[2].Controllers) != 2 || ms[3].Controllers[0] != "name=systemd" {
		t.Errorf("parsed %+v", ms)
	}
}

func TestResolvePath(t *testing.T) {
	for _, tc := range []struct {
		in      string
		systemd bool
		want    string
		bad     bool
	}{
		{"/docker/abc", false, "/docker/abc", false},
		{"docker/abc", false, "/docker/abc", false},
		{"", false, "/kabuto/id", false},
		{"system.slice:docker:abc", true, "/system.slice/docker-abc.scope", false},
		{"/a/../../etc", false, "", true},
		{"/..", false, "", true},
	} {
		got, err := ResolvePath(tc.in, "id", tc.systemd)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("ResolvePath(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestJoinRemove(t *testing.T) {
	root := t.TempDir()
	m := Mount{Dir: root, Controllers: []string{"cpuset"}}
	os.WriteFile(filepath.Join(root, "cpuset.cpus"), []byte("0-1"), 0o644)
	dirs, err := Join([]Mount{m}, "/a/b")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != 2 {
		t.Fatalf("created %v", dirs)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "a", "cpuset.cpus")); string(b) != "0-1" {
		t.Errorf("cpuset not inherited: %q", b)
	}
	// A plain directory keeps the copied files (a cgroup's vanish with it).
	os.Remove(filepath.Join(root, "a", "cpuset.cpus"))
	os.Remove(filepath.Join(root, "a", "b", "cpuset.cpus"))
	if err := Remove(dirs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Errorf("not removed")
	}
}
