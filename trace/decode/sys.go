package decode

import (
	"fmt"
	"sort"
	"strconv"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/trace"
)

// syscall renders a SYS record: the call, the direction of the kernel's
// access, the map and the range of the log's addresses it covered (last
// byte included), its length, and what the range holds: the first and
// last register it touches, or the watch's name.
//
//	SYS write() R #1 0x100..0x13f len 0x40 QUEUE[0]..QUEUE[3]
func (d *Writer) syscall(b []byte, r *trace.Record) []byte {
	b = fmt.Appendf(b, "SYS %s() %v #%d %#x", r.Text, r.Dir, r.MapID, r.Phys)
	if r.Len > 1 {
		b = fmt.Appendf(b, "..%#x", r.Phys+r.Len-1)
	}
	b = fmt.Appendf(b, " len %#x", r.Len)
	if r.Len == 0 {
		return b
	}
	// The kernel's read of a register is named as a load would be, its
	// write as a store; an undecoded call (RW) as a load.
	write := r.Dir == trace.DirWrite
	for _, t := range d.opt.Regs {
		a, ok := t.Addr(r.MapID, r.Phys)
		if !ok {
			continue
		}
		if s := rangeNames(t.Map(), a, r.Len, write); s != "" {
			b = append(b, ' ')
			b = append(b, s...)
		}
		return b
	}
	if m := d.maps[r.MapID]; m != nil && m.watch {
		b = append(b, ' ')
		b = append(b, watchRange(m, r.Phys, r.Len)...)
	}
	return b
}

// rangeNames names the registers of m that the n bytes at addr touch: the
// first and the last, or one when the range is one register. Each end is
// named by the register it falls in, with the byte offset of the range's
// first (or last) byte in it where the range starts (or ends) inside the
// register: CTRL+2..DATA covers CTRL's bytes 2 and 3 and all of DATA. An
// end that falls in no register is named by the first (or last) register
// inside the range. It returns "" when the range holds no register.
func rangeNames(m *regmap.Map, addr, n uint64, write bool) string {
	last := addr + n - 1
	if last < addr {
		last = ^uint64(0)
	}
	// The register at each end, and the offset in it of the range's byte
	// there when the range cuts the register.
	type end struct {
		addr   uint64
		name   string
		off    uint64
		cut    bool
		inside bool // the range's end byte is in the register
	}
	var from, to end
	if p, ok := regAt(m, addr, write); ok {
		from = end{p.Reg.Addr, p.Reg.Name, p.Off, p.Off != 0, true}
	} else if a, ok := firstStart(m, addr, last); ok {
		p, _ := regAt(m, a, write)
		from = end{addr: p.Reg.Addr, name: p.Reg.Name}
	} else {
		return ""
	}
	if p, ok := regAt(m, last, write); ok {
		to = end{p.Reg.Addr, p.Reg.Name, p.Off, cut(m, last, write), true}
	} else if a, ok := lastStart(m, addr, last); ok {
		p, _ := regAt(m, a, write)
		to = end{addr: p.Reg.Addr, name: p.Reg.Name}
	}
	label := func(e end) string {
		if e.cut {
			return e.name + "+" + strconv.FormatUint(e.off, 10)
		}
		return e.name
	}
	switch {
	case to.name == "" || from.addr == to.addr && from.name == to.name && !to.inside:
		// The range's end is past its last register.
		return label(from)
	case from.addr == to.addr && from.name == to.name:
		if !from.cut && !to.cut {
			return from.name // the whole register
		}
		to.cut = true // the bytes of one register: both offsets
	}
	return label(from) + ".." + label(to)
}

// regAt returns the register that the byte at addr is in.
func regAt(m *regmap.Map, addr uint64, write bool) (regmap.Part, bool) {
	var one [1]byte
	p := m.Parts(addr, one[:], write)[0]
	return p, p.Reg.Name != ""
}

// cut reports whether the register that the byte at addr is in goes on
// past it.
func cut(m *regmap.Map, addr uint64, write bool) bool {
	if addr == ^uint64(0) {
		return false
	}
	p, ok := regAt(m, addr, write)
	q, next := regAt(m, addr+1, write)
	return ok && next && p.Reg.Addr == q.Reg.Addr && p.Reg.Name == q.Reg.Name
}

// firstStart returns the lowest address in [lo, hi] where a register or
// an instance of an array starts.
func firstStart(m *regmap.Map, lo, hi uint64) (uint64, bool) {
	regs := m.Registers()
	best, ok := uint64(0), false
	if i := sort.Search(len(regs), func(i int) bool { return regs[i].Addr >= lo }); i < len(regs) && regs[i].Addr <= hi {
		best, ok = regs[i].Addr, true
	}
	for _, a := range m.Arrays() {
		k := uint64(0)
		if lo > a.Addr {
			k = (lo - a.Addr + a.Stride - 1) / a.Stride
		}
		if a.Count != 0 && k >= a.Count {
			continue
		}
		if at := a.Addr + k*a.Stride; at >= lo && at <= hi && (!ok || at < best) {
			best, ok = at, true
		}
	}
	return best, ok
}

// lastStart returns the highest address in [lo, hi] where a register or
// an instance of an array starts.
func lastStart(m *regmap.Map, lo, hi uint64) (uint64, bool) {
	regs := m.Registers()
	best, ok := uint64(0), false
	if i := sort.Search(len(regs), func(i int) bool { return regs[i].Addr > hi }); i > 0 && regs[i-1].Addr >= lo {
		best, ok = regs[i-1].Addr, true
	}
	for _, a := range m.Arrays() {
		if hi < a.Addr {
			continue
		}
		k := (hi - a.Addr) / a.Stride
		if a.Count != 0 && k >= a.Count {
			k = a.Count - 1
		}
		if at := a.Addr + k*a.Stride; at >= lo && at <= hi && (!ok || at > best) {
			best, ok = at, true
		}
	}
	return best, ok
}

// watchRange names the part of a watched variable that a SYS record's
// range covers: the variable's name when all of it, else its name with the
// byte offsets of the first and last bytes (counter+2..counter+5).
func watchRange(m *mapInfo, phys, n uint64) string {
	from, to := phys-m.phys, phys-m.phys+n-1
	if from == 0 && to+1 >= m.len {
		return m.name
	}
	name := func(off uint64) string {
		if off == 0 {
			return m.name
		}
		return m.name + "+" + strconv.FormatUint(off, 10)
	}
	if from == to {
		return name(from)
	}
	return name(from) + ".." + name(to)
}

// proc renders a PROC record: the process, its parent and its program;
// "exec" marks a process that had a PROC line before (it executed the
// program).
//
//	PROC pid 17810 ppid 17798 exec /usr/bin/driver
func (d *Writer) proc(b []byte, r *trace.Record) []byte {
	b = fmt.Appendf(b, "PROC pid %d ppid %d ", r.PID, r.Parent)
	if d.pids[r.PID] {
		b = append(b, "exec "...)
	} else {
		if len(d.pids) >= maxPIDs {
			clear(d.pids)
		}
		d.pids[r.PID] = true
	}
	return append(b, r.Text...)
}
