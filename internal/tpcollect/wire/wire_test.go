package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	for _, tc := range []struct {
		v            string
		patterns     []string
		expose, wait bool
	}{
		{"", nil, false, false},
		{"0", nil, false, false},
		{"1", nil, true, false},
		{" net:*, app:rx ,", []string{"net:*", "app:rx"}, true, false},
		{"wait:net:*", []string{"net:*"}, true, true},
		{"wait:1", nil, true, false}, // nothing recorded: nothing to wait for
	} {
		p, e, w := ParseEnvWait(tc.v)
		if !slices.Equal(p, tc.patterns) || e != tc.expose || w != tc.wait {
			t.Errorf("ParseEnvWait(%q) = %q, %v, %v; want %q, %v, %v", tc.v, p, e, w, tc.patterns, tc.expose, tc.wait)
		}
	}
	if v := EnvValueWait([]string{"a:*", "b:c"}); v != "wait:a:*,b:c" {
		t.Errorf("EnvValueWait = %q", v)
	}
	if v := EnvValue(nil); v != "1" {
		t.Errorf("EnvValue(nil) = %q", v)
	}
}

func TestRoundRingSize(t *testing.T) {
	for n, want := range map[int]int{-1: DefaultRingSize, 0: DefaultRingSize, 1: 4096, 4096: 4096, 4097: 8192,
		3 << 20: 4 << 20, MaxRingSize: MaxRingSize, MaxRingSize + 1: MaxRingSize, math.MaxInt32: MaxRingSize} {
		if got := RoundRingSize(n); got != want {
			t.Errorf("RoundRingSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func TestValidName(t *testing.T) {
	for _, s := range []string{"a", "net", "rx_ok", "v1.2-beta", strings.Repeat("x", 128)} {
		if !ValidName(s) {
			t.Errorf("ValidName(%q) = false", s)
		}
	}
	for _, s := range []string{"", "a b", "a:b", "a\nTP 1.0 -1 x:y", "é", "a=b", `a"`, strings.Repeat("x", 129)} {
		if ValidName(s) {
			t.Errorf("ValidName(%q) = true", s)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	m := &Message{Op: OpEnable, Patterns: []string{"a:*"}, RingSize: 8192, Discard: true,
		Tracepoints: []Desc{{ID: 3, Provider: "p", Name: "e", FixedSize: 8, Fields: []Field{{Name: "v", Type: TypeUint64, Size: 8}}}}}
	b, err := AppendFrame([]byte("x"), m)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 'x' || int(binary.LittleEndian.Uint32(b[1:])) != len(b)-5 {
		t.Fatalf("frame %q", b)
	}
	r := bytes.NewReader(append(b[1:], b[1:]...))
	for range 2 {
		got, err := ReadFrame(r, MaxMessage)
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("ReadFrame = %+v, %v; want %+v", got, err, m)
		}
	}
	if got, err := ReadFrame(r, MaxMessage); got != nil || err != io.EOF {
		t.Fatalf("at the end: %v, %v; want io.EOF", got, err)
	}
}

func TestReadFrameErrors(t *testing.T) {
	mk := func(n uint32, body string) []byte {
		return append(binary.LittleEndian.AppendUint32(nil, n), body...)
	}
	for name, tc := range map[string]struct {
		in   []byte
		want string
	}{
		"short header":    {[]byte{1, 0}, "unexpected EOF"},
		"short body":      {mk(10, `{"op":`), "unexpected EOF"},
		"too large":       {mk(MaxRequest+1, `{}`), "too large"},
		"not json":        {mk(3, `abc`), "decode"},
		"bad description": {mk(uint32(len(`{"tracepoints":[{"provider":"a b","name":"x"}]}`)), `{"tracepoints":[{"provider":"a b","name":"x"}]}`), "corrupt"},
	} {
		m, err := ReadFrame(bytes.NewReader(tc.in), MaxRequest)
		if m != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: ReadFrame = %+v, %v; want an error with %q", name, m, err, tc.want)
		}
	}
	_, err := ReadFrame(bytes.NewReader(mk(MaxRequest+1, "")), MaxRequest)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized frame: %v, want ErrFrameTooLarge", err)
	}
}

// slowReader returns its data in small pieces, as a stalling peer sends it.
type slowReader struct{ b []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// TestReadFrameAllocatesAsDataArrives announces the largest frame and sends
// a few bytes: the reader must not allocate what was only announced.
func TestReadFrameAllocatesAsDataArrives(t *testing.T) {
	in := append(binary.LittleEndian.AppendUint32(nil, MaxMessage), `{"op":"list"`...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := ReadFrame(&slowReader{in}, MaxMessage)
	runtime.ReadMemStats(&after)
	if m != nil || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame = %v, %v", m, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
		t.Fatalf("a frame announced as %d bytes, of which 12 came, allocated %d bytes", MaxMessage, grew)
	}
}

func TestDescValidate(t *testing.T) {
	good := Desc{ID: 1, Provider: "p", Name: "e", FixedSize: 12, Fields: []Field{
		{Name: "a", Type: TypeUint32, Offset: 0, Size: 4},
		{Name: "b", Type: TypeFloat64, Offset: 4, Size: 8},
		{Name: "s", Type: TypeString},
	}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(d *Desc){
		"provider name":  func(d *Desc) { d.Provider = "p\nTP" },
		"event name":     func(d *Desc) { d.Name = "" },
		"field name":     func(d *Desc) { d.Fields[0].Name = "a=1" },
		"unknown type":   func(d *Desc) { d.Fields[0].Type = "complex128" },
		"wrong size":     func(d *Desc) { d.Fields[0].Size = 8 },
		"past fixed":     func(d *Desc) { d.Fields[1].Offset = 5 },
		"negative":       func(d *Desc) { d.Fields[1].Offset = -1 },
		"huge offset":    func(d *Desc) { d.Fields[1].Offset = math.MaxInt },
		"fixed too big":  func(d *Desc) { d.FixedSize = 1 << 16 },
		"fixed negative": func(d *Desc) { d.FixedSize = -1 },
	} {
		d := good
		d.Fields = slices.Clone(good.Fields)
		mutate(&d)
		if err := d.Validate(); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: Validate = %v, want ErrCorrupt", name, err)
		}
	}
	if d, err := ParseDesc([]byte(`{"id":1,"provider":"p","name":"e","fixed_size":4,"fields":[{"name":"v","type":"int32","offset":0,"size":4}]}`)); err != nil || d.Fields[0].Type != TypeInt32 {
		t.Fatalf("ParseDesc = %+v, %v", d, err)
	}
	if d, err := ParseDesc([]byte(`{"id":1,"provider":"p q"}`)); d != nil || err == nil {
		t.Fatalf("ParseDesc of a bad name = %+v, %v", d, err)
	}
}

// TestDecodeEveryType decodes a payload with a field of each type, both as
// DecodeFields (strings quoted) and AppendValues (raw) render it.
func TestDecodeEveryType(t *testing.T) {
	le := binary.LittleEndian
	var fixed []byte
	var fields []Field
	add := func(name, typ string, b []byte) {
		fields = append(fields, Field{Name: name, Type: typ, Offset: len(fixed), Size: len(b)})
		fixed = append(fixed, b...)
	}
	add("bool", TypeBool, []byte{1})
	add("i8", TypeInt8, []byte{0xff})
	add("i16", TypeInt16, le.AppendUint16(nil, 0x8000))
	add("i32", TypeInt32, le.AppendUint32(nil, 0xfffffffe))
	add("i64", TypeInt64, le.AppendUint64(nil, 1<<63))
	add("int", TypeInt, le.AppendUint64(nil, 42))
	add("u8", TypeUint8, []byte{200})
	add("u16", TypeUint16, le.AppendUint16(nil, 65535))
	add("u32", TypeUint32, le.AppendUint32(nil, 1<<31))
	add("u64", TypeUint64, le.AppendUint64(nil, math.MaxUint64))
	add("uint", TypeUint, le.AppendUint64(nil, 7))
	add("ptr", TypeUintptr, le.AppendUint64(nil, 0xfebf1004))
	add("f32", TypeFloat32, le.AppendUint32(nil, math.Float32bits(0.25)))
	add("f64", TypeFloat64, le.AppendUint64(nil, math.Float64bits(math.Inf(-1))))
	fields = append(fields, Field{Name: "s", Type: TypeString}, Field{Name: "t", Type: TypeString})
	d := &Desc{ID: 1, Provider: "p", Name: "all", FixedSize: len(fixed), Fields: fields}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	payload := append(slices.Clone(fixed), 5, 0, 'a', ' ', '"', 'b', '\n', 0, 0)
	want := []string{"true", "-1", "-32768", "-2", "-9223372036854775808", "42", "200", "65535", "2147483648",
		"18446744073709551615", "7", "0xfebf1004", "0.25", "-Inf"}
	var quoted []string
	if err := DecodeFields(d, payload, func(f *Field, v string) { quoted = append(quoted, v) }); err != nil {
		t.Fatal(err)
	}
	if w := append(slices.Clone(want), `"a \"b\n"`, `""`); !slices.Equal(quoted, w) {
		t.Fatalf("DecodeFields\n got %q\nwant %q", quoted, w)
	}
	b, ends, err := AppendValues(d, payload, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw []string
	start := 0
	for _, e := range ends {
		raw = append(raw, string(b[start:e]))
		start = e
	}
	if w := append(slices.Clone(want), "a \"b\n", ""); !slices.Equal(raw, w) {
		t.Fatalf("AppendValues\n got %q\nwant %q", raw, w)
	}
	for _, cut := range []int{0, len(fixed) - 1, len(fixed), len(fixed) + 1, len(fixed) + 6, len(payload) - 1} {
		if err := DecodeFields(d, payload[:cut], func(*Field, string) {}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("payload cut to %d bytes: %v", cut, err)
		}
	}
}

func TestParseRecord(t *testing.T) {
	rec := make([]byte, RecordSize(5))
	PutHeader(rec, 7, -3, 99, 5)
	copy(rec[RecordHeader:], "hello")
	binary.LittleEndian.PutUint32(rec, uint32(len(rec)))
	h, p, err := ParseRecord(rec)
	if err != nil || string(p) != "hello" || h != (Header{Size: 32, ID: 7, Time: -3, TID: 99, PayLen: 5}) {
		t.Fatalf("ParseRecord = %+v, %q, %v", h, p, err)
	}
	binary.LittleEndian.PutUint32(rec[20:], 9)
	if _, p, err := ParseRecord(rec); p != nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("payload past the record: %q, %v", p, err)
	}
	if _, p, err := ParseRecord(rec[:RecordHeader-1]); p != nil || !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short record: %q, %v", p, err)
	}
	if RecordSize(0) != 24 || RecordSize(1) != 32 || RecordSize(8) != 32 || RecordSize(9) != 40 {
		t.Fatal("RecordSize does not round to 8")
	}
}
