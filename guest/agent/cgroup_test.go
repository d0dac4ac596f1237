package agent

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }

func TestCPUWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := cpuWeight(shares); got != want {
			t.Errorf("cpuWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestSwapMax(t *testing.T) {
	for _, tc := range []struct {
		swap, limit int64
		val         string
		ok, err     bool
	}{
		{0, 100, "", false, false},
		{-1, 100, "max", true, false},
		{300, 100, "200", true, false},
		{100, 100, "0", true, false},
		{50, 100, "", false, true},
		{300, 0, "", false, true},
		{300, -1, "", false, true},
		{-5, 100, "", false, true},
	} {
		val, ok, err := swapMax(tc.swap, tc.limit)
		if val != tc.val || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("swapMax(%d, %d) = %q %v %v", tc.swap, tc.limit, val, ok, err)
		}
	}
}

func TestResourceWrites(t *testing.T) {
	r := &specs.LinuxResources{
		Memory:  &specs.LinuxMemory{Limit: i64(64 << 20), Swap: i64(128 << 20), Reservation: i64(-1)},
		CPU:     &specs.LinuxCPU{Shares: u64(512), Quota: i64(50000), Cpus: "0", Mems: "0"},
		Pids:    &specs.LinuxPids{Limit: -1},
		Unified: map[string]string{"memory.high": "max", "io.weight": "50"},
	}
	got, err := resourceWrites(r)
	if err != nil {
		t.Fatal(err)
	}
	want := []cgroupWrite{
		{"memory.max", "67108864"}, {"memory.low", "max"}, {"memory.swap.max", "67108864"},
		{"cpu.weight", "20"}, {"cpu.max", "50000 100000"},
		{"pids.max", "max"}, {"io.weight", "50"}, {"memory.high", "max"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
	// Zero means unchanged; quota -1 with a period means no quota.
	got, _ = resourceWrites(&specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(0)},
		CPU:    &specs.LinuxCPU{Shares: u64(0), Quota: i64(-1), Period: u64(20000)},
		Pids:   &specs.LinuxPids{Limit: 0},
	})
	if !reflect.DeepEqual(got, []cgroupWrite{{"cpu.max", "max 20000"}}) {
		t.Fatalf("zero fields: %v", got)
	}
	// blkio weights become io.weight as runc converts them.
	for weight, want := range map[uint16]string{10: "1", 500: "4950", 1000: "10000", 5: "1"} {
		got, _ := resourceWrites(&specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: &weight}})
		if !reflect.DeepEqual(got, []cgroupWrite{{"io.weight", want}}) {
			t.Errorf("blkio weight %d: %v", weight, got)
		}
	}
	if _, err := resourceWrites(&specs.LinuxResources{Unified: map[string]string{"../x": "1"}}); err == nil {
		t.Fatal("unified key with a slash accepted")
	}
	if w, err := resourceWrites(nil); w != nil || err != nil {
		t.Fatal("nil resources")
	}
}

func TestApplyResourcesSkipsMissingFiles(t *testing.T) {
	cg := t.TempDir()
	os.WriteFile(filepath.Join(cg, "memory.max"), nil, 0o644)
	err := applyResources(cg, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(-1)},
		Pids:   &specs.LinuxPids{Limit: 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(cg, "memory.max")); string(b) != "1048576" {
		t.Fatalf("memory.max = %q", b)
	}
	if _, err := os.Stat(filepath.Join(cg, "pids.max")); !os.IsNotExist(err) {
		t.Fatal("a missing cgroup file was created")
	}
}

func TestCgroupPids(t *testing.T) {
	cg := t.TempDir()
	os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte("12\n34\n"), 0o644)
	if pids := cgroupPids(cg); !reflect.DeepEqual(pids, []int{12, 34}) {
		t.Fatalf("pids %v", pids)
	}
}
