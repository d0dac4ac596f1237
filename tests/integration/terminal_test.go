package integration

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// recvConsole accepts one connection on the console socket and receives
// the pty master, as containerd's shim and conmon do.
func recvConsole(t *testing.T, ln *net.UnixListener) *os.File {
	t.Helper()
	ln.SetDeadline(time.Now().Add(2 * time.Minute))
	c, err := ln.AcceptUnix()
	if err != nil {
		t.Fatalf("accept console: %v", err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "pty-master")
}

func TestTerminalConsoleSocket(t *testing.T) {
	e := newEnv(t)
	b, spec := e.bundle("sh")
	spec.Process.Terminal = true
	writeSpec(t, b, spec)
	sock := filepath.Join(e.dir, "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	masterc := make(chan *os.File, 1)
	go func() { masterc <- recvConsole(t, ln) }()
	pidFile := filepath.Join(e.dir, "tty.pid")
	e.must("create", "--bundle", b, "--console-socket", sock, "--pid-file", pidFile, "tty")
	master := <-masterc
	defer master.Close()
	if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 33, Col: 111}); err != nil {
		t.Fatal(err)
	}
	e.must("start", "tty")

	var out bytes.Buffer
	readDone := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			out.Write(buf[:n])
			if err != nil {
				close(readDone)
				return
			}
		}
	}()
	// The first resize is forwarded when the shim attaches; give the guest
	// shell a moment, then ask it what it sees.
	time.Sleep(500 * time.Millisecond)
	master.Write([]byte("tty; stty size; test -t 0 && echo IS-A-TTY; exit 7\n"))
	e.waitStatus("tty", "stopped", 30*time.Second)
	select {
	case <-readDone:
	case <-time.After(10 * time.Second):
	}
	got := out.String()
	for _, want := range []string{"/dev/pts/0", "33 111", "IS-A-TTY"} {
		if !strings.Contains(got, want) {
			t.Errorf("terminal output lacks %q:\n%s", want, got)
		}
	}
	e.must("delete", "tty")
}
