package nsenter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/guest/seccomp"
)

func intp(i int) *int { return &i }

func fullConfig() *ExecConfig {
	return &ExecConfig{
		Args: []string{"sh", "-c", "echo hi"}, Env: []string{"PATH=/bin", "A=b"}, Cwd: "/tmp",
		Terminal: true, NoNewPrivileges: true, Umask: 0o027, UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 3000},
		OOMScoreAdj: intp(-500), Caps: &Caps{Bounding: 1, Effective: 2, Permitted: 3, Inheritable: 4, Ambient: 5}, LastCap: 40,
		Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 100, Hard: 200}},
		Seccomp: []unix.SockFilter{{Code: 6, K: 0x7fff0000}, {Code: 0x15, Jt: 1, Jf: 2, K: 3}}, SeccompFlags: 2,
	}
}

func TestEncodeLayout(t *testing.T) {
	b, err := fullConfig().Encode()
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	if string(b[:4]) != "KBX1" {
		t.Fatalf("magic %q", b[:4])
	}
	hdr := []uint32{flagTerminal | flagNoNewPrivs | flagCaps | flagOOMScoreAdj, 0o027, 1000, 1001, 40, uint32(0xffffffff - 499)}
	for i, want := range hdr {
		if got := le.Uint32(b[4+4*i:]); got != want {
			t.Errorf("header word %d = %#x, want %#x", i, got, want)
		}
	}
	off := 4 + 4*len(hdr)
	for i, want := range []uint64{1, 2, 3, 4, 5} {
		if got := le.Uint64(b[off+8*i:]); got != want {
			t.Errorf("cap mask %d = %d, want %d", i, got, want)
		}
	}
	// The tail: cwd, args, env.
	tail := []byte{}
	for _, s := range [][]string{{"/tmp"}} {
		tail = appendStrs(tail, s, false)
	}
	tail = appendStrs(tail, []string{"sh", "-c", "echo hi"}, true)
	tail = appendStrs(tail, []string{"PATH=/bin", "A=b"}, true)
	if !bytes.HasSuffix(b, tail) {
		t.Errorf("blob does not end with cwd, args, env:\n%x\n%x", b, tail)
	}
	if err := parse(b); err != nil {
		t.Errorf("C parser rejects the encoder's blob: %v", err)
	}
	// A minimal config: defaults filled in, nothing optional.
	b, err = (&ExecConfig{Args: []string{"true"}}).Encode()
	if err != nil {
		t.Fatal(err)
	}
	if flags := le.Uint32(b[4:]); flags != 0 {
		t.Errorf("minimal flags %#x", flags)
	}
	if !bytes.Contains(b, []byte("\x01\x00\x00\x00/")) {
		t.Errorf("empty cwd is not encoded as /: %x", b)
	}
	if err := parse(b); err != nil {
		t.Errorf("C parser rejects the minimal blob: %v", err)
	}
}

func appendStrs(b []byte, v []string, counted bool) []byte {
	if counted {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
	}
	for _, s := range v {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
		b = append(b, s...)
	}
	return b
}

func TestEncodeRejects(t *testing.T) {
	for name, mod := range map[string]func(c *ExecConfig){
		"no args":          func(c *ExecConfig) { c.Args = nil },
		"NUL in arg":       func(c *ExecConfig) { c.Args = []string{"a\x00b"} },
		"NUL in env":       func(c *ExecConfig) { c.Env = []string{"A=\x00"} },
		"NUL in cwd":       func(c *ExecConfig) { c.Cwd = "/\x00" },
		"umask":            func(c *ExecConfig) { c.Umask = 0o1000 },
		"last cap":         func(c *ExecConfig) { c.LastCap = 64 },
		"rlimit resource":  func(c *ExecConfig) { c.Rlimits = []Rlimit{{Resource: 16}} },
		"rlimit negative":  func(c *ExecConfig) { c.Rlimits = []Rlimit{{Resource: -1}} },
		"too many rlimits": func(c *ExecConfig) { c.Rlimits = make([]Rlimit, 17) },
		"oom range":        func(c *ExecConfig) { c.OOMScoreAdj = intp(1 << 40) },
		"long program":     func(c *ExecConfig) { c.Seccomp = make([]unix.SockFilter, 4097) },
		"flags, no filter": func(c *ExecConfig) { c.Seccomp = nil },
		"too many gids":    func(c *ExecConfig) { c.AdditionalGids = make([]uint32, 65537) },
		"too large":        func(c *ExecConfig) { c.Env = []string{strings.Repeat("x", 16<<20)} },
	} {
		c := fullConfig()
		mod(c)
		if _, err := c.Encode(); err == nil {
			t.Errorf("%s: encoded", name)
		}
	}
}

// TestParseMalformed feeds the C parser broken blobs: every truncation of a
// valid one, bad counts and lengths, unknown bits, trailing bytes.
func TestParseMalformed(t *testing.T) {
	good, err := fullConfig().Encode()
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(good); n++ {
		if parse(good[:n]) == nil {
			t.Errorf("truncated to %d of %d bytes: accepted", n, len(good))
		}
	}
	if err := parse(append(good[:len(good):len(good)], 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
		t.Errorf("trailing byte: %v", err)
	}
	le := binary.LittleEndian
	// Offsets of the counted sections of the minimal config.
	minimal, _ := (&ExecConfig{Args: []string{"true"}, Seccomp: []unix.SockFilter{{Code: 6}}}).Encode()
	const gidsAt = 4 + 6*4 + 5*8
	const rlimitsAt = gidsAt + 4
	const seccompAt = rlimitsAt + 4
	const cwdAt = seccompAt + 8 + 8
	const argsAt = cwdAt + 4 + 1
	patch := func(off int, v uint32) []byte {
		b := bytes.Clone(minimal)
		le.PutUint32(b[off:], v)
		return b
	}
	if err := parse(minimal); err != nil {
		t.Fatalf("minimal blob rejected: %v", err)
	}
	for name, tc := range map[string]struct {
		b    []byte
		want string
	}{
		"empty":             {nil, "bad magic"},
		"magic":             {append([]byte("KBX2"), minimal[4:]...), "bad magic"},
		"flags":             {patch(4, 16), "unknown flags"},
		"umask":             {patch(8, 0o1000), "umask"},
		"last cap":          {patch(20, 64), "last capability"},
		"huge gid count":    {patch(gidsAt, 0xffffffff), "group count"},
		"gid count":         {patch(gidsAt, 100), "group count"},
		"rlimit count":      {patch(rlimitsAt, 17), "rlimit count"},
		"rlimit beyond end": {patch(rlimitsAt, 2), "rlimit count"},
		"insn count":        {patch(seccompAt+4, 4097), "seccomp program length"},
		"insns beyond end":  {patch(seccompAt+4, 1000), "seccomp program length"},
		"flags no program": {func() []byte {
			b := patch(seccompAt, 1)
			return append(b[:seccompAt+4], append([]byte{0, 0, 0, 0}, b[seccompAt+16:]...)...)
		}(), "seccomp flags without a program"},
		"cwd length": {patch(cwdAt, 0xfffffff0), "truncated string"},
		"empty cwd":  {append(patch(cwdAt, 0)[:cwdAt+4], minimal[cwdAt+5:]...), "empty cwd"},
		"NUL in cwd": {func() []byte { b := bytes.Clone(minimal); b[cwdAt+4] = 0; return b }(), "NUL"},
		"no args":    {append(patch(argsAt, 0)[:argsAt+4], minimal[argsAt+4+4+4:]...), "no process to run"},
		"arg count":  {patch(argsAt, 0x40000000), "string count"},
	} {
		err := parse(tc.b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", name, err, tc.want)
		}
	}
	// A bad rlimit resource.
	b, _ := (&ExecConfig{Args: []string{"true"}, Rlimits: []Rlimit{{Resource: 1}}}).Encode()
	le.PutUint32(b[rlimitsAt+4:], 16)
	if err := parse(b); err == nil || !strings.Contains(err.Error(), "resource") {
		t.Errorf("rlimit resource 16: %v", err)
	}
}

// child is an exec child started on the host through the real constructor:
// this test binary, re-executed with the nsenter variables naming the test
// process itself (no namespace differs, so none is joined).
type child struct {
	t       *testing.T
	pid     int
	status  *bufio.Reader
	startW  *os.File
	out     *os.File
	console *os.File
}

func startChild(t *testing.T, blob []byte) *child {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (the exec child changes its identity)")
	}
	pipe := func() (*os.File, *os.File) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		return r, w
	}
	cfgR, cfgW := pipe()
	statusR, statusW := pipe()
	startR, startW := pipe()
	nsR, nsW := pipe()
	outR, outW := pipe()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	consoleA, consoleC := os.NewFile(uintptr(pair[0]), "console"), os.NewFile(uintptr(pair[1]), "console")
	// Should the constructor not take over, the test binary runs no test.
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"PATH=/bin", "_KABUTO_NSENTER_PID=" + strconv.Itoa(os.Getpid()), "_KABUTO_NSENTER_FD=7"}
	cmd.Stdout, cmd.Stderr = outW, outW
	cmd.ExtraFiles = []*os.File{cfgR, statusW, startR, consoleC, nsW}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*os.File{cfgR, statusW, startR, consoleC, nsW, outW} {
		f.Close()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("nsenter intermediate: %v", err)
	}
	line, _ := bufio.NewReader(nsR).ReadString('\n')
	nsR.Close()
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("nsenter answer %q", line)
	}
	c := &child{t: t, pid: pid, status: bufio.NewReader(statusR), startW: startW, out: outR, console: consoleA}
	t.Cleanup(func() {
		unix.Kill(pid, unix.SIGKILL)
		unix.Wait4(pid, nil, 0, nil)
		statusR.Close()
		startW.Close()
		outR.Close()
		consoleA.Close()
	})
	go func() {
		cfgW.Write(blob)
		cfgW.Close()
	}()
	return c
}

// ready reads the status up to "ready" or an error.
func (c *child) ready() error {
	line, err := c.status.ReadString('\n')
	if err != nil {
		return fmt.Errorf("status: %v (%q)", err, line)
	}
	line = strings.TrimSpace(line)
	if line == "ready" {
		return nil
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return errors.New(msg)
	}
	return fmt.Errorf("unexpected status %q", line)
}

// run sends the start byte and returns the status after it ("" on EOF: the
// exec happened), the output and the exit status.
func (c *child) run() (string, string, unix.WaitStatus) {
	c.t.Helper()
	c.startW.Write([]byte{1})
	c.startW.Close()
	rest, _ := io.ReadAll(c.status)
	out, _ := io.ReadAll(c.out)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(c.pid, &ws, 0, nil); err != nil {
		c.t.Fatal(err)
	}
	return strings.TrimSpace(string(rest)), string(out), ws
}

func encode(t *testing.T, c *ExecConfig) []byte {
	t.Helper()
	b, err := c.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func statusField(out, field string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

// TestExecChild runs the C exec child for real: identity, groups,
// capabilities, rlimits, oom_score_adj, umask, cwd, env, seccomp with
// no_new_privs, and no fd of the agent left open.
func TestExecChild(t *testing.T) {
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	script := `echo "X=$X"; pwd; id -u; id -g; id -G; ulimit -n; umask; cat /proc/self/oom_score_adj
grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; ls /proc/$$/fd | tr '\n' ' '; echo
mkdir ` + dir + `/made && echo mkdir-ok || echo mkdir-denied`
	filter, err := seccomp.Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno}}})
	if err != nil {
		t.Fatal(err)
	}
	netBind, kill, chown := uint64(1)<<10, uint64(1)<<5, uint64(1)
	cfg := &ExecConfig{
		Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin", "X=1"}, Cwd: dir,
		NoNewPrivileges: true, Umask: 0o027, UID: 1000, GID: 1001, AdditionalGids: []uint32{2000, 3000},
		OOMScoreAdj: intp(321), LastCap: lastCap(t),
		Caps:    &Caps{Bounding: netBind | kill | chown, Effective: netBind | kill, Permitted: netBind | kill, Inheritable: netBind, Ambient: netBind},
		Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 123, Hard: 456}},
		Seccomp: filter.Program, SeccompFlags: filter.Flags &^ unix.SECCOMP_FILTER_FLAG_TSYNC,
	}
	c := startChild(t, encode(t, cfg))
	if err := c.ready(); err != nil {
		t.Fatal(err)
	}
	rest, out, ws := c.run()
	if rest != "" || ws.ExitStatus() != 0 {
		t.Fatalf("status after start %q, exit %v, output:\n%s", rest, ws, out)
	}
	lines := strings.Split(out, "\n")
	want := []string{"X=1", dir, "1000", "1001", "1001 2000 3000", "123", "0027", "321"}
	for i, w := range want {
		if i >= len(lines) || lines[i] != w {
			t.Errorf("line %d: want %q; output:\n%s", i, w, out)
			break
		}
	}
	for field, want := range map[string]string{
		// A non-root uid keeps across the exec what is ambient.
		"CapBnd": fmt.Sprintf("%016x", netBind|kill|chown), "CapEff": fmt.Sprintf("%016x", netBind),
		"CapPrm": fmt.Sprintf("%016x", netBind), "CapInh": fmt.Sprintf("%016x", netBind),
		"CapAmb": fmt.Sprintf("%016x", netBind), "NoNewPrivs": "1", "Seccomp": "2",
	} {
		if got := statusField(out, field); got != want {
			t.Errorf("%s = %s, want %s", field, got, want)
		}
	}
	// The shell's own fds: stdio and the one ls has open, nothing else.
	if !strings.Contains(out, "\n0 1 2 \n") && !strings.Contains(out, "\n0 1 2 3 \n") {
		t.Errorf("fds leaked into the process:\n%s", out)
	}
	if !strings.Contains(out, "mkdir-denied") {
		t.Errorf("seccomp filter not loaded:\n%s", out)
	}
}

func lastCap(t *testing.T) int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestExecChildSeccompBeforeDrop: without no_new_privs the filter goes in
// first, while the process still has CAP_SYS_ADMIN; a profile that denies
// setresuid then fails the set-up with its error, after the start byte.
func TestExecChildSeccompBeforeDrop(t *testing.T) {
	filter, err := seccomp.Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"setresuid"}, Action: specs.ActErrno}}})
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, encode(t, &ExecConfig{Args: []string{"/bin/true"}, Cwd: "/", UID: 1000, GID: 1000,
		Seccomp: filter.Program, SeccompFlags: filter.Flags &^ unix.SECCOMP_FILTER_FLAG_TSYNC}))
	if err := c.ready(); err != nil {
		t.Fatal(err)
	}
	if rest, _, ws := c.run(); rest != "error: setuid 1000: operation not permitted" || ws.ExitStatus() != 1 {
		t.Errorf("status %q, exit %v", rest, ws)
	}
}

func TestExecChildErrors(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "noexec")
	os.WriteFile(noexec, []byte("x"), 0o644)
	garbage := filepath.Join(dir, "garbage")
	os.WriteFile(garbage, []byte("\x00\x01\x02\x03"), 0o755)
	for _, tc := range []struct {
		name string
		cfg  *ExecConfig
		want string
	}{
		{"missing", &ExecConfig{Args: []string{"no-such-cmd"}, Env: []string{"PATH=/bin:" + dir}},
			`exec: "no-such-cmd": executable file not found in $PATH`},
		{"not executable in PATH", &ExecConfig{Args: []string{"noexec"}, Env: []string{"PATH=" + dir}},
			`exec: "noexec": executable file not found in $PATH`},
		{"empty PATH", &ExecConfig{Args: []string{"true"}, Env: []string{"PATH="}},
			`exec: "true": executable file not found in $PATH`},
		{"missing path", &ExecConfig{Args: []string{"/nonexistent/x"}},
			`exec: "/nonexistent/x": stat /nonexistent/x: no such file or directory`},
		{"directory", &ExecConfig{Args: []string{dir}}, fmt.Sprintf(`exec: %q: %s is a directory`, dir, dir)},
		{"not executable", &ExecConfig{Args: []string{noexec}}, fmt.Sprintf(`exec: %q: %s: permission denied`, noexec, noexec)},
		{"cwd", &ExecConfig{Args: []string{"/bin/true"}, Cwd: "/nonexistent"},
			`chdir to cwd ("/nonexistent") set in config.json failed: no such file or directory`},
		{"rlimit", &ExecConfig{Args: []string{"/bin/true"}, Rlimits: []Rlimit{{Resource: unix.RLIMIT_NOFILE, Soft: 10, Hard: 5}}},
			"setrlimit RLIMIT_NOFILE: invalid argument"},
		{"oom", &ExecConfig{Args: []string{"/bin/true"}, OOMScoreAdj: intp(5000)},
			"set oom_score_adj: write /proc/self/oom_score_adj: invalid argument"},
		{"bad blob", nil, "read container config: not an exec config (bad magic)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			blob := []byte("nonsense")
			if tc.cfg != nil {
				blob = encode(t, tc.cfg)
			}
			c := startChild(t, blob)
			if err := c.ready(); err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	// An exec that fails after the start byte reports why.
	t.Run("exec format", func(t *testing.T) {
		c := startChild(t, encode(t, &ExecConfig{Args: []string{garbage}}))
		if err := c.ready(); err != nil {
			t.Fatal(err)
		}
		if rest, _, ws := c.run(); rest != fmt.Sprintf("error: exec %q: exec format error", garbage) || ws.ExitStatus() != 1 {
			t.Errorf("status %q, exit %v", rest, ws)
		}
	})
	// No start byte: the child exits without running anything.
	t.Run("no start", func(t *testing.T) {
		c := startChild(t, encode(t, &ExecConfig{Args: []string{"sh", "-c", "echo ran"}, Env: []string{"PATH=/bin"}}))
		if err := c.ready(); err != nil {
			t.Fatal(err)
		}
		c.startW.Close()
		out, _ := io.ReadAll(c.out)
		var ws unix.WaitStatus
		unix.Wait4(c.pid, &ws, 0, nil)
		if ws.ExitStatus() != 1 || len(out) != 0 {
			t.Errorf("exit %v, output %q", ws, out)
		}
	})
}

// TestExecChildTerminal: the pty master comes back over fd 6 and the
// process runs on the slave as its controlling terminal.
func TestExecChildTerminal(t *testing.T) {
	c := startChild(t, encode(t, &ExecConfig{Args: []string{"sh", "-c", "test -t 0 && test -t 1 && echo IS-A-TTY; tty"},
		Env: []string{"PATH=/usr/bin:/bin"}, Terminal: true}))
	buf, oob := make([]byte, 16), make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := unix.Recvmsg(int(c.console.Fd()), buf, oob, 0)
	if err != nil || string(buf[:n]) != "pty" {
		t.Fatalf("recvmsg: %v %q (status: %v)", err, buf[:n], c.ready())
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		t.Fatalf("rights: %v", err)
	}
	master := os.NewFile(uintptr(fds[0]), "master")
	defer master.Close()
	if err := c.ready(); err != nil {
		t.Fatal(err)
	}
	rest, _, ws := c.run()
	if rest != "" || ws.ExitStatus() != 0 {
		t.Fatalf("status %q, exit %v", rest, ws)
	}
	master.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, _ := io.ReadAll(master) // EIO once the slave is gone
	if !strings.Contains(string(out), "IS-A-TTY") || !strings.Contains(string(out), "/dev/pts/") {
		t.Errorf("terminal output %q", out)
	}
}
