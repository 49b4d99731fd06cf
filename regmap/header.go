package regmap

import (
	"math/bits"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// ParseHeader reads the #define lines of a C header the way a driver's
// register header is written (docs/REGMAP.md):
//
//	#define FOO_CTRL          0x0004          register: a hex constant
//	#define   FOO_CTRL_EN     BIT(0)          field of FOO_CTRL
//	#define   FOO_CTRL_MODE   GENMASK(2, 1)   field
//	#define     FOO_CTRL_MODE_FAST  2         value of the field MODE
//	#define FOO_QTAIL(n)      (0x100 + (n) * 0x10)   repeated register
//
// A register is an object-like macro whose value is a hex constant, or a
// function-like macro of one parameter that is linear in it (an array of
// registers without a count). A field is a macro whose value is a bit
// expression (BIT, BIT_ULL, GENMASK, GENMASK_ULL, a shift), or whose name
// ends in _MASK with a value that is one run of set bits (a NAME_SHIFT
// macro shifts an unshifted mask); it belongs to the register whose name is
// the longest prefix of its own, else to the register defined just before
// it in the same block of lines. A macro whose name extends a multi-bit
// field's is one of the field's values, shifted into place or not. Other
// macros (decimal counts, timeouts, strings) are ignored. Registers have
// no width: an access names the register it starts at.
func ParseHeader(data []byte) (*Map, error) {
	h := &headerParser{
		m:       &Map{Format: "header"},
		defs:    map[string]uint64{},
		regIdx:  map[string]int{},
		fieldOf: map[string]fieldRef{},
		shifts:  map[string]uint64{},
		lastReg: -1,
	}
	for _, line := range logicalLines(stripComments(string(data))) {
		h.line(line)
	}
	h.m.build()
	return h.m, nil
}

type fieldRef struct{ reg, field int }

type headerParser struct {
	m       *Map
	defs    map[string]uint64 // every macro with a value, for references
	regIdx  map[string]int    // register name -> index in m.regs
	fieldOf map[string]fieldRef
	shifts  map[string]uint64 // NAME_SHIFT values, by NAME
	lastReg int               // the register defined last in this block, or -1
}

// The expressions of this file are compiled on first use (sync.OnceValue),
// not at package init: init runs in every mmiotrace process, the waker and
// sessions that never read a header among them, and each start counts.
var defineRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*#\s*define\s+([A-Za-z_]\w*)(\(\s*([A-Za-z_]\w*)\s*\))?\s+(.+?)\s*$`)
})

func (h *headerParser) line(line string) {
	if strings.TrimSpace(line) == "" {
		h.lastReg = -1 // a blank line ends a block (a comment line does not)
		return
	}
	line = strings.ReplaceAll(line, commentMark, " ")
	sm := defineRE().FindStringSubmatch(line)
	if sm == nil {
		return
	}
	name, param, body := sm[1], sm[3], sm[4]
	if sm[2] != "" {
		h.array(name, param, body)
		return
	}
	e := exprParser{s: body, defs: h.defs}
	v, ok := e.eval()
	if !ok {
		return
	}
	h.defs[name] = v
	switch {
	case strings.HasSuffix(name, "_SHIFT"):
		h.shifts[strings.TrimSuffix(name, "_SHIFT")] = v
		return
	case h.enumValue(name, v):
		return
	case e.bitExpr:
		h.field(name, v, true)
		return
	case strings.HasSuffix(name, "_MASK") && contiguous(v):
		// Only under a register's name: INT_MASK after INT_STATUS is
		// more likely a register than a field.
		if h.field(strings.TrimSuffix(name, "_MASK"), h.shifted(strings.TrimSuffix(name, "_MASK"), v), false) {
			return
		}
	}
	if isHexLiteral(body) {
		h.register(Register{Name: name, Addr: v})
	}
}

// shifted applies a NAME_SHIFT to an unshifted NAME_MASK.
func (h *headerParser) shifted(name string, mask uint64) uint64 {
	if s, ok := h.shifts[name]; ok && mask&1 != 0 && s < 64 {
		return mask << s
	}
	return mask
}

func (h *headerParser) register(r Register) {
	if _, dup := h.regIdx[r.Name]; dup {
		return
	}
	h.regIdx[r.Name] = len(h.m.regs)
	h.lastReg = len(h.m.regs)
	h.m.regs = append(h.m.regs, r)
}

// owner finds the register a field named name belongs to: the longest
// register name that prefixes it at an underscore, else (if inBlock) the
// register of the current block.
func (h *headerParser) owner(name string, inBlock bool) (int, string, bool) {
	for i := len(name) - 1; i > 0; i-- {
		if name[i] != '_' {
			continue
		}
		if r, ok := h.regIdx[name[:i]]; ok {
			return r, name[i+1:], true
		}
	}
	if inBlock && h.lastReg >= 0 {
		return h.lastReg, name, true
	}
	return 0, "", false
}

// field adds a field with the given mask; false if no register owns it.
func (h *headerParser) field(name string, mask uint64, inBlock bool) bool {
	if !contiguous(mask) {
		return false
	}
	r, short, ok := h.owner(name, inBlock)
	if !ok {
		return false
	}
	lsb := uint(bits.TrailingZeros64(mask))
	msb := uint(63 - bits.LeadingZeros64(mask))
	reg := &h.m.regs[r]
	h.fieldOf[name] = fieldRef{r, len(reg.Fields)}
	reg.Fields = append(reg.Fields, Field{Name: short, Lsb: lsb, Msb: msb})
	return true
}

// enumValue records NAME = v as a value of a multi-bit field whose name
// prefixes NAME, if there is one.
func (h *headerParser) enumValue(name string, v uint64) bool {
	for i := len(name) - 1; i > 0; i-- {
		if name[i] != '_' {
			continue
		}
		ref, ok := h.fieldOf[name[:i]]
		if !ok {
			continue
		}
		f := &h.m.regs[ref.reg].Fields[ref.field]
		if f.Msb == f.Lsb {
			return false // a one-bit field has no named values: NAME is another field
		}
		mask := ones(f.Msb-f.Lsb+1) << f.Lsb
		switch {
		case v != 0 && v&mask == v && v>>f.Lsb<<f.Lsb == v && f.Lsb > 0:
			v >>= f.Lsb // written shifted into place
		case v > mask>>f.Lsb:
			return false
		}
		f.Enums = append(f.Enums, Enum{Name: name[i+1:], Value: v})
		return true
	}
	return false
}

// array reads #define NAME(n) BODY, a register repeated at a stride when
// BODY is linear in n.
func (h *headerParser) array(name, param, body string) {
	at := func(n uint64) (uint64, bool, bool) {
		defs := map[string]uint64{param: n}
		e := exprParser{s: body, defs: defs, outer: h.defs}
		v, ok := e.eval()
		return v, ok, e.bitExpr
	}
	a, ok0, bitx := at(0)
	b, ok1, _ := at(1)
	c, ok2, _ := at(2)
	if !ok0 || !ok1 || !ok2 || bitx || b <= a || c-b != b-a {
		return
	}
	if !strings.Contains(body, "0x") && !strings.Contains(body, "0X") {
		return // an index computation, not offsets
	}
	h.m.arrays = append(h.m.arrays, Array{Register: Register{Name: name, Addr: a}, Stride: b - a})
}

// contiguous reports whether v's set bits form one run.
func contiguous(v uint64) bool {
	if v == 0 {
		return false
	}
	v >>= bits.TrailingZeros64(v)
	return v&(v+1) == 0
}

var hexLitRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^\(?\s*0[xX][0-9a-fA-F]+[uUlL]*\s*\)?$`) })

func isHexLiteral(s string) bool { return hexLitRE().MatchString(s) }

// commentMark replaces comments, so that a line that held only a comment
// is not taken for a blank line.
const commentMark = "\x00"

// stripComments replaces /* */ and // comments with commentMark, keeping
// line breaks.
func stripComments(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "/*"):
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				end = len(s) - i - 2
			}
			b.WriteString(commentMark + strings.Repeat("\n", strings.Count(s[i:i+2+end], "\n")))
			i += end + 3
		case strings.HasPrefix(s[i:], "//"):
			b.WriteString(commentMark)
			end := strings.IndexByte(s[i:], '\n')
			if end < 0 {
				return b.String()
			}
			i += end - 1
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// logicalLines joins lines continued with a backslash.
func logicalLines(s string) []string {
	var out []string
	var cur strings.Builder
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, " \t\r")
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		out = append(out, cur.String())
		cur.Reset()
	}
	return out
}

// exprParser evaluates the integer constant expressions of register
// headers: numbers with C suffixes, names of earlier macros, BIT(n),
// BIT_ULL(n), GENMASK(h, l), GENMASK_ULL(h, l), _BITUL(n), unary ~ and -,
// * / + - << >> & ^ |, and parentheses. bitExpr is set when the value is
// written as bits (BIT, GENMASK or a left shift).
type exprParser struct {
	s       string
	pos     int
	defs    map[string]uint64
	outer   map[string]uint64 // consulted after defs
	bitExpr bool
	bad     bool
	depth   int
}

func (p *exprParser) eval() (uint64, bool) {
	v := p.binary(0)
	p.space()
	return v, !p.bad && p.pos == len(p.s)
}

var precedence = map[string]int{"|": 1, "^": 2, "&": 3, "<<": 4, ">>": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6}

func (p *exprParser) space() {
	for p.pos < len(p.s) && (p.s[p.pos] == ' ' || p.s[p.pos] == '\t') {
		p.pos++
	}
}

func (p *exprParser) op() string {
	p.space()
	for _, o := range []string{"<<", ">>", "|", "^", "&", "+", "-", "*", "/", "%"} {
		if strings.HasPrefix(p.s[p.pos:], o) {
			if (o == "|" || o == "&") && strings.HasPrefix(p.s[p.pos+1:], o) {
				return "" // logical operators: not a constant we read
			}
			return o
		}
	}
	return ""
}

func (p *exprParser) binary(minPrec int) uint64 {
	p.depth++
	defer func() { p.depth-- }()
	if p.depth > 64 {
		p.bad = true
		return 0
	}
	lhs := p.unary()
	for !p.bad {
		o := p.op()
		prec, ok := precedence[o]
		if !ok || prec <= minPrec {
			return lhs
		}
		p.pos += len(o)
		rhs := p.binary(prec)
		switch o {
		case "|":
			lhs |= rhs
		case "^":
			lhs ^= rhs
		case "&":
			lhs &= rhs
		case "<<":
			p.bitExpr = true
			if rhs >= 64 {
				p.bad = true
			}
			lhs <<= rhs
		case ">>":
			lhs >>= min(rhs, 63)
		case "+":
			lhs += rhs
		case "-":
			lhs -= rhs
		case "*":
			lhs *= rhs
		case "/", "%":
			if rhs == 0 {
				p.bad = true
				return 0
			}
			if o == "/" {
				lhs /= rhs
			} else {
				lhs %= rhs
			}
		}
	}
	return lhs
}

var castRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\s*(u8|u16|u32|u64|unsigned( long)*( int)?|int|long)\s*\)`)
})
var numRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(0[xX][0-9a-fA-F]+|0[bB][01]+|[0-9]+)[uUlL]*`) })
var identRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_]\w*`) })

func (p *exprParser) unary() uint64 {
	p.space()
	if p.pos >= len(p.s) {
		p.bad = true
		return 0
	}
	switch c := p.s[p.pos]; {
	case c == '(':
		p.pos++
		// A cast: (u32)x, (unsigned long)x.
		if m := castRE().FindString(p.s[p.pos:]); m != "" {
			p.pos += len(m)
			return p.unary()
		}
		v := p.binary(0)
		p.space()
		if p.pos >= len(p.s) || p.s[p.pos] != ')' {
			p.bad = true
			return 0
		}
		p.pos++
		return v
	case c == '~':
		p.pos++
		return ^p.unary()
	case c == '-':
		p.pos++
		return -p.unary()
	case c >= '0' && c <= '9':
		m := numRE().FindStringSubmatch(p.s[p.pos:])
		if m == nil {
			p.bad = true
			return 0
		}
		p.pos += len(m[0])
		v, err := strconv.ParseUint(m[1], 0, 64)
		if err != nil {
			// A leading 0 is octal in C and here.
			p.bad = true
		}
		return v
	}
	id := identRE().FindString(p.s[p.pos:])
	if id == "" {
		p.bad = true
		return 0
	}
	p.pos += len(id)
	switch id {
	case "BIT", "BIT_ULL", "_BITUL", "_BITULL", "BIT_U32", "BIT_U64":
		args := p.args(1)
		if p.bad || args[0] >= 64 {
			p.bad = true
			return 0
		}
		p.bitExpr = true
		return 1 << args[0]
	case "GENMASK", "GENMASK_ULL", "GENMASK_U32", "GENMASK_U64":
		args := p.args(2)
		if p.bad || args[0] >= 64 || args[1] > args[0] {
			p.bad = true
			return 0
		}
		p.bitExpr = true
		return ones(uint(args[0]-args[1]+1)) << args[1]
	}
	if v, ok := p.defs[id]; ok {
		return v
	}
	if v, ok := p.outer[id]; ok {
		return v
	}
	p.bad = true
	return 0
}

// args reads a parenthesised list of n expressions.
func (p *exprParser) args(n int) []uint64 {
	out := make([]uint64, n)
	p.space()
	if p.pos >= len(p.s) || p.s[p.pos] != '(' {
		p.bad = true
		return out
	}
	p.pos++
	for i := 0; i < n; i++ {
		out[i] = p.binary(0)
		p.space()
		want := byte(',')
		if i == n-1 {
			want = ')'
		}
		if p.pos >= len(p.s) || p.s[p.pos] != want {
			p.bad = true
			return out
		}
		p.pos++
	}
	return out
}
