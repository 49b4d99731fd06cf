package regmap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// The subset of the CMSIS-SVD schema (1.3) that names registers: a device's
// peripherals, their register and cluster trees, and fields with their
// enumerated values. Element names are the schema's.

type svdProps struct {
	Size   string `xml:"size"`
	Access string `xml:"access"`
}

type svdDim struct {
	Dim          string `xml:"dim"`
	DimIncrement string `xml:"dimIncrement"`
	DimIndex     string `xml:"dimIndex"`
}

type svdDevice struct {
	Name string `xml:"name"`
	svdProps
	Peripherals []svdPeripheral `xml:"peripherals>peripheral"`
}

type svdPeripheral struct {
	DerivedFrom string `xml:"derivedFrom,attr"`
	Name        string `xml:"name"`
	BaseAddress string `xml:"baseAddress"`
	svdProps
	svdDim
	Registers *svdRegisters `xml:"registers"`
}

type svdRegisters struct {
	Registers []svdRegister `xml:"register"`
	Clusters  []svdCluster  `xml:"cluster"`
}

type svdCluster struct {
	DerivedFrom   string `xml:"derivedFrom,attr"`
	Name          string `xml:"name"`
	AddressOffset string `xml:"addressOffset"`
	svdProps
	svdDim
	svdRegisters
}

type svdRegister struct {
	DerivedFrom   string `xml:"derivedFrom,attr"`
	Name          string `xml:"name"`
	Description   string `xml:"description"`
	AddressOffset string `xml:"addressOffset"`
	svdProps
	svdDim
	Fields []svdField `xml:"fields>field"`
}

type svdField struct {
	DerivedFrom string `xml:"derivedFrom,attr"`
	Name        string `xml:"name"`
	BitOffset   string `xml:"bitOffset"`
	BitWidth    string `xml:"bitWidth"`
	Lsb         string `xml:"lsb"`
	Msb         string `xml:"msb"`
	BitRange    string `xml:"bitRange"`
	svdDim
	Enums []svdEnums `xml:"enumeratedValues"`
}

type svdEnums struct {
	Usage  string         `xml:"usage"`
	Values []svdEnumValue `xml:"enumeratedValue"`
}

type svdEnumValue struct {
	Name  string `xml:"name"`
	Value string `xml:"value"`
}

// maxDim bounds SVD arrays: a file cannot make the reader allocate without
// limit.
const maxDim = 1 << 16

// ParseSVD reads a CMSIS-SVD device description. Every register is named
// PERIPHERAL.REGISTER (clusters add their name: PERIPHERAL.CLUSTER.REGISTER)
// at its bus address, baseAddress plus the offsets of its clusters and its
// own addressOffset. derivedFrom copies a peripheral, cluster, register or
// field and overrides what the element itself gives; dim, dimIncrement and
// dimIndex expand arrays (NAME[%s]) and lists (NAME%s). Register size and
// access are inherited from the enclosing levels (32 bits, read-write by
// default).
func ParseSVD(data []byte) (*Map, error) {
	var dev svdDevice
	d := xml.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&dev); err != nil {
		return nil, fmt.Errorf("SVD: %v: %w", err, ErrFormat)
	}
	m := &Map{Format: "svd", Name: dev.Name, Absolute: true}
	p := svdParser{m: m, periphs: map[string]*svdPeripheral{}}
	for i := range dev.Peripherals {
		p.periphs[dev.Peripherals[i].Name] = &dev.Peripherals[i]
	}
	first := true
	for i := range dev.Peripherals {
		per, err := p.resolvePeripheral(&dev.Peripherals[i], 0)
		if err != nil {
			return nil, err
		}
		base, err := svdNumber(per.BaseAddress)
		if err != nil {
			return nil, fmt.Errorf("SVD: peripheral %s: baseAddress: %v: %w", per.Name, err, ErrFormat)
		}
		props := inherit(svdProps{Size: "32", Access: "read-write"}, dev.svdProps, per.svdProps)
		err = expand(per.Name, per.svdDim, func(name string, step uint64) error {
			if first || base+step < m.Origin {
				m.Origin, first = base+step, false
			}
			if per.Registers == nil {
				return nil
			}
			return p.registers(per.Registers, name, base+step, props, 0)
		})
		if err != nil {
			return nil, err
		}
	}
	m.build()
	return m, nil
}

type svdParser struct {
	m       *Map
	periphs map[string]*svdPeripheral
}

// resolvePeripheral applies derivedFrom: the named peripheral's elements,
// overridden by those this one gives.
func (p *svdParser) resolvePeripheral(per *svdPeripheral, depth int) (*svdPeripheral, error) {
	if per.DerivedFrom == "" {
		return per, nil
	}
	if depth > 8 {
		return nil, fmt.Errorf("SVD: peripheral %s: derivedFrom loop: %w", per.Name, ErrFormat)
	}
	src, ok := p.periphs[per.DerivedFrom]
	if !ok {
		return nil, fmt.Errorf("SVD: peripheral %s: derivedFrom unknown peripheral %q: %w", per.Name, per.DerivedFrom, ErrFormat)
	}
	src, err := p.resolvePeripheral(src, depth+1)
	if err != nil {
		return nil, err
	}
	out := *src
	out.DerivedFrom = ""
	out.Name = per.Name
	out.BaseAddress = or(per.BaseAddress, src.BaseAddress)
	out.svdProps = inherit(src.svdProps, per.svdProps)
	if per.Dim != "" {
		out.svdDim = per.svdDim
	}
	if per.Registers != nil {
		out.Registers = per.Registers
	}
	return &out, nil
}

// registers adds the registers and clusters of one level, at base, named
// under prefix.
func (p *svdParser) registers(rs *svdRegisters, prefix string, base uint64, props svdProps, depth int) error {
	if depth > 8 {
		return fmt.Errorf("SVD: %s: clusters nested too deep: %w", prefix, ErrFormat)
	}
	regByName := map[string]*svdRegister{}
	for i := range rs.Registers {
		regByName[rs.Registers[i].Name] = &rs.Registers[i]
	}
	for i := range rs.Registers {
		r := &rs.Registers[i]
		if r.DerivedFrom != "" {
			name := r.DerivedFrom[strings.LastIndexByte(r.DerivedFrom, '.')+1:]
			src, ok := regByName[name]
			if !ok || src == r {
				return fmt.Errorf("SVD: register %s.%s: derivedFrom unknown register %q: %w", prefix, r.Name, r.DerivedFrom, ErrFormat)
			}
			d := *src
			d.DerivedFrom, d.Name = "", r.Name
			d.AddressOffset = or(r.AddressOffset, src.AddressOffset)
			d.Description = or(r.Description, src.Description)
			d.svdProps = inherit(src.svdProps, r.svdProps)
			if r.Dim != "" {
				d.svdDim = r.svdDim
			}
			if len(r.Fields) > 0 {
				d.Fields = r.Fields
			}
			r = &d
		}
		if err := p.register(r, prefix, base, inherit(props, r.svdProps)); err != nil {
			return err
		}
	}
	clByName := map[string]*svdCluster{}
	for i := range rs.Clusters {
		clByName[rs.Clusters[i].Name] = &rs.Clusters[i]
	}
	for i := range rs.Clusters {
		c := &rs.Clusters[i]
		if c.DerivedFrom != "" {
			src, ok := clByName[c.DerivedFrom[strings.LastIndexByte(c.DerivedFrom, '.')+1:]]
			if !ok || src == c {
				return fmt.Errorf("SVD: cluster %s.%s: derivedFrom unknown cluster %q: %w", prefix, c.Name, c.DerivedFrom, ErrFormat)
			}
			d := *src
			d.DerivedFrom, d.Name = "", c.Name
			d.AddressOffset = or(c.AddressOffset, src.AddressOffset)
			d.svdProps = inherit(src.svdProps, c.svdProps)
			if c.Dim != "" {
				d.svdDim = c.svdDim
			}
			c = &d
		}
		off, err := svdNumber(c.AddressOffset)
		if err != nil {
			return fmt.Errorf("SVD: cluster %s.%s: addressOffset: %v: %w", prefix, c.Name, err, ErrFormat)
		}
		cprops := inherit(props, c.svdProps)
		err = expand(c.Name, c.svdDim, func(name string, step uint64) error {
			return p.registers(&c.svdRegisters, prefix+"."+name, base+off+step, cprops, depth+1)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *svdParser) register(r *svdRegister, prefix string, base uint64, props svdProps) error {
	where := prefix + "." + r.Name
	off, err := svdNumber(r.AddressOffset)
	if err != nil {
		return fmt.Errorf("SVD: register %s: addressOffset: %v: %w", where, err, ErrFormat)
	}
	size, err := svdNumber(props.Size)
	if err != nil || size == 0 || size > 512 {
		return fmt.Errorf("SVD: register %s: bad size %q: %w", where, props.Size, ErrFormat)
	}
	var fields []Field
	for _, f := range r.Fields {
		fs, err := svdFields(f)
		if err != nil {
			return fmt.Errorf("SVD: register %s: %v: %w", where, err, ErrFormat)
		}
		fields = append(fields, fs...)
	}
	access := svdAccess(props.Access)
	return expand(r.Name, r.svdDim, func(name string, step uint64) error {
		if len(p.m.regs) >= maxRegisters {
			return fmt.Errorf("SVD: more than %d registers: %w", maxRegisters, ErrFormat)
		}
		p.m.regs = append(p.m.regs, Register{
			Name:   prefix + "." + name,
			Addr:   base + off + step,
			Width:  int(size),
			Access: access,
			Fields: append([]Field(nil), fields...),
			Desc:   strings.Join(strings.Fields(r.Description), " "),
		})
		return nil
	})
}

// svdFields reads a field's bit range, in any of the three ways SVD gives
// it, and its enumerated values; a dim field gives several.
func svdFields(f svdField) ([]Field, error) {
	var lsb, msb uint64
	var err error
	switch {
	case f.BitRange != "":
		r := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(f.BitRange), "["), "]")
		hi, lo, ok := strings.Cut(r, ":")
		if !ok {
			return nil, fmt.Errorf("field %s: bad bitRange %q", f.Name, f.BitRange)
		}
		if msb, err = svdNumber(hi); err == nil {
			lsb, err = svdNumber(lo)
		}
	case f.Lsb != "" || f.Msb != "":
		if lsb, err = svdNumber(f.Lsb); err == nil {
			msb, err = svdNumber(f.Msb)
		}
	default:
		var w uint64
		if lsb, err = svdNumber(f.BitOffset); err == nil {
			w = 1
			if f.BitWidth != "" {
				w, err = svdNumber(f.BitWidth)
			}
			msb = lsb + w - 1
			if w == 0 {
				err = fmt.Errorf("zero bitWidth")
			}
		}
	}
	if err != nil || lsb > msb || msb > 511 {
		return nil, fmt.Errorf("field %s: bad bit range (%v)", f.Name, err)
	}
	base := Field{Lsb: uint(lsb), Msb: uint(msb)}
	for _, ev := range f.Enums {
		acc := svdAccess(map[string]string{"read": "read-only", "write": "write-only"}[ev.Usage])
		for _, v := range ev.Values {
			vals, err := svdEnumValues(v.Value, msb-lsb+1)
			if err != nil {
				if v.Value == "" {
					continue // isDefault: no single value to name
				}
				return nil, fmt.Errorf("field %s: value %s: %v", f.Name, v.Name, err)
			}
			for _, x := range vals {
				base.Enums = append(base.Enums, Enum{Name: v.Name, Value: x, Access: acc})
			}
		}
	}
	var out []Field
	err = expand(f.Name, f.svdDim, func(name string, step uint64) error {
		g := base
		g.Name = name
		g.Lsb += uint(step)
		g.Msb += uint(step)
		out = append(out, g)
		return nil
	})
	return out, err
}

// svdEnumValues reads an enumeratedValue's value: a number, or a binary
// "#1x0" whose x bits match either digit (each combination is returned, at
// most 256).
func svdEnumValues(s string, width uint64) ([]uint64, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "#") || !strings.ContainsAny(s, "xX") {
		v, err := svdNumber(s)
		return []uint64{v}, err
	}
	vals := []uint64{0}
	for _, c := range s[1:] {
		var next []uint64
		for _, v := range vals {
			switch c {
			case '0':
				next = append(next, v<<1)
			case '1':
				next = append(next, v<<1|1)
			case 'x', 'X':
				next = append(next, v<<1, v<<1|1)
			default:
				return nil, fmt.Errorf("bad binary value %q", s)
			}
		}
		if len(next) > 256 {
			return nil, fmt.Errorf("too many don't-care bits in %q", s)
		}
		vals = next
	}
	return vals, nil
}

// expand calls add for each element of a dim array or list (once, with
// step 0, without dim), with the element's name: "[%s]" becomes [i] (an
// array), "%s" the dimIndex entry (a list).
func expand(name string, d svdDim, add func(name string, step uint64) error) error {
	if d.Dim == "" {
		return add(strings.ReplaceAll(strings.ReplaceAll(name, "[%s]", ""), "%s", ""), 0)
	}
	n, err := svdNumber(d.Dim)
	if err != nil || n == 0 || n > maxDim {
		return fmt.Errorf("SVD: %s: bad dim %q: %w", name, d.Dim, ErrFormat)
	}
	inc, err := svdNumber(d.DimIncrement)
	if err != nil {
		return fmt.Errorf("SVD: %s: bad dimIncrement %q: %w", name, d.DimIncrement, ErrFormat)
	}
	idx, err := dimIndex(d.DimIndex, n)
	if err != nil {
		return fmt.Errorf("SVD: %s: %v: %w", name, err, ErrFormat)
	}
	for i := uint64(0); i < n; i++ {
		var el string
		if strings.Contains(name, "[%s]") {
			el = strings.ReplaceAll(name, "[%s]", "["+strconv.FormatUint(i, 10)+"]")
		} else {
			el = strings.ReplaceAll(name, "%s", idx[i])
		}
		if err := add(el, i*inc); err != nil {
			return err
		}
	}
	return nil
}

// dimIndex reads "A,B,C" or "3-6"; empty means 0..n-1.
func dimIndex(s string, n uint64) ([]string, error) {
	var out []string
	switch {
	case s == "":
		for i := uint64(0); i < n; i++ {
			out = append(out, strconv.FormatUint(i, 10))
		}
	case strings.Contains(s, ","):
		for _, e := range strings.Split(s, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	default:
		a, b, ok := strings.Cut(s, "-")
		lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 64)
		hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 64)
		if !ok || err1 != nil || err2 != nil || hi < lo || hi-lo+1 != n {
			if !ok && n == 1 {
				return []string{s}, nil
			}
			return nil, fmt.Errorf("bad dimIndex %q for dim %d", s, n)
		}
		for i := lo; i <= hi; i++ {
			out = append(out, strconv.FormatUint(i, 10))
		}
	}
	if uint64(len(out)) != n {
		return nil, fmt.Errorf("dimIndex %q has %d entries for dim %d", s, len(out), n)
	}
	return out, nil
}

// svdNumber reads a scaledNonNegativeInteger: decimal, 0x hex or #binary,
// with an optional k, M, G or T multiplier on decimal numbers.
func svdNumber(s string) (uint64, error) {
	s = strings.TrimPrefix(strings.TrimSpace(s), "+")
	if s == "" {
		return 0, fmt.Errorf("missing number")
	}
	base, mult := 10, uint64(1)
	switch {
	case strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X"):
		s, base = s[2:], 16
	case strings.HasPrefix(s, "#"):
		s, base = s[1:], 2
	default:
		switch s[len(s)-1] {
		case 'k', 'K':
			mult = 1 << 10
		case 'm', 'M':
			mult = 1 << 20
		case 'g', 'G':
			mult = 1 << 30
		case 't', 'T':
			mult = 1 << 40
		}
		if mult != 1 {
			s = s[:len(s)-1]
		}
	}
	v, err := strconv.ParseUint(s, base, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return v * mult, nil
}

func svdAccess(s string) Access {
	switch s {
	case "read-only":
		return ReadOnly
	case "write-only", "writeOnce":
		return WriteOnly
	}
	return ReadWrite
}

// inherit returns the properties of the outermost level overridden by each
// inner one that gives them.
func inherit(levels ...svdProps) svdProps {
	var p svdProps
	for _, l := range levels {
		p.Size = or(l.Size, p.Size)
		p.Access = or(l.Access, p.Access)
	}
	return p
}

func or(a, b string) string {
	if strings.TrimSpace(a) != "" {
		return a
	}
	return b
}
