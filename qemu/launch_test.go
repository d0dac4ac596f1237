package qemu

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// thpEnabled reads THP_enabled from /proc/<pid>/status ("" if absent).
func thpEnabled(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "THP_enabled:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestStartNoTHP(t *testing.T) {
	if thpEnabled(t, os.Getpid()) == "" {
		t.Skip("this kernel does not show THP_enabled")
	}
	for _, noTHP := range []bool{true, false} {
		cmd := exec.Command("sleep", "5")
		if err := startNoTHP(cmd, noTHP); err != nil {
			t.Fatal(err)
		}
		got := thpEnabled(t, cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if want := map[bool]string{true: "0", false: "1"}[noTHP]; got != want {
			t.Errorf("noTHP=%v: the child's THP_enabled is %s, want %s", noTHP, got, want)
		}
	}
	if got := thpEnabled(t, os.Getpid()); got != "1" {
		t.Errorf("kabuto's own THP_enabled left at %s", got)
	}
}
