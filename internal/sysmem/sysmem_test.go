package sysmem

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeMem is memory at base.
type fakeMem struct {
	base uint64
	b    []byte
}

func (m *fakeMem) ReadAt(p []byte, addr uint64) error {
	if addr < m.base || addr+uint64(len(p)) > m.base+uint64(len(m.b)) {
		return errors.New("fault")
	}
	copy(p, m.b[addr-m.base:])
	return nil
}

func (m *fakeMem) put64(addr, v uint64) { binary.LittleEndian.PutUint64(m.b[addr-m.base:], v) }
func (m *fakeMem) put32(addr uint64, v uint32) {
	binary.LittleEndian.PutUint32(m.b[addr-m.base:], v)
}

const base = 0x10000

func newMem() *fakeMem { return &fakeMem{base: base, b: make([]byte, 0x10000)} }

type span struct {
	addr, n uint64
	dir     Dir
	parent  int
	arg     int
	off     uint64
}

func spans(c Call) []span {
	var out []span
	for _, p := range c.Pieces {
		out = append(out, span{p.Addr, p.Len, p.Dir, p.Parent, p.Arg, p.Off})
	}
	return out
}

func TestDirect(t *testing.T) {
	m := newMem()
	copy(m.b[0x100:], "/tmp/x\x00")
	for _, c := range []struct {
		nr    uint64
		args  [6]uint64
		class Class
		want  []span
	}{
		{unix.SYS_READ, [6]uint64{3, 0x20000, 100}, Bounce, []span{{0x20000, 100, Write, -1, 1, 0}}},
		{unix.SYS_WRITE, [6]uint64{3, 0x20000, 100}, Bounce, []span{{0x20000, 100, Read, -1, 1, 0}}},
		{unix.SYS_PREAD64, [6]uint64{3, 0x20000, 0, 5}, Bounce, nil}, // an empty read reaches nothing
		{unix.SYS_OPENAT, [6]uint64{unix.AT_FDCWD & 0xffffffff, base + 0x100}, Bounce, []span{{base + 0x100, 7, Read, -1, 1, 0}}},
		{unix.SYS_NEWFSTATAT, [6]uint64{0, base + 0x100, 0x30000}, Bounce, []span{{base + 0x100, 7, Read, -1, 1, 0}, {0x30000, 144, Write, -1, 2, 0}}},
		{unix.SYS_GETPID, [6]uint64{}, None, nil},
		{unix.SYS_IOCTL, [6]uint64{3, unix.TCGETS, 0x20000}, Bounce, []span{{0x20000, 36, Write, -1, 2, 0}}},
		// _IOWR('x', 1, 24 bytes)
		{unix.SYS_IOCTL, [6]uint64{3, 3<<30 | 24<<16 | 'x'<<8 | 1, 0x20000}, Bounce, []span{{0x20000, 24, Read | Write, -1, 2, 0}}},
		{unix.SYS_IOCTL, [6]uint64{3, 0x7801, 0x20000}, Unknown, []span{{0x20000, UnknownLen, Read | Write, -1, 2, 0}}},
		{unix.SYS_FUTEX, [6]uint64{0x20000, futexWait | futexPrivate, 1}, FutexWait, []span{{0x20000, 4, Read, -1, 0, 0}}},
		{unix.SYS_FUTEX, [6]uint64{0x20000, futexWake | futexPrivate, 1}, None, nil},
		{unix.SYS_FUTEX, [6]uint64{0x20000, futexWake, 1}, Stop, []span{{0x20000, 4, 0, -1, 0, 0}}},
		{1000, [6]uint64{0x20000, 0, 7}, Unknown, []span{{0x20000, UnknownLen, Read | Write, -1, 0, 0}, {7, UnknownLen, Read | Write, -1, 2, 0}}},
	} {
		got := Decode(c.nr, c.args, m)
		if got.Class != c.class || !reflect.DeepEqual(spans(got), c.want) {
			t.Errorf("%s %x: class %v pieces %+v, want %v %+v", got.Name, c.args[:3], got.Class, spans(got), c.class, c.want)
		}
	}
}

// TestIndirect decodes readv's iovecs and recvmsg's header, and computes
// what the kernel wrote from the return value and the header after the
// call.
func TestIndirect(t *testing.T) {
	m := newMem()
	iov := uint64(base + 0x200)
	m.put64(iov, 0x20000)
	m.put64(iov+8, 10)
	m.put64(iov+16, 0x30000)
	m.put64(iov+24, 20)
	c := Decode(unix.SYS_READV, [6]uint64{3, iov, 2}, m)
	want := []span{{iov, 32, Read, -1, 1, 0}, {0x20000, 10, Write, 0, 0, 0}, {0x30000, 20, Write, 0, 0, 16}}
	if !reflect.DeepEqual(spans(c), want) {
		t.Fatalf("readv: %+v, want %+v", spans(c), want)
	}
	for ret, w := range map[int64][3]uint64{25: {0, 10, 15}, 5: {0, 5, 0}, -14: {0, 0, 0}} {
		for i := range c.Pieces {
			if n := c.Written(i, ret, nil); n != w[i] {
				t.Errorf("readv returning %d: piece %d written %d, want %d", ret, i, n, w[i])
			}
		}
	}

	h := uint64(base + 0x300)
	m.put64(h+msgName, 0x40000)
	m.put32(h+msgNamelen, 16)
	m.put64(h+msgIov, iov)
	m.put64(h+msgIovlen, 1)
	m.put64(h+msgControl, 0x50000)
	m.put64(h+msgControllen, 64)
	c = Decode(unix.SYS_RECVMSG, [6]uint64{3, h, 0}, m)
	want = []span{{h, 56, Read | Write, -1, 1, 0}, {0x40000, 16, Write, 0, 0, msgName}, {iov, 16, Read, 0, 0, msgIov},
		{0x20000, 10, Write, 2, 0, 0}, {0x50000, 64, Write, 0, 0, msgControl}}
	if !reflect.DeepEqual(spans(c), want) {
		t.Fatalf("recvmsg: %+v, want %+v", spans(c), want)
	}
	// After the call the header says 8 bytes of name, 24 of control.
	field := func(piece int, off uint64, size int) (uint64, bool) {
		if piece != 0 {
			return 0, false
		}
		return map[uint64]uint64{msgNamelen: 8, msgControllen: 24}[off], true
	}
	for i, w := range []uint64{0, 8, 0, 7, 24} {
		if n := c.Written(i, 7, field); n != w {
			t.Errorf("recvmsg: piece %d written %d, want %d", i, n, w)
		}
	}
	if f := c.Writes(0, 7, field); len(f) != 3 {
		t.Errorf("recvmsg: header fields written %v", f)
	}

	// getsockopt: the value's length is *optlen, in and out.
	m.put32(base+0x400, 12)
	c = Decode(unix.SYS_GETSOCKOPT, [6]uint64{3, 1, 2, 0x20000, base + 0x400}, m)
	want = []span{{base + 0x400, 4, Read | Write, -1, 4, 0}, {0x20000, 12, Write, -1, 3, 0}}
	if !reflect.DeepEqual(spans(c), want) {
		t.Fatalf("getsockopt: %+v, want %+v", spans(c), want)
	}
}

// randMem is memory holding pseudo-random words everywhere.
type randMem struct{ seed uint64 }

func (m randMem) ReadAt(p []byte, addr uint64) error {
	for i := range p {
		x := (addr+uint64(i))*0x9e3779b97f4a7c15 ^ m.seed
		x ^= x >> 29
		p[i] = byte(x)
	}
	// Keep lengths and counts in memory moderate now and then.
	if len(p) >= 8 && addr%3 == 0 {
		p[2], p[3], p[4], p[5], p[6], p[7] = 0, 0, 0, 0, 0, 0
	}
	return nil
}

// TestReachCoversDecode: what a filter checks (Reaches) covers every piece
// Decode finds for any arguments: a direct piece lies within the reach of
// its argument, and a call with pieces reached through memory is one the
// filter always stops.
func TestReachCoversDecode(t *testing.T) {
	for nr, e := range table {
		r, all, known := Reaches(nr)
		if !known {
			t.Fatalf("%s: not known", e.name)
		}
		if e.class != None && e.class != Restart {
			if _, ok := reachSpecs[nr]; !ok {
				t.Errorf("%s: no reach spec", e.name)
			}
			if _, _, err := parseReach(reachSpecs[nr]); err != nil {
				t.Errorf("%s: %v", e.name, err)
			}
		}
		for i := 0; i < 40; i++ {
			var args [6]uint64
			for j := range args {
				x := uint64(i*7+j+1) * 0x2545f4914f6cdd1d
				switch (i + j) % 4 {
				case 0:
					args[j] = x % 64
				case 1:
					args[j] = 0x7f0000000000 + x%(1<<32)
				case 2:
					args[j] = x
				}
			}
			c := Decode(nr, args, randMem{uint64(i)})
			for _, p := range c.Pieces {
				if p.Parent >= 0 {
					if !all {
						t.Fatalf("%s%x: piece %+v through memory, but the filter does not always stop the call", e.name, args, p)
					}
					continue
				}
				ok := all
				for _, rc := range r {
					if rc.Ptr != p.Arg || p.Addr != args[p.Arg] {
						continue
					}
					bound := rc.Add
					if rc.LenArg >= 0 {
						hi, lo := bits128(args[rc.LenArg], rc.Scale)
						if hi != 0 || lo+rc.Add < lo {
							ok = true
							break
						}
						bound = lo + rc.Add
					}
					if p.Len <= bound {
						ok = true
					}
				}
				if !ok {
					t.Fatalf("%s%x: piece %+v not within the reach %+v", e.name, args, p, r)
				}
			}
		}
	}
}

func bits128(a, b uint64) (hi, lo uint64) {
	return mul64(a, b)
}

func mul64(a, b uint64) (hi, lo uint64) {
	lo = a * b
	if a != 0 && lo/a != b {
		hi = 1
	}
	return hi, lo
}
