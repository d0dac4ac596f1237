package hostcgroup

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestApply(t *testing.T) {
	root := t.TempDir()
	v1 := filepath.Join(root, "cpu")
	v1p := filepath.Join(root, "pids")
	v2 := filepath.Join(root, "unified")
	files := map[string][]string{
		v1:  {"cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us", "cpuset.cpus"},
		v1p: {"pids.max"},
		v2:  {"cpu.weight", "cpu.max", "pids.max"},
	}
	for d, fs := range files {
		os.MkdirAll(filepath.Join(d, "c"), 0o755)
		for _, f := range fs {
			os.WriteFile(filepath.Join(d, "c", f), nil, 0o644)
		}
	}
	shares, quota, period := uint64(512), int64(50000), uint64(100000)
	res := &specs.LinuxResources{
		CPU:  &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period, Cpus: "0"},
		Pids: &specs.LinuxPids{Limit: 10},
		// Memory stays in the guest.
		Memory: &specs.LinuxMemory{Limit: &quota},
	}
	mounts := []Mount{
		{Dir: v1, Controllers: []string{"cpu", "cpuacct"}},
		{Dir: v1p, Controllers: []string{"pids"}},
		{Dir: v2, V2: true},
	}
	if err := Apply(mounts, "c", res); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"cpu/c/cpu.shares": "512", "cpu/c/cpu.cfs_period_us": "100000", "cpu/c/cpu.cfs_quota_us": "50000",
		// cpuset.cpus belongs to the cpuset hierarchy, not this one.
		"cpu/c/cpuset.cpus": "",
		// The VMM's threads need room: never below MinPids.
		"pids/c/pids.max":    "64",
		"unified/c/cpu.max":  "50000 100000",
		"unified/c/pids.max": "64",
	} {
		b, _ := os.ReadFile(filepath.Join(root, path))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", path, b, want)
		}
	}
	// A zero pids limit leaves pids.max alone; -1 is no limit.
	os.WriteFile(filepath.Join(v1p, "c", "pids.max"), []byte("77"), 0o644)
	Apply(mounts, "c", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: 0}})
	if b, _ := os.ReadFile(filepath.Join(v1p, "c", "pids.max")); string(b) != "77" {
		t.Errorf("limit 0 changed pids.max to %q", b)
	}
	Apply(mounts, "c", &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: -1}})
	if b, _ := os.ReadFile(filepath.Join(v1p, "c", "pids.max")); string(b) != "max" {
		t.Errorf("limit -1: pids.max %q", b)
	}
}
