package agent

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		ws   unix.WaitStatus
		want protocol.WaitResponse
	}{
		{0, protocol.WaitResponse{ExitCode: 0}},
		{42 << 8, protocol.WaitResponse{ExitCode: 42}},
		{255 << 8, protocol.WaitResponse{ExitCode: 255}},
		{unix.WaitStatus(unix.SIGTERM), protocol.WaitResponse{ExitCode: 143, Signal: 15}},
		{unix.WaitStatus(unix.SIGKILL) | 0x80, protocol.WaitResponse{ExitCode: 137, Signal: 9}}, // core dumped
	} {
		if got := exitStatus(tc.ws); got != tc.want {
			t.Errorf("exitStatus(%#x) = %+v, want %+v", int(tc.ws), got, tc.want)
		}
	}
}

func TestProcTableEarlyExit(t *testing.T) {
	tbl := newProcTable()
	now := time.Now()
	// An exit reaped before registration is settled at registration.
	tbl.mu.Lock()
	tbl.reaped(10, 3<<8, now)
	tbl.mu.Unlock()
	p := newProcess("e1", false)
	p.pid = 10
	if err := tbl.reserve("e1"); err != nil {
		t.Fatal(err)
	}
	if err := tbl.reserve("e1"); err == nil {
		t.Fatal("id reserved twice")
	}
	tbl.register(p)
	select {
	case <-p.exited:
	case <-time.After(time.Second):
		t.Fatal("early exit not applied")
	}
	if p.status.ExitCode != 3 {
		t.Fatalf("status %+v", p.status)
	}
	// A forgotten helper leaves no trace, whichever comes first.
	tbl.forget(20)
	tbl.mu.Lock()
	tbl.reaped(20, 0, now)
	tbl.reaped(21, 0, now)
	tbl.mu.Unlock()
	tbl.forget(21)
	if len(tbl.early) != 0 || len(tbl.ignore) != 0 {
		t.Fatalf("early %v ignore %v", tbl.early, tbl.ignore)
	}
	// Old unclaimed exits (orphans) are pruned.
	tbl.mu.Lock()
	tbl.reaped(30, 0, now.Add(-2*earlyExitTTL))
	tbl.reaped(31, 0, now)
	tbl.mu.Unlock()
	if _, ok := tbl.early[30]; ok {
		t.Fatal("stale early exit kept")
	}
	if _, err := tbl.get("nope"); err == nil {
		t.Fatal("get of an unknown id")
	}
	tbl.release("e1")
	if _, err := tbl.get("e1"); err == nil {
		t.Fatal("released id still there")
	}
}

// startTestProcess returns a process whose stdout is a pipe the test writes.
func startTestProcess(t *testing.T) (*process, *os.File, *procTable) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := newProcess("e1", false)
	p.pid = 99
	p.stdout = r
	tbl := newProcTable()
	tbl.register(p)
	p.startRelays()
	return p, w, tbl
}

func attachOut(t *testing.T, p *process) (chan string, *time.Time) {
	t.Helper()
	if err := p.attachCheck(protocol.MethodAttachOut); err != nil {
		t.Fatal(err)
	}
	host, agent := net.Pipe()
	p.attach(protocol.MethodAttachOut, agent)
	got := make(chan string, 1)
	var closedAt time.Time
	go func() {
		b, _ := io.ReadAll(host)
		closedAt = time.Now()
		got <- string(b)
	}()
	return got, &closedAt
}

func TestOutputBeforeAttachIsKept(t *testing.T) {
	p, w, tbl := startTestProcess(t)
	w.WriteString("early output\n")
	w.Close()
	tbl.finish(p, 0)
	// Nobody attached at exit: wait does not block on the output...
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		t.Fatal("wait blocked on an unattached stream")
	}
	// ...which a late attach still gets in full.
	got, _ := attachOut(t, p)
	select {
	case s := <-got:
		if s != "early output\n" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("late attach got no EOF")
	}
}

func TestOutputCutAfterGrace(t *testing.T) {
	p, w, tbl := startTestProcess(t)
	defer w.Close() // a daemonized grandchild keeps the pipe open
	got, closedAt := attachOut(t, p)
	w.WriteString("hi\n")
	time.Sleep(50 * time.Millisecond)
	exit := time.Now()
	tbl.finish(p, 0)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		t.Fatal("wait never returned while the pipe stayed open")
	}
	if s := <-got; s != "hi\n" {
		t.Fatalf("got %q", s)
	}
	if d := closedAt.Sub(exit); d < outputGrace-50*time.Millisecond || d > outputGrace+500*time.Millisecond {
		t.Fatalf("stream closed %v after the exit, want about %v", d, outputGrace)
	}
	if err := p.signal(unix.SIGTERM); err == nil || err.Error() != "process already finished" {
		t.Fatalf("signal after exit: %v", err)
	}
}

func TestAttachChecks(t *testing.T) {
	p := newProcess("init", true)
	if err := p.attachCheck(protocol.MethodAttachErr); err == nil {
		t.Fatal("stderr of a terminal process attached")
	}
	if err := p.attachCheck(protocol.MethodAttachStdin); err == nil {
		t.Fatal("stdin attached without a stdin")
	}
	if err := p.attachCheck(protocol.MethodAttachOut); err != nil {
		t.Fatal(err)
	}
	if err := p.attachCheck(protocol.MethodAttachOut); err == nil {
		t.Fatal("stdout attached twice")
	}
}
