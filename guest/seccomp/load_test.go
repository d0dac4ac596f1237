package seccomp

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The kernel tests load a filter in a child process (a filter cannot be
// removed): the test binary re-executed with loadChildEnv set to a JSON
// loadRequest; the child prints one "name=result" line per check.
const loadChildEnv = "KABUTO_SECCOMP_LOAD_CHILD"

type loadRequest struct {
	Profile *specs.LinuxSeccomp
	NNP     bool
	Dir     string
}

func TestMain(m *testing.M) {
	if req := os.Getenv(loadChildEnv); req != "" {
		loadChild(req)
		return
	}
	os.Exit(m.Run())
}

func loadChild(reqJSON string) {
	runtime.LockOSThread()
	var req loadRequest
	if err := json.Unmarshal([]byte(reqJSON), &req); err != nil {
		fmt.Println("error=" + err.Error())
		os.Exit(1)
	}
	f, err := Compile(req.Profile)
	if err != nil {
		fmt.Println("error=" + err.Error())
		os.Exit(1)
	}
	if req.NNP {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			fmt.Println("error=" + err.Error())
			os.Exit(1)
		}
	}
	// Open what the checks need before the filter is in.
	file, err := os.Create(filepath.Join(req.Dir, "file"))
	if err != nil {
		fmt.Println("error=" + err.Error())
		os.Exit(1)
	}
	if err := f.Load(); err != nil {
		fmt.Println("load=" + err.Error())
		os.Exit(0)
	}
	var out strings.Builder
	res := func(name string, err error) {
		if err == nil {
			fmt.Fprintf(&out, "%s=ok\n", name)
		} else {
			fmt.Fprintf(&out, "%s=%s\n", name, err.(unix.Errno).Error())
		}
	}
	res("mkdirat700", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(req.Dir, "a"), 0o700))
	res("mkdirat755", unix.Mkdirat(unix.AT_FDCWD, filepath.Join(req.Dir, "b"), 0o755))
	_, _, e := unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	if e == 0 {
		res("getppid", nil)
	} else {
		res("getppid", e)
	}
	_, err = unix.Seek(int(file.Fd()), 1<<32, 0)
	res("lseekHigh", err)
	_, err = unix.Seek(int(file.Fd()), 5, 0)
	res("lseekLow", err)
	// Which of the process's threads are filtered (TSYNC or not).
	tasks, _ := os.ReadDir("/proc/self/task")
	filtered := 0
	for _, t := range tasks {
		st, _ := os.ReadFile(filepath.Join("/proc/self/task", t.Name(), "status"))
		if strings.Contains(string(st), "\nSeccomp:\t2\n") {
			filtered++
		}
	}
	all := "no"
	if filtered == len(tasks) {
		all = "yes"
	}
	fmt.Fprintf(&out, "filtered=%d\nallThreads=%s\nthreads=%d\n", filtered, all, len(tasks))
	os.Stdout.WriteString(out.String())
	os.Exit(0)
}

func runLoadChild(t *testing.T, req loadRequest) map[string]string {
	t.Helper()
	req.Dir = t.TempDir()
	b, _ := json.Marshal(req)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadChildEnv+"="+string(b))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v: %s", err, out)
	}
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			res[k] = v
		}
	}
	return res
}

func kernelProfile(flags ...specs.LinuxSeccompFlag) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         flags,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdirat", "mkdir"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EACCES)),
				Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0o700, Op: specs.OpEqualTo}}},
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOTTY))},
			{Names: []string{"lseek"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EDOM)),
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: 1 << 32, Op: specs.OpGreaterEqual}}},
		},
	}
}

// The compiled program against the running kernel: its verifier accepts
// it, and the argument layout (low word first) is the kernel's.
func TestLoadInKernel(t *testing.T) {
	res := runLoadChild(t, loadRequest{Profile: kernelProfile(), NNP: true})
	want := map[string]string{
		"mkdirat700": unix.EACCES.Error(), "mkdirat755": "ok", "getppid": unix.ENOTTY.Error(),
		"lseekHigh": unix.EDOM.Error(), "lseekLow": "ok", "allThreads": "yes",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s: %q, want %q (all: %v)", k, res[k], v, res)
		}
	}
	if res["threads"] == "1" {
		t.Errorf("the child has one thread: TSYNC is not exercised: %v", res)
	}
}

func TestLoadFlags(t *testing.T) {
	res := runLoadChild(t, loadRequest{Profile: kernelProfile(flagTSync, specs.LinuxSeccompFlagLog,
		specs.LinuxSeccompFlagSpecAllow, specs.LinuxSeccompFlagWaitKillableRecv), NNP: true})
	if res["allThreads"] != "yes" || res["getppid"] != unix.ENOTTY.Error() {
		t.Errorf("with every flag: %v", res)
	}
}

// Without no_new_privs, loading needs CAP_SYS_ADMIN: root has it.
func TestLoadWithoutNoNewPrivs(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN)")
	}
	res := runLoadChild(t, loadRequest{Profile: kernelProfile(), NNP: false})
	if res["getppid"] != unix.ENOTTY.Error() || res["mkdirat755"] != "ok" {
		t.Errorf("as root without no_new_privs: %v", res)
	}
}

// The docker default profile loads (the kernel verifies the program).
func TestLoadDockerProfile(t *testing.T) {
	res := runLoadChild(t, loadRequest{Profile: loadDockerProfile(t, "testdata/docker-default.json", dockerCaps), NNP: true})
	// getppid, mkdirat and lseek are all allowed by docker.
	for _, k := range []string{"getppid", "mkdirat700", "mkdirat755", "lseekLow"} {
		if res[k] != "ok" {
			t.Errorf("%s under docker's profile: %v", k, res)
		}
	}
}
