package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-tools/generate"
	rtseccomp "github.com/opencontainers/runtime-tools/generate/seccomp"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_THREAD
	archX64  = unix.AUDIT_ARCH_X86_64
	archI386 = unix.AUDIT_ARCH_I386
)

func errno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

func uintp(v uint) *uint { return &v }

// vm runs a compiled filter in x/net/bpf's VM.
type vm struct {
	t  *testing.T
	vm *bpf.VM
	f  *Filter
}

func compile(t *testing.T, s *specs.LinuxSeccomp) *vm {
	t.Helper()
	f, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	raw := make([]bpf.RawInstruction, len(f.Program))
	for i, in := range f.Program {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("the program does not disassemble")
	}
	m, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	return &vm{t: t, vm: m, f: f}
}

// run evaluates the filter on one struct seccomp_data. The VM loads words
// big-endian, so each 32-bit field is written big-endian at the offset the
// kernel's native (little-endian) layout gives it: an argument's low word
// at 16+8i, its high word at 16+8i+4.
func (v *vm) run(arch, nr uint32, args ...uint64) uint32 {
	v.t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[0:], nr)
	binary.BigEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(data[16+8*i:], uint32(a))
		binary.BigEndian.PutUint32(data[16+8*i+4:], uint32(a>>32))
	}
	r, err := v.vm.Run(data)
	if err != nil {
		v.t.Fatalf("bpf VM: %v", err)
	}
	return uint32(r)
}

func (v *vm) expect(what string, want uint32, arch, nr uint32, args ...uint64) {
	v.t.Helper()
	if got := v.run(arch, nr, args...); got != want {
		v.t.Errorf("%s (arch %#x nr %#x args %#x): got %#x, want %#x", what, arch, nr, args, got, want)
	}
}

func nr64(name string) uint32  { return syscallsX86_64[name] }
func nrX32(name string) uint32 { return syscallsX32[name] | x32SyscallBit }
func nr386(name string) uint32 { return syscallsI386[name] }

func TestTables(t *testing.T) {
	for _, c := range []struct {
		table map[string]uint32
		name  string
		nr    uint32
	}{
		{syscallsX86_64, "read", 0}, {syscallsX86_64, "mkdir", 83}, {syscallsX86_64, "getpid", 39},
		{syscallsX86_64, "rt_sigaction", 13}, {syscallsX86_64, "clone3", 435},
		{syscallsX32, "read", 0}, {syscallsX32, "rt_sigaction", 512}, {syscallsX32, "execve", 520},
		{syscallsI386, "mkdir", 39}, {syscallsI386, "getpid", 20}, {syscallsI386, "socketcall", 102},
		{syscallsI386, "socket", 359},
	} {
		if got, ok := c.table[c.name]; !ok || got != c.nr {
			t.Errorf("%s: %d %v, want %d", c.name, got, ok, c.nr)
		}
	}
	for _, absent := range []string{"socketcall", "mmap2"} {
		if _, ok := syscallsX86_64[absent]; ok {
			t.Errorf("x86_64 has %s", absent)
		}
	}
	if _, ok := syscallsX32["rt_sigaction"]; !ok {
		t.Error("x32 lacks rt_sigaction")
	}
	if syscallsX32["ioctl"] != 514 {
		t.Errorf("x32's ioctl is %d, want its own 514", syscallsX32["ioctl"])
	}
}

func TestDisabled(t *testing.T) {
	for _, s := range []*specs.LinuxSeccomp{nil, {}} {
		f, err := Compile(s)
		if f != nil || err != nil {
			t.Errorf("Compile(%+v) = %v, %v; want no filter", s, f, err)
		}
	}
	if err := (*Filter)(nil).Load(); err != nil {
		t.Errorf("loading no filter: %v", err)
	}
}

func TestActions(t *testing.T) {
	for _, c := range []struct {
		act      specs.LinuxSeccompAction
		errnoRet *uint
		want     uint32
	}{
		{specs.ActKill, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillThread, nil, unix.SECCOMP_RET_KILL_THREAD},
		{specs.ActKillProcess, nil, unix.SECCOMP_RET_KILL_PROCESS},
		{specs.ActTrap, nil, unix.SECCOMP_RET_TRAP},
		{specs.ActErrno, nil, errno(unix.EPERM)},
		{specs.ActErrno, uintp(uint(unix.EACCES)), errno(unix.EACCES)},
		{specs.ActErrno, uintp(0), unix.SECCOMP_RET_ERRNO},
		{specs.ActTrace, nil, unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{specs.ActTrace, uintp(77), unix.SECCOMP_RET_TRACE | 77},
		{specs.ActAllow, nil, retAllow},
		{specs.ActLog, nil, unix.SECCOMP_RET_LOG},
	} {
		t.Run(fmt.Sprintf("%s-%v", c.act, c.errnoRet != nil), func(t *testing.T) {
			// As the rule's action under a default it differs from...
			def := specs.ActAllow
			if c.act == specs.ActAllow {
				def = specs.ActKillProcess
			}
			v := compile(t, &specs.LinuxSeccomp{DefaultAction: def, Syscalls: []specs.LinuxSyscall{
				{Names: []string{"mkdir"}, Action: c.act, ErrnoRet: c.errnoRet},
			}})
			v.expect("rule", c.want, archX64, nr64("mkdir"))
			// ...and as the default action.
			v = compile(t, &specs.LinuxSeccomp{DefaultAction: c.act, DefaultErrnoRet: c.errnoRet})
			v.expect("default", c.want, archX64, nr64("mkdir"))
		})
	}
}

func TestDefaultErrnoRetAndRedundantRules(t *testing.T) {
	v := compile(t, &specs.LinuxSeccomp{
		DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(uint(unix.ENOSYS)),
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"getpid", "read"}, Action: specs.ActAllow},
			// The default action again: dropped, as runc does.
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOSYS))},
			// The same action with another errno is a rule of its own.
			{Names: []string{"write"}, Action: specs.ActErrno},
		},
	})
	v.expect("allowed", retAllow, archX64, nr64("getpid"))
	v.expect("allowed", retAllow, archX64, nr64("read"))
	v.expect("default errno", errno(unix.ENOSYS), archX64, nr64("mkdir"))
	v.expect("default errno", errno(unix.ENOSYS), archX64, nr64("getppid"))
	v.expect("EPERM rule", errno(unix.EPERM), archX64, nr64("write"))
}

func TestUnknownNamesAreSkipped(t *testing.T) {
	v := compile(t, &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"no_such_syscall", "socketcall", "mkdir"}, Action: specs.ActErrno},
		},
	})
	v.expect("mkdir x86_64", errno(unix.EPERM), archX64, nr64("mkdir"))
	v.expect("mkdir i386", errno(unix.EPERM), archI386, nr386("mkdir"))
	// socketcall exists on i386 only.
	v.expect("socketcall i386", errno(unix.EPERM), archI386, nr386("socketcall"))
	v.expect("x86_64 102 (getuid)", retAllow, archX64, 102)
}

// The operators on 64-bit arguments, against Go's own comparisons, over
// values chosen to differ in the high word, the low word or both.
func TestArgOperators64(t *testing.T) {
	values := []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff,
		0x100000000, 0x100000001, 0x1ffffffff, 0x200000000, 0xffffffff00000000,
		0xffffffff00000001, 0xfffffffffffffffe, 0xffffffffffffffff, 0x8000000000000000}
	ops := map[specs.LinuxSeccompOperator]func(a, v uint64) bool{
		specs.OpEqualTo:      func(a, v uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v uint64) bool { return a != v },
		specs.OpLessThan:     func(a, v uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v uint64) bool { return a <= v },
		specs.OpGreaterThan:  func(a, v uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v uint64) bool { return a >= v },
	}
	for op, want := range ops {
		for _, val := range values {
			for _, idx := range []uint{0, 3, 5} {
				v := compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
					{Names: []string{"lseek"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: idx, Value: val, Op: op}}},
				}})
				for _, arg := range values {
					args := make([]uint64, 6)
					// Noise in the other arguments must not matter.
					for i := range args {
						args[i] = 0x5555555555555555
					}
					args[idx] = arg
					exp := uint32(retAllow)
					if want(arg, val) {
						exp = errno(unix.EPERM)
					}
					if got := v.run(archX64, nr64("lseek"), args...); got != exp {
						t.Errorf("arg%d=%#x %s %#x: got %#x, want %#x", idx, arg, op, val, got, exp)
					}
				}
			}
		}
	}
	// MASKED_EQ: (arg & value) == valueTwo, both words.
	for _, c := range []struct {
		mask, datum uint64
	}{{0xff, 0x12}, {0xffffffff00000000, 0x100000000}, {0x100000001, 0x100000001}, {0x7e020000, 0}, {0, 0}, {0xf, 0x10}} {
		v := compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"lseek"}, Action: specs.ActKillProcess, Args: []specs.LinuxSeccompArg{{Index: 1, Value: c.mask, ValueTwo: c.datum, Op: specs.OpMaskedEqual}}},
		}})
		for _, arg := range append(values, 0x12, 0x112, 0x100000012, 0x7e020000, 0x10000) {
			exp := uint32(retAllow)
			if arg&c.mask == c.datum {
				exp = unix.SECCOMP_RET_KILL_PROCESS
			}
			if got := v.run(archX64, nr64("lseek"), 0, arg); got != exp {
				t.Errorf("(%#x & %#x) == %#x: got %#x, want %#x", arg, c.mask, c.datum, got, exp)
			}
		}
	}
}

// i386 and x32 compare the low 32 bits only, as libseccomp does.
func TestArgOperators32(t *testing.T) {
	v := compile(t, &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
			{Names: []string{"lseek"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0x100000010, Op: specs.OpGreaterThan}}},
		},
	})
	for _, c := range []struct {
		arch, nr uint32
	}{{archI386, nr386("personality")}, {archX64, nrX32("personality")}} {
		v.expect("personality(0xffffffff)", errno(unix.EPERM), c.arch, c.nr, 0xffffffff)
		v.expect("personality(high word ignored)", errno(unix.EPERM), c.arch, c.nr, 0x1ffffffff)
		v.expect("personality(0)", retAllow, c.arch, c.nr, 0)
	}
	// x86_64 compares all 64 bits.
	v.expect("x86_64 personality(0x1ffffffff)", retAllow, archX64, nr64("personality"), 0x1ffffffff)
	v.expect("x86_64 personality(0xffffffff)", errno(unix.EPERM), archX64, nr64("personality"), 0xffffffff)
	// The value's high word is dropped: > 0x10 on the low word.
	v.expect("i386 lseek 0x11", errno(unix.EPERM), archI386, nr386("lseek"), 0, 0x11)
	v.expect("i386 lseek 0x10", retAllow, archI386, nr386("lseek"), 0, 0x10)
	v.expect("x86_64 lseek 0x11", retAllow, archX64, nr64("lseek"), 0, 0x11)
	v.expect("x86_64 lseek 0x100000011", errno(unix.EPERM), archX64, nr64("lseek"), 0, 0x100000011)
}

func TestRuleCombination(t *testing.T) {
	v := compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		// Distinct arguments: ANDed.
		{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EINVAL)), Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: unix.AF_NETLINK, Op: specs.OpEqualTo},
			{Index: 2, Value: unix.NETLINK_AUDIT, Op: specs.OpEqualTo},
		}},
		// Rules for one syscall: ORed, first match wins.
		{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EAFNOSUPPORT)), Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpEqualTo},
		}},
		{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EACCES)), Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: unix.AF_NETLINK, Op: specs.OpEqualTo},
		}},
		// The same argument twice: each condition a rule of its own (runc).
		{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{
			{Index: 0, Value: 1, Op: specs.OpEqualTo},
			{Index: 0, Value: 2, Op: specs.OpEqualTo},
		}},
		// An unconditional rule comes after the conditional ones.
		{Names: []string{"kill"}, Action: specs.ActKillProcess},
		{Names: []string{"kill"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0, Op: specs.OpEqualTo}}},
	}})
	nr := nr64("socket")
	v.expect("netlink audit", errno(unix.EINVAL), archX64, nr, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	v.expect("netlink route", errno(unix.EACCES), archX64, nr, unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	v.expect("vsock", errno(unix.EAFNOSUPPORT), archX64, nr, unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	v.expect("inet", retAllow, archX64, nr, unix.AF_INET, unix.SOCK_STREAM, unix.NETLINK_AUDIT)
	p := nr64("personality")
	v.expect("personality 1", errno(unix.EPERM), archX64, p, 1)
	v.expect("personality 2", errno(unix.EPERM), archX64, p, 2)
	v.expect("personality 3", retAllow, archX64, p, 3)
	v.expect("kill sig 0", errno(unix.EPERM), archX64, nr64("kill"), 1, 0)
	v.expect("kill sig 9", unix.SECCOMP_RET_KILL_PROCESS, archX64, nr64("kill"), 1, 9)
}

func TestArchitectures(t *testing.T) {
	rules := []specs.LinuxSyscall{
		{Names: []string{"mkdir", "getpid"}, Action: specs.ActErrno},
		{Names: []string{"rt_sigaction"}, Action: specs.ActTrap},
	}
	// Only the native architecture: x32 and i386 are a bad arch.
	v := compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules})
	v.expect("x86_64 mkdir", errno(unix.EPERM), archX64, nr64("mkdir"))
	v.expect("x86_64 rt_sigaction", unix.SECCOMP_RET_TRAP, archX64, nr64("rt_sigaction"))
	v.expect("x86_64 read", retAllow, archX64, nr64("read"))
	v.expect("x32 read", retKill, archX64, nrX32("read"))
	v.expect("i386 read", retKill, archI386, nr386("read"))
	v.expect("aarch64", retKill, unix.AUDIT_ARCH_AARCH64, 0)

	// All three, and a foreign one that is accepted and never matches.
	v = compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules,
		Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32, specs.ArchAARCH64}})
	v.expect("x86_64 mkdir", errno(unix.EPERM), archX64, nr64("mkdir"))
	v.expect("x32 mkdir", errno(unix.EPERM), archX64, nrX32("mkdir"))
	v.expect("i386 mkdir", errno(unix.EPERM), archI386, nr386("mkdir"))
	v.expect("i386 getpid", errno(unix.EPERM), archI386, nr386("getpid"))
	// x32's rt_sigaction is 512|bit; x86_64's 13|bit is not an x32 syscall.
	v.expect("x32 rt_sigaction", unix.SECCOMP_RET_TRAP, archX64, nrX32("rt_sigaction"))
	v.expect("x32 13", retAllow, archX64, 13|x32SyscallBit)
	v.expect("i386 rt_sigaction", unix.SECCOMP_RET_TRAP, archI386, nr386("rt_sigaction"))
	// i386's mkdir number (39) is x86_64's getpid: each arch has its own.
	v.expect("i386 83 (x86_64 mkdir)", retAllow, archI386, 83)
	v.expect("x86_64 read", retAllow, archX64, nr64("read"))
	v.expect("x32 read", retAllow, archX64, nrX32("read"))
	v.expect("i386 read", retAllow, archI386, nr386("read"))
	v.expect("aarch64", retKill, unix.AUDIT_ARCH_AARCH64, 0)

	// x32 without i386.
	v = compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules,
		Architectures: []specs.Arch{specs.ArchX32}})
	v.expect("x32 mkdir", errno(unix.EPERM), archX64, nrX32("mkdir"))
	v.expect("i386 read", retKill, archI386, nr386("read"))
}

func TestEnosysStub(t *testing.T) {
	allow := []specs.LinuxSyscall{{Names: []string{"read", "write", "openat"}, Action: specs.ActAllow}}
	v := compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: allow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}})
	max := nr64("openat")
	v.expect("openat", retAllow, archX64, max)
	v.expect("below the last named", errno(unix.EPERM), archX64, max-1)
	v.expect("above the last named", errno(unix.ENOSYS), archX64, max+1)
	v.expect("far above", errno(unix.ENOSYS), archX64, x32SyscallBit-1)
	v.expect("x32 above", errno(unix.ENOSYS), archX64, nrX32("openat")+1)
	v.expect("x32 below", errno(unix.EPERM), archX64, nrX32("openat")-1)
	v.expect("x32 -1", errno(unix.ENOSYS), archX64, 0xffffffff)
	v.expect("i386 above", errno(unix.ENOSYS), archI386, nr386("openat")+1)
	v.expect("i386 below", errno(unix.EPERM), archI386, nr386("openat")-1)
	// The bound counts every name, whatever its action.
	v = compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: append(allow,
		specs.LinuxSyscall{Names: []string{"clone3"}, Action: specs.ActErrno})})
	v.expect("below clone3", errno(unix.EPERM), archX64, nr64("clone3")-1)
	v.expect("above clone3", errno(unix.ENOSYS), archX64, nr64("clone3")+1)
	// No stub under a permissive default.
	for _, def := range []specs.LinuxSeccompAction{specs.ActAllow, specs.ActLog, specs.ActTrace} {
		v = compile(t, &specs.LinuxSeccomp{DefaultAction: def, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActKillProcess}}})
		if got := v.run(archX64, 400); got&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO {
			t.Errorf("%s default: syscall 400 got %#x", def, got)
		}
	}
	// A kill default has it.
	v = compile(t, &specs.LinuxSeccomp{DefaultAction: specs.ActKillProcess, Syscalls: allow})
	v.expect("kill default, above", errno(unix.ENOSYS), archX64, max+1)
	v.expect("kill default, below", unix.SECCOMP_RET_KILL_PROCESS, archX64, max-1)
}

// Every x86_64 syscall with a return of its own: hundreds of distinct
// targets, far beyond the 255 instructions a conditional jump reaches.
func TestLongProfile(t *testing.T) {
	var rules []specs.LinuxSyscall
	for name, nr := range syscallsX86_64 {
		rules = append(rules, specs.LinuxSyscall{Names: []string{name}, Action: specs.ActErrno, ErrnoRet: uintp(uint(nr + 1))})
		// Every fourth also gets a 64-bit condition on an argument.
		if nr%4 == 0 {
			rules = append(rules, specs.LinuxSyscall{Names: []string{name}, Action: specs.ActTrace, ErrnoRet: uintp(uint(nr)),
				Args: []specs.LinuxSeccompArg{{Index: uint(nr % 6), Value: uint64(nr)<<32 | 7, Op: specs.OpEqualTo}}})
		}
	}
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules, Architectures: []specs.Arch{specs.ArchX86, specs.ArchX32}}
	v := compile(t, s)
	if len(v.f.Program) < 600 {
		t.Fatalf("program of %d instructions: too short to exercise long jumps", len(v.f.Program))
	}
	for name, nr := range syscallsX86_64 {
		v.expect(name, errno(unix.Errno(nr+1)), archX64, nr)
		if nr%4 == 0 {
			args := make([]uint64, 6)
			args[nr%6] = uint64(nr)<<32 | 7
			v.expect(name+" with args", unix.SECCOMP_RET_TRACE|nr, archX64, nr, args...)
			args[nr%6] = uint64(nr+1)<<32 | 7
			v.expect(name+" high word differs", errno(unix.Errno(nr+1)), archX64, nr, args...)
		}
	}
	for name, nr := range syscallsX32 {
		want := uint32(retAllow)
		if n64, ok := syscallsX86_64[name]; ok {
			want = errno(unix.Errno(n64 + 1))
		}
		v.expect("x32 "+name, want, archX64, nr|x32SyscallBit)
	}
	for name, nr := range syscallsI386 {
		want := uint32(retAllow)
		if n64, ok := syscallsX86_64[name]; ok {
			want = errno(unix.Errno(n64 + 1))
		}
		v.expect("i386 "+name, want, archI386, nr)
	}
	v.expect("unknown x86_64", retAllow, archX64, 1000)
}

func TestAssemblerFarJumps(t *testing.T) {
	var a asm
	far, near := a.newLabel(), a.newLabel()
	a.loadWord(offNr)
	a.jump(opJeqK, 1, far, near)
	a.here(near)
	next := a.newLabel()
	a.jump(opJeqK, 2, next, far)
	a.here(next)
	for i := 0; i < 600; i++ {
		a.ret(uint32(1000 + i))
	}
	a.here(far)
	a.ret(7)
	prog, err := a.assemble()
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]bpf.RawInstruction, len(prog))
	for i, in := range prog {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	insns, _ := bpf.Disassemble(raw)
	m, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatal(err)
	}
	for nr, want := range map[uint32]int{1: 7, 2: 1000, 3: 7} {
		data := make([]byte, 64)
		binary.BigEndian.PutUint32(data, nr)
		if got, _ := m.Run(data); got != want {
			t.Errorf("nr %d: got %d, want %d", nr, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow, flagTSync},
		Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "not_a_syscall"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 5, Op: specs.OpGreaterEqual}}}}}
	if err := Validate(ok); err != nil {
		t.Errorf("valid profile: %v", err)
	}
	f, _ := Compile(ok)
	if f.Flags != unix.SECCOMP_FILTER_FLAG_LOG|unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW|unix.SECCOMP_FILTER_FLAG_TSYNC {
		t.Errorf("flags %#x", f.Flags)
	}
	if f, _ := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow}); f.Flags != unix.SECCOMP_FILTER_FLAG_TSYNC {
		t.Errorf("flags without any in the spec: %#x, want TSYNC", f.Flags)
	}
	for _, c := range []struct {
		s    specs.LinuxSeccomp
		want string
	}{
		{specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}, `unknown action "SCMP_ACT_BOGUS"`},
		{specs.LinuxSeccomp{Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}}}, `defaultAction: unknown action ""`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, "SCMP_ACT_NOTIFY (seccomp user notification) is not supported"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, "syscalls[0]: SCMP_ACT_NOTIFY"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/l.sock"}, "listenerPath is not supported"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_VAX"}}, `seccomp: unknown architecture "SCMP_ARCH_VAX"`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_BOGUS"}}, `flag "SECCOMP_FILTER_FLAG_BOGUS" is not supported`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}}}}}, `syscalls[0].args[0]: unknown operator "SCMP_CMP_BOGUS"`},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "index 6 is out of range (0-5)"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{""}, Action: specs.ActErrno}}}, "empty string is not a valid syscall"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, DefaultErrnoRet: uintp(1)}, "errnoRet is only supported with SCMP_ACT_ERRNO and SCMP_ACT_TRACE"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActKill, ErrnoRet: uintp(1)}}}, "errnoRet is only supported"},
		{specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: uintp(70000)}, "errnoRet 70000 is out of range"},
	} {
		err := Validate(&c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.s, err, c.want)
		}
	}
}

// dockerProfile is docker's (and containers/common's) profile format: the
// daemon turns it into the spec's linux.seccomp for one container.
type dockerProfile struct {
	DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet *uint                    `json:"defaultErrnoRet"`
	ArchMap         []struct {
		Arch specs.Arch   `json:"architecture"`
		Sub  []specs.Arch `json:"subArchitectures"`
	} `json:"archMap"`
	Syscalls []struct {
		specs.LinuxSyscall
		Includes, Excludes struct {
			Caps   []string `json:"caps"`
			Arches []string `json:"arches"`
		}
	} `json:"syscalls"`
}

// dockerCaps are docker's default capabilities.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// loadDockerProfile makes the spec profile docker would for an amd64
// container with caps.
func loadDockerProfile(t *testing.T, path string, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p dockerProfile
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	s := &specs.LinuxSeccomp{DefaultAction: p.DefaultAction, DefaultErrnoRet: p.DefaultErrnoRet}
	for _, m := range p.ArchMap {
		if m.Arch == specs.ArchX86_64 {
			s.Architectures = append([]specs.Arch{m.Arch}, m.Sub...)
		}
	}
	for _, sc := range p.Syscalls {
		in, ex := sc.Includes, sc.Excludes
		if len(in.Arches) > 0 && !slices.Contains(in.Arches, "amd64") || slices.Contains(ex.Arches, "amd64") {
			continue
		}
		keep := true
		for _, c := range in.Caps {
			keep = keep && slices.Contains(caps, c)
		}
		for _, c := range ex.Caps {
			keep = keep && !slices.Contains(caps, c)
		}
		if keep {
			s.Syscalls = append(s.Syscalls, sc.LinuxSyscall)
		}
	}
	return s
}

func TestDockerDefaultProfile(t *testing.T) {
	s := loadDockerProfile(t, "testdata/docker-default.json", dockerCaps)
	names := 0
	for _, sc := range s.Syscalls {
		names += len(sc.Names)
	}
	if names < 350 {
		t.Fatalf("docker's profile has %d names", names)
	}
	v := compile(t, s)
	t.Logf("docker's default profile: %d rules, %d names, %d instructions", len(s.Syscalls), names, len(v.f.Program))
	perm := errno(unix.EPERM)
	for _, name := range []string{"read", "write", "openat", "execve", "futex", "mkdirat", "setresuid", "capset", "prctl", "arch_prctl", "chroot", "waitid", "writev"} {
		v.expect(name, retAllow, archX64, nr64(name))
		v.expect("x32 "+name, retAllow, archX64, nrX32(name))
	}
	for _, name := range []string{"mount", "unshare", "setns", "bpf", "reboot", "init_module", "kexec_load", "open_by_handle_at", "umount2", "sethostname"} {
		v.expect(name, perm, archX64, nr64(name))
	}
	// i386's own numbers: socketcall and mmap2 are allowed there.
	v.expect("i386 socketcall", retAllow, archI386, nr386("socketcall"))
	v.expect("i386 mmap2", retAllow, archI386, nr386("mmap2"))
	v.expect("i386 mount", perm, archI386, nr386("mount"))
	// clone: allowed without namespace flags (MASKED_EQ 0x7e020000 == 0).
	clone := nr64("clone")
	v.expect("clone(SIGCHLD)", retAllow, archX64, clone, uint64(unix.SIGCHLD))
	v.expect("clone(threads)", retAllow, archX64, clone, unix.CLONE_VM|unix.CLONE_FS|unix.CLONE_FILES|unix.CLONE_SIGHAND|unix.CLONE_THREAD)
	v.expect("clone(NEWUSER)", perm, archX64, clone, unix.CLONE_NEWUSER|uint64(unix.SIGCHLD))
	v.expect("clone(NEWNS)", perm, archX64, clone, unix.CLONE_NEWNS)
	v.expect("clone3", errno(unix.ENOSYS), archX64, nr64("clone3"))
	// socket: anything but AF_VSOCK.
	v.expect("socket(AF_INET)", retAllow, archX64, nr64("socket"), unix.AF_INET)
	v.expect("socket(AF_VSOCK)", perm, archX64, nr64("socket"), unix.AF_VSOCK)
	// personality: only the listed personas.
	for _, p := range []uint64{0, 8, 0x20000, 0x20008, 0xffffffff} {
		v.expect(fmt.Sprintf("personality(%#x)", p), retAllow, archX64, nr64("personality"), p)
	}
	v.expect("personality(ADDR_NO_RANDOMIZE)", perm, archX64, nr64("personality"), 0x0040000)
	// Past the last named syscall: ENOSYS (runc's stub).
	v.expect("syscall 1000", errno(unix.ENOSYS), archX64, 1000)
	v.expect("bad arch", retKill, unix.AUDIT_ARCH_ARM, 0)

	// With CAP_SYS_ADMIN, docker adds the namespace syscalls and drops the
	// clone restriction.
	v = compile(t, loadDockerProfile(t, "testdata/docker-default.json", append(dockerCaps, "CAP_SYS_ADMIN")))
	v.expect("admin mount", retAllow, archX64, nr64("mount"))
	v.expect("admin clone(NEWUSER)", retAllow, archX64, clone, unix.CLONE_NEWUSER)
	v.expect("admin clone3", retAllow, archX64, nr64("clone3"))
}

// containers/common's profile (podman, CRI-O): more names, ENOSYS default.
func TestContainersCommonProfile(t *testing.T) {
	s := loadDockerProfile(t, "testdata/containers-common-seccomp.json", dockerCaps)
	v := compile(t, s)
	t.Logf("containers/common profile: %d rules, %d instructions", len(s.Syscalls), len(v.f.Program))
	v.expect("read", retAllow, archX64, nr64("read"))
	v.expect("clone3", retAllow, archX64, nr64("clone3"))
	v.expect("kexec_load", errno(unix.EPERM), archX64, nr64("kexec_load"))
	v.expect("not listed: default ENOSYS", errno(unix.ENOSYS), archX64, nr64("add_key"))
	v.expect("socket(netlink audit) with CAP_AUDIT_WRITE", retAllow, archX64, nr64("socket"), unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	s = loadDockerProfile(t, "testdata/containers-common-seccomp.json", nil)
	v = compile(t, s)
	v.expect("socket(netlink audit) without CAP_AUDIT_WRITE", errno(unix.EINVAL), archX64, nr64("socket"), unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_AUDIT)
	v.expect("socket(netlink route)", retAllow, archX64, nr64("socket"), unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE)
	v.expect("socket(inet)", retAllow, archX64, nr64("socket"), unix.AF_INET, unix.SOCK_STREAM, 0)
}

// The OCI validation suite's linux_seccomp test: runtime-tools' default
// generator (its own default profile for amd64) with a default of allow and
// getcwd turned into an errno.
func TestRuntimeToolsValidationProfile(t *testing.T) {
	g, err := generate.New("linux")
	if err != nil {
		t.Fatal(err)
	}
	if err := g.SetDefaultSeccompAction("allow"); err != nil {
		t.Fatal(err)
	}
	if err := g.SetSyscallAction(rtseccomp.SyscallOpts{Action: "errno", Syscall: "getcwd"}); err != nil {
		t.Fatal(err)
	}
	s := g.Config.Linux.Seccomp
	if err := Validate(s); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	v := compile(t, s)
	v.expect("getcwd", errno(unix.EPERM), archX64, nr64("getcwd"))
	v.expect("x32 getcwd", errno(unix.EPERM), archX64, nrX32("getcwd"))
	v.expect("i386 getcwd", errno(unix.EPERM), archI386, nr386("getcwd"))
	v.expect("read", retAllow, archX64, nr64("read"))
	v.expect("mount", retAllow, archX64, nr64("mount"))
}

func TestBytesRoundTrip(t *testing.T) {
	f, err := Compile(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
		{Names: []string{"mkdir", "chmod"}, Action: specs.ActErrno},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b := f.Bytes()
	if len(b) != 8*len(f.Program) {
		t.Fatalf("%d bytes for %d instructions", len(b), len(f.Program))
	}
	g, err := FromBytes(b, f.Flags)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f, g) {
		t.Errorf("round trip changed the filter:\n%+v\n%+v", f, g)
	}
	if g, err := FromBytes(nil, 0); g != nil || err != nil {
		t.Errorf("empty program: %v, %v; want no filter", g, err)
	}
	if _, err := FromBytes(b[:len(b)-3], 0); err == nil {
		t.Error("a program cut mid-instruction was accepted")
	}
}
