package regmap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Access says which direction a register or an enumerated value applies to.
type Access uint8

// Accesses. The zero value is ReadWrite.
const (
	ReadWrite Access = iota
	ReadOnly
	WriteOnly
)

func (a Access) allows(write bool) bool {
	switch a {
	case ReadOnly:
		return !write
	case WriteOnly:
		return write
	}
	return true
}

// String returns "rw", "ro" or "wo".
func (a Access) String() string {
	switch a {
	case ReadOnly:
		return "ro"
	case WriteOnly:
		return "wo"
	}
	return "rw"
}

// Map is a device's registers: what a register-map file describes.
type Map struct {
	// Name is the device's name from the file, or the file's base name.
	Name string
	// Format is "text", "svd" or "header".
	Format string
	// Absolute is set when addresses are bus addresses (SVD peripherals,
	// the text format's base directive) rather than offsets in a register
	// block.
	Absolute bool
	// Origin is the lowest block base address of an absolute map (0 for a
	// map of offsets): where --base moves the map to.
	Origin uint64

	regs    []Register // sorted by Addr; at one address, in file order
	arrays  []Array    // repeated registers, matched after regs
	maxSpan uint64     // of every register in regs
}

// Register is one register.
type Register struct {
	Name string
	Addr uint64
	// Width in bits; 0 when the description does not say (C headers): an
	// access is then taken to cover the register exactly.
	Width  int
	Access Access
	Fields []Field // sorted by Lsb
	Desc   string

	span uint64 // bytes covered by an access that starts at Addr (see build)
}

// Field is a bit field of a register.
type Field struct {
	Name     string
	Lsb, Msb uint // bit positions in the register, Msb included
	Enums    []Enum
}

// Enum names one value of a field.
type Enum struct {
	Name   string
	Value  uint64
	Access Access // the direction the name applies to (SVD's usage)
}

// Array is a register repeated every Stride bytes from Addr, as a C
// function-like macro (#define REG_Q(n) (0x100 + (n) * 0x10)) describes it:
// instance n is named NAME(n).
type Array struct {
	Register
	Stride uint64
	// Count of instances; 0 when the description does not bound them.
	Count uint64
}

// Registers returns the registers in address order. The slice is shared:
// do not modify it.
func (m *Map) Registers() []Register { return m.regs }

// Arrays returns the repeated registers of a C header.
func (m *Map) Arrays() []Array { return m.arrays }

// build sorts the registers and fields and sizes the registers of
// unknown width, ready for lookups.
func (m *Map) build() {
	sort.SliceStable(m.regs, func(i, j int) bool { return m.regs[i].Addr < m.regs[j].Addr })
	m.maxSpan = 1
	for i := range m.regs {
		r := &m.regs[i]
		sortFields(r.Fields)
		r.span = uint64(r.Width+7) / 8
		if r.Width <= 0 {
			// Unknown width: an access that starts at the register
			// covers it up to the next register, at most 8 bytes (a
			// readq of a 64-bit register, or of two 32-bit ones, names
			// both); an address inside it is taken as inside only in
			// its first 4 bytes, the width of most device registers
			// (see covers).
			r.span = 8
			for _, o := range m.regs[i+1:] {
				if o.Addr > r.Addr {
					r.span = min(r.span, o.Addr-r.Addr)
					break
				}
			}
		}
		m.maxSpan = max(m.maxSpan, r.span)
	}
	for i := range m.arrays {
		a := &m.arrays[i]
		sortFields(a.Fields)
		a.span = uint64(a.Width+7) / 8
		if a.Width <= 0 {
			a.span = min(a.Stride, 8)
		}
	}
}

func sortFields(fs []Field) {
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Lsb < fs[j].Lsb })
}

// find returns the register that covers addr in the given direction: of
// those covering it, the one starting last, and at one address the first
// that allows the direction.
func (m *Map) find(addr uint64, write bool) (Register, bool) {
	i := sort.Search(len(m.regs), func(i int) bool { return m.regs[i].Addr > addr })
	var best *Register
	for j := i - 1; j >= 0 && m.regs[j].Addr+m.maxSpan > addr; j-- {
		r := &m.regs[j]
		if best != nil && r.Addr != best.Addr {
			break
		}
		if !r.covers(addr) {
			continue
		}
		if best == nil || (r.Access.allows(write) && !best.Access.allows(write)) {
			best = r
		}
	}
	if best != nil {
		return *best, true
	}
	for _, a := range m.arrays {
		if addr < a.Addr {
			continue
		}
		n := (addr - a.Addr) / a.Stride
		if a.Count != 0 && n >= a.Count {
			continue
		}
		r := a.Register
		r.Addr = a.Addr + n*a.Stride
		if !r.covers(addr) || !r.Access.allows(write) {
			continue
		}
		r.Name = fmt.Sprintf("%s(%d)", a.Name, n)
		return r, true
	}
	return Register{}, false
}

// covers reports whether addr is in r: in its Width, or for a register of
// unknown width at its start or in its first 4 bytes.
func (r *Register) covers(addr uint64) bool {
	if addr < r.Addr {
		return false
	}
	if r.Width <= 0 && addr != r.Addr {
		return addr < r.Addr+min(r.span, 4)
	}
	return addr < r.Addr+r.span
}

// next returns the address of the first register after addr, or false.
func (m *Map) next(addr uint64) (uint64, bool) {
	i := sort.Search(len(m.regs), func(i int) bool { return m.regs[i].Addr > addr })
	if i < len(m.regs) {
		return m.regs[i].Addr, true
	}
	return 0, false
}

// Part is the piece of an access that falls in one register, or between
// registers (Reg.Name empty).
type Part struct {
	Reg Register
	// Off is the byte offset of the piece in the register (in the access,
	// for a piece between registers: Addr is then the piece's address).
	Off  uint64
	Addr uint64
	// Value holds the piece's bytes, little endian.
	Value []byte
}

// Parts splits an access of len(value) bytes at addr into the registers it
// covers. A 4-byte access to a 4-byte register is one Part with Off 0; a
// byte access to a register's second byte has Off 1; an 8-byte access over
// two 4-byte registers gives two Parts.
func (m *Map) Parts(addr uint64, value []byte, write bool) []Part {
	var parts []Part
	end := addr + uint64(len(value))
	for pos := addr; pos < end; {
		if r, ok := m.find(pos, write); ok {
			rend := min(end, r.Addr+r.span)
			parts = append(parts, Part{Reg: r, Off: pos - r.Addr, Addr: pos, Value: value[pos-addr : rend-addr]})
			pos = rend
			continue
		}
		stop := end
		if n, ok := m.next(pos); ok && n < end {
			stop = n
		}
		parts = append(parts, Part{Addr: pos, Value: value[pos-addr : stop-addr]})
		pos = stop
	}
	return parts
}

// RegisterName returns the name of the register that addr is in ("CTRL", or
// "CTRL+2" for its third byte), or "" when no register covers it.
func (m *Map) RegisterName(addr uint64, write bool) string {
	r, ok := m.find(addr, write)
	if !ok {
		return ""
	}
	if addr != r.Addr {
		return fmt.Sprintf("%s+%d", r.Name, addr-r.Addr)
	}
	return r.Name
}

// Decode describes an access in demmio's manner: each register it covers,
// "=>" for a read or "<=" for a write, the value, and the fields it sets:
//
//	CTRL <= 0x5 {EN | MODE=FAST}
//
// Parts of the access outside every register are shown by address. A
// register without fields shows its value alone.
func (m *Map) Decode(addr uint64, value []byte, write bool) string {
	arrow := " => "
	if write {
		arrow = " <= "
	}
	var b strings.Builder
	for i, p := range m.Parts(addr, value, write) {
		if i > 0 {
			b.WriteString(", ")
		}
		if p.Reg.Name == "" {
			fmt.Fprintf(&b, "%#x%s0x%s", p.Addr, arrow, hexLE(p.Value))
			continue
		}
		b.WriteString(p.Reg.Name)
		if p.Off != 0 {
			fmt.Fprintf(&b, "+%d", p.Off)
		}
		b.WriteString(arrow)
		b.WriteString("0x" + hexLE(p.Value))
		if f := p.Reg.DecodeFields(p.Value, p.Off, write); f != "" {
			b.WriteString(" {" + f + "}")
		}
	}
	return b.String()
}

// DecodeFields names the fields of r set in value, the bytes of r from byte
// off on: single-bit fields by name when set, wider ones as NAME=VALUE with
// the value's enumerated name where there is one, and set bits outside
// every field as a hex number. Fields not wholly inside the bytes given are
// left out. It returns "" for a register without fields, or wider than 64
// bits.
func (r *Register) DecodeFields(value []byte, off uint64, write bool) string {
	if len(r.Fields) == 0 || off+uint64(len(value)) > 8 {
		return ""
	}
	var v uint64
	for i := len(value) - 1; i >= 0; i-- {
		v = v<<8 | uint64(value[i])
	}
	shift := off * 8
	v <<= shift
	have := ones(uint(len(value))*8) << shift
	var out []string
	var known uint64
	for _, f := range r.Fields {
		mask := ones(f.Msb-f.Lsb+1) << f.Lsb
		known |= mask
		if mask&have != mask {
			continue
		}
		x := (v & mask) >> f.Lsb
		if name, ok := f.enumName(x, write); ok {
			out = append(out, f.Name+"="+name)
			continue
		}
		switch {
		case x == 0:
		case f.Msb == f.Lsb:
			out = append(out, f.Name)
		default:
			out = append(out, fmt.Sprintf("%s=%#x", f.Name, x))
		}
	}
	if rest := v & have &^ known; rest != 0 {
		out = append(out, fmt.Sprintf("%#x", rest))
	}
	return strings.Join(out, " | ")
}

func (f *Field) enumName(x uint64, write bool) (string, bool) {
	for _, e := range f.Enums {
		if e.Value == x && e.Access.allows(write) {
			return e.Name, true
		}
	}
	return "", false
}

// ones returns a mask of the n low bits.
func ones(n uint) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<n - 1
}

// hexLE renders little-endian bytes as one hex number without leading
// zeros.
func hexLE(b []byte) string {
	var s strings.Builder
	lead := true
	for i := len(b) - 1; i >= 0; i-- {
		if lead && b[i] == 0 && i > 0 {
			continue
		}
		if lead {
			fmt.Fprintf(&s, "%x", b[i])
			lead = false
			continue
		}
		fmt.Fprintf(&s, "%02x", b[i])
	}
	if lead {
		return "0"
	}
	return s.String()
}

// maxRegisters bounds what a file can make a reader allocate.
const maxRegisters = 1 << 20

// ErrFormat is wrapped by the errors of a malformed register-map file.
var ErrFormat = errors.New("malformed register map")

// Load reads a register-map file in any of the three formats, telling them
// apart by content: XML is SVD, a file with #define lines is a C header,
// anything else the text format.
func Load(path string) (*Map, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if m.Name == "" {
		m.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return m, nil
}

// Parse reads a register map in the format Sniff finds.
func Parse(data []byte) (*Map, error) {
	var m *Map
	var err error
	switch Sniff(data) {
	case "svd":
		m, err = ParseSVD(data)
	case "header":
		m, err = ParseHeader(data)
	default:
		m, err = ParseText(data)
	}
	if err != nil {
		return nil, err
	}
	if len(m.regs) == 0 && len(m.arrays) == 0 {
		return nil, fmt.Errorf("no registers in the %s file: %w", m.Format, ErrFormat)
	}
	return m, nil
}

// Sniff returns the format of a register-map file: "svd" for XML, "header"
// when a line starts with #define, else "text".
func Sniff(data []byte) string {
	t := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if bytes.HasPrefix(t, []byte("<")) {
		return "svd"
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		line = bytes.TrimLeft(line, " \t")
		if bytes.HasPrefix(line, []byte("#")) && bytes.HasPrefix(bytes.TrimLeft(line[1:], " \t"), []byte("define")) {
			return "header"
		}
	}
	return "text"
}
