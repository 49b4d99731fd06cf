package regmap

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ParseText reads mmiotrace's register-map format (docs/REGMAP.md):
//
//	# comment
//	device NAME             optional: the device's name
//	base 0xADDR             optional: addresses below are bus addresses, ADDR + OFFSET
//	OFFSET WIDTH NAME [ACCESS] [stride=N] [FIELD...] [# description]
//	    FIELD...            more fields of the register above
//
// WIDTH is in bits. NAME[N] declares N registers NAME[0].. NAME[N-1], each
// stride bytes (default WIDTH/8) after the other. ACCESS is rw (default),
// ro or wo: two registers at one offset, one ro and one wo, name reads and
// writes differently. A FIELD is NAME[BIT] or NAME[MSB:LSB], optionally
// followed by its values: MODE[2:1]{OFF=0,SLOW=1,FAST=2}.
func ParseText(data []byte) (*Map, error) {
	m := &Map{Format: "text"}
	var base uint64
	lastCount := 0 // how many registers the last register line declared: continuation lines add fields to them
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		raw := sc.Text()
		line, desc, _ := strings.Cut(raw, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("line %d: %s: %w", n, fmt.Sprintf(format, args...), ErrFormat)
		}
		continued := raw[0] == ' ' || raw[0] == '\t'
		if continued && !isNumber(f[0]) {
			if lastCount == 0 {
				return nil, fail("fields before any register")
			}
			fields, err := parseFields(f)
			if err != nil {
				return nil, fail("%v", err)
			}
			// Every register of the last line's array gets them.
			for i := len(m.regs) - lastCount; i < len(m.regs); i++ {
				m.regs[i].Fields = append(m.regs[i].Fields, fields...)
			}
			continue
		}
		switch f[0] {
		case "device":
			m.Name = strings.Join(f[1:], " ")
			continue
		case "base":
			if len(f) != 2 {
				return nil, fail("base takes one address")
			}
			v, err := parseNumber(f[1])
			if err != nil {
				return nil, fail("base: %v", err)
			}
			if len(m.regs) > 0 {
				return nil, fail("base must come before the registers")
			}
			base, m.Absolute, m.Origin = v, true, v
			continue
		}
		if len(f) < 3 {
			return nil, fail("want OFFSET WIDTH NAME [ACCESS] [FIELD...]")
		}
		off, err := parseNumber(f[0])
		if err != nil {
			return nil, fail("offset: %v", err)
		}
		width, err := strconv.Atoi(f[1])
		if err != nil || width <= 0 || width%8 != 0 || width > 512 {
			return nil, fail("width %q: want bits, a multiple of 8 up to 512", f[1])
		}
		name, count, err := splitIndex(f[2])
		if err != nil {
			return nil, fail("%v", err)
		}
		r := Register{Name: name, Addr: base + off, Width: width, Desc: strings.TrimSpace(desc)}
		stride := uint64(width / 8)
		rest := f[3:]
		for len(rest) > 0 {
			switch a := rest[0]; {
			case a == "rw" || a == "ro" || a == "wo" || a == "r" || a == "w":
				r.Access = map[string]Access{"rw": ReadWrite, "ro": ReadOnly, "r": ReadOnly, "wo": WriteOnly, "w": WriteOnly}[a]
			case strings.HasPrefix(a, "stride="):
				if stride, err = parseNumber(a[len("stride="):]); err != nil || stride == 0 {
					return nil, fail("bad %s", a)
				}
			default:
				goto fields
			}
			rest = rest[1:]
		}
	fields:
		if r.Fields, err = parseFields(rest); err != nil {
			return nil, fail("%v", err)
		}
		for _, fl := range r.Fields {
			if int(fl.Msb) >= width {
				return nil, fail("field %s[%d:%d] outside a %d-bit register", fl.Name, fl.Msb, fl.Lsb, width)
			}
		}
		if len(m.regs)+int(count) > maxRegisters {
			return nil, fail("more than %d registers", maxRegisters)
		}
		if count == 0 {
			m.regs = append(m.regs, r)
			lastCount = 1
		} else {
			for i := uint64(0); i < count; i++ {
				ri := r
				ri.Name = fmt.Sprintf("%s[%d]", name, i)
				ri.Addr = r.Addr + i*stride
				ri.Fields = append([]Field(nil), r.Fields...)
				m.regs = append(m.regs, ri)
			}
			lastCount = int(count)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	m.build()
	return m, nil
}

// maxArray bounds NAME[N] in the text format.
const maxArray = 1 << 16

// splitIndex splits "NAME[N]" into NAME and N; N is 0 for a plain name.
func splitIndex(s string) (string, uint64, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		return s, 0, nil
	}
	if open == 0 || !strings.HasSuffix(s, "]") {
		return "", 0, fmt.Errorf("bad register name %q", s)
	}
	n, err := parseNumber(s[open+1 : len(s)-1])
	if err != nil || n == 0 || n > maxArray {
		return "", 0, fmt.Errorf("bad array count in %q", s)
	}
	return s[:open], n, nil
}

// parseFields reads NAME[BIT] and NAME[MSB:LSB]{A=1,B=2} tokens.
func parseFields(toks []string) ([]Field, error) {
	var out []Field
	for _, t := range toks {
		spec, enums, hasEnums := strings.Cut(t, "{")
		open := strings.IndexByte(spec, '[')
		if open <= 0 || !strings.HasSuffix(spec, "]") {
			return nil, fmt.Errorf("field %q: want NAME[BIT] or NAME[MSB:LSB]", t)
		}
		f := Field{Name: spec[:open]}
		hi, lo, isRange := strings.Cut(spec[open+1:len(spec)-1], ":")
		msb, err1 := strconv.ParseUint(hi, 10, 8)
		lsb := msb
		var err2 error
		if isRange {
			lsb, err2 = strconv.ParseUint(lo, 10, 8)
		}
		if err1 != nil || err2 != nil || lsb > msb || msb > 511 {
			return nil, fmt.Errorf("field %q: bad bit range", t)
		}
		f.Msb, f.Lsb = uint(msb), uint(lsb)
		if hasEnums {
			if !strings.HasSuffix(enums, "}") {
				return nil, fmt.Errorf("field %q: values must end with }", t)
			}
			for _, e := range strings.Split(strings.TrimSuffix(enums, "}"), ",") {
				name, val, ok := strings.Cut(e, "=")
				v, err := parseNumber(val)
				if !ok || name == "" || err != nil {
					return nil, fmt.Errorf("field %q: value %q: want NAME=NUMBER", t, e)
				}
				f.Enums = append(f.Enums, Enum{Name: name, Value: v})
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func isNumber(s string) bool {
	_, err := parseNumber(s)
	return err == nil
}

// parseNumber reads decimal, 0x hex, 0o octal or 0b binary, with optional
// underscores.
func parseNumber(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v, nil
}
