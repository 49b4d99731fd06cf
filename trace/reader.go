package trace

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// MaxLine is the longest line a Reader accepts (a TP line with long string
// fields is the longest the tracer writes).
const MaxLine = 1 << 20

// Reader reads a log in the text format one record at a time. Its memory
// does not grow with the log: one line buffer, reused, and a record per
// call, so a log of any length can be converted or summarized in a fixed
// amount of memory. It reads logs written by mmiotrace and by the kernel's
// mmiotrace alike (PID 0, pc 0).
//
// Lines the format does not know are skipped, as demmio does: VERSION,
// blank lines, the kernel's LSPCI lines and ftrace's '#' comments, and
// future extensions. A Reader is not safe for concurrent use.
type Reader struct {
	br      *bufio.Reader
	long    []byte // a line longer than br's buffer, assembled
	n       int    // lines read
	skipped int
	version string
	tok     tokens
}

// NewReader returns a Reader reading from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 1<<16)}
}

// Line returns the number of the line the last record (or error) came from,
// counting from 1.
func (r *Reader) Line() int { return r.n }

// Skipped returns how many non-empty lines were skipped so far as unknown
// (VERSION not counted).
func (r *Reader) Skipped() int { return r.skipped }

// Version returns the log's VERSION, once its line has been read ("" if
// none so far).
func (r *Reader) Version() string { return r.version }

// Next returns the next record. At the end of the log it returns io.EOF. A
// malformed line of a known kind gives an error naming the line; Next may be
// called again to go on after it. The record is the caller's: nothing in it
// refers to the Reader's buffers.
func (r *Reader) Next() (Record, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return Record{}, err
		}
		rec, ok, err := r.tok.parse(line)
		if err != nil {
			return Record{}, fmt.Errorf("line %d %q: %w", r.n, clip(line), err)
		}
		if ok {
			return rec, nil
		}
		if v, ok := bytes.CutPrefix(line, []byte("VERSION ")); ok {
			r.version = string(bytes.TrimSpace(v))
		} else if len(bytes.TrimSpace(line)) > 0 {
			r.skipped++
		}
	}
}

// clip shortens a line quoted in an error.
func clip(line []byte) string {
	if len(line) > 120 {
		return string(line[:120]) + "..."
	}
	return string(line)
}

// readLine returns the next line without its line ending, valid until the
// next call.
func (r *Reader) readLine() ([]byte, error) {
	r.n++
	line, err := r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		r.long = append(r.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = r.br.ReadSlice('\n')
			if len(r.long)+len(line) > MaxLine {
				// Skip to the end of this line, and report it.
				for errors.Is(err, bufio.ErrBufferFull) {
					_, err = r.br.ReadSlice('\n')
				}
				if err != nil && err != io.EOF {
					return nil, err
				}
				return nil, fmt.Errorf("line %d: longer than %d bytes", r.n, MaxLine)
			}
			r.long = append(r.long, line...)
		}
		line = r.long
	}
	if err == io.EOF && len(line) > 0 {
		err = nil // a last line without a newline
	}
	if err != nil {
		r.n--
		return nil, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// ParseText reads a whole log into memory; see Reader for the rules. It
// returns the records read before the first malformed line with the error.
func ParseText(r io.Reader) ([]Record, error) {
	var recs []Record
	rd := NewReader(r)
	for {
		rec, err := rd.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, rec)
	}
}

// ParseLine parses one text-format line. ok is false for VERSION, empty and
// unknown lines, and for a malformed line of a known kind, which gives an
// error and a zero Record.
func ParseLine(line string) (rec Record, ok bool, err error) {
	var t tokens
	return t.parse([]byte(line))
}

// maxTokens is the most fields a line is split into; the rest of a longer
// line stays with the last one (the kernel's PCIDEV has 18).
const maxTokens = 24

// tokens splits a line into space-separated fields without allocating,
// keeping where each starts, for the kinds whose last field is the rest of
// the line.
type tokens struct {
	line  []byte
	start [maxTokens]int
	end   [maxTokens]int
	n     int
	i     int // next field
	err   error
}

func (t *tokens) split(line []byte) {
	t.line, t.n, t.i, t.err = line, 0, 0, nil
	for p := 0; p < len(line) && t.n < maxTokens; {
		for p < len(line) && (line[p] == ' ' || line[p] == '\t') {
			p++
		}
		if p == len(line) {
			break
		}
		s := p
		for p < len(line) && line[p] != ' ' && line[p] != '\t' {
			p++
		}
		t.start[t.n], t.end[t.n] = s, p
		t.n++
	}
}

func (t *tokens) fail(err error) {
	if t.err == nil {
		t.err = err
	}
}

func (t *tokens) next() []byte {
	if t.i >= t.n {
		t.fail(errors.New("too few fields"))
		return nil
	}
	f := t.line[t.start[t.i]:t.end[t.i]]
	t.i++
	return f
}

// rest returns the remainder of the line from the next field on, spaces
// inside it kept, trailing spaces dropped.
func (t *tokens) rest() string {
	if t.i >= t.n {
		return ""
	}
	s := bytes.TrimRight(t.line[t.start[t.i]:], " \t")
	t.i = t.n
	return string(s)
}

func (t *tokens) dec() int64 {
	f := t.next()
	if t.err != nil {
		return 0
	}
	v, ok := parseDec(f)
	if !ok {
		t.fail(fmt.Errorf("bad number %q", f))
	}
	return v
}

func (t *tokens) hex() uint64 {
	f := t.next()
	if t.err != nil {
		return 0
	}
	v, ok := parseHex(bytes.TrimPrefix(f, []byte("0x")))
	if !ok {
		t.fail(fmt.Errorf("bad hex number %q", f))
	}
	return v
}

// time parses <seconds>.<microseconds>, exactly 6 digits after the point,
// into nanoseconds.
func (t *tokens) time() int64 {
	f := t.next()
	if t.err != nil {
		return 0
	}
	sec, usec, found := bytes.Cut(f, []byte("."))
	a, ok1 := parseDec(sec)
	b, ok2 := parseDec(usec)
	if !found || len(usec) != 6 || !ok1 || !ok2 || a < 0 || b < 0 {
		t.fail(fmt.Errorf("bad timestamp %q", f))
		return 0
	}
	return a*1e9 + b*1e3
}

// value parses the hex value of an access of rec.Width bytes, possibly
// wider than 64 bits, into rec.Value.
func (t *tokens) value(rec *Record) {
	f := t.next()
	if t.err != nil {
		return
	}
	s := bytes.TrimPrefix(f, []byte("0x"))
	w := int(rec.Width)
	if w < 1 || w > MaxWidth {
		t.fail(fmt.Errorf("bad width %d", w))
		return
	}
	if len(s) == 0 || len(s) > 2*w {
		t.fail(fmt.Errorf("value %q does not fit width %d", f, w))
		return
	}
	for i := 0; len(s) > 0; i++ {
		lo := max(len(s)-2, 0)
		v, ok := parseHex(s[lo:])
		if !ok {
			t.fail(fmt.Errorf("bad value %q", f))
			return
		}
		rec.Value[i] = byte(v)
		s = s[:lo]
	}
}

// parse parses one line. ok is false for lines that are not records, and
// with an error.
func (t *tokens) parse(line []byte) (rec Record, ok bool, err error) {
	t.split(line)
	if t.n == 0 {
		return rec, false, nil
	}
	kw := t.next()
	switch string(kw) { // no allocation: the compiler compares in place
	case "MAP":
		rec.Kind = KindMap
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.Phys, rec.Virt, rec.Len, rec.PC = t.hex(), t.hex(), t.hex(), t.hex()
		rec.TID = int32(t.dec())
	case "UNMAP":
		rec.Kind = KindUnmap
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.PC = t.hex()
		rec.TID = int32(t.dec())
	case "R", "W", "RV", "WV":
		w := t.dec()
		if w < 1 || w > MaxWidth {
			t.fail(fmt.Errorf("bad width %d", w))
			break
		}
		rec.Width = uint8(w)
		// The kind follows the width, as the writer's keyword does; an
		// older log's "R 16" line is read as the RV it is.
		rec.Kind = AccessKind(kw[0] == 'W', int(w))
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.Phys = t.hex()
		t.value(&rec)
		rec.PC = t.hex()
		rec.TID = int32(t.dec())
	case "MARK":
		rec.Kind = KindMark
		rec.Time = t.time()
		rec.Text = t.rest()
	case "UNKNOWN":
		rec.Kind = KindUnknown
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.Phys = t.hex()
		op := t.next()
		for i, b := range bytes.SplitN(op, []byte(","), 3) {
			v, ok := parseHex(b)
			if !ok || v > 0xff || t.err != nil {
				t.fail(fmt.Errorf("bad opcode bytes %q", op))
				break
			}
			rec.Value[i] = byte(v)
		}
		rec.PC = t.hex()
		rec.TID = int32(t.dec())
	case "PCIDEV":
		rec.Kind = KindPCIDev
		rec.Text = t.rest()
	case "NAME":
		rec.Kind = KindName
		rec.MapID = uint32(t.dec())
		rec.Text = t.rest()
	case "X":
		rec.Kind = KindExec
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.Phys, rec.PC = t.hex(), t.hex()
		rec.TID = int32(t.dec())
	case "TP":
		rec.Kind = KindEvent
		rec.Time = t.time()
		rec.TID = int32(t.dec())
		rec.Text = string(t.next())
		rec.Fields = parseFields(t.rest())
	case "CODE":
		rec.Kind = KindCode
		rec.Time = t.time()
		rec.PID = int32(t.dec())
		start, end := t.hex(), t.hex()
		if end < start {
			t.fail(fmt.Errorf("end %#x before start %#x", end, start))
		}
		rec.Virt, rec.Len = start, end-start
		rec.Phys = t.hex()
		if id := t.next(); t.err == nil && string(id) != "-" {
			if len(id) > 2*MaxWidth || len(id)%2 != 0 {
				t.fail(fmt.Errorf("bad build id %q", id))
			} else if n, err := hex.Decode(rec.Value[:], id); err != nil {
				t.fail(fmt.Errorf("bad build id %q", id))
			} else {
				rec.Width = uint8(n)
			}
		}
		if rec.Text = t.rest(); rec.Text == "" {
			t.fail(errors.New("no path"))
		}
	case "PROC":
		rec.Kind = KindProc
		rec.Time = t.time()
		rec.PID = int32(t.dec())
		rec.Parent = int32(t.dec())
		if rec.Text = t.rest(); rec.Text == "" {
			t.fail(errors.New("no program"))
		}
	case "SYS":
		rec.Kind = KindSyscall
		rec.Time = t.time()
		rec.MapID = uint32(t.dec())
		rec.Phys, rec.Len = t.hex(), t.hex()
		switch d := t.next(); string(d) {
		case "R":
			rec.Dir = DirRead
		case "W":
			rec.Dir = DirWrite
		case "RW":
			rec.Dir = DirRead | DirWrite
		default:
			t.fail(fmt.Errorf("bad direction %q", d))
		}
		rec.Text = string(t.next())
		rec.PC = t.hex()
		rec.TID = int32(t.dec())
	default:
		return rec, false, nil
	}
	if t.err != nil {
		return Record{}, false, t.err
	}
	return rec, true, nil
}

// parseFields reads a TP line's name=value fields, honouring quotes.
func parseFields(s string) []Field {
	var fs []Field
	for s != "" {
		eq := -1
		for i := 0; i < len(s); i++ {
			if s[i] == '=' {
				eq = i
				break
			}
		}
		if eq < 0 {
			break
		}
		name, rest := s[:eq], s[eq+1:]
		var val string
		if len(rest) > 0 && rest[0] == '"' {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				break
			}
			val, _ = strconv.Unquote(q)
			rest = rest[len(q):]
		} else if sp := indexSpace(rest); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		fs = append(fs, Field{Name: name, Value: val})
		for rest != "" && rest[0] == ' ' {
			rest = rest[1:]
		}
		s = rest
	}
	return fs
}

func indexSpace(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			return i
		}
	}
	return -1
}

// parseDec parses an optionally negative decimal int64.
func parseDec(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var v int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if v < 0 { // 19 digits past MaxInt64
		return 0, false
	}
	if neg {
		v = -v
	}
	return v, true
}

// parseHex parses up to 16 hex digits, either case.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
