package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, s string) string {
	p := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	t.Setenv(EnvVar, "")
	c, err := Load(write(t, "[hypervisor]\nmemory_mib = 256\naccel = \"tcg\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Hypervisor.MemoryMiB != 256 || c.Hypervisor.Accel != "tcg" || c.Hypervisor.VCPUs != 1 || c.Hypervisor.RootfsCache != "mmap" {
		t.Errorf("unexpected %+v", c.Hypervisor)
	}
	for _, tc := range []struct{ doc, want string }{
		{"[hypervisor]\nmemroy_mib = 1\n", "unknown keys: hypervisor.memroy_mib"},
		{"[hypervisor]\naccel = \"xen\"\n", "accel must be"},
		{"[hypervisor]\nvcpus = 0\n", "vcpus"},
		{"[hypervisor\n", "parse configuration"},
		{"[hypervisor]\nrootfs_cache = \"fscache\"\n", "rootfs_cache must be mmap or loose"},
		{"[factory]\ntemplate_path = \"templates\"\n", "template_path"},
	} {
		if _, err := Load(write(t, tc.doc)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want error with %q", tc.doc, err, tc.want)
		}
	}
	if _, err := Load("/nonexistent/kabuto.toml"); err == nil {
		t.Error("an explicit missing file must fail")
	}
	t.Setenv(EnvVar, write(t, "[agent]\nstart_timeout_seconds = 5\n"))
	c, err = Load("")
	if err != nil || c.Agent.StartTimeoutSeconds != 5 {
		t.Errorf("KABUTO_CONFIG not honoured: %+v %v", c, err)
	}
}

func TestSampleMatchesDefaults(t *testing.T) {
	c, err := Load("../configuration.toml.sample")
	if err != nil {
		t.Fatal(err)
	}
	c.Path = ""
	d := Default()
	if c.Hypervisor != d.Hypervisor || c.Agent != d.Agent || c.Factory != d.Factory {
		t.Errorf("the sample configuration differs from the built-in defaults:\n%+v\n%+v", c, d)
	}
}
