package agent

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/guest/seccomp"
)

func TestLookPath(t *testing.T) {
	dir := t.TempDir()
	bin, sbin := filepath.Join(dir, "bin"), filepath.Join(dir, "sbin")
	os.MkdirAll(bin, 0o755)
	os.MkdirAll(sbin, 0o755)
	os.MkdirAll(filepath.Join(bin, "adir"), 0o755)
	os.WriteFile(filepath.Join(bin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(sbin, "tool"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(sbin, "noexec"), []byte("x"), 0o644)
	env := []string{"HOME=/", "PATH=" + sbin + ":" + bin}
	for _, tc := range []struct {
		file, want, err string
	}{
		{"tool", filepath.Join(sbin, "tool"), ""},
		{"noexec", "", `exec: "noexec": executable file not found in $PATH`},
		{"adir", "", `exec: "adir": executable file not found in $PATH`},
		{"foo", "", `exec: "foo": executable file not found in $PATH`},
		{filepath.Join(bin, "tool"), filepath.Join(bin, "tool"), ""},
		{"/nonexistent/x", "", `exec: "/nonexistent/x": stat /nonexistent/x: no such file or directory`},
	} {
		got, err := lookPath(tc.file, env)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("lookPath(%q) error %v, want %q", tc.file, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("lookPath(%q) = %q, %v; want %q", tc.file, got, err, tc.want)
		}
	}
	// No PATH in env: the default one (runc's) applies, never the agent's.
	if _, err := lookPath("kabuto-no-such-tool", []string{"A=b"}); err == nil || !strings.Contains(err.Error(), "not found in $PATH") {
		t.Errorf("default PATH: %v", err)
	}
}

func TestSetRlimitsUnknown(t *testing.T) {
	err := setRlimits([]specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Hard: 1, Soft: 1}})
	if err == nil || !strings.Contains(err.Error(), "RLIMIT_BOGUS") {
		t.Fatalf("got %v", err)
	}
}

func TestReadStatus(t *testing.T) {
	for _, tc := range []struct{ in, err string }{
		{"ready\n", ""},
		{"warning: unknown capability \"X\" ignored\nready\n", ""},
		{"error: exec: \"x\": executable file not found in $PATH\n", `exec: "x": executable file not found in $PATH`},
		{"", "the container process exited during setup"},
		{"bogus\n", `unexpected status "bogus" from the container process`},
	} {
		err := readStatus(bufio.NewReader(strings.NewReader(tc.in)))
		if (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("readStatus(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

// The init gets the compiled filter, not the profile; the agent's spec (exec
// compiles from it) keeps the profile.
func TestInitConfigSeccomp(t *testing.T) {
	prof := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mkdir"}, Action: specs.ActErrno},
	}}
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"sh"}}, Linux: &specs.Linux{Seccomp: prof}}
	cfg, err := initConfig(spec, "/rootfs", false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Spec.Linux.Seccomp != nil {
		t.Error("the init's spec still carries the seccomp profile")
	}
	if spec.Linux.Seccomp != prof {
		t.Error("the agent's spec lost its seccomp profile")
	}
	f, err := seccomp.FromBytes(cfg.SeccompProgram, cfg.SeccompFlags)
	if err != nil || f == nil || cfg.SeccompFlags&unix.SECCOMP_FILTER_FLAG_TSYNC == 0 {
		t.Errorf("the init's filter: %+v, %v; want a program with TSYNC", f, err)
	}
	cfg, err = initConfig(&specs.Spec{Process: spec.Process, Linux: &specs.Linux{}}, "/rootfs", false)
	if err != nil || len(cfg.SeccompProgram) != 0 {
		t.Errorf("without a profile: %v, %d program bytes", err, len(cfg.SeccompProgram))
	}
}
