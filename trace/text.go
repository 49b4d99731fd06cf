package trace

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Version is the kernel mmiotrace log format version that TextSink writes.
const Version = "20070824"

// TextSink writes records in the kernel's mmiotrace text format, with
// mmiotrace's extensions (docs/LOG_FORMAT.md). It is not safe for concurrent
// use; a single writer goroutine owns it.
type TextSink struct {
	w     *bufio.Writer
	buf   []byte
	cache accessCache
}

// NewTextSink returns a sink writing to w. It writes the VERSION line first.
func NewTextSink(w io.Writer) *TextSink {
	s := &TextSink{w: bufio.NewWriterSize(w, 1<<16)}
	s.w.WriteString("VERSION " + Version + "\n")
	return s
}

// Write renders records. Errors are the underlying writer's, as they are:
// it knows what it writes to.
func (s *TextSink) Write(recs []Record) error {
	for i := range recs {
		if recs[i].Kind.IsAccess() {
			s.buf = s.cache.appendAccess(s.buf[:0], &recs[i])
		} else {
			s.buf = AppendText(s.buf[:0], &recs[i])
		}
		if _, err := s.w.Write(s.buf); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes buffered output.
func (s *TextSink) Flush() error { return s.w.Flush() }

func appendTime(b []byte, ns int64) []byte {
	b = strconv.AppendInt(b, ns/1e9, 10)
	b = append(b, '.')
	us := (ns % 1e9) / 1e3
	var d [6]byte // six digits, zero-padded, without allocating
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + us%10)
		us /= 10
	}
	return append(b, d[:]...)
}

const hexDigits = "0123456789abcdef"

func appendHex(b []byte, v uint64) []byte {
	var d [18]byte
	i := len(d)
	for {
		i--
		d[i] = hexDigits[v&0xf]
		v >>= 4
		if v == 0 {
			break
		}
	}
	d[i-2], d[i-1] = '0', 'x'
	return append(b, d[i-2:]...)
}

// line builds one text-format line, a space before each field.
type line struct{ b []byte }

func (l *line) time(ns int64) *line {
	l.b = appendTime(append(l.b, ' '), ns)
	return l
}

func (l *line) dec(v int64) *line {
	l.b = strconv.AppendInt(append(l.b, ' '), v, 10)
	return l
}

func (l *line) hex(v uint64) *line {
	l.b = appendHex(append(l.b, ' '), v)
	return l
}

func (l *line) text(s string) *line {
	l.b = append(append(l.b, ' '), s...)
	return l
}

// AppendText appends the text-format line for r, newline included.
func AppendText(b []byte, r *Record) []byte {
	l := &line{b: append(b, r.Kind.String()...)}
	id, tid := int64(r.MapID), int64(r.TID)
	switch r.Kind {
	case KindMap:
		l.time(r.Time).dec(id).hex(r.Phys).hex(r.Virt).hex(r.Len).hex(r.PC).dec(tid)
	case KindUnmap:
		l.time(r.Time).dec(id).hex(r.PC).dec(tid)
	case KindRead, KindWrite, KindReadVec, KindWriteVec:
		// The keyword follows the width, whatever kind the producer chose:
		// no R or W line has a width the kernel's format lacks.
		l.b = append(b, AccessKind(r.Kind.IsWrite(), int(r.Width)).String()...)
		l.dec(int64(r.Width)).time(r.Time).dec(id).hex(r.Phys)
		l.b = appendValueHex(append(l.b, ' '), r)
		l.hex(r.PC).dec(tid)
	case KindMark:
		l.time(r.Time).text(r.Text)
	case KindUnknown:
		l.time(r.Time).dec(id).hex(r.Phys).text(fmt.Sprintf("%02x,%02x,%02x", r.Value[0], r.Value[1], r.Value[2])).hex(r.PC).dec(tid)
	case KindPCIDev:
		l.text(r.Text)
	case KindName:
		l.dec(id).text(r.Text)
	case KindExec:
		l.time(r.Time).dec(id).hex(r.Phys).hex(r.PC).dec(tid)
	case KindEvent:
		l.time(r.Time).dec(tid).text(r.Text)
		for _, f := range r.Fields {
			l.text(f.Name + "=" + quoteField(f.Value))
		}
	case KindCode:
		l.time(r.Time).dec(int64(r.PID)).hex(r.Virt).hex(r.Virt + r.Len).hex(r.Phys)
		if r.Width == 0 {
			l.text("-")
		} else {
			l.b = hex.AppendEncode(append(l.b, ' '), r.Value[:r.Width])
		}
		l.text(r.Text)
	case KindProc:
		l.time(r.Time).dec(int64(r.PID)).dec(int64(r.Parent)).text(r.Text)
	case KindSyscall:
		l.time(r.Time).dec(id).hex(r.Phys).hex(r.Len).text(r.Dir.String()).text(r.Text).hex(r.PC).dec(tid)
	}
	return append(l.b, '\n')
}

// quoteField quotes a tracepoint field value when it would not survive
// splitting on spaces, or holds control characters (which never reach the
// log raw).
func quoteField(v string) string {
	if v == "" || strings.ContainsAny(v, " \"=") || strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return strconv.Quote(v)
	}
	return v
}

// appendValueHex appends "0x" and the value of an access as the kernel
// prints one, lowercase hex without leading zeros, however wide: the
// little-endian bytes as one number.
func appendValueHex(b []byte, r *Record) []byte {
	const digits = hexDigits
	b = append(b, '0', 'x')
	w := min(int(r.Width), MaxWidth)
	top := w - 1
	for top > 0 && r.Value[top] == 0 {
		top--
	}
	if top < 0 {
		return append(b, '0')
	}
	if v := r.Value[top]; v >= 0x10 {
		b = append(b, digits[v>>4], digits[v&0xf])
	} else {
		b = append(b, digits[v])
	}
	for i := top - 1; i >= 0; i-- {
		b = append(b, digits[r.Value[i]>>4], digits[r.Value[i]&0xf])
	}
	return b
}

// accessCache renders R, W, RV and WV lines as AppendText does, faster: a
// traced program's access lines repeat most of their fields (the second of
// the time, the map, the thread, a few hot instructions), so the sink keeps
// their last renderings rather than formatting each afresh. It is a
// TextSink's, used by its one writer goroutine.
type accessCache struct {
	sec, id, tid fieldText
	pc           [64]fieldText // by the instruction address's low bits
}

// fieldText is one field's last value and its rendering, space included.
type fieldText struct {
	v   uint64
	ok  bool
	txt []byte
}

// get returns the rendering of v, made by render when it is not the last
// one.
func (f *fieldText) get(v uint64, render func([]byte, uint64) []byte) []byte {
	if !f.ok || f.v != v {
		f.v, f.ok = v, true
		f.txt = render(f.txt[:0], v)
	}
	return f.txt
}

func renderSec(b []byte, sec uint64) []byte {
	return append(strconv.AppendInt(append(b, ' '), int64(sec), 10), '.')
}

func renderDec(b []byte, v uint64) []byte { return strconv.AppendInt(append(b, ' '), int64(v), 10) }

func renderHex(b []byte, v uint64) []byte { return appendHex(append(b, ' '), v) }

// appendAccess is AppendText for an access record.
func (c *accessCache) appendAccess(b []byte, r *Record) []byte {
	b = append(b, AccessKind(r.Kind.IsWrite(), int(r.Width)).String()...)
	b = strconv.AppendInt(append(b, ' '), int64(r.Width), 10)
	if r.Time < 0 {
		// Never from a clock; rendered as AppendText does.
		b = appendTime(append(b, ' '), r.Time)
	} else {
		b = append(b, c.sec.get(uint64(r.Time/1e9), renderSec)...)
		us := (r.Time % 1e9) / 1e3
		var d [6]byte
		for i := len(d) - 1; i >= 0; i-- {
			d[i] = byte('0' + us%10)
			us /= 10
		}
		b = append(b, d[:]...)
	}
	b = append(b, c.id.get(uint64(r.MapID), renderDec)...)
	b = appendHex(append(b, ' '), r.Phys)
	b = appendValueHex(append(b, ' '), r)
	b = append(b, c.pc[(r.PC^r.PC>>6)&63].get(r.PC, renderHex)...)
	b = append(b, c.tid.get(uint64(int64(r.TID)), renderDec)...)
	return append(b, '\n')
}
