package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRAMInBytes(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "64m": 64 << 20, "64M": 64 << 20, "1g": 1 << 30, "1GiB": 1 << 30,
		"512kb": 512 << 10, "2 MB": 2 << 20, "1.5k": 1536, "3b": 3,
	} {
		got, err := ramInBytes(in)
		if err != nil || got != want {
			t.Errorf("ramInBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "m", "12zz", "-5", "1e3", "1x", "99999999999p"} {
		if got, err := ramInBytes(bad); err == nil {
			t.Errorf("ramInBytes(%q) = %d, want an error", bad, got)
		}
	}
}

func TestSubCgroupFlag(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
		err  string
	}{
		{nil, "", ""},
		{[]string{"sub"}, "sub", ""},
		{[]string{"pids,memory:sub"}, "sub", ""},
		{[]string{"pids:a/b", "memory:a/b"}, "a/b", ""},
		{[]string{"pids:a", "memory:b"}, "", "path must be the same"},
		{[]string{"a", "b"}, "", "missing <controller>: prefix"},
		{[]string{"pids:a", "pids:a"}, "", "specified multiple times"},
		{[]string{"x:y:z"}, "", "invalid --cgroup argument"},
	} {
		got, err := subCgroupFlag(c.in)
		if c.err == "" && (err != nil || got != c.want) || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("subCgroupFlag(%q) = %q, %v", c.in, got, err)
		}
	}
}

func TestCheckUpdatable(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	u64 := func(v uint64) *uint64 { return &v }
	u16 := func(v uint16) *uint16 { return &v }
	ok := []*specs.LinuxResources{
		{},
		{CPU: &specs.LinuxCPU{RealtimePeriod: u64(0), RealtimeRuntime: i64(0)}},
		{BlockIO: &specs.LinuxBlockIO{Weight: u16(0)}},
		{BlockIO: &specs.LinuxBlockIO{Weight: u16(500)}},
	}
	for _, r := range ok {
		if err := checkUpdatable(r); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []*specs.LinuxResources{
		{CPU: &specs.LinuxCPU{RealtimePeriod: u64(1000)}},
		{CPU: &specs.LinuxCPU{RealtimeRuntime: i64(-1)}},
		{BlockIO: &specs.LinuxBlockIO{Weight: u16(5)}},
		{BlockIO: &specs.LinuxBlockIO{Weight: u16(1001)}},
	}
	for _, r := range bad {
		if err := checkUpdatable(r); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

func TestValidateProcess(t *testing.T) {
	for _, c := range []struct {
		p   specs.Process
		err string
	}{
		{specs.Process{Args: []string{"true"}, Cwd: "/"}, ""},
		{specs.Process{Args: []string{"true"}}, "Cwd property must not be empty"},
		{specs.Process{Args: []string{"true"}, Cwd: "tmp"}, "Cwd must be an absolute path"},
		{specs.Process{Cwd: "/"}, "args must not be empty"},
	} {
		err := validateProcess(&c.p)
		if c.err == "" && err != nil || c.err != "" && (err == nil || err.Error() != c.err) {
			t.Errorf("%+v: %v", c.p, err)
		}
	}
}
