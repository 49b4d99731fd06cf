package sysfilter

import (
	"fmt"
	"maps"

	"golang.org/x/sys/unix"
)

// asm builds a classic BPF program with symbolic jump targets. Conditional
// jumps in classic BPF reach at most 255 instructions forward; link turns a
// farther one into a jump to an unconditional jump (32-bit offset) placed
// right after it, where control never falls through.
type asm struct {
	code   []insn
	labels map[string]int // label -> index in code
	err    error
}

type insn struct {
	op     uint16
	k      uint32
	jt, jf string // conditional jump targets ("" is the next instruction)
	ja     string // target of an unconditional jump
}

func newAsm() *asm { return &asm{labels: map[string]int{}} }

// label names the next instruction.
func (a *asm) label(name string) {
	if _, dup := a.labels[name]; dup && a.err == nil {
		a.err = fmt.Errorf("sysfilter: label %q defined twice", name)
	}
	a.labels[name] = len(a.code)
}

func (a *asm) emit(op uint16, k uint32) { a.code = append(a.code, insn{op: op, k: k}) }

// ld loads the 32-bit word at offset off of struct seccomp_data into A.
func (a *asm) ld(off uint32) { a.emit(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, off) }

// ldm loads scratch word m into A; ldxm into X; st stores A into it.
func (a *asm) ldm(m uint32)  { a.emit(unix.BPF_LD|unix.BPF_MEM, m) }
func (a *asm) ldxm(m uint32) { a.emit(unix.BPF_LDX|unix.BPF_MEM, m) }
func (a *asm) st(m uint32)   { a.emit(unix.BPF_ST, m) }

// alu applies op (unix.BPF_ADD, BPF_AND...) to A with the constant k.
func (a *asm) alu(op uint16, k uint32) { a.emit(unix.BPF_ALU|op|unix.BPF_K, k) }

// alux applies op to A with X.
func (a *asm) alux(op uint16) { a.emit(unix.BPF_ALU|op|unix.BPF_X, 0) }

func (a *asm) ret(k uint32) { a.emit(unix.BPF_RET|unix.BPF_K, k) }

// jmp compares A with k (op unix.BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET) and
// goes to jt if true, jf if not ("" meaning the next instruction).
func (a *asm) jmp(op uint16, k uint32, jt, jf string) {
	a.code = append(a.code, insn{op: unix.BPF_JMP | op | unix.BPF_K, k: k, jt: jt, jf: jf})
}

// jmpx is jmp comparing A with X.
func (a *asm) jmpx(op uint16, jt, jf string) {
	a.code = append(a.code, insn{op: unix.BPF_JMP | op | unix.BPF_X, jt: jt, jf: jf})
}

// goTo jumps to label.
func (a *asm) goTo(label string) {
	a.code = append(a.code, insn{op: unix.BPF_JMP | unix.BPF_JA, ja: label})
}

// link resolves the labels and returns the program.
func (a *asm) link() ([]unix.SockFilter, error) {
	if a.err != nil {
		return nil, a.err
	}
	code := append([]insn(nil), a.code...)
	labels := make(map[string]int, len(a.labels))
	for k, v := range a.labels {
		labels[k] = v
	}
	for _, c := range code {
		for _, l := range []string{c.jt, c.jf, c.ja} {
			if _, ok := labels[l]; l != "" && !ok {
				return nil, fmt.Errorf("sysfilter: undefined label %q", l)
			}
		}
	}
	// Relax: give every too-far conditional target a trampoline, until
	// none is left (the insertions can push other jumps out of reach).
	// Each round fixes every far jump it finds in one rebuild of the
	// program, so that a filter of thousands of instructions links in a
	// few passes rather than one pass per jump.
	serial := 0
	for round := 0; ; round++ {
		isFar := func(i int) bool {
			c := code[i]
			if c.op&0x07 != unix.BPF_JMP || c.op&0xf0 == unix.BPF_JA {
				return false
			}
			return c.jt != "" && labels[c.jt]-i-1 > 255 || c.jf != "" && labels[c.jf]-i-1 > 255
		}
		var fars []int
		for i := range code {
			if isFar(i) {
				fars = append(fars, i)
			}
		}
		if len(fars) == 0 {
			break
		}
		if round > 1000 {
			return nil, fmt.Errorf("sysfilter: cannot lay out jumps")
		}
		// newIndex[i] is where old instruction i lands; newIndex[len(code)]
		// is the new end, for labels placed after the last instruction.
		newIndex := make([]int, len(code)+1)
		out := make([]insn, 0, len(code)+3*len(fars))
		// New labels: trampolines (at their index in out) and the
		// instructions after far jumps (where old instruction old lands).
		tramps := map[string]int{}
		after := map[string]int{}
		next := 0
		for i := range code {
			newIndex[i] = len(out)
			out = append(out, code[i])
			if next >= len(fars) || fars[next] != i {
				continue
			}
			next++
			c := &out[len(out)-1]
			for _, l := range []*string{&c.jt, &c.jf} {
				if *l == "" || labels[*l]-i-1 <= 255 {
					continue
				}
				serial++
				name := fmt.Sprintf("\x00t%d", serial)
				tramps[name] = len(out)
				out = append(out, insn{op: unix.BPF_JMP | unix.BPF_JA, ja: *l})
				*l = name
			}
			// A conditional jump whose other branch was "the next
			// instruction" now needs a target of its own, past the
			// trampolines.
			serial++
			nextName := fmt.Sprintf("\x00n%d", serial)
			if c.jt == "" {
				c.jt = nextName
			}
			if c.jf == "" {
				c.jf = nextName
			}
			after[nextName] = i + 1
		}
		newIndex[len(code)] = len(out)
		for k, v := range labels {
			labels[k] = newIndex[v]
		}
		for k, v := range after {
			labels[k] = newIndex[v]
		}
		maps.Copy(labels, tramps)
		code = out
	}
	if len(code) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("sysfilter: program of %d instructions, more than the kernel's %d", len(code), unix.BPF_MAXINSNS)
	}
	out := make([]unix.SockFilter, len(code))
	for i, c := range code {
		for _, l := range []string{c.jt, c.jf, c.ja} {
			if l != "" && labels[l] <= i {
				return nil, fmt.Errorf("sysfilter: jump back to %q", l)
			}
		}
		f := unix.SockFilter{Code: c.op, K: c.k}
		switch {
		case c.op&0x07 == unix.BPF_JMP && c.op&0xf0 == unix.BPF_JA:
			f.K = uint32(labels[c.ja] - i - 1)
		case c.op&0x07 == unix.BPF_JMP:
			if c.jt != "" {
				f.Jt = uint8(labels[c.jt] - i - 1)
			}
			if c.jf != "" {
				f.Jf = uint8(labels[c.jf] - i - 1)
			}
		}
		out[i] = f
	}
	return out, nil
}
