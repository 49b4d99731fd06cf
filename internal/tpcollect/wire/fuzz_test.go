package wire

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// The fuzz targets cover everything one side of the protocol reads from
// the other: control frames (the program reads requests from any process
// of its user; the collector, often root, reads replies from the program),
// tracepoint descriptions and record payloads (written by the program), and
// the ring itself (fuzz_linux_test.go). The property is the same for each:
// no panic, whatever the input, and a result that is nil exactly when there
// is an error. Seeds are in testdata/fuzz, so `go test` runs them.

func frameOf(body string) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func FuzzReadFrame(f *testing.F) {
	f.Add(frameOf(`{"op":"list"}`))
	f.Add(frameOf(`{"op":"enable","patterns":["a:*","b:c"],"ring_size":65536,"discard":true}`))
	f.Add(frameOf(`{"op":"stop","unsynced":true}`))
	f.Add(frameOf(`{"op":"list","tracepoints":[{"id":1,"provider":"p","name":"e","enabled":true,"fixed_size":8,"fields":[{"name":"v","type":"uint64","offset":0,"size":8},{"name":"s","type":"string"}]}]}`))
	f.Add(frameOf(`{"op":"describe","id":4294967295}`))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, '{'})
	f.Add([]byte{3, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ReadFrame(bytes.NewReader(data), MaxRequest)
		if (m == nil) != (err != nil) {
			t.Fatalf("ReadFrame = %v, %v", m, err)
		}
		if m == nil {
			return
		}
		// What was accepted encodes, and reads back to a fixed point.
		b, err := AppendFrame(nil, m)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", m, err)
		}
		m2, err := ReadFrame(bytes.NewReader(b), MaxMessage)
		if err != nil {
			t.Fatalf("read back %q: %v", b, err)
		}
		b2, err := AppendFrame(nil, m2)
		if err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("not a fixed point:\n%q\n%q (%v)", b, b2, err)
		}
	})
}

func FuzzDescAndPayload(f *testing.F) {
	full := `{"id":2,"provider":"demo","name":"doorbell","fixed_size":16,"fields":[` +
		`{"name":"queue","type":"uint16","offset":0,"size":2},{"name":"tail","type":"uint32","offset":4,"size":4},` +
		`{"name":"reg","type":"uintptr","offset":8,"size":8},{"name":"dev","type":"string"},{"name":"note","type":"string"}]}`
	payload := append(make([]byte, 16), 3, 0, 'a', 'b', 'c', 0, 0)
	f.Add([]byte(full), payload)
	f.Add([]byte(`{"id":1,"provider":"p","name":"e","fixed_size":1,"fields":[{"name":"b","type":"bool","offset":0,"size":1}]}`), []byte{1})
	f.Add([]byte(`{"id":1,"provider":"p","name":"e","fixed_size":4,"fields":[{"name":"f","type":"float32","offset":0,"size":4}]}`), []byte{0, 0, 0xc0, 0x7f})
	f.Add([]byte(`{"id":1,"provider":"p","name":"e","fixed_size":8,"fields":[{"name":"x","type":"int64","offset":-8,"size":8}]}`), make([]byte, 8))
	f.Add([]byte(`{"id":1,"provider":"p\n","name":"e"}`), []byte{})
	f.Add([]byte(`{"id":1,"provider":"p","name":"e","fixed_size":0,"fields":[{"name":"s","type":"string"}]}`), []byte{0xff, 0xff, 'x'})
	f.Fuzz(func(t *testing.T, desc, payload []byte) {
		d, err := ParseDesc(desc)
		if (d == nil) != (err != nil) {
			t.Fatalf("ParseDesc = %v, %v", d, err)
		}
		if d == nil {
			return
		}
		calls := 0
		err = DecodeFields(d, payload, func(f *Field, v string) {
			if f != &d.Fields[calls] {
				t.Fatalf("field %d out of order", calls)
			}
			calls++
		})
		if err == nil && calls != len(d.Fields) {
			t.Fatalf("DecodeFields succeeded with %d of %d fields", calls, len(d.Fields))
		}
		b, ends, err2 := AppendValues(d, payload, nil, nil)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("DecodeFields: %v; AppendValues: %v", err, err2)
		}
		if err2 == nil {
			if len(ends) != len(d.Fields) {
				t.Fatalf("%d ends for %d fields", len(ends), len(d.Fields))
			}
			prev := 0
			for _, e := range ends {
				if e < prev || e > len(b) {
					t.Fatalf("ends %v for %d bytes", ends, len(b))
				}
				prev = e
			}
		}
	})
}

func FuzzParseRecord(f *testing.F) {
	rec := make([]byte, 32)
	PutHeader(rec, 7, 123, 45, 5)
	binary.LittleEndian.PutUint32(rec, 32)
	copy(rec[24:], "hello")
	f.Add(rec)
	f.Add(rec[:23])
	f.Add(append(rec[:20:20], 0xff, 0xff, 0xff, 0xff))
	f.Fuzz(func(t *testing.T, rec []byte) {
		h, p, err := ParseRecord(rec)
		if (p == nil) != (err != nil) {
			t.Fatalf("ParseRecord = %q, %v", p, err)
		}
		if p != nil && len(p) != int(h.PayLen) {
			t.Fatalf("payload of %d bytes, header says %d", len(p), h.PayLen)
		}
	})
}
