package nsenter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"

	"golang.org/x/sys/unix"
)

// ExecConfig is everything the exec child needs, resolved by the agent:
// the C side only applies it (execchild.h, kabuto_exec_child).
type ExecConfig struct {
	Args []string // args[0] is looked up in PATH from Env
	Env  []string
	Cwd  string // absolute; "" is "/"

	Terminal        bool
	NoNewPrivileges bool
	Umask           uint32

	UID, GID       uint32
	AdditionalGids []uint32

	// OOMScoreAdj: nil leaves the inherited value.
	OOMScoreAdj *int
	// Caps: nil leaves the capabilities alone. LastCap is the kernel's
	// cap_last_cap: the bounding set is dropped up to it.
	Caps    *Caps
	LastCap int

	Rlimits []Rlimit

	// Seccomp is the compiled filter (none if empty), loaded with
	// SeccompFlags (SECCOMP_FILTER_FLAG_*).
	Seccomp      []unix.SockFilter
	SeccompFlags uint
}

// Caps are the five capability sets as bit masks.
type Caps struct {
	Bounding, Effective, Permitted, Inheritable, Ambient uint64
}

// Rlimit is one setrlimit(2) call.
type Rlimit struct {
	Resource   int // RLIMIT_*
	Soft, Hard uint64
}

// The blob, all integers little-endian, strings as a u32 length and bytes
// (no NUL): "KBX1", u32 flags, u32 umask, u32 uid, u32 gid, u32 last_cap,
// i32 oom_score_adj, u64 bounding, effective, permitted, inheritable,
// ambient, u32 n + n u32 gids, u32 n + n {u32 resource, u64 soft, u64 hard},
// u32 seccomp flags, u32 n + n {u16 code, u8 jt, u8 jf, u32 k}, str cwd,
// u32 n + n str args, u32 n + n str env. Limits and flag bits match
// execchild.h.
const (
	magic = "KBX1"

	flagTerminal    = 1
	flagNoNewPrivs  = 2
	flagCaps        = 4
	flagOOMScoreAdj = 8

	maxConfig  = 16 << 20
	maxGids    = 65536
	maxRlimits = 16
	maxInsns   = 4096
)

// Encode checks c and serializes it for the exec child.
func (c *ExecConfig) Encode() ([]byte, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("no process to run")
	}
	if c.Umask > 0o777 {
		return nil, fmt.Errorf("umask %#o out of range", c.Umask)
	}
	if c.LastCap < 0 || c.LastCap > 63 {
		return nil, fmt.Errorf("last capability %d out of range", c.LastCap)
	}
	if len(c.AdditionalGids) > maxGids {
		return nil, fmt.Errorf("too many additional gids (%d, at most %d)", len(c.AdditionalGids), maxGids)
	}
	if len(c.Rlimits) > maxRlimits {
		return nil, fmt.Errorf("too many rlimits (%d)", len(c.Rlimits))
	}
	if len(c.Seccomp) > maxInsns {
		return nil, fmt.Errorf("seccomp program too long (%d instructions, at most %d)", len(c.Seccomp), maxInsns)
	}
	if len(c.Seccomp) == 0 && c.SeccompFlags != 0 {
		return nil, errors.New("seccomp flags without a program")
	}
	if c.SeccompFlags > math.MaxUint32 {
		return nil, fmt.Errorf("seccomp flags %#x out of range", c.SeccompFlags)
	}
	var flags uint32
	if c.Terminal {
		flags |= flagTerminal
	}
	if c.NoNewPrivileges {
		flags |= flagNoNewPrivs
	}
	var caps Caps
	if c.Caps != nil {
		flags |= flagCaps
		caps = *c.Caps
	}
	var oom int32
	if c.OOMScoreAdj != nil {
		if *c.OOMScoreAdj < math.MinInt32 || *c.OOMScoreAdj > math.MaxInt32 {
			return nil, fmt.Errorf("oom_score_adj %d out of range", *c.OOMScoreAdj)
		}
		flags |= flagOOMScoreAdj
		oom = int32(*c.OOMScoreAdj)
	}
	b := make([]byte, 0, 256+8*len(c.Seccomp))
	b = append(b, magic...)
	for _, v := range []uint32{flags, c.Umask, c.UID, c.GID, uint32(c.LastCap), uint32(oom)} {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	for _, v := range []uint64{caps.Bounding, caps.Effective, caps.Permitted, caps.Inheritable, caps.Ambient} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.AdditionalGids)))
	for _, g := range c.AdditionalGids {
		b = binary.LittleEndian.AppendUint32(b, g)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Rlimits)))
	for _, rl := range c.Rlimits {
		if rl.Resource < 0 || rl.Resource >= maxRlimits {
			return nil, fmt.Errorf("rlimit resource %d out of range", rl.Resource)
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(rl.Resource))
		b = binary.LittleEndian.AppendUint64(b, rl.Soft)
		b = binary.LittleEndian.AppendUint64(b, rl.Hard)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(c.SeccompFlags))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.Seccomp)))
	for _, ins := range c.Seccomp {
		b = binary.LittleEndian.AppendUint16(b, ins.Code)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.LittleEndian.AppendUint32(b, ins.K)
	}
	cwd := c.Cwd
	if cwd == "" {
		cwd = "/"
	}
	var err error
	if b, err = appendString(b, "cwd", cwd); err != nil {
		return nil, err
	}
	for _, list := range []struct {
		what string
		v    []string
	}{{"args", c.Args}, {"env", c.Env}} {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(list.v)))
		for _, s := range list.v {
			if b, err = appendString(b, list.what, s); err != nil {
				return nil, err
			}
		}
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("process config too large (%d bytes, at most %d)", len(b), maxConfig)
	}
	return b, nil
}

func appendString(b []byte, what, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return nil, fmt.Errorf("%s: %q contains a NUL byte", what, s)
	}
	if len(s) > maxConfig {
		return nil, fmt.Errorf("%s: string too long", what)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...), nil
}
