package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A signal sent right after start reaches a process that traps it at its
// very beginning: start returns once the process has settled, so the
// kernel does not discard the signal at the PID-1 process for want of a
// handler (under emulation its start-up takes tens of milliseconds).
func TestSignalRightAfterStart(t *testing.T) {
	e := newEnv(t)
	out := t.TempDir()
	b, spec := e.bundle("sh", "-c", "trap 'touch /out/got-term; exit 0' TERM; sleep 20 & wait $!")
	spec.Mounts = append(spec.Mounts, specsBind(out, "/out"))
	writeSpec(t, b, spec)
	for i := 0; i < 3; i++ {
		os.Remove(filepath.Join(out, "got-term"))
		e.must("create", "--bundle", b, "sig")
		e.must("start", "sig")
		e.must("kill", "sig", "TERM")
		e.waitStatus("sig", "stopped", 10*time.Second)
		e.must("delete", "sig")
		if _, err := os.Stat(filepath.Join(out, "got-term")); err != nil {
			t.Fatalf("round %d: the TERM sent right after start was lost", i)
		}
	}
}
