package decode

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strconv"

	"github.com/mmiotrace/mmiotrace/regmap"
	"github.com/mmiotrace/mmiotrace/symbols"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Options says how to name what a log holds.
type Options struct {
	// Regs place accesses in registers; the first whose binding applies to
	// an access's map names it.
	Regs []*regmap.Tracker
	// Symbols, if set, names PCs as function+offset, from the log's CODE
	// records.
	Symbols *symbols.Symbolizer
}

// Writer prints decoded records.
type Writer struct {
	w    *bufio.Writer
	opt  Options
	maps map[uint32]*mapInfo
	pids map[int32]bool // processes that had a PROC line (see proc)
	buf  []byte
	err  error
}

type mapInfo struct {
	name  string
	phys  uint64
	len   uint64
	watch bool
	rec   trace.Record // the MAP record's Kind, Phys and Virt
}

// maxPIDs bounds the processes remembered to tell an exec from a new
// process: past it the set starts over, and the exec of a process
// forgotten so is not marked.
const maxPIDs = 1 << 16

// NewWriter returns a Writer printing to w.
func NewWriter(w io.Writer, opt Options) *Writer {
	return &Writer{w: bufio.NewWriterSize(w, 1<<16), opt: opt, maps: map[uint32]*mapInfo{}, pids: map[int32]bool{}}
}

// Write prints one record (NAME records print nothing: the name goes on
// the map's accesses).
//
//	12191.619117 17798 MAP #1 phys 0x0 len 0x1000 virt 0x7f23f96c7000
//	             NAME #1 /dev/shm/dev
//	12191.619152 17798 R 4 #1 0x0 ID => 0x4d4d494f @main+0x3c
//	12191.619246 17798 W 4 #1 0x4 CTRL <= 0x5 {EN | MODE=FAST} @main+0x5e
//	12191.619300 17798 SYS write() R #1 0x100..0x13f len 0x40 QUEUE[0]..QUEUE[3] @write+0x1e
//	12191.619400       PROC pid 17810 ppid 17798 /usr/bin/driver
func (d *Writer) Write(r *trace.Record) error {
	if d.err != nil {
		return d.err
	}
	for _, t := range d.opt.Regs {
		t.Observe(r)
	}
	if d.opt.Symbols != nil {
		d.opt.Symbols.Observe(r)
	}
	b := d.buf[:0]
	switch r.Kind {
	case trace.KindMap:
		d.maps[r.MapID] = &mapInfo{phys: r.Phys, len: r.Len, rec: trace.Record{Kind: r.Kind, Phys: r.Phys, Virt: r.Virt}}
		b = d.head(b, r, true)
		b = fmt.Appendf(b, "MAP #%d phys %#x len %#x virt %#x", r.MapID, r.Phys, r.Len, r.Virt)
		b = d.pc(b, r)
	case trace.KindName:
		m := d.maps[r.MapID]
		if m == nil {
			m = &mapInfo{}
			d.maps[r.MapID] = m
		}
		m.name = r.Text
		m.watch = trace.IsWatch(&m.rec, r.Text)
		b = fmt.Appendf(b, "%*s NAME #%d %s", timeWidth+1+tidWidth, "", r.MapID, r.Text)
	case trace.KindUnmap:
		b = d.head(b, r, true)
		b = fmt.Appendf(b, "UNMAP #%d", r.MapID)
		b = d.pc(b, r)
		delete(d.maps, r.MapID) // no record refers to it after
	case trace.KindRead, trace.KindWrite, trace.KindReadVec, trace.KindWriteVec:
		b = d.head(b, r, true)
		b = fmt.Appendf(b, "%v %d #%d %#x ", r.Kind, r.Width, r.MapID, r.Phys)
		b = append(b, d.describe(r)...)
		b = d.pc(b, r)
	case trace.KindExec:
		b = d.head(b, r, true)
		b = fmt.Appendf(b, "X #%d %#x", r.MapID, r.Phys)
		if m := d.maps[r.MapID]; m != nil && m.name != "" {
			b = append(b, " "+m.name...)
		}
		b = d.pc(b, r)
	case trace.KindUnknown:
		b = d.head(b, r, true)
		b = fmt.Appendf(b, "UNKNOWN #%d %#x opcode %02x,%02x,%02x", r.MapID, r.Phys, r.Value[0], r.Value[1], r.Value[2])
		b = d.pc(b, r)
	case trace.KindMark:
		b = d.head(b, r, false)
		b = append(b, "MARK "+r.Text...)
	case trace.KindEvent:
		b = d.head(b, r, true)
		// The log's own rendering after "TP <time> <tid> ": fields
		// quoted only where they must be.
		line := trace.AppendText(nil, r)
		parts := bytes.SplitN(line[:len(line)-1], []byte(" "), 4)
		b = append(b, "TP "...)
		b = append(b, parts[len(parts)-1]...)
	case trace.KindCode:
		b = d.head(b, r, false)
		b = fmt.Appendf(b, "CODE pid %d %#x-%#x offset %#x %s", r.PID, r.Virt, r.Virt+r.Len, r.Phys, r.Text)
		if r.Width > 0 {
			b = fmt.Appendf(b, " build id %x", r.Value[:r.Width])
		}
	case trace.KindSyscall:
		b = d.head(b, r, true)
		b = d.syscall(b, r)
		b = d.pc(b, r)
	case trace.KindProc:
		b = d.head(b, r, false)
		b = d.proc(b, r)
	default:
		// PCIDEV and extensions this package does not know: the log's
		// own line.
		b = trace.AppendText(b, r)
		b = b[:len(b)-1]
	}
	b = append(b, '\n')
	d.buf = b
	if _, err := d.w.Write(b); err != nil {
		d.err = err
	}
	return d.err
}

// Flush writes out what is buffered.
func (d *Writer) Flush() error {
	if d.err != nil {
		return d.err
	}
	return d.w.Flush()
}

const (
	timeWidth = 15 // seconds.microseconds of a day-long uptime
	tidWidth  = 7
)

// head starts a line with the time and, when the record has one, the
// thread.
func (d *Writer) head(b []byte, r *trace.Record, hasTID bool) []byte {
	t := fmt.Sprintf("%d.%06d", r.Time/1e9, r.Time%1e9/1e3)
	b = fmt.Appendf(b, "%*s ", timeWidth, t)
	if hasTID {
		return fmt.Appendf(b, "%*d ", tidWidth, r.TID)
	}
	return fmt.Appendf(b, "%*s ", tidWidth, "")
}

// describe names an access: with a register map that applies, its
// registers and fields; on a watch, the watch's name; else the value.
func (d *Writer) describe(r *trace.Record) string {
	write := r.Kind.IsWrite()
	for _, t := range d.opt.Regs {
		if s := t.Decode(r); s != "" {
			return s
		}
	}
	arrow := "=> "
	if write {
		arrow = "<= "
	}
	val := "0x" + r.ValueHex()
	if m := d.maps[r.MapID]; m != nil && m.watch {
		name := m.name
		if off := r.Phys - m.phys; off != 0 {
			name += "+" + strconv.FormatUint(off, 10)
		}
		return name + " " + arrow + val
	}
	return arrow + val
}

// pc appends the accessing instruction, named where possible; kernel logs
// have no PCs (0).
func (d *Writer) pc(b []byte, r *trace.Record) []byte {
	if r.PC == 0 {
		return b
	}
	if d.opt.Symbols != nil {
		if s := d.opt.Symbols.Lookup(int(r.TID), r.PC).Name(); s != "" {
			return append(b, " @"+s...)
		}
	}
	return fmt.Appendf(b, " @%#x", r.PC)
}
