package trace

import (
	"bufio"
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
	w   *bufio.Writer
	buf []byte
}

// NewTextSink returns a sink writing to w. It writes the VERSION line first.
func NewTextSink(w io.Writer) *TextSink {
	s := &TextSink{w: bufio.NewWriterSize(w, 1<<16)}
	s.w.WriteString("VERSION " + Version + "\n")
	return s
}

// Write renders records.
func (s *TextSink) Write(recs []Record) error {
	for i := range recs {
		s.buf = AppendText(s.buf[:0], &recs[i])
		if _, err := s.w.Write(s.buf); err != nil {
			return fmt.Errorf("write log: %w", err)
		}
	}
	return nil
}

// Flush writes buffered output.
func (s *TextSink) Flush() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

func appendTime(b []byte, ns int64) []byte {
	b = strconv.AppendInt(b, ns/1e9, 10)
	b = append(b, '.')
	us := (ns % 1e9) / 1e3
	s := strconv.AppendInt(nil, us, 10)
	for i := len(s); i < 6; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

func appendHex(b []byte, v uint64) []byte {
	b = append(b, '0', 'x')
	return strconv.AppendUint(b, v, 16)
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
	case KindRead, KindWrite:
		l.dec(int64(r.Width)).time(r.Time).dec(id).hex(r.Phys)
		if r.Width <= 8 {
			l.hex(r.Uint64())
		} else {
			l.text("0x" + r.ValueHex())
		}
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

// ParseText reads a log in the text format. Lines it does not know are
// skipped, as demmio does. It returns an error naming the line for a known
// record type that is malformed.
func ParseText(r io.Reader) ([]Record, error) {
	var recs []Record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		rec, ok, err := ParseLine(line)
		if err != nil {
			return recs, fmt.Errorf("line %d %q: %w", n, line, err)
		}
		if ok {
			recs = append(recs, rec)
		}
	}
	return recs, sc.Err()
}

// ParseLine parses one text-format line. ok is false for VERSION, empty and
// unknown lines.
func ParseLine(line string) (rec Record, ok bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return rec, false, nil
	}
	p := parser{f: f[1:]}
	switch f[0] {
	case "MAP":
		rec.Kind = KindMap
		rec.Time = p.time()
		rec.MapID = uint32(p.dec())
		rec.Phys, rec.Virt, rec.Len, rec.PC = p.hex(), p.hex(), p.hex(), p.hex()
		rec.TID = int32(p.dec())
	case "UNMAP":
		rec.Kind = KindUnmap
		rec.Time = p.time()
		rec.MapID = uint32(p.dec())
		rec.PC = p.hex()
		rec.TID = int32(p.dec())
	case "R", "W":
		rec.Kind = KindRead
		if f[0] == "W" {
			rec.Kind = KindWrite
		}
		rec.Width = uint8(p.dec())
		rec.Time = p.time()
		rec.MapID = uint32(p.dec())
		rec.Phys = p.hex()
		p.value(&rec)
		rec.PC = p.hex()
		rec.TID = int32(p.dec())
	case "MARK":
		rec.Kind = KindMark
		rec.Time = p.time()
		rec.Text = strings.Join(p.rest(), " ")
	case "UNKNOWN":
		rec.Kind = KindUnknown
		rec.Time = p.time()
		rec.MapID = uint32(p.dec())
		rec.Phys = p.hex()
		for i, s := range strings.SplitN(p.next(), ",", 3) {
			v, _ := strconv.ParseUint(s, 16, 8)
			rec.Value[i] = byte(v)
		}
		rec.PC = p.hex()
		rec.TID = int32(p.dec())
	case "PCIDEV":
		rec.Kind = KindPCIDev
		rec.Text = strings.Join(p.rest(), " ")
	case "NAME":
		rec.Kind = KindName
		rec.MapID = uint32(p.dec())
		rec.Text = strings.Join(p.rest(), " ")
	case "X":
		rec.Kind = KindExec
		rec.Time = p.time()
		rec.MapID = uint32(p.dec())
		rec.Phys, rec.PC = p.hex(), p.hex()
		rec.TID = int32(p.dec())
	case "TP":
		rec.Kind = KindEvent
		rec.Time = p.time()
		rec.TID = int32(p.dec())
		rec.Text = p.next()
		rec.Fields = parseFields(strings.SplitN(line, " ", 5))
	default:
		return rec, false, nil
	}
	return rec, true, p.err
}

// parseFields re-reads a TP line's name=value fields, honouring quotes.
func parseFields(parts []string) []Field {
	if len(parts) < 5 {
		return nil
	}
	var fs []Field
	s := parts[4]
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 {
			break
		}
		name, rest := s[:eq], s[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		fs = append(fs, Field{Name: name, Value: val})
		s = strings.TrimLeft(rest, " ")
	}
	return fs
}

type parser struct {
	f   []string
	err error
}

func (p *parser) next() string {
	if len(p.f) == 0 {
		if p.err == nil {
			p.err = fmt.Errorf("too few fields")
		}
		return ""
	}
	s := p.f[0]
	p.f = p.f[1:]
	return s
}

func (p *parser) rest() []string { r := p.f; p.f = nil; return r }

func (p *parser) fail(err error) {
	if p.err == nil {
		p.err = err
	}
}

func (p *parser) dec() int64 {
	v, err := strconv.ParseInt(p.next(), 10, 64)
	if err != nil {
		p.fail(err)
	}
	return v
}

func (p *parser) hex() uint64 {
	s := p.next()
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 64)
	if err != nil {
		p.fail(err)
	}
	return v
}

func (p *parser) time() int64 {
	s := p.next()
	sec, usec, found := strings.Cut(s, ".")
	if !found || len(usec) != 6 {
		p.fail(fmt.Errorf("bad timestamp %q", s))
		return 0
	}
	a, err1 := strconv.ParseInt(sec, 10, 64)
	b, err2 := strconv.ParseInt(usec, 10, 64)
	if err1 != nil || err2 != nil {
		p.fail(fmt.Errorf("bad timestamp %q", s))
	}
	return a*1e9 + b*1e3
}

// value parses a hex value of rec.Width bytes, possibly wider than 64 bits.
func (p *parser) value(rec *Record) {
	s := strings.TrimPrefix(p.next(), "0x")
	w := int(rec.Width)
	if w > MaxWidth || len(s) > 2*max(w, 1) {
		p.fail(fmt.Errorf("value %q too wide for width %d", s, w))
		return
	}
	for i := 0; len(s) > 0; i++ {
		lo := max(len(s)-2, 0)
		v, err := strconv.ParseUint(s[lo:], 16, 8)
		if err != nil {
			p.fail(err)
			return
		}
		rec.Value[i] = byte(v)
		s = s[:lo]
	}
}
