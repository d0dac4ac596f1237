package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// A tiny classic-BPF assembler with symbolic labels. Conditional jumps have
// 8-bit offsets; a jump whose target ends up further than 255 instructions
// away gets an unconditional trampoline (32-bit offset) right after it, so
// programs of any length (docker's profile has ~350 names) assemble
// correctly. Classic BPF only jumps forward: every label must be marked
// after every jump to it.

type label int

const (
	opLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	opAndK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	opJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	opJgtK   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	opJgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	opJa     = unix.BPF_JMP | unix.BPF_JA
	opRetK   = unix.BPF_RET | unix.BPF_K

	// maxInsns is the kernel's BPF_MAXINSNS for a classic filter.
	maxInsns = 4096
)

type item struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps; ja uses jt
	mark   label // >= 0: this item only marks a label here
	// farT, farF: the target is out of 8-bit reach, jump via a trampoline.
	farT, farF bool
}

type asm struct {
	items  []item
	labels int
}

func (a *asm) newLabel() label {
	a.labels++
	return label(a.labels - 1)
}

// here marks l at the current position.
func (a *asm) here(l label) { a.items = append(a.items, item{mark: l}) }

func (a *asm) stmt(code uint16, k uint32) {
	a.items = append(a.items, item{code: code, k: k, mark: -1})
}

func (a *asm) loadWord(off uint32) { a.stmt(opLdAbsW, off) }
func (a *asm) and(k uint32)        { a.stmt(opAndK, k) }
func (a *asm) ret(k uint32)        { a.stmt(opRetK, k) }

// jump: if A <op> k goto t else goto f.
func (a *asm) jump(code uint16, k uint32, t, f label) {
	a.items = append(a.items, item{code: code, k: k, jt: t, jf: f, mark: -1})
}

// goTo is an unconditional jump.
func (a *asm) goTo(t label) {
	a.items = append(a.items, item{code: opJa, jt: t, mark: -1})
}

func isCond(code uint16) bool {
	return code&0x07 == unix.BPF_JMP && code&0xf0 != unix.BPF_JA
}

func (it *item) size() int {
	switch {
	case it.mark >= 0:
		return 0
	case it.farT && it.farF:
		return 3
	case it.farT || it.farF:
		return 2
	}
	return 1
}

// layout returns each label's position and each item's position.
func (a *asm) layout() (labels, pos []int) {
	labels = make([]int, a.labels)
	for i := range labels {
		labels[i] = -1
	}
	pos = make([]int, len(a.items))
	pc := 0
	for i := range a.items {
		pos[i] = pc
		if m := a.items[i].mark; m >= 0 {
			labels[m] = pc
		}
		pc += a.items[i].size()
	}
	return labels, pos
}

// assemble resolves labels and returns the program.
func (a *asm) assemble() ([]unix.SockFilter, error) {
	var labels, pos []int
	// Relax: mark jumps out of reach as far until nothing changes. Marking
	// only ever grows the program, so this ends.
	for {
		labels, pos = a.layout()
		changed := false
		for i := range a.items {
			it := &a.items[i]
			if it.mark >= 0 || !isCond(it.code) {
				continue
			}
			for _, c := range []struct {
				l   label
				far *bool
			}{{it.jt, &it.farT}, {it.jf, &it.farF}} {
				t := labels[c.l]
				if t < 0 {
					return nil, fmt.Errorf("seccomp: internal error: label %d never placed", c.l)
				}
				if !*c.far && t-pos[i]-1 > 255 {
					*c.far = true
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}
	var prog []unix.SockFilter
	offset := func(from int, l label) (uint32, error) {
		t := labels[l]
		if t <= from {
			return 0, fmt.Errorf("seccomp: internal error: backward jump from %d to %d", from, t)
		}
		return uint32(t - from - 1), nil
	}
	for i := range a.items {
		it := &a.items[i]
		if it.mark >= 0 {
			continue
		}
		pc := pos[i]
		switch {
		case it.code == opJa:
			off, err := offset(pc, it.jt)
			if err != nil {
				return nil, err
			}
			prog = append(prog, unix.SockFilter{Code: it.code, K: off})
		case isCond(it.code):
			var jt, jf uint8
			next := 0 // trampolines placed so far
			if it.farT {
				jt = 0
				next++
			} else {
				off, err := offset(pc, it.jt)
				if err != nil {
					return nil, err
				}
				jt = uint8(off)
			}
			if it.farF {
				jf = uint8(next)
			} else {
				off, err := offset(pc, it.jf)
				if err != nil {
					return nil, err
				}
				jf = uint8(off)
			}
			prog = append(prog, unix.SockFilter{Code: it.code, Jt: jt, Jf: jf, K: it.k})
			q := pc + 1
			for _, far := range []struct {
				on bool
				l  label
			}{{it.farT, it.jt}, {it.farF, it.jf}} {
				if !far.on {
					continue
				}
				off, err := offset(q, far.l)
				if err != nil {
					return nil, err
				}
				prog = append(prog, unix.SockFilter{Code: opJa, K: off})
				q++
			}
		default:
			prog = append(prog, unix.SockFilter{Code: it.code, K: it.k})
		}
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("seccomp: the profile compiles to %d BPF instructions, more than the kernel's limit of %d", len(prog), maxInsns)
	}
	return prog, nil
}
