package perfetto

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mmiotrace/mmiotrace/trace"
)

// Options configures a Writer.
type Options struct {
	// Counters are the registers whose values are drawn as counter
	// tracks (TopRegisters finds the busiest).
	Counters []Register
}

// Stats counts what a conversion wrote.
type Stats struct {
	Events   uint64 // trace events, metadata included
	Counters uint64 // counter samples among them
}

// Writer writes records as Trace Event JSON. Create it with NewWriter;
// Close ends the JSON document.
type Writer struct {
	w        *bufio.Writer
	b        []byte // the event being built
	name     []byte // scratch for event names
	n        int    // events written
	counters map[Register]string
	maps     map[uint32]*mapInfo // live maps
	pending  *trace.Record       // a MAP whose NAME may follow
	procs    map[int32]string    // processes named so far
	threads  map[[2]int32]bool   // threads named so far
	known    map[int32]bool      // pids that CODE records revealed
	main     int32               // the first of them: the traced program
	stats    Stats
	err      error
}

type mapInfo struct {
	phys  uint64
	name  string // from its NAME record, "" if none
	label string // the async span's name
	pid   int32
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer, opt Options) *Writer {
	pw := &Writer{
		w:        bufio.NewWriterSize(w, 1<<16),
		counters: map[Register]string{},
		maps:     map[uint32]*mapInfo{},
		procs:    map[int32]string{},
		threads:  map[[2]int32]bool{},
		known:    map[int32]bool{},
	}
	for _, r := range opt.Counters {
		pw.counters[r] = ""
	}
	pw.w.WriteString("{\"traceEvents\":[\n")
	return pw
}

// Write adds a record; it must have a time (see trace.TimedReader).
func (w *Writer) Write(r *trace.Record) error {
	if w.err != nil {
		return w.err
	}
	if p := w.pending; p != nil {
		w.pending = nil
		if r.Kind == trace.KindName && r.MapID == p.MapID {
			w.beginMap(p, r.Text)
			return w.err
		}
		w.beginMap(p, "")
	}
	switch r.Kind {
	case trace.KindMap:
		rec := *r
		w.pending = &rec
	case trace.KindName:
		if m := w.maps[r.MapID]; m != nil {
			m.name = r.Text
		}
	case trace.KindUnmap:
		w.endMap(r)
	case trace.KindRead, trace.KindWrite, trace.KindReadVec, trace.KindWriteVec:
		w.access(r)
	case trace.KindUnknown:
		w.instant(r, "UNKNOWN 0x"+strconv.FormatUint(r.Phys, 16), "mmio", 't', func() {
			w.mapArgs(r.MapID)
			w.hexv("phys", r.Phys)
			w.str("opcode", fmt.Sprintf("%02x,%02x,%02x", r.Value[0], r.Value[1], r.Value[2]))
			w.hexv("pc", r.PC)
		})
	case trace.KindExec:
		w.instant(r, "X "+w.mapLabel(r.MapID), "watch", 't', func() {
			w.mapArgs(r.MapID)
			w.hexv("addr", r.Phys)
			w.hexv("pc", r.PC)
		})
	case trace.KindEvent:
		scope := byte('t')
		if r.TID < 0 {
			scope = 'p' // the program records no thread ids
		}
		w.instant(r, r.Text, "tracepoint", scope, func() {
			for _, f := range r.Fields {
				w.str(f.Name, f.Value)
			}
		})
	case trace.KindMark:
		w.instant(r, r.Text, "mark", 'g', nil)
	case trace.KindPCIDev:
		name := "PCIDEV " + r.Text
		d, err := trace.ParsePCIDev(r.Text)
		if err == nil {
			name = fmt.Sprintf("PCIDEV %s %04x:%04x", d.Address(), d.Vendor, d.Device)
		}
		w.instant(r, name, "pci", 'g', func() {
			w.str("line", r.Text)
			if err == nil {
				w.str("driver", d.Driver)
			}
		})
	case trace.KindCode:
		w.code(r)
	case trace.KindProc:
		w.proc(r)
	case trace.KindSyscall:
		w.name = append(append(append(append(w.name[:0], "SYS "...), r.Text...), ' '), r.Dir.String()...)
		w.instantb(r, w.name, "syscall", 't', func() {
			w.mapArgs(r.MapID)
			w.hexv("phys", r.Phys)
			w.hexv("len", r.Len)
			w.str("dir", r.Dir.String())
			w.str("syscall", r.Text)
			w.hexv("pc", r.PC)
		})
	}
	return w.err
}

// proc names a process's track after the program a PROC record says it
// runs (again after an exec), with its parent in an instant.
func (w *Writer) proc(r *trace.Record) {
	pid := r.PID
	if len(w.known) == 0 {
		w.main = pid
	}
	w.known[pid] = true
	base := filepath.Base(r.Text)
	if w.procs[pid] != base {
		w.procs[pid] = base
		w.meta("process_name", pid, pid, base)
		w.threads[[2]int32{pid, pid}] = true
		w.meta("thread_name", pid, pid, base)
	}
	rec := *r
	rec.TID = pid
	w.instant(&rec, "PROC "+base, "process", 'p', func() {
		w.int("ppid", int64(r.Parent))
		w.str("program", r.Text)
	})
}

// Close writes a pending record and ends the document.
func (w *Writer) Close() error {
	if w.pending != nil && w.err == nil {
		w.beginMap(w.pending, "")
		w.pending = nil
	}
	if w.err == nil {
		w.w.WriteString("\n],\"displayTimeUnit\":\"ns\",\"otherData\":{\"source\":\"mmiotrace\",\"log_version\":\"" + trace.Version + "\"}}\n")
		w.err = w.w.Flush()
	}
	return w.err
}

// Stats returns what was written so far.
func (w *Writer) Stats() Stats { return w.stats }

// pidOf tells which process a thread belongs to. The log has thread ids;
// CODE records name processes, and a thread whose id is one of them is
// that process's main thread. Other threads are taken for the traced
// program's (the first process named), or for pid 0 in a log without CODE
// records, such as the kernel's (whose accesses all have PID 0).
func (w *Writer) pidOf(tid int32) int32 {
	if w.known[tid] {
		return tid
	}
	return w.main
}

// thread names a thread's track, and its process's, on first use.
func (w *Writer) thread(pid, tid int32) {
	if _, ok := w.procs[pid]; !ok {
		name := "mmiotrace log"
		if pid != 0 {
			name = fmt.Sprintf("process %d", pid)
		}
		w.procs[pid] = name
		w.meta("process_name", pid, pid, name)
	}
	if !w.threads[[2]int32{pid, tid}] {
		w.threads[[2]int32{pid, tid}] = true
		name := fmt.Sprintf("thread %d", tid)
		if tid == pid {
			name = w.procs[pid]
		}
		w.meta("thread_name", pid, tid, name)
	}
}

func (w *Writer) meta(what string, pid, tid int32, name string) {
	w.start()
	w.str("name", what)
	w.str("ph", "M")
	w.int("pid", int64(pid))
	w.int("tid", int64(tid))
	w.args(func() { w.str("name", name) })
	w.end()
}

// code records where a process's code is, and names the process after its
// executable (the first file of its CODE lines that is not a shared
// object), again after an exec.
func (w *Writer) code(r *trace.Record) {
	pid := r.PID
	if len(w.known) == 0 {
		w.main = pid
	}
	w.known[pid] = true
	base := filepath.Base(r.Text)
	if !strings.Contains(base, ".so") && w.procs[pid] != base {
		w.procs[pid] = base
		w.meta("process_name", pid, pid, base)
		w.threads[[2]int32{pid, pid}] = true
		w.meta("thread_name", pid, pid, base)
	}
	rec := *r
	rec.TID = pid
	w.instant(&rec, "CODE "+base, "code", 'p', func() {
		w.hexv("start", r.Virt)
		w.hexv("end", r.Virt+r.Len)
		w.hexv("offset", r.Phys)
		w.str("build_id", fmt.Sprintf("%x", r.Value[:r.Width]))
		w.str("path", r.Text)
	})
}

func (w *Writer) beginMap(r *trace.Record, name string) {
	pid := w.pidOf(r.TID)
	label := fmt.Sprintf("map %d %s", r.MapID, name)
	if name == "" {
		label = fmt.Sprintf("map %d %s", r.MapID, hex(r.Phys))
	}
	w.maps[r.MapID] = &mapInfo{phys: r.Phys, name: name, label: label, pid: pid}
	w.async(r, 'b', label, pid, func() {
		w.hexv("phys", r.Phys)
		w.hexv("virt", r.Virt)
		w.hexv("len", r.Len)
		w.hexv("pc", r.PC)
	})
}

func (w *Writer) endMap(r *trace.Record) {
	m := w.maps[r.MapID]
	if m == nil {
		return // a map whose MAP the log does not have
	}
	delete(w.maps, r.MapID)
	w.async(r, 'e', m.label, m.pid, func() { w.hexv("pc", r.PC) })
}

// async writes the begin or end of a map's span; the two share name,
// category and id, which pairs them.
func (w *Writer) async(r *trace.Record, ph byte, label string, pid int32, args func()) {
	w.thread(pid, r.TID)
	w.start()
	w.str("name", label)
	w.str("cat", "map")
	w.str("ph", string(ph))
	w.str("id", "map"+strconv.FormatUint(uint64(r.MapID), 10))
	w.ts(r.Time)
	w.int("pid", int64(pid))
	w.int("tid", int64(r.TID))
	w.args(args)
	w.end()
}

// access writes an access's instant and, for a counted register, a
// counter sample of its value.
func (w *Writer) access(r *trace.Record) {
	w.name = strconv.AppendUint(append(append(w.name[:0], r.Kind.String()...), " 0x"...), r.Phys, 16)
	w.instantb(r, w.name, "mmio", 't', func() {
		w.mapArgs(r.MapID)
		w.int("width", int64(r.Width))
		w.hexv("phys", r.Phys)
		if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
			w.hexv("value", r.Uint64())
		} else {
			w.str("value", "0x"+r.ValueHex())
		}
		w.hexv("pc", r.PC)
	})
	if r.Kind != trace.KindRead && r.Kind != trace.KindWrite {
		return
	}
	reg := Register{r.MapID, r.Phys}
	name, ok := w.counters[reg]
	if !ok {
		return
	}
	if name == "" {
		name = w.registerName(reg)
		w.counters[reg] = name
	}
	w.start()
	w.str("name", name)
	w.str("ph", "C")
	w.ts(r.Time)
	w.int("pid", int64(w.pidOf(r.TID)))
	w.int("tid", int64(r.TID))
	w.b = append(w.b, `,"args":{"value":`...)
	w.b = strconv.AppendUint(w.b, r.Uint64(), 10)
	w.b = append(w.b, '}')
	w.end()
	w.stats.Counters++
}

// registerName names a counter track: the map's file and the offset in it
// when the log names the map, else the bus address.
func (w *Writer) registerName(reg Register) string {
	if m := w.maps[reg.MapID]; m != nil && m.name != "" && reg.Phys >= m.phys {
		return fmt.Sprintf("%s+%#x", filepath.Base(m.name), reg.Phys-m.phys)
	}
	return hex(reg.Phys)
}

func (w *Writer) mapLabel(id uint32) string {
	if m := w.maps[id]; m != nil && m.name != "" {
		return m.name
	}
	return "map " + strconv.FormatUint(uint64(id), 10)
}

func (w *Writer) mapArgs(id uint32) {
	w.int("map", int64(id))
	if m := w.maps[id]; m != nil && m.name != "" {
		w.str("map_name", m.name)
	}
}

// instant writes an instant event of scope 't' (thread), 'p' (process) or
// 'g' (global), on the record's thread's track.
func (w *Writer) instant(r *trace.Record, name, cat string, scope byte, args func()) {
	w.name = append(w.name[:0], name...)
	w.instantb(r, w.name, cat, scope, args)
}

// instantb is instant with the name in bytes.
func (w *Writer) instantb(r *trace.Record, name []byte, cat string, scope byte, args func()) {
	pid := w.pidOf(r.TID)
	tid := r.TID
	if scope != 't' {
		tid = pid
	}
	w.thread(pid, tid)
	w.start()
	w.sep()
	w.b = append(w.b, `"name":`...)
	w.b = appendJSONString(w.b, name)
	w.str("cat", cat)
	w.str("ph", "i")
	w.str("s", string(scope))
	w.ts(r.Time)
	w.int("pid", int64(pid))
	w.int("tid", int64(tid))
	if args != nil {
		w.args(args)
	}
	w.end()
}

// The event under construction: start, fields, end.

func (w *Writer) start() { w.b = append(w.b[:0], '{') }

// sep separates a field from the one before it, if any.
func (w *Writer) sep() {
	if w.b[len(w.b)-1] != '{' {
		w.b = append(w.b, ',')
	}
}

func (w *Writer) str(k, v string) {
	w.sep()
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':')
	w.b = appendJSONString(w.b, v)
}

func (w *Writer) int(k string, v int64) {
	w.sep()
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, ':')
	w.b = strconv.AppendInt(w.b, v, 10)
}

// ts writes a time in microseconds, as the format wants, to the
// nanosecond.
func (w *Writer) ts(ns int64) {
	w.sep()
	w.b = append(w.b, `"ts":`...)
	w.b = strconv.AppendInt(w.b, ns/1000, 10)
	w.b = append(w.b, '.', byte('0'+ns%1000/100), byte('0'+ns%100/10), byte('0'+ns%10))
}

func (w *Writer) args(fill func()) {
	w.b = append(w.b, `,"args":{`...)
	fill()
	w.b = append(w.b, '}')
}

func (w *Writer) end() {
	w.b = append(w.b, '}')
	if w.n > 0 {
		w.w.WriteString(",\n")
	}
	if _, err := w.w.Write(w.b); err != nil && w.err == nil {
		w.err = err
	}
	w.n++
	w.stats.Events++
}

func hex(v uint64) string { return "0x" + strconv.FormatUint(v, 16) }

// hexv writes a field whose value is a number in hex, as a string (JSON
// numbers lose 64-bit precision).
func (w *Writer) hexv(k string, v uint64) {
	w.sep()
	w.b = appendJSONString(w.b, k)
	w.b = append(w.b, `:"0x`...)
	w.b = strconv.AppendUint(w.b, v, 16)
	w.b = append(w.b, '"')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced.
func appendJSONString[T string | []byte](b []byte, s T) []byte {
	const digits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', digits[c>>4], digits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := decodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// Convert writes a log (mmiotrace's or the kernel's) as Trace Event JSON,
// with counter tracks for its counters busiest registers. It reads the log
// twice: once to find them, once to convert.
func Convert(w io.Writer, log io.ReadSeeker, counters int) (Stats, error) {
	top, err := TopRegisters(log, counters)
	if err != nil {
		return Stats{}, err
	}
	if _, err := log.Seek(0, io.SeekStart); err != nil {
		return Stats{}, err
	}
	opt := Options{}
	for _, rc := range top {
		opt.Counters = append(opt.Counters, rc.Register)
	}
	pw := NewWriter(w, opt)
	if err := trace.CopyTimed(pw, log); err != nil {
		return pw.Stats(), err
	}
	err = pw.Close()
	return pw.Stats(), err
}

func decodeRune[T string | []byte](s T) (rune, int) {
	switch v := any(s).(type) {
	case string:
		return utf8.DecodeRuneInString(v)
	case []byte:
		return utf8.DecodeRune(v)
	}
	return utf8.RuneError, 1
}
