package symbols

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/mmiotrace/mmiotrace/hwbp"
)

// Spec is a parsed watch SPEC:
//
//	SYMBOL[+OFF][/LEN][:MODE]
//	LIB:SYMBOL[+OFF][/LEN][:MODE]
//	0xADDR/LEN[:MODE]
//
// MODE is the ksym tracer's rw- (the default), -w-, --x or r--. OFF and LEN
// are decimal or 0x-prefixed hex. LIB picks the file the symbol is looked up
// in (a library path or a substring of its name); without it the caller
// decides (the executable first, for example).
type Spec struct {
	Lib    string // "" when not given
	Symbol string // "" for a raw address
	Addr   uint64 // the raw address when Symbol is ""
	Off    uint64
	Len    uint64 // 0: the symbol's size
	Mode   hwbp.Mode
}

// ParseSpec parses a watch SPEC. Symbol names may contain '.', '/', '+' and
// ':' (Go import paths, C++ names): a suffix is taken as /LEN, +OFF or :MODE
// only if it parses as one, and LIB: only before the first single colon.
func ParseSpec(s string) (Spec, error) {
	sp := Spec{Mode: hwbp.DefaultMode}
	rest := s
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && (i == 0 || rest[i-1] != ':') {
		if m, err := hwbp.ParseMode(rest[i+1:]); err == nil {
			sp.Mode, rest = m, rest[:i]
		} else if modeLike(rest[i+1:]) {
			// counter:w or counter:rw is a mode mistyped, not the
			// symbol "w" of a library "counter".
			return Spec{}, fmt.Errorf("spec %q: bad MODE %q: MODE is rw- (reads and writes), -w- (writes), r-- (reads) or --x (execution)", s, rest[i+1:])
		}
	}
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		if n, err := parseNum(rest[i+1:]); err == nil {
			if n == 0 {
				return Spec{}, fmt.Errorf("spec %q: length 0", s)
			}
			sp.Len, rest = n, rest[:i]
		}
	}
	if strings.HasPrefix(rest, "0x") || strings.HasPrefix(rest, "0X") {
		a, err := strconv.ParseUint(rest[2:], 16, 64)
		if err != nil {
			return Spec{}, fmt.Errorf("spec %q: bad address %q", s, rest)
		}
		if sp.Len == 0 {
			return Spec{}, fmt.Errorf("spec %q: an address needs /LEN", s)
		}
		sp.Addr = a
		return sp, nil
	}
	if i := strings.LastIndexByte(rest, '+'); i > 0 {
		if n, err := parseNum(rest[i+1:]); err == nil {
			sp.Off, rest = n, rest[:i]
		}
	}
	if i := singleColon(rest); i >= 0 {
		sp.Lib, rest = rest[:i], rest[i+1:]
		if sp.Lib == "" {
			return Spec{}, fmt.Errorf("spec %q: empty library before ':'", s)
		}
	}
	if rest == "" {
		return Spec{}, fmt.Errorf("spec %q: no symbol", s)
	}
	if strings.HasSuffix(rest, ":") {
		// No symbol ends with ':' (C++'s :: is between names); and one
		// that did could not take a :MODE after it.
		return Spec{}, fmt.Errorf("spec %q: a symbol does not end with ':'", s)
	}
	sp.Symbol = rest
	return sp, nil
}

// modeLike reports a suffix that can only be meant as a MODE: made of the
// letters r, w, x and '-' (no symbol is named "rw" or "w-", but "x" can be:
// a lone x is left to be a symbol).
func modeLike(s string) bool {
	return s != "" && s != "x" && len(s) <= 4 && strings.Trim(s, "rwx-") == ""
}

// singleColon returns the index of the first ':' that is not part of "::".
func singleColon(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		if i+1 < len(s) && s[i+1] == ':' {
			i++
			continue
		}
		return i
	}
	return -1
}

// endsInNum reports whether s ends in sep followed by a number.
func endsInNum(s string, sep byte) bool {
	i := strings.LastIndexByte(s, sep)
	if i < 0 {
		return false
	}
	_, err := parseNum(s[i+1:])
	return err == nil
}

func parseNum(s string) (uint64, error) {
	if s == "" || s[0] == '+' || s[0] == '-' {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseUint(s, 0, 64)
}

// String formats the spec so that ParseSpec reads it back.
func (sp Spec) String() string {
	var b strings.Builder
	if sp.Symbol == "" {
		fmt.Fprintf(&b, "%#x", sp.Addr)
	} else {
		if sp.Lib != "" {
			b.WriteString(sp.Lib + ":")
		}
		b.WriteString(sp.Symbol)
		// A symbol that itself ends in +NUM ("x+1", from "x+1+0"), or in
		// /NUM with no length after it ("x/4", from "x/4+0"), needs its
		// offset written, even 0, or that suffix would be read as one.
		if sp.Off != 0 || endsInNum(sp.Symbol, '+') || sp.Len == 0 && endsInNum(sp.Symbol, '/') {
			fmt.Fprintf(&b, "+%#x", sp.Off)
		}
	}
	if sp.Len != 0 {
		fmt.Fprintf(&b, "/%d", sp.Len)
	}
	b.WriteString(":" + sp.Mode.String())
	return b.String()
}

// Resolve applies a symbolic spec to t: it looks the symbol up and returns
// it with the link-time start address (symbol address plus offset) and
// length of the range to watch. The length is sp.Len, or the symbol's size
// from the offset on; a symbol of unknown size needs an explicit /LEN. The
// range must lie within the symbol when its size is known. Add the load
// bias to the address for the run-time one.
func (t *Table) Resolve(sp Spec) (Symbol, uint64, uint64, error) {
	if sp.Symbol == "" {
		return Symbol{}, 0, 0, fmt.Errorf("symbols: spec %v has no symbol", sp)
	}
	sym, err := t.Lookup(sp.Symbol)
	if err != nil {
		return Symbol{}, 0, 0, err
	}
	if sym.Kind == TLS {
		return sym, 0, 0, fmt.Errorf("symbols: %s is thread-local: it has one address per thread", sym.Name)
	}
	n := sp.Len
	switch {
	case sym.Size == 0 && n == 0:
		return sym, 0, 0, fmt.Errorf("symbols: size of %s unknown: give /LEN", sym.Name)
	case sym.Size != 0 && sp.Off >= sym.Size:
		return sym, 0, 0, fmt.Errorf("symbols: offset %d is past the end of %s (%d bytes)", sp.Off, sym.Name, sym.Size)
	case n == 0:
		n = sym.Size - sp.Off
	case sym.Size != 0 && sp.Off+n > sym.Size:
		return sym, 0, 0, fmt.Errorf("symbols: %s+%d/%d runs past the end of %s (%d bytes)", sym.Name, sp.Off, n, sym.Name, sym.Size)
	}
	return sym, sym.Addr + sp.Off, n, nil
}
