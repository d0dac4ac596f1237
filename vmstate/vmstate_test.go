package vmstate

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want error
	}{
		{"abc", nil},
		{"a.b_c+d-e", nil},
		{strings.Repeat("f", 64), nil},
		{"", ErrEmptyID},
		{"a/b", ErrInvalidID},
		{"..", ErrInvalidID},
		{".", ErrInvalidID},
		{"../etc", ErrInvalidID},
		{"a\x00b", ErrInvalidID},
		{"a b", ErrInvalidID},
		{strings.Repeat("x", MaxIDLength+1), ErrInvalidID},
	} {
		if err := ValidateID(tc.id); !errors.Is(err, tc.want) {
			t.Errorf("ValidateID(%q) = %v, want %v", tc.id, err, tc.want)
		}
	}
}

func TestCreateLoadRemove(t *testing.T) {
	s := Store{Root: t.TempDir()}
	h, err := s.Create("c1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("c1"); !errors.Is(err, ErrExist) {
		t.Fatalf("second create: %v, want ErrExist", err)
	}
	self, err := ProcessOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	st := &State{ID: "c1", Shim: self, QEMU: self, Started: true}
	if err := h.Save(st); err != nil {
		t.Fatal(err)
	}
	h.Unlock()
	got, err := s.Load("c1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status() != Running {
		t.Errorf("status = %s, want running", got.Status())
	}
	got.Paused = true
	if got.Status() != Paused {
		t.Errorf("status = %s, want paused", got.Status())
	}
	got.QEMU.StartTime++ // another process that reused the pid
	if got.Status() != Stopped {
		t.Errorf("status with a reused pid = %s, want stopped", got.Status())
	}
	if got.OCI(Stopped).Pid != 0 {
		t.Errorf("a stopped container reports a pid")
	}
	ids, _ := s.List()
	if len(ids) != 1 || ids[0] != "c1" {
		t.Errorf("List = %v", ids)
	}
	h2, err := s.Lock("c1")
	if err != nil {
		t.Fatal(err)
	}
	if err := h2.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock("c1"); !errors.Is(err, ErrNotExist) {
		t.Errorf("lock after remove: %v", err)
	}
	if _, err := s.Load("nope"); !IsNotExist(err) {
		t.Errorf("load unknown: %v", err)
	}
}

func TestCorruptState(t *testing.T) {
	s := Store{Root: t.TempDir()}
	os.MkdirAll(s.Dir("bad"), 0o700)
	os.WriteFile(filepath.Join(s.Dir("bad"), "state.json"), []byte("{"), 0o600)
	if _, err := s.Load("bad"); err == nil || IsNotExist(err) {
		t.Fatalf("corrupt state: %v", err)
	}
}

func TestSocketPathLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p, release, err := SocketPath(dir, "x.sock")
	if err != nil {
		t.Fatal(err)
	}
	if len(p) > maxSunPath {
		t.Fatalf("path too long: %s", p)
	}
	ln, err := net.Listen("unix", p)
	release()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := os.Stat(filepath.Join(dir, "x.sock")); err != nil {
		t.Fatalf("socket not in the long dir: %v", err)
	}
	p2, release2, _ := SocketPath(dir, "x.sock")
	c, err := net.Dial("unix", p2)
	release2()
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestUnescapeMountinfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", "/plain": "/plain", `/x\134y`: `/x\y`, `/bad\04`: `/bad\04`} {
		if got := UnescapeMountinfo(in); got != want {
			t.Errorf("UnescapeMountinfo(%q) = %q, want %q", in, got, want)
		}
	}
}

// Remove never deletes through a mount: what is mounted below the state
// directory is detached first, and the files it showed stay.
func TestRemoveDetachesMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	st := Store{Root: t.TempDir()}
	h, err := st.Create("m")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "precious"), []byte("keep"), 0o644)
	target := filepath.Join(h.Dir, "shared", "rootfs")
	os.MkdirAll(target, 0o755)
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		t.Skip(err)
	}
	if err := h.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(src, "precious")); err != nil {
		t.Fatalf("Remove deleted through the mount: %v", err)
	}
	if _, err := os.Stat(h.Dir); !os.IsNotExist(err) {
		t.Fatalf("state dir left: %v", err)
	}
}

func TestWaitGone(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p, err := ProcessOf(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if p.WaitGone(10 * time.Millisecond) {
		t.Fatal("a running process reported gone")
	}
	go cmd.Wait()
	start := time.Now()
	if !p.WaitGone(5 * time.Second) {
		t.Fatal("an exited process not reported gone")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("WaitGone took %v for a process that ran 0.2 s", d)
	}
	// A pid now unused (or reused: the start time differs) is gone at once.
	if !p.WaitGone(time.Second) {
		t.Error("a reaped process not reported gone")
	}
}
