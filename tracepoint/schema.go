package tracepoint

import (
	"encoding/binary"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"unsafe"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// schema is a payload type's layout, worked out once by reflection when a
// tracepoint is declared, so that firing never reflects or allocates.
type schema struct {
	typ    reflect.Type
	fields []wire.Field // in declaration order; Offset relative to lo for fixed fields
	src    []uintptr    // each field's offset in the Go value
	lo, hi uintptr      // span of the Go value copied verbatim as the fixed part
	strs   []uintptr    // Go offsets of string fields, in order
}

// fieldType maps a Go kind to the wire type, or "" when not allowed.
func fieldType(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return wire.TypeBool
	case reflect.Int8:
		return wire.TypeInt8
	case reflect.Int16:
		return wire.TypeInt16
	case reflect.Int32:
		return wire.TypeInt32
	case reflect.Int64:
		return wire.TypeInt64
	case reflect.Int:
		return wire.TypeInt
	case reflect.Uint8:
		return wire.TypeUint8
	case reflect.Uint16:
		return wire.TypeUint16
	case reflect.Uint32:
		return wire.TypeUint32
	case reflect.Uint64:
		return wire.TypeUint64
	case reflect.Uint:
		return wire.TypeUint
	case reflect.Uintptr:
		return wire.TypeUintptr
	case reflect.Float32:
		return wire.TypeFloat32
	case reflect.Float64:
		return wire.TypeFloat64
	case reflect.String:
		return wire.TypeString
	}
	return ""
}

// newSchema checks that t is a valid payload type and describes it. A payload
// is a struct whose fields are booleans, integers, floats or strings (named
// types allowed), or one such value alone, which becomes a field "value".
// Fields tagged `tracepoint:"-"` may have any type: they reach in-process
// probes but are not described or collected. A tag `tracepoint:"name"`
// renames a field.
func newSchema(t reflect.Type) (*schema, error) {
	s := &schema{typ: t}
	add := func(name string, ft reflect.Type, off uintptr) error {
		wt := fieldType(ft.Kind())
		if wt == "" {
			return fmt.Errorf("field %s has type %v: only booleans, integers, floats and strings can be collected (tag it `tracepoint:\"-\"` to pass it to in-process probes only)", name, ft)
		}
		for _, f := range s.fields {
			if f.Name == name {
				return fmt.Errorf("two fields named %s", name)
			}
		}
		f := wire.Field{Name: name, Type: wt, Size: int(ft.Size())}
		if wt == wire.TypeString {
			f.Size = 0
			s.strs = append(s.strs, off)
		}
		s.fields = append(s.fields, f)
		s.src = append(s.src, off)
		return nil
	}
	if t.Kind() == reflect.Struct {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			name := sf.Name
			if tag, ok := sf.Tag.Lookup("tracepoint"); ok {
				if tag == "-" {
					continue
				}
				if !validName(tag) {
					return nil, fmt.Errorf("field %s: bad name %q in tag", sf.Name, tag)
				}
				name = tag
			}
			if sf.Name == "_" {
				continue
			}
			if err := add(name, sf.Type, sf.Offset); err != nil {
				return nil, err
			}
		}
	} else if err := add("value", t, 0); err != nil {
		return nil, err
	}
	// The fixed part is the smallest span of the Go value that covers every
	// fixed-size field: copying it is one memmove at fire time.
	lo, hi := uintptr(math.MaxUint32), uintptr(0)
	for i, f := range s.fields {
		if f.Size > 0 {
			lo = min(lo, s.src[i])
			hi = max(hi, s.src[i]+uintptr(f.Size))
		}
	}
	if hi == 0 {
		lo = 0
	}
	if hi-lo > math.MaxUint16 {
		return nil, fmt.Errorf("fixed-size fields span %d bytes, more than %d", hi-lo, math.MaxUint16)
	}
	s.lo, s.hi = lo, hi
	for i := range s.fields {
		if s.fields[i].Size > 0 {
			s.fields[i].Offset = int(s.src[i] - lo)
		}
	}
	return s, nil
}

// encodedLen returns the payload bytes of the value at p.
func (s *schema) encodedLen(p unsafe.Pointer) int {
	n := int(s.hi - s.lo)
	for _, off := range s.strs {
		n += 2 + min(len(*(*string)(unsafe.Add(p, off))), wire.MaxString)
	}
	return n
}

// encode writes the payload of the value at p into dst, which has exactly
// encodedLen(p) bytes.
func (s *schema) encode(dst []byte, p unsafe.Pointer) {
	n := copy(dst, unsafe.Slice((*byte)(unsafe.Add(p, s.lo)), s.hi-s.lo))
	for _, off := range s.strs {
		str := *(*string)(unsafe.Add(p, off))
		if len(str) > wire.MaxString {
			str = str[:wire.MaxString]
		}
		binary.LittleEndian.PutUint16(dst[n:], uint16(len(str)))
		n += 2
		n += copy(dst[n:], str)
	}
}

// appendValue appends field i of the value at p, rendered as DecodeFields
// renders it for the collector.
func (s *schema) appendValue(b []byte, i int, p unsafe.Pointer) []byte {
	q := unsafe.Add(p, s.src[i])
	switch s.fields[i].Type {
	case wire.TypeBool:
		return strconv.AppendBool(b, *(*bool)(q))
	case wire.TypeInt8, wire.TypeInt16, wire.TypeInt32, wire.TypeInt64, wire.TypeInt:
		return strconv.AppendInt(b, s.int(i, p), 10)
	case wire.TypeUintptr:
		return strconv.AppendUint(append(b, "0x"...), s.uint(i, p), 16)
	case wire.TypeUint8, wire.TypeUint16, wire.TypeUint32, wire.TypeUint64, wire.TypeUint:
		return strconv.AppendUint(b, s.uint(i, p), 10)
	case wire.TypeFloat32:
		return strconv.AppendFloat(b, s.float(i, p), 'g', -1, 32)
	case wire.TypeFloat64:
		return strconv.AppendFloat(b, s.float(i, p), 'g', -1, 64)
	case wire.TypeString:
		return strconv.AppendQuote(b, *(*string)(q))
	}
	return b
}

func (s *schema) int(i int, p unsafe.Pointer) int64 {
	q := unsafe.Add(p, s.src[i])
	switch s.fields[i].Type {
	case wire.TypeInt8:
		return int64(*(*int8)(q))
	case wire.TypeInt16:
		return int64(*(*int16)(q))
	case wire.TypeInt32:
		return int64(*(*int32)(q))
	case wire.TypeInt64, wire.TypeInt:
		return *(*int64)(q)
	case wire.TypeBool:
		if *(*bool)(q) {
			return 1
		}
		return 0
	}
	return int64(s.uint(i, p))
}

func (s *schema) uint(i int, p unsafe.Pointer) uint64 {
	q := unsafe.Add(p, s.src[i])
	switch s.fields[i].Type {
	case wire.TypeUint8:
		return uint64(*(*uint8)(q))
	case wire.TypeUint16:
		return uint64(*(*uint16)(q))
	case wire.TypeUint32:
		return uint64(*(*uint32)(q))
	case wire.TypeUint64, wire.TypeUint, wire.TypeUintptr:
		return *(*uint64)(q)
	case wire.TypeInt8, wire.TypeInt16, wire.TypeInt32, wire.TypeInt64, wire.TypeInt, wire.TypeBool:
		return uint64(s.int(i, p))
	}
	return 0
}

func (s *schema) float(i int, p unsafe.Pointer) float64 {
	q := unsafe.Add(p, s.src[i])
	switch s.fields[i].Type {
	case wire.TypeFloat32:
		return float64(*(*float32)(q))
	case wire.TypeFloat64:
		return *(*float64)(q)
	}
	return 0
}
