package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Header is a record's header, decoded.
type Header struct {
	Size   uint32
	ID     uint32
	Time   int64
	TID    int32
	PayLen uint32
}

// PutHeader writes everything of a record's header except the size word,
// which Ring.Commit stores last.
func PutHeader(rec []byte, id uint32, time int64, tid int32, paylen uint32) {
	_ = rec[RecordHeader-1]
	binary.LittleEndian.PutUint32(rec[4:], id)
	binary.LittleEndian.PutUint64(rec[8:], uint64(time))
	binary.LittleEndian.PutUint32(rec[16:], uint32(tid))
	binary.LittleEndian.PutUint32(rec[20:], paylen)
}

// ParseRecord splits a committed record into its header and payload. It
// reads each header field once, so a producer changing the record meanwhile
// cannot make the payload reach beyond it. The payload is nil exactly when
// the error is not.
func ParseRecord(rec []byte) (Header, []byte, error) {
	if len(rec) < RecordHeader {
		return Header{}, nil, fmt.Errorf("%w: record of %d bytes", ErrCorrupt, len(rec))
	}
	h := Header{
		Size:   binary.LittleEndian.Uint32(rec),
		ID:     binary.LittleEndian.Uint32(rec[4:]),
		Time:   int64(binary.LittleEndian.Uint64(rec[8:])),
		TID:    int32(binary.LittleEndian.Uint32(rec[16:])),
		PayLen: binary.LittleEndian.Uint32(rec[20:]),
	}
	if uint64(h.PayLen) > uint64(len(rec)-RecordHeader) {
		return h, nil, fmt.Errorf("%w: payload of %d bytes in a %d-byte record", ErrCorrupt, h.PayLen, len(rec))
	}
	return h, rec[RecordHeader : RecordHeader+int(h.PayLen)], nil
}

// RecordSize returns the bytes a record with a payload of paylen bytes takes.
func RecordSize(paylen int) uint32 {
	return uint32(RecordHeader+paylen+7) &^ 7
}

// Validate checks that d describes a payload this package can decode, with
// names that are safe to print (ValidName). A collector validates every
// description the program sends before using it.
func (d *Desc) Validate() error {
	if !ValidName(d.Provider) || !ValidName(d.Name) {
		return fmt.Errorf("%w: tracepoint name %q:%q", ErrCorrupt, d.Provider, d.Name)
	}
	if d.FixedSize < 0 || d.FixedSize > math.MaxUint16 {
		return fmt.Errorf("%w: tracepoint %s:%s fixed size %d", ErrCorrupt, d.Provider, d.Name, d.FixedSize)
	}
	for _, f := range d.Fields {
		if !ValidName(f.Name) {
			return fmt.Errorf("%w: tracepoint %s:%s field name %q", ErrCorrupt, d.Provider, d.Name, f.Name)
		}
		sz := TypeSize(f.Type)
		switch {
		case sz < 0:
			return fmt.Errorf("%w: tracepoint %s:%s field %s has unknown type %q", ErrCorrupt, d.Provider, d.Name, f.Name, f.Type)
		case sz > 0 && (f.Size != sz || f.Offset < 0 || f.Offset > d.FixedSize-sz):
			return fmt.Errorf("%w: tracepoint %s:%s field %s out of bounds", ErrCorrupt, d.Provider, d.Name, f.Name)
		}
	}
	return nil
}

// ParseDesc decodes and validates a tracepoint description (the payload of
// a metadata record). b may be shared memory that the producer is still
// changing: it is copied first, since encoding/json assumes its input holds
// still.
func ParseDesc(b []byte) (*Desc, error) {
	d := new(Desc)
	if err := json.Unmarshal(bytes.Clone(b), d); err != nil {
		return nil, fmt.Errorf("%w: tracepoint description: %v", ErrCorrupt, err)
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return d, nil
}

// DecodeFields renders each field of payload, described by d, in field
// order: integers in decimal (uintptr in hex), floats in the shortest exact
// form, strings quoted (strconv.Quote). d must have passed Validate. A
// payload shorter than d says is an error.
func DecodeFields(d *Desc, payload []byte, fn func(f *Field, value string)) error {
	b, ends, err := appendValues(d, payload, nil, nil, true)
	if err != nil {
		return err
	}
	start := 0
	for i, end := range ends {
		fn(&d.Fields[i], string(b[start:end]))
		start = end
	}
	return nil
}

// AppendValues appends the value of each field of payload to b, rendered as
// DecodeFields renders it except that strings are left as the program fired
// them, unquoted, and appends where each value ends in b to ends. A
// collector that keeps the values turns b into one string and slices it:
// one allocation per event.
func AppendValues(d *Desc, payload, b []byte, ends []int) ([]byte, []int, error) {
	return appendValues(d, payload, b, ends, false)
}

func appendValues(d *Desc, payload, b []byte, ends []int, quote bool) ([]byte, []int, error) {
	if len(payload) < d.FixedSize {
		return b, ends, fmt.Errorf("%w: %s:%s payload of %d bytes, fixed part needs %d", ErrCorrupt, d.Provider, d.Name, len(payload), d.FixedSize)
	}
	fixed, strs := payload[:d.FixedSize], payload[d.FixedSize:]
	le := binary.LittleEndian
	for i := range d.Fields {
		f := &d.Fields[i]
		if f.Type == TypeString {
			if len(strs) < 2 {
				return b, ends, fmt.Errorf("%w: %s:%s string %s missing", ErrCorrupt, d.Provider, d.Name, f.Name)
			}
			// The length is read once: the payload may be shared memory
			// that the producer is changing.
			n := int(le.Uint16(strs))
			if len(strs) < 2+n {
				return b, ends, fmt.Errorf("%w: %s:%s string %s cut short", ErrCorrupt, d.Provider, d.Name, f.Name)
			}
			if quote {
				b = strconv.AppendQuote(b, string(strs[2:2+n]))
			} else {
				b = append(b, strs[2:2+n]...)
			}
			ends = append(ends, len(b))
			strs = strs[2+n:]
			continue
		}
		v := fixed[f.Offset : f.Offset+f.Size]
		switch f.Type {
		case TypeBool:
			b = strconv.AppendBool(b, v[0] != 0)
		case TypeInt8:
			b = strconv.AppendInt(b, int64(int8(v[0])), 10)
		case TypeInt16:
			b = strconv.AppendInt(b, int64(int16(le.Uint16(v))), 10)
		case TypeInt32:
			b = strconv.AppendInt(b, int64(int32(le.Uint32(v))), 10)
		case TypeInt64, TypeInt:
			b = strconv.AppendInt(b, int64(le.Uint64(v)), 10)
		case TypeUint8:
			b = strconv.AppendUint(b, uint64(v[0]), 10)
		case TypeUint16:
			b = strconv.AppendUint(b, uint64(le.Uint16(v)), 10)
		case TypeUint32:
			b = strconv.AppendUint(b, uint64(le.Uint32(v)), 10)
		case TypeUint64, TypeUint:
			b = strconv.AppendUint(b, le.Uint64(v), 10)
		case TypeUintptr:
			b = strconv.AppendUint(append(b, "0x"...), le.Uint64(v), 16)
		case TypeFloat32:
			b = strconv.AppendFloat(b, float64(math.Float32frombits(le.Uint32(v))), 'g', -1, 32)
		case TypeFloat64:
			b = strconv.AppendFloat(b, math.Float64frombits(le.Uint64(v)), 'g', -1, 64)
		default:
			return b, ends, fmt.Errorf("%w: %s:%s field %s has unknown type %q", ErrCorrupt, d.Provider, d.Name, f.Name, f.Type)
		}
		ends = append(ends, len(b))
	}
	return b, ends, nil
}
