package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var capNames = map[string]int{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4,
	"CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9,
	"CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15, "CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18,
	"CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28,
	"CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32,
	"CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35, "CAP_BLOCK_SUSPEND": 36,
	"CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

// capMasks are the five capability sets of a process as bit masks.
type capMasks struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// capMask turns capability names into a bit mask of the capabilities up to
// last (the kernel's cap_last_cap). Names it does not know, or that this
// kernel lacks, are returned apart: runc warns about them and carries on.
func capMask(names []string, last int) (mask uint64, unknown []string) {
	for _, n := range names {
		c, ok := capNames[strings.ToUpper(n)]
		if !ok || c > last {
			unknown = append(unknown, n)
			continue
		}
		mask |= 1 << uint(c)
	}
	return mask, unknown
}

// resolveCaps computes the masks of c and the names it had to skip.
func resolveCaps(c *specs.LinuxCapabilities, last int) (capMasks, []string) {
	var m capMasks
	var unknown []string
	seen := map[string]bool{}
	for _, set := range []struct {
		dst   *uint64
		names []string
	}{{&m.bounding, c.Bounding}, {&m.effective, c.Effective}, {&m.permitted, c.Permitted}, {&m.inheritable, c.Inheritable}, {&m.ambient, c.Ambient}} {
		mask, bad := capMask(set.names, last)
		*set.dst = mask
		for _, b := range bad {
			if !seen[b] {
				seen[b] = true
				unknown = append(unknown, b)
			}
		}
	}
	return m, unknown
}

func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 40
	}
	return n
}

// dropBounding removes every capability not in keep from the bounding set.
func dropBounding(keep uint64, last int) error {
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	return nil
}

// applyCaps sets the effective, permitted and inheritable sets, then the
// ambient set, of the calling thread (the one that will exec).
func applyCaps(m capMasks) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(m.effective), Permitted: uint32(m.permitted), Inheritable: uint32(m.inheritable)},
		{Effective: uint32(m.effective >> 32), Permitted: uint32(m.permitted >> 32), Inheritable: uint32(m.inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	for i := 0; i < 64; i++ {
		if m.ambient&(1<<uint(i)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(i), 0, 0); err != nil {
			return fmt.Errorf("raise ambient capability %d: %w", i, err)
		}
	}
	return nil
}
