package agent

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/guest/nsenter"
	"github.com/kabuto-runtime/kabuto/guest/seccomp"
)

// A container process is this binary re-executed in one of two child modes.
// fds: 3 config (read to EOF), 4 status (lines to the agent), 5 start (one
// byte = go), 6 console socket (the pty master goes back through it). The
// init (container-init) is Go: childMain, with a JSON childConfig. An exec'd
// process (container-exec, also the startContainer hooks) never reaches Go:
// the C constructor of guest/nsenter enters the container, sets the process
// up from an nsenter.ExecConfig the agent resolved (execConfig) and execs.
const (
	childInitArg = "container-init"
	childExecArg = "container-exec"

	fdConfig  = 3
	fdStatus  = 4
	fdStart   = 5
	fdConsole = 6
)

// childConfig is what the agent tells the container's init.
type childConfig struct {
	Spec    *specs.Spec    `json:"spec,omitempty"`
	Process *specs.Process `json:"process"`
	Rootfs  string         `json:"rootfs,omitempty"`
	NoPivot bool           `json:"noPivot,omitempty"`
	// NewCgroupNS: unshare the cgroup namespace once in the cgroup.
	NewCgroupNS bool `json:"newCgroupNS,omitempty"`
	// SeccompProgram is the container's compiled seccomp filter
	// (seccomp.Filter.Bytes; none if empty) and SeccompFlags its flags: the
	// agent compiles it, so that the init neither decodes the profile (some
	// 30 KB of JSON for docker's) nor compiles it.
	SeccompProgram []byte `json:"seccompProgram,omitempty"`
	SeccompFlags   uint   `json:"seccompFlags,omitempty"`
}

// initConfig is the init's childConfig: the spec without its seccomp
// profile, which is compiled here (the init is multithreaded Go: the filter
// keeps TSYNC).
func initConfig(spec *specs.Spec, rootfs string, noPivot bool) (*childConfig, error) {
	filter, err := seccomp.Compile(specSeccomp(spec))
	if err != nil {
		return nil, err
	}
	cfg := &childConfig{Spec: spec, Process: spec.Process, Rootfs: rootfs, NoPivot: noPivot}
	if filter != nil {
		cfg.SeccompProgram, cfg.SeccompFlags = filter.Bytes(), filter.Flags
	}
	if spec.Linux != nil && spec.Linux.Seccomp != nil {
		s, l := *spec, *spec.Linux
		l.Seccomp = nil
		s.Linux = &l
		cfg.Spec = &s
	}
	return cfg, nil
}

// specSeccomp is the spec's seccomp profile, nil without one.
func specSeccomp(s *specs.Spec) *specs.LinuxSeccomp {
	if s == nil || s.Linux == nil {
		return nil
	}
	return s.Linux.Seccomp
}

// execConfig resolves what an exec'd process needs (capability masks,
// rlimits, the compiled seccomp filter, identity, defaults) into the blob
// the C exec child applies. Capabilities this kernel lacks are logged and
// skipped, as runc warns and carries on.
func execConfig(p *specs.Process, sc *specs.LinuxSeccomp) ([]byte, error) {
	if p == nil || len(p.Args) == 0 {
		return nil, errors.New("no process to run")
	}
	c := &nsenter.ExecConfig{
		Args: p.Args, Env: p.Env, Cwd: p.Cwd, Terminal: p.Terminal, NoNewPrivileges: p.NoNewPrivileges,
		Umask: 0o022, UID: p.User.UID, GID: p.User.GID, AdditionalGids: p.User.AdditionalGids,
		OOMScoreAdj: p.OOMScoreAdj, LastCap: lastCap(),
	}
	if p.User.Umask != nil {
		c.Umask = *p.User.Umask
	}
	if p.Capabilities != nil {
		m, unknown := resolveCaps(p.Capabilities, c.LastCap)
		for _, u := range unknown {
			logf("container process: warning: unknown capability %q ignored", u)
		}
		c.Caps = &nsenter.Caps{Bounding: m.bounding, Effective: m.effective, Permitted: m.permitted,
			Inheritable: m.inheritable, Ambient: m.ambient}
	}
	for _, rl := range p.Rlimits {
		res, ok := rlimitNames[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		c.Rlimits = append(c.Rlimits, nsenter.Rlimit{Resource: res, Soft: rl.Soft, Hard: rl.Hard})
	}
	filter, err := seccomp.Compile(sc)
	if err != nil {
		return nil, err
	}
	if filter != nil {
		// The exec child is single-threaded: nothing to synchronize.
		c.Seccomp, c.SeccompFlags = filter.Program, filter.Flags&^unix.SECCOMP_FILTER_FLAG_TSYNC
	}
	return c.Encode()
}

// childMain runs in the container's init; it never returns: it execs or
// exits.
func childMain() {
	runtime.LockOSThread()
	status := os.NewFile(fdStatus, "status")
	fail := func(err error) {
		fmt.Fprintf(status, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	var cfg childConfig
	if err := json.NewDecoder(os.NewFile(fdConfig, "config")).Decode(&cfg); err != nil {
		fail(fmt.Errorf("read container config: %w", err))
	}
	closeExtraFdsOnExec()
	path, err := prepareChild(&cfg)
	if err != nil {
		fail(err)
	}
	var caps *capMasks
	if c := cfg.Process.Capabilities; c != nil {
		m, unknown := resolveCaps(c, lastCap())
		for _, u := range unknown {
			fmt.Fprintf(status, "warning: unknown capability %q ignored\n", u)
		}
		caps = &m
	}
	filter, err := seccomp.FromBytes(cfg.SeccompProgram, cfg.SeccompFlags)
	if err != nil {
		fail(err)
	}
	fmt.Fprintln(status, "ready")
	var b [1]byte
	if n, _ := os.NewFile(fdStart, "start").Read(b[:]); n != 1 {
		os.Exit(1)
	}
	if err := finalizeChild(&cfg, caps, filter); err != nil {
		fail(err)
	}
	unix.Close(fdConfig)
	unix.Close(fdStart)
	unix.Close(fdConsole)
	// The status fd is close-on-exec: EOF tells the agent the exec happened.
	err = unix.Exec(path, cfg.Process.Args, cfg.Process.Env)
	fail(fmt.Errorf("exec %q: %w", cfg.Process.Args[0], err))
}

// closeExtraFdsOnExec keeps every fd above stdio (the agent's pipes, the
// nsenter sync fd, anything the Go runtime opened) out of the container.
func closeExtraFdsOnExec() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		for fd := 3; fd < 64; fd++ {
			unix.CloseOnExec(fd)
		}
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}

// prepareChild does everything that must happen before the start signal,
// and resolves the executable (a missing one fails create, as with runc).
func prepareChild(cfg *childConfig) (string, error) {
	p := cfg.Process
	if p == nil || len(p.Args) == 0 {
		return "", errors.New("no process to run")
	}
	if _, err := unix.Setsid(); err != nil {
		return "", fmt.Errorf("setsid: %w", err)
	}
	if cfg.NewCgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return "", fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	if err := setupRootfs(cfg.Spec, cfg.Rootfs, cfg.NoPivot); err != nil {
		return "", err
	}
	if err := setupUTSAndSysctl(cfg.Spec); err != nil {
		return "", err
	}
	if err := finalizeRootfs(cfg.Spec); err != nil {
		return "", err
	}
	if p.Terminal {
		if err := setupConsole(); err != nil {
			return "", err
		}
	}
	if err := setRlimits(p.Rlimits); err != nil {
		return "", err
	}
	if p.OOMScoreAdj != nil {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*p.OOMScoreAdj)), 0); err != nil {
			return "", fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if err := unix.Chdir(cwd); err != nil {
		return "", fmt.Errorf("chdir to cwd (%q) set in config.json failed: %w", cwd, err)
	}
	return lookPath(p.Args[0], p.Env)
}

// finalizeChild drops to the process's identity and privileges and loads
// the seccomp filter (nil: none). As in runc: without no_new_privs, loading
// a filter takes CAP_SYS_ADMIN, so it goes in before the privileges are
// dropped, and the profile must allow what follows (prctl, capset,
// setgroups, setresgid, setresuid, execve); with no_new_privs it goes in
// last, just before the exec.
func finalizeChild(cfg *childConfig, caps *capMasks, filter *seccomp.Filter) error {
	p := cfg.Process
	if p.User.Umask != nil {
		unix.Umask(int(*p.User.Umask))
	} else {
		unix.Umask(0o022)
	}
	last := lastCap()
	if !p.NoNewPrivileges {
		if err := filter.Load(); err != nil {
			return err
		}
	}
	if caps != nil {
		if err := dropBounding(caps.bounding, last); err != nil {
			return err
		}
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
			return err
		}
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if caps != nil {
		if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
			return err
		}
		if err := applyCaps(*caps); err != nil {
			return err
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("set no_new_privs: %w", err)
		}
		if err := filter.Load(); err != nil {
			return err
		}
	}
	return nil
}

func setUser(u specs.User) error {
	gids := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		gids = append(gids, int(g))
	}
	if err := unix.Setgroups(gids); err != nil && !(errors.Is(err, unix.EPERM) && len(gids) == 0) {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("setgid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("setuid %d: %w", u.UID, err)
	}
	return nil
}

// setupConsole opens a pty inside the container, sends its master to the
// agent and makes the slave the controlling terminal and stdio.
func setupConsole() error {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open /dev/ptmx in the container: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("ptsname: %w", err)
	}
	slavePath := "/dev/pts/" + strconv.Itoa(n)
	slave, err := unix.Open(slavePath, unix.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", slavePath, err)
	}
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(fdConsole, []byte("pty"), rights, nil, 0); err != nil {
		return fmt.Errorf("send pty master: %w", err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return err
		}
	}
	if slave > 2 {
		unix.Close(slave)
	}
	return nil
}

// lookPath resolves file against PATH from env, as execvp would.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := checkExecutable(file); err != nil {
			return "", fmt.Errorf("exec: %q: %w", file, err)
		}
		return file, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if checkExecutable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", file)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	if fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s: permission denied", p)
	}
	return nil
}

var rlimitNames = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

func setRlimits(rls []specs.POSIXRlimit) error {
	for _, rl := range rls {
		res, ok := rlimitNames[rl.Type]
		if !ok {
			return fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		// syscall's Setrlimit, not x/sys's: it also tells the Go runtime not
		// to restore its own RLIMIT_NOFILE at exec.
		if err := syscall.Setrlimit(res, &syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}); err != nil {
			return fmt.Errorf("setrlimit %s: %w", rl.Type, err)
		}
	}
	return nil
}

func setupUTSAndSysctl(spec *specs.Spec) error {
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if spec.Domainname != "" {
		if err := unix.Setdomainname([]byte(spec.Domainname)); err != nil {
			return fmt.Errorf("set domainname: %w", err)
		}
	}
	if spec.Linux != nil {
		for k, v := range spec.Linux.Sysctl {
			if k == "" || strings.Contains(k, "..") || strings.HasPrefix(k, "/") {
				return fmt.Errorf("invalid sysctl %q", k)
			}
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(v), 0); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", k, v, err)
			}
		}
	}
	return nil
}

// readStatus reads the status lines of a child up to "ready" or an error.
func readStatus(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	for err == nil && strings.HasPrefix(line, "warning: ") {
		logf("container process: %s", strings.TrimSpace(line))
		line, err = r.ReadString('\n')
	}
	if err != nil {
		return errors.New("the container process exited during setup")
	}
	line = strings.TrimSpace(line)
	if line == "ready" {
		return nil
	}
	if msg, ok := strings.CutPrefix(line, "error: "); ok {
		return errors.New(msg)
	}
	return fmt.Errorf("unexpected status %q from the container process", line)
}
