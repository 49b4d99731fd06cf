package trace

import (
	"bytes"
	"io"
	"reflect"
	"strings"
	"testing"
)

// FuzzParseLine: no line makes ParseLine panic; it returns a record
// exactly when it returns no error; and a record it returns is written
// back as a line that reads back as the same record.
func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"MAP 12191.619117 1 0x0 0x7f23f96c7000 0x1000 0x7f23f95de9b1 17798",
		"R 4 12191.619152 1 0x0 0x4d4d494f 0x55e19cbdc1cc 17798",
		"WV 16 1.000001 2 0x40 0xafaeadacabaaa9a8a7a6a5a4a3a2a1a0 0x1 3",
		"MARK 1.000000 hello  world",
		"TP 5.000001 42 demo:doorbell queue=1 tail=\"a b\"",
		"UNKNOWN 1.000002 1 0x8 48,0f,bc 0x401000 7",
		"CODE 1.000000 7 0x400000 0x401000 0x0 - /bin/true",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		rec, ok, err := ParseLine(line)
		if err != nil {
			if ok || !reflect.DeepEqual(rec, Record{}) {
				t.Fatalf("ParseLine(%q) = %+v, %v with error %v", line, rec, ok, err)
			}
			return
		}
		if !ok {
			return
		}
		text := strings.TrimSuffix(string(AppendText(nil, &rec)), "\n")
		back, ok, err := ParseLine(text)
		if err != nil || !ok {
			t.Fatalf("ParseLine(%q) = %+v, written as %q, which reads back as %v, %v", line, rec, text, ok, err)
		}
		if again := strings.TrimSuffix(string(AppendText(nil, &back)), "\n"); again != text {
			t.Fatalf("%q reads back as a record written %q", text, again)
		}
	})
}

// FuzzReader: no input makes the streaming reader panic or loop; every
// record it returns comes with no error, and every error with a zero
// record; and it reads what ParseLine reads, line by line.
func FuzzReader(f *testing.F) {
	f.Add([]byte("VERSION 20070824\nMAP 1.000000 1 0x0 0x1000 0x1000 0x0 1\nR 4 1.000001 1 0x0 0x1 0x2 1\n"))
	f.Add([]byte("# tracer: mmiotrace\nLSPCI 0:0.0 8086:1234\n\r\nW 2 1.000000 1 0x2 0xffff 0x0 0\r\n"))
	f.Add([]byte("R 4 1.00000 1 0x0 0x1 0x2 1\nMARK 2.000000 x"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for i := 0; i <= bytes.Count(data, []byte("\n"))+1; i++ {
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !reflect.DeepEqual(rec, Record{}) {
					t.Fatalf("Next: %+v with error %v", rec, err)
				}
				continue
			}
			if _, ok, err := ParseLine(strings.TrimSuffix(string(AppendText(nil, &rec)), "\n")); !ok || err != nil {
				t.Fatalf("record %+v does not read back: %v, %v", rec, ok, err)
			}
		}
		t.Fatalf("the reader did not reach the end of %d lines", bytes.Count(data, []byte("\n"))+1)
	})
}
