package seccomp

import (
	"errors"
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Load installs the filter on every thread of the process (Compile sets
// SECCOMP_FILTER_FLAG_TSYNC); without no_new_privs it needs CAP_SYS_ADMIN.
// no_new_privs is per thread: set it on the thread that calls Load and
// execs (runtime.LockOSThread).
func (f *Filter) Load() error {
	if f == nil {
		return nil
	}
	if len(f.Program) == 0 {
		return errors.New("error loading seccomp filter: empty program")
	}
	prog := unix.SockFprog{Len: uint16(len(f.Program)), Filter: &f.Program[0]}
	r, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(f.Flags), uintptr(unsafe.Pointer(&prog)))
	runtime.KeepAlive(f)
	if errno != 0 {
		if errno == unix.EINVAL && f.Flags != 0 {
			return fmt.Errorf("error loading seccomp filter: %w (flags %#x: not supported by this kernel?)", errno, f.Flags)
		}
		return fmt.Errorf("error loading seccomp filter: %w", errno)
	}
	if f.Flags&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 && r != 0 {
		return fmt.Errorf("error loading seccomp filter: thread %d could not be synchronized (SECCOMP_FILTER_FLAG_TSYNC)", r)
	}
	return nil
}
