package optprobe

import (
	"encoding/binary"
	"fmt"

	"github.com/mmiotrace/mmiotrace/internal/x86"
)

// Re-encoding keeps an instruction's prefixes, opcode, register field and
// immediate and replaces only its memory operand, so that the detour
// executes the program's own instruction, with its exact width, operand
// size and semantics, on another address (withMem) or on a scratch
// register (withReg).

// operand is a replacement for the memory operand: [base + disp32], or the
// register rm when direct.
type operand struct {
	direct bool
	base   int
	disp   int32
	rm     int
}

// withMem returns in's encoding with its memory operand replaced by
// [base + disp32]: no segment override, 64-bit addressing.
func withMem(in *x86.Inst, base int, disp int32) ([]byte, error) {
	return reencode(in, operand{base: base, disp: disp})
}

// withReg returns in's encoding with its memory operand replaced by the
// register rm. For a byte operation rm may be 4-7 (SPL to DIL) only if the
// instruction has no AH to BH operand: a REX prefix is added to name them.
func withReg(in *x86.Inst, rm int) ([]byte, error) {
	return reencode(in, operand{direct: true, rm: rm})
}

func reencode(in *x86.Inst, op operand) ([]byte, error) {
	l, ok := in.Layout()
	if !ok {
		return nil, fmt.Errorf("optprobe: %v: not an emulated instruction", in)
	}
	f, _ := in.Form()
	raw := in.Bytes()
	end := l.Opcode
	if l.VEX >= 0 {
		end = l.VEX
	} else if l.REX >= 0 {
		end = l.REX
	}
	var out []byte
	for _, b := range raw[:end] {
		switch b {
		case 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x67:
			// The new operand is a linear 64-bit address.
		default:
			out = append(out, b)
		}
	}
	reg := op.base
	if op.direct {
		reg = op.rm
	}
	ext := byte(reg >> 3 & 1)
	opcode := raw[l.Opcode:]
	if l.ModRM >= 0 {
		opcode = raw[l.Opcode:l.ModRM]
	}
	modrmReg := byte(0)
	if l.ModRM >= 0 {
		modrmReg = raw[l.ModRM] >> 3 & 7
	} else {
		// moffs (A0-A3) becomes the ModRM form of the same move
		// (8A, 8B, 88, 89) with AL/AX/EAX/RAX as the register.
		if len(opcode) < 1 || opcode[0]&0xFC != 0xA0 || op.direct {
			return nil, fmt.Errorf("optprobe: %v: no memory operand to replace", in)
		}
		m := map[byte]byte{0xA0: 0x8A, 0xA1: 0x8B, 0xA2: 0x88, 0xA3: 0x89}[opcode[0]]
		opcode = []byte{m}
	}
	switch {
	case l.VEX >= 0 && raw[l.VEX] == 0xC5:
		p1 := raw[l.VEX+1]
		if ext == 0 {
			out = append(out, 0xC5, p1)
		} else {
			// Only the three-byte form has B: C4 R X B 00001, W vvvv L pp.
			out = append(out, 0xC4, p1&0x80|0x40|0x01, p1&0x7F)
		}
	case l.VEX >= 0 && raw[l.VEX] == 0xC4:
		p1 := raw[l.VEX+1]&0x9F | 0x40 // X=1 (inverted: no index)
		if ext == 0 {
			p1 |= 0x20
		}
		out = append(out, 0xC4, p1, raw[l.VEX+2])
	case l.VEX >= 0: // EVEX
		p0 := raw[l.VEX+1]&0x9F | 0x40
		if ext == 0 {
			p0 |= 0x20
		}
		out = append(out, 0x62, p0, raw[l.VEX+2], raw[l.VEX+3])
	default:
		rex := byte(0x40)
		if l.REX >= 0 {
			rex = raw[l.REX] &^ 3 // drop X and B
		}
		rex |= ext
		byteRegs := op.direct && f.MemSize == 1 && reg&7 >= 4 && reg < 8
		if rex != 0x40 || l.REX >= 0 || byteRegs {
			if f.High {
				// A REX prefix would turn AH-BH into SPL-DIL.
				return nil, fmt.Errorf("optprobe: %v: register %d needs a REX prefix beside AH-BH", in, reg)
			}
			out = append(out, rex)
		}
	}
	out = append(out, opcode...)
	if op.direct {
		out = append(out, 0xC0|modrmReg<<3|byte(reg&7))
	} else {
		out = append(out, 0x80|modrmReg<<3|byte(reg&7))
		if reg&7 == rsp {
			out = append(out, 0x24)
		}
		out = binary.LittleEndian.AppendUint32(out, uint32(op.disp))
	}
	if l.Imm >= 0 {
		out = append(out, raw[l.Imm:l.Imm+l.ImmLen]...)
	}
	return out, nil
}
