// Package vmstate keeps what one kabuto verb knows about a container for the
// next: <root>/<id>/state.json, written atomically under a per-container lock,
// and the liveness checks from which a container's status is derived. It runs
// on the host only.
package vmstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Errors the CLI maps to runc's messages.
var (
	ErrExist     = errors.New("container with given ID already exists")
	ErrNotExist  = errors.New("container does not exist")
	ErrInvalidID = errors.New("invalid container ID format")
	ErrEmptyID   = errors.New("container id cannot be empty")
)

// MaxIDLength bounds container ids (docker and podman use 64 hex digits).
const MaxIDLength = 1024

const stateFile = "state.json"

// Status values, as the OCI runtime spec names them.
const (
	Creating = "creating"
	Created  = "created"
	Running  = "running"
	Paused   = "paused"
	Stopped  = "stopped"
)

// ValidateID accepts runc's id alphabet (letters, digits, _ + - .), rejects
// ids that are empty, too long, or that name a path other than one entry.
func ValidateID(id string) error {
	if id == "" {
		return ErrEmptyID
	}
	if len(id) > MaxIDLength {
		return fmt.Errorf("%w: longer than %d characters", ErrInvalidID, MaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '+', c == '-', c == '.':
		default:
			return ErrInvalidID
		}
	}
	if id == "." || id == ".." {
		return ErrInvalidID
	}
	return nil
}

// Process identifies a host process across pid reuse: a pid and its start
// time in clock ticks since boot (field 22 of /proc/<pid>/stat).
type Process struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
}

// ProcessOf records pid with its current start time.
func ProcessOf(pid int) (Process, error) {
	st, _, err := procStat(pid)
	if err != nil {
		return Process{}, err
	}
	return Process{Pid: pid, StartTime: st}, nil
}

// Alive reports whether the recorded process still runs (and is not a
// zombie, nor another process that reused the pid).
func (p Process) Alive() bool {
	if p.Pid <= 0 {
		return false
	}
	st, state, err := procStat(p.Pid)
	if err != nil {
		return false
	}
	return st == p.StartTime && state != 'Z' && state != 'X'
}

// WaitGone waits, at most d, until p has exited, and reports whether it
// has. A pidfd wakes it the moment the process ends (it need not be our
// child); without pidfds it polls.
func (p Process) WaitGone(d time.Duration) bool {
	if !p.Alive() {
		return true
	}
	deadline := time.Now().Add(d)
	if fd, err := unix.PidfdOpen(p.Pid, 0); err == nil {
		defer unix.Close(fd)
		// The pid may have been reused before the open: check it is p's.
		if !p.Alive() {
			return true
		}
		for {
			left := time.Until(deadline)
			if left <= 0 {
				return !p.Alive()
			}
			n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, int(left/time.Millisecond)+1)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				break
			}
			if n > 0 {
				return true
			}
		}
	}
	for p.Alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// procStat returns the start time and state letter of pid.
func procStat(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// comm may hold spaces and parentheses: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("malformed /proc/%d/stat: %w", pid, err)
	}
	return st, f[0][0], nil
}

// ExecRecord is an exec'd process and the shim that stands for it.
type ExecRecord struct {
	ID   string  `json:"id"`
	Shim Process `json:"shim"`
}

// State is everything persisted about one container.
type State struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
	OCIVersion  string            `json:"ociVersion"`

	// Creating is set until create has finished; a container left in this
	// state by a crashed create reads as stopped once its processes are gone.
	Creating bool `json:"creating,omitempty"`
	Started  bool `json:"started,omitempty"`
	Paused   bool `json:"paused,omitempty"`

	Shim  Process `json:"shim"`
	QEMU  Process `json:"qemu"`
	Accel string  `json:"accel"`
	// The VM's size.
	VCPUs     int `json:"vcpus,omitempty"`
	MemoryMiB int `json:"memoryMiB,omitempty"`

	// NetNS is the network namespace the VM's host side lives in; OwnNetNS
	// says kabuto created it (and bind-mounted it at NetNS) and removes it.
	NetNS    string `json:"netns,omitempty"`
	OwnNetNS bool   `json:"ownNetns,omitempty"`
	// GuestMACs are the MACs QEMU gave the guest NICs (none without a
	// network namespace); once NetConfigured, they mirror NetLinks of the
	// namespace.
	GuestMACs     []string `json:"guestMacs,omitempty"`
	NetConfigured bool     `json:"netConfigured,omitempty"`
	NetLinks      []string `json:"netLinks,omitempty"`
	// DNSRelay lists the loopback nameservers the guest relays to the shim
	// (protocol.NetworkRequest.DNSRelay); the shim serves no other.
	DNSRelay []string `json:"dnsRelay,omitempty"`
	// ResolvConf is the host file bound at the container's /etc/resolv.conf.
	ResolvConf string `json:"resolvConf,omitempty"`
	// RootfsCache is the guest's cache mode of a rootfs on its own 9p
	// device ("" when the rootfs is on the share, coherent): its dirty
	// pages are written back before a pause.
	RootfsCache string `json:"rootfsCache,omitempty"`
	// Mounts are host mount points kabuto made (under the state dir), in
	// the order they were made.
	Mounts []string `json:"mounts,omitempty"`
	// Cgroups are host cgroup directories kabuto created.
	Cgroups []string `json:"cgroups,omitempty"`
	// CgroupPath is the resolved linux.cgroupsPath below each hierarchy.
	CgroupPath string `json:"cgroupPath,omitempty"`

	Hooks *specs.Hooks `json:"hooks,omitempty"`
	Execs []ExecRecord `json:"execs,omitempty"`
}

// ExecShims returns the recorded shims of exec'd processes.
func (s *State) ExecShims() []Process {
	var ps []Process
	for _, e := range s.Execs {
		ps = append(ps, e.Shim)
	}
	return ps
}

// Status derives the container's status from live facts.
func (s *State) Status() string {
	alive := s.Shim.Alive() && s.QEMU.Alive()
	switch {
	case !alive:
		return Stopped
	case s.Creating:
		return Creating
	case s.Paused:
		return Paused
	case s.Started:
		return Running
	default:
		return Created
	}
}

// Store is the directory holding every container's state (--root).
type Store struct {
	Root string
}

// Dir is the state directory of id (which must be valid).
func (s Store) Dir(id string) string { return filepath.Join(s.Root, id) }

// Handle is a locked container state directory.
type Handle struct {
	ID  string
	Dir string
	fd  int
}

// Create makes the state directory of a new container and locks it.
func (s Store) Create(id string) (*Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.Root, 0o711); err != nil {
		return nil, fmt.Errorf("create root %s: %w", s.Root, err)
	}
	dir := s.Dir(id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExist
		}
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	h, err := lockDir(id, dir)
	if err != nil {
		os.Remove(dir)
		return nil, err
	}
	return h, nil
}

// Lock locks the state directory of an existing container.
func (s Store) Lock(id string) (*Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := s.Dir(id)
	h, err := lockDir(id, dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, err
	}
	// A concurrent delete may have removed the container while we waited.
	if _, err := os.Stat(filepath.Join(dir, stateFile)); err != nil {
		h.Unlock()
		return nil, ErrNotExist
	}
	return h, nil
}

func lockDir(id, dir string) (*Handle, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &Handle{ID: id, Dir: dir, fd: fd}, nil
}

// Unlock releases the lock.
func (h *Handle) Unlock() {
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
}

// Save writes st atomically: a temporary file, fsync, rename.
func (h *Handle) Save(st *State) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return WriteFileAtomic(filepath.Join(h.Dir, stateFile), b, 0o600)
}

// Load reads the state of the locked container.
func (h *Handle) Load() (*State, error) { return loadFile(h.Dir) }

// Remove deletes the state directory (which must hold no mounts any more)
// and releases the lock.
func (h *Handle) Remove() error {
	// Never let RemoveAll descend through a mount into what it shows (a
	// rootfs, a bind source): detach whatever is still mounted below the
	// directory first, and remove nothing if that fails.
	if left := detachMountsBelow(h.Dir); len(left) > 0 {
		h.Unlock()
		return fmt.Errorf("remove state dir: still mounted below it: %s", strings.Join(left, ", "))
	}
	err := os.RemoveAll(h.Dir)
	h.Unlock()
	if err != nil {
		return fmt.Errorf("remove state dir: %w", err)
	}
	return nil
}

// Load reads the state of id without locking (state.json is only ever
// replaced whole, so a reader sees an old or a new version, never a torn one).
func (s Store) Load(id string) (*State, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	return loadFile(s.Dir(id))
}

func loadFile(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, fmt.Errorf("read state: %w", err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("state of container is corrupt: %w", err)
	}
	return &st, nil
}

// List returns the ids of every container under the root, sorted.
func (s Store) List() ([]string, error) {
	ents, err := os.ReadDir(s.Root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if !e.IsDir() || ValidateID(e.Name()) != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Root, e.Name(), stateFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// WriteFileAtomic replaces path with data: temp file in the same directory,
// fsync, rename.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// IsNotExist reports whether err means the container is unknown.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// maxSunPath is the usable length of a unix socket path (sun_path less NUL).
const maxSunPath = 107

// SocketPath returns a path by which the socket dir/name can be bound or
// dialled. State dirs under a long --root (docker's is
// /var/run/docker/runtime-runc/moby/<64 hex>) exceed the 108 bytes of
// sun_path; then the path goes through an O_PATH descriptor of dir,
// /proc/self/fd/N/name. Call release once the bind or connect is done.
func SocketPath(dir, name string) (path string, release func(), err error) {
	full := filepath.Join(dir, name)
	if len(full) <= maxSunPath {
		return full, func() {}, nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name, func() { unix.Close(fd) }, nil
}

// OCI returns the state as the OCI runtime spec defines it (hooks read it on
// stdin). A stopped container has no pid.
func (s *State) OCI(status string) *specs.State {
	pid := s.Shim.Pid
	if status == Stopped {
		pid = 0
	}
	return &specs.State{
		Version:     specs.Version,
		ID:          s.ID,
		Status:      specs.ContainerState(status),
		Pid:         pid,
		Bundle:      s.Bundle,
		Annotations: s.Annotations,
	}
}

// detachMountsBelow lazily unmounts every mount point below dir, deepest
// first, and returns those still mounted afterwards.
func detachMountsBelow(dir string) []string {
	below := func() []string {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return nil
		}
		var points []string
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 4 && strings.HasPrefix(UnescapeMountinfo(f[4]), dir+"/") {
				points = append(points, UnescapeMountinfo(f[4]))
			}
		}
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		return points
	}
	for _, p := range below() {
		unix.Unmount(p, unix.MNT_DETACH)
	}
	return below()
}

// UnescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func UnescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
