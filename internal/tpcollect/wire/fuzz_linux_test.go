package wire

import (
	"encoding/binary"
	"testing"
)

// FuzzConsume gives the consumer a ring whose every byte the fuzzer chose,
// as a hostile program could: head and tail in the header, and the data
// area. Consume must return (an error for a ring that breaks the format)
// without a fault, and hand on only records that lie within the ring.
func FuzzConsume(f *testing.F) {
	rec := func(size uint32, id uint32, paylen uint32, payload string) []byte {
		b := make([]byte, size)
		binary.LittleEndian.PutUint32(b, size)
		binary.LittleEndian.PutUint32(b[4:], id)
		binary.LittleEndian.PutUint32(b[20:], paylen)
		copy(b[24:], payload)
		return b
	}
	two := append(rec(32, 1, 8, "12345678"), rec(40, 0, 13, `{"id":3,"pro`)...)
	f.Add(uint64(len(two)), uint64(0), two)
	f.Add(uint64(1<<40), uint64(0), rec(32, 1, 4096, ""))
	f.Add(uint64(64), uint64(4090), rec(32, 1, 0, ""))
	f.Add(uint64(0), uint64(0), rec(24, 1, 0, ""))
	f.Add(uint64(8192), uint64(4064), append(rec(32, 1, 8, ""), rec(4096, 2, 4000, "")...))
	f.Fuzz(func(t *testing.T, head, tail uint64, data []byte) {
		prod, f, err := CreateRing(4096)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		defer f.Close()
		prod.word(offHead).Store(head)
		prod.word(offTail).Store(tail)
		copy(prod.data[:prod.size], data)
		cons, err := OpenRing(int(f.Fd()), 4096)
		if err != nil {
			t.Fatal(err)
		}
		defer cons.Close()
		got := 0
		n, err := cons.Consume(func(rec []byte) error {
			got++
			if len(rec)%8 != 0 || len(rec) < RecordHeader || len(rec) > cons.Size() {
				t.Fatalf("record of %d bytes handed on", len(rec))
			}
			h, p, err := ParseRecord(rec)
			if err != nil {
				return err
			}
			if h.ID == MetaID {
				if _, err := ParseDesc(p); err != nil {
					return err
				}
			}
			return nil
		})
		if n != got {
			t.Fatalf("Consume counted %d records, handed on %d (err %v)", n, got, err)
		}
	})
}
