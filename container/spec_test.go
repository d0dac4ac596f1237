package container

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kabuto-runtime/kabuto/config"
	"github.com/kabuto-runtime/kabuto/protocol"
)

func minimalSpec() *specs.Spec {
	return &specs.Spec{
		Version: "1.0.2-dev",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}}},
	}
}

func TestValidateSpec(t *testing.T) {
	dir := t.TempDir()
	if err := ValidateSpec(minimalSpec(), dir); err != nil {
		t.Fatalf("a docker-style 1.0.2-dev spec is refused: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*specs.Spec)
		want string
	}{
		"no process":   {func(s *specs.Spec) { s.Process = nil }, "process is not set"},
		"no args":      {func(s *specs.Spec) { s.Process.Args = nil }, "process.args"},
		"no root":      {func(s *specs.Spec) { s.Root = nil }, "root.path"},
		"no linux":     {func(s *specs.Spec) { s.Linux = nil }, "linux section"},
		"relative cwd": {func(s *specs.Spec) { s.Process.Cwd = "tmp" }, "cwd"},
		"version 2":    {func(s *specs.Spec) { s.Version = "2.0.0" }, "not supported"},
		"bad version":  {func(s *specs.Spec) { s.Version = "one" }, "SemVer"},
		"unknown cap": {func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: []string{"CAP_BOGUS"}}
		}, "CAP_BOGUS"},
		"bad namespace": {func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, "bogus"},
	} {
		s := minimalSpec()
		tc.mod(s)
		err := ValidateSpec(s, dir)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: multi-line error %q", name, err)
		}
	}
}

func TestLoadSpecErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadSpec(dir); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing config.json: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion":`), 0o644)
	if _, err := LoadSpec(dir); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Errorf("malformed config.json: %v", err)
	}
}

func TestRootfsPath(t *testing.T) {
	dir := t.TempDir()
	s := minimalSpec()
	if _, err := RootfsPath(s, dir); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing rootfs: %v", err)
	}
	os.Mkdir(filepath.Join(dir, "rootfs"), 0o755)
	if p, err := RootfsPath(s, dir); err != nil || p != filepath.Join(dir, "rootfs") {
		t.Errorf("relative rootfs: %q %v", p, err)
	}
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o644)
	s.Root.Path = filepath.Join(dir, "file")
	if _, err := RootfsPath(s, dir); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file rootfs: %v", err)
	}
}

func TestIsBind(t *testing.T) {
	for _, tc := range []struct {
		m    specs.Mount
		want bool
	}{
		{specs.Mount{Type: "bind"}, true},
		{specs.Mount{Type: "none", Options: []string{"rbind", "ro"}}, true},
		{specs.Mount{Type: "", Options: []string{"bind"}}, true},
		{specs.Mount{Type: "tmpfs", Options: []string{"nosuid"}}, false},
		{specs.Mount{Type: "proc"}, false},
	} {
		if got := protocol.IsBindMount(tc.m); got != tc.want {
			t.Errorf("IsBindMount(%+v) = %v", tc.m, got)
		}
	}
}

func TestVMSizing(t *testing.T) {
	r := &Runtime{Config: config.Default()}
	s := minimalSpec()
	vm := r.vmFor("x", "/run/kabuto/x", s, "tcg")
	if vm.VCPUs != 1 || vm.MemoryMiB != 128 {
		t.Errorf("defaults: %d vCPUs %d MiB", vm.VCPUs, vm.MemoryMiB)
	}
	quota, period, limit := int64(250000), uint64(100000), int64(512<<20)
	s.Linux.Resources = &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
		Memory: &specs.LinuxMemory{Limit: &limit},
	}
	vm = r.vmFor("x", "/run/kabuto/x", s, "tcg")
	if vm.VCPUs != 3 || vm.MemoryMiB != 512+GuestOverheadMiB {
		t.Errorf("sized: %d vCPUs %d MiB", vm.VCPUs, vm.MemoryMiB)
	}
	quota = 10_000_000
	if vm = r.vmFor("x", "/x", s, "tcg"); vm.VCPUs != r.Config.Hypervisor.MaxVCPUs {
		t.Errorf("quota not capped: %d", vm.VCPUs)
	}
	if vm.ShareDir != "/x/shared" || vm.Name != "kabuto-x" {
		t.Errorf("paths: %+v", vm)
	}
}

// `runc spec` (runc 1.1) writes ambient capabilities without inheritable
// ones; runc runs that bundle, so kabuto must too, without the ambient ones
// the kernel would refuse to raise.
func TestLoadSpecRuncDefaultCaps(t *testing.T) {
	dir := t.TempDir()
	caps := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	s := minimalSpec()
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps, Ambient: caps}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
	got, err := LoadSpec(dir)
	if err != nil {
		t.Fatalf("runc spec's default capabilities are refused: %v", err)
	}
	if n := len(got.Process.Capabilities.Ambient); n != 0 {
		t.Errorf("ambient caps that are not inheritable kept: %v", got.Process.Capabilities.Ambient)
	}
	p := &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Permitted: caps, Inheritable: caps[:1], Ambient: caps,
	}}
	DropUnraisableAmbient(p)
	if a := p.Capabilities.Ambient; len(a) != 1 || a[0] != "CAP_AUDIT_WRITE" {
		t.Errorf("ambient after drop = %v, want [CAP_AUDIT_WRITE]", a)
	}
}
