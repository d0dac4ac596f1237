// Package seccomp compiles an OCI seccomp profile (the spec's linux.seccomp)
// into a classic BPF program for seccomp(2) and loads it, without
// libseccomp. The host calls Validate at create; the guest agent calls
// Compile in the container process and Load just before the exec.
//
// Semantics follow runc with libseccomp:
//   - Architectures: the native one (x86_64) is always filtered; x32 shares
//     AUDIT_ARCH_X86_64 and is told apart by __X32_SYSCALL_BIT; i386 has its
//     own numbers. A syscall from an architecture not in the filter gets
//     libseccomp's "bad arch" action, SCMP_ACT_KILL (kill the thread).
//     Other architectures the spec names are accepted and ignored: an x86_64
//     guest kernel never reports them.
//   - Names unknown to the kernel tables are skipped, per architecture.
//   - Rules whose action equals the default action are dropped. Conditions
//     of one rule on distinct arguments are ANDed; when a rule tests the
//     same argument twice each condition becomes a rule of its own (ORed),
//     as runc does. For one syscall, rules with conditions are tried in
//     profile order, then an unconditional one; the first match decides.
//   - 32-bit ABIs (i386, x32) compare the low 32 bits of arguments, as
//     libseccomp does; x86_64 compares all 64.
//   - The filter is synchronized to every thread of the process
//     (SECCOMP_FILTER_FLAG_TSYNC); the spec's LOG and SPEC_ALLOW flags are
//     passed on, WAIT_KILLABLE_RECV (meaningful with a listener only) is
//     accepted and dropped.
//   - When the default action denies (not ALLOW, LOG or TRACE), syscalls
//     numbered above the highest one the profile names get ENOSYS, like
//     runc's stub, so that libc falls back from syscalls newer than the
//     profile.
package seccomp

//go:generate go run mktables.go

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	x32SyscallBit = 0x40000000

	// struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6].
	offNr   = 0
	offArch = 4
	offArgs = 16

	// ActKill (SCMP_ACT_KILL) is libseccomp's action for a bad arch.
	retBadArch = unix.SECCOMP_RET_KILL_THREAD
)

// flagTSync is not among the spec's flags; it is accepted (and always set).
const flagTSync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

var flagBits = map[specs.LinuxSeccompFlag]uint{
	flagTSync:                              unix.SECCOMP_FILTER_FLAG_TSYNC,
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv: 0, // only means something with a listener
}

var knownArches = map[specs.Arch]bool{
	specs.ArchX86: true, specs.ArchX86_64: true, specs.ArchX32: true, specs.ArchARM: true,
	specs.ArchAARCH64: true, specs.ArchMIPS: true, specs.ArchMIPS64: true, specs.ArchMIPS64N32: true,
	specs.ArchMIPSEL: true, specs.ArchMIPSEL64: true, specs.ArchMIPSEL64N32: true, specs.ArchPPC: true,
	specs.ArchPPC64: true, specs.ArchPPC64LE: true, specs.ArchS390: true, specs.ArchS390X: true,
	specs.ArchPARISC: true, specs.ArchPARISC64: true, specs.ArchRISCV64: true,
}

// Filter is a compiled profile.
type Filter struct {
	Program []unix.SockFilter
	// Flags for seccomp(SECCOMP_SET_MODE_FILTER).
	Flags uint
}

// Bytes is the program as the kernel reads it (8-byte sock_filter entries,
// host byte order), for handing a compiled filter to another process.
func (f *Filter) Bytes() []byte {
	b := make([]byte, 0, 8*len(f.Program))
	for _, in := range f.Program {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

// FromBytes is the inverse of Bytes; nil for an empty program (no filter).
func FromBytes(b []byte, flags uint) (*Filter, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b)%8 != 0 || len(b)/8 > 0xffff {
		return nil, fmt.Errorf("seccomp program of %d bytes is not a whole number of instructions (at most 65535)", len(b))
	}
	f := &Filter{Flags: flags, Program: make([]unix.SockFilter, len(b)/8)}
	for i := range f.Program {
		in := b[8*i : 8*i+8]
		f.Program[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(in), Jt: in[2], Jf: in[3], K: binary.NativeEndian.Uint32(in[4:])}
	}
	return f, nil
}

// disabled: runc treats a profile with neither a default action nor rules
// as no seccomp at all.
func disabled(s *specs.LinuxSeccomp) bool {
	return s == nil || (s.DefaultAction == "" && len(s.Syscalls) == 0)
}

// Validate checks a profile the way Compile would, without building it.
func Validate(s *specs.LinuxSeccomp) error {
	_, err := Compile(s)
	return err
}

// action returns the SECCOMP_RET_* value of a spec action.
func action(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint32(unix.EPERM)
	if errnoRet != nil {
		if act != specs.ActErrno && act != specs.ActTrace {
			return 0, fmt.Errorf("errnoRet is only supported with %s and %s, not with %s", specs.ActErrno, specs.ActTrace, act)
		}
		if *errnoRet > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d is out of range (0-%d)", *errnoRet, unix.SECCOMP_RET_DATA)
		}
		data = uint32(*errnoRet)
	}
	switch act {
	case specs.ActKill, specs.ActKillThread:
		return unix.SECCOMP_RET_KILL_THREAD, nil
	case specs.ActKillProcess:
		return unix.SECCOMP_RET_KILL_PROCESS, nil
	case specs.ActTrap:
		return unix.SECCOMP_RET_TRAP, nil
	case specs.ActErrno:
		return unix.SECCOMP_RET_ERRNO | data, nil
	case specs.ActTrace:
		return unix.SECCOMP_RET_TRACE | data, nil
	case specs.ActAllow:
		return unix.SECCOMP_RET_ALLOW, nil
	case specs.ActLog:
		return unix.SECCOMP_RET_LOG, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("%s (seccomp user notification) is not supported by kabuto", act)
	}
	return 0, fmt.Errorf("unknown action %q", act)
}

type cond struct {
	index           uint
	op              specs.LinuxSeccompOperator
	value, valueTwo uint64
}

type rule struct {
	ret   uint32
	conds []cond
}

type namedRule struct {
	name string
	rule rule
}

// abi is one syscall numbering the filter covers.
type abi struct {
	table map[string]uint32
	base  uint32 // added to every number (x32's __X32_SYSCALL_BIT)
	lo32  bool   // compare the low 32 bits of arguments only
	// lo, hi: the range of seccomp_data.nr this abi owns in its section.
	lo, hi uint32
}

// section is the code for one AUDIT_ARCH_* value: x86_64 (with x32's
// numbers above __X32_SYSCALL_BIT when x32 is listed) or i386.
type section struct {
	audit uint32
	abis  []abi
}

// Compile builds the filter for a profile; nil without one.
func Compile(s *specs.LinuxSeccomp) (*Filter, error) {
	if disabled(s) {
		return nil, nil
	}
	if s.ListenerPath != "" || s.ListenerMetadata != "" {
		return nil, fmt.Errorf("seccomp: listenerPath is not supported by kabuto (no %s)", specs.ActNotify)
	}
	def, err := action(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp: defaultAction: %w", err)
	}
	// Always every thread of the process: the agent's set*id calls go
	// through glibc, which runs them on every thread and aborts when the
	// threads disagree (a filter on the calling thread alone would make a
	// denied setresuid an abort instead of an error). libseccomp-golang
	// sets TSYNC by default too.
	f := &Filter{Flags: unix.SECCOMP_FILTER_FLAG_TSYNC}
	for _, fl := range s.Flags {
		bit, ok := flagBits[fl]
		if !ok {
			return nil, fmt.Errorf("seccomp: flag %q is not supported", fl)
		}
		f.Flags |= bit
	}
	archs := map[specs.Arch]bool{specs.ArchX86_64: true}
	for _, a := range s.Architectures {
		if !knownArches[a] {
			return nil, fmt.Errorf("seccomp: unknown architecture %q", a)
		}
		archs[a] = true
	}

	// The rules, in profile order, each for its names.
	var rules []namedRule
	for i, sc := range s.Syscalls {
		ret, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("seccomp: syscalls[%d]: %w", i, err)
		}
		seen := map[uint]bool{}
		repeated := false
		for j, a := range sc.Args {
			if a.Index >= 6 {
				return nil, fmt.Errorf("seccomp: syscalls[%d].args[%d]: index %d is out of range (0-5)", i, j, a.Index)
			}
			switch a.Op {
			case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
				specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
			default:
				return nil, fmt.Errorf("seccomp: syscalls[%d].args[%d]: unknown operator %q", i, j, a.Op)
			}
			repeated = repeated || seen[a.Index]
			seen[a.Index] = true
		}
		for _, n := range sc.Names {
			if n == "" {
				return nil, fmt.Errorf("seccomp: syscalls[%d]: empty string is not a valid syscall", i)
			}
		}
		if ret == def {
			continue // redundant, as runc drops it
		}
		var rs []rule
		if repeated {
			for _, a := range sc.Args {
				rs = append(rs, rule{ret: ret, conds: []cond{{a.Index, a.Op, a.Value, a.ValueTwo}}})
			}
		} else {
			r := rule{ret: ret}
			for _, a := range sc.Args {
				r.conds = append(r.conds, cond{a.Index, a.Op, a.Value, a.ValueTwo})
			}
			rs = append(rs, r)
		}
		for _, n := range sc.Names {
			for _, r := range rs {
				rules = append(rules, namedRule{n, r})
			}
		}
	}

	// The ENOSYS stub applies below a denying default action.
	stub := def != unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)
	switch s.DefaultAction {
	case specs.ActAllow, specs.ActLog, specs.ActTrace:
		stub = false
	}
	var names []string
	for _, sc := range s.Syscalls {
		names = append(names, sc.Names...)
	}

	c := &compiler{def: def, bodies: map[string]label{}, rets: map[uint32]label{}}
	a := &c.asm
	native := abi{table: syscallsX86_64, lo: 0, hi: x32SyscallBit - 1}
	sections := []section{{unix.AUDIT_ARCH_X86_64, []abi{native}}}
	if archs[specs.ArchX32] {
		sections[0].abis = append(sections[0].abis, abi{table: syscallsX32, base: x32SyscallBit, lo32: true, lo: x32SyscallBit, hi: 0xffffffff})
	}
	if archs[specs.ArchX86] {
		sections = append(sections, section{unix.AUDIT_ARCH_I386, []abi{{table: syscallsI386, lo32: true, lo: 0, hi: 0xffffffff}}})
	}

	// Dispatch on the architecture.
	a.loadWord(offArch)
	starts := make([]label, len(sections))
	for i, sec := range sections {
		starts[i] = a.newLabel()
		next := a.newLabel()
		if i == len(sections)-1 {
			next = c.retLabel(retBadArch)
		}
		a.jump(opJeqK, sec.audit, starts[i], next)
		if i < len(sections)-1 {
			a.here(next)
		}
	}
	for i, sec := range sections {
		a.here(starts[i])
		a.loadWord(offNr)
		var iv []interval
		for _, ab := range sec.abis {
			iv = append(iv, c.intervals(ab, rules, names, stub)...)
		}
		if last := sec.abis[len(sec.abis)-1]; last.hi != 0xffffffff {
			// x86_64 without x32: numbers with __X32_SYSCALL_BIT are a bad arch.
			iv = append(iv, interval{lo: last.hi + 1, hi: 0xffffffff, target: c.retLabel(retBadArch)})
		}
		c.search(mergeIntervals(iv))
	}
	c.emitBodies()
	prog, err := a.assemble()
	if err != nil {
		return nil, err
	}
	f.Program = prog
	return f, nil
}

type interval struct {
	lo, hi uint32
	target label
}

type pendingBody struct {
	l     label
	rules []rule
	lo32  bool
}

type compiler struct {
	asm     asm
	def     uint32
	bodies  map[string]label
	pending []pendingBody
	rets    map[uint32]label
	retList []uint32
}

// retLabel is a shared "ret k" placed at the end.
func (c *compiler) retLabel(k uint32) label {
	if l, ok := c.rets[k]; ok {
		return l
	}
	l := c.asm.newLabel()
	c.rets[k] = l
	c.retList = append(c.retList, k)
	return l
}

// bodyLabel returns the code deciding one syscall from its rules.
func (c *compiler) bodyLabel(rs []rule, lo32 bool) label {
	// Conditional rules in profile order, then the first unconditional one.
	var ordered []rule
	var uncond *rule
	for i := range rs {
		if len(rs[i].conds) == 0 {
			if uncond == nil {
				uncond = &rs[i]
			}
			continue
		}
		ordered = append(ordered, rs[i])
	}
	if len(ordered) == 0 {
		return c.retLabel(uncond.ret)
	}
	if uncond != nil {
		ordered = append(ordered, *uncond)
	}
	var key strings.Builder
	fmt.Fprintf(&key, "%v|", lo32)
	for _, r := range ordered {
		fmt.Fprintf(&key, "%x:%v;", r.ret, r.conds)
	}
	if l, ok := c.bodies[key.String()]; ok {
		return l
	}
	l := c.asm.newLabel()
	c.bodies[key.String()] = l
	c.pending = append(c.pending, pendingBody{l, ordered, lo32})
	return l
}

// intervals maps every number of ab's range to the code that decides it.
func (c *compiler) intervals(ab abi, rules []namedRule, names []string, stub bool) []interval {
	byNr := map[uint32][]rule{}
	for _, r := range rules {
		nr, ok := ab.table[r.name]
		if !ok {
			continue
		}
		byNr[nr+ab.base] = append(byNr[nr+ab.base], r.rule)
	}
	// The stub's bound: the highest number the profile names, any action.
	max, any := uint32(0), false
	for _, n := range names {
		if nr, ok := ab.table[n]; ok && (!any || nr+ab.base > max) {
			max, any = nr+ab.base, true
		}
	}
	nrs := make([]uint32, 0, len(byNr))
	for nr := range byNr {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	def := c.retLabel(c.def)
	var iv []interval
	gap := func(lo, hi uint32) {
		if lo > hi {
			return
		}
		if stub && any {
			if hi <= max {
				iv = append(iv, interval{lo, hi, def})
				return
			}
			if lo <= max {
				iv = append(iv, interval{lo, max, def})
				lo = max + 1
			}
			iv = append(iv, interval{lo, hi, c.retLabel(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))})
			return
		}
		iv = append(iv, interval{lo, hi, def})
	}
	next := ab.lo
	for _, nr := range nrs {
		if nr > next {
			gap(next, nr-1)
		}
		iv = append(iv, interval{nr, nr, c.bodyLabel(byNr[nr], ab.lo32)})
		next = nr + 1
	}
	if len(nrs) == 0 || nrs[len(nrs)-1] < ab.hi {
		gap(next, ab.hi)
	}
	return iv
}

// mergeIntervals joins neighbours with the same target.
func mergeIntervals(iv []interval) []interval {
	var out []interval
	for _, x := range iv {
		if n := len(out); n > 0 && out[n-1].target == x.target && out[n-1].hi+1 == x.lo {
			out[n-1].hi = x.hi
			continue
		}
		out = append(out, x)
	}
	return out
}

// search emits a binary search over sorted, contiguous intervals (the
// syscall number is in A); each leaf jumps to its interval's target.
func (c *compiler) search(iv []interval) {
	a := &c.asm
	if len(iv) == 1 {
		a.goTo(iv[0].target)
		return
	}
	mid := len(iv) / 2
	left, right := iv[:mid], iv[mid:]
	lt, rt := left[0].target, right[0].target
	if len(left) > 1 {
		lt = a.newLabel()
	}
	if len(right) > 1 {
		rt = a.newLabel()
	}
	a.jump(opJgeK, right[0].lo, rt, lt)
	if len(left) > 1 {
		a.here(lt)
		c.search(left)
	}
	if len(right) > 1 {
		a.here(rt)
		c.search(right)
	}
}

// emitBodies places the syscall bodies, then the shared returns.
func (c *compiler) emitBodies() {
	a := &c.asm
	for _, b := range c.pending {
		a.here(b.l)
		for i, r := range b.rules {
			if len(r.conds) == 0 {
				a.ret(r.ret)
				break
			}
			next := a.newLabel()
			for _, cd := range r.conds {
				c.condition(cd, b.lo32, next)
			}
			a.ret(r.ret)
			a.here(next)
			if i == len(b.rules)-1 {
				a.ret(c.def)
			}
		}
	}
	for _, k := range c.retList {
		a.here(c.rets[k])
		a.ret(k)
	}
}

// condition emits one argument test: it falls through when the test holds
// and jumps to fail when it does not.
func (c *compiler) condition(cd cond, lo32 bool, fail label) {
	a := &c.asm
	pass := a.newLabel()
	loOff := uint32(offArgs + 8*cd.index)
	hiOff := loOff + 4
	vHi, vLo := uint32(cd.value>>32), uint32(cd.value)
	if lo32 {
		a.loadWord(loOff)
		switch cd.op {
		case specs.OpEqualTo:
			a.jump(opJeqK, vLo, pass, fail)
		case specs.OpNotEqual:
			a.jump(opJeqK, vLo, fail, pass)
		case specs.OpGreaterThan:
			a.jump(opJgtK, vLo, pass, fail)
		case specs.OpGreaterEqual:
			a.jump(opJgeK, vLo, pass, fail)
		case specs.OpLessThan:
			a.jump(opJgeK, vLo, fail, pass)
		case specs.OpLessEqual:
			a.jump(opJgtK, vLo, fail, pass)
		case specs.OpMaskedEqual:
			a.and(uint32(cd.value))
			a.jump(opJeqK, uint32(cd.valueTwo), pass, fail)
		}
		a.here(pass)
		return
	}
	// 64 bits: decide on the high words, and on the low words only when
	// the high words are equal.
	cont := a.newLabel()
	a.loadWord(hiOff)
	switch cd.op {
	case specs.OpEqualTo:
		a.jump(opJeqK, vHi, cont, fail)
		a.here(cont)
		a.loadWord(loOff)
		a.jump(opJeqK, vLo, pass, fail)
	case specs.OpNotEqual:
		a.jump(opJeqK, vHi, cont, pass)
		a.here(cont)
		a.loadWord(loOff)
		a.jump(opJeqK, vLo, fail, pass)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		eq := a.newLabel()
		a.jump(opJgtK, vHi, pass, eq)
		a.here(eq)
		a.jump(opJeqK, vHi, cont, fail)
		a.here(cont)
		a.loadWord(loOff)
		if cd.op == specs.OpGreaterThan {
			a.jump(opJgtK, vLo, pass, fail)
		} else {
			a.jump(opJgeK, vLo, pass, fail)
		}
	case specs.OpLessThan, specs.OpLessEqual:
		eq := a.newLabel()
		a.jump(opJgtK, vHi, fail, eq)
		a.here(eq)
		a.jump(opJeqK, vHi, cont, pass)
		a.here(cont)
		a.loadWord(loOff)
		if cd.op == specs.OpLessThan {
			a.jump(opJgeK, vLo, fail, pass)
		} else {
			a.jump(opJgtK, vLo, fail, pass)
		}
	case specs.OpMaskedEqual:
		mHi, mLo := uint32(cd.value>>32), uint32(cd.value)
		dHi, dLo := uint32(cd.valueTwo>>32), uint32(cd.valueTwo)
		a.and(mHi)
		a.jump(opJeqK, dHi, cont, fail)
		a.here(cont)
		a.loadWord(loOff)
		a.and(mLo)
		a.jump(opJeqK, dLo, pass, fail)
	}
	a.here(pass)
}
