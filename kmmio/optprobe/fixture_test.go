package optprobe

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// This file drives testdata/exec.c, a stand-in for a traced program with a
// traced object, its aliases, a ring and an identity block at fixed
// addresses, which runs code the test writes into it.

// state mirrors struct state in exec.c.
type state struct {
	GPR    [16]uint64
	RFlags uint64
	K      [8]uint64
	Z      [32][64]byte
}

// hdr mirrors struct hdr in exec.c.
type hdr struct {
	Code, CodeSize, Traced, TracedSize, Untraced, UntracedSize    uint64
	StackLo, StackHi, AliasNear, AliasFar, Ring, Ident, TID, Exit uint64
}

// fixture is a running exec.c.
type fixture struct {
	hdr
	cmd    *exec.Cmd
	w      *bufio.Writer
	r      *bufio.Reader
	traced []byte // the tracer's own mapping of the traced object
	ring   *Ring
	space  *Space
	mapped []Interval
	views  map[uint64][]byte
}

var (
	fixtureOnce sync.Once
	fixtureProc *fixture
	fixtureErr  error
	fixtureMu   sync.Mutex
)

// startFixture starts (once per test binary) the fixture.
func startFixture(t testing.TB) *fixture {
	t.Helper()
	bin := testenv.BuildC(t, "testdata/exec.c")
	fixtureOnce.Do(func() { fixtureProc, fixtureErr = newFixture(bin) })
	if fixtureErr != nil {
		t.Fatalf("start fixture: %v", fixtureErr)
	}
	return fixtureProc
}

func newFixture(bin string) (*fixture, error) {
	dir, err := os.MkdirTemp("", "optprobe-fixture")
	if err != nil {
		return nil, err
	}
	tpath, rpath := filepath.Join(dir, "traced"), filepath.Join(dir, "ring")
	f := &fixture{views: map[uint64][]byte{}}
	for _, x := range []struct {
		path string
		size int
		dst  *[]byte
	}{{tpath, 0x2000, &f.traced}, {rpath, RingSize, nil}} {
		fd, err := unix.Open(x.path, unix.O_RDWR|unix.O_CREAT, 0o600)
		if err != nil {
			return nil, err
		}
		if err := unix.Ftruncate(fd, int64(x.size)); err != nil {
			return nil, err
		}
		m, err := unix.Mmap(fd, 0, x.size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		if x.dst != nil {
			*x.dst = m
		} else if f.ring, err = NewRing(m); err != nil {
			return nil, err
		}
	}
	f.cmd = exec.Command(bin, tpath, rpath)
	f.cmd.Stderr = os.Stderr
	stdin, err := f.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := f.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := f.cmd.Start(); err != nil {
		return nil, err
	}
	f.w, f.r = bufio.NewWriterSize(stdin, 1<<16), bufio.NewReaderSize(stdout, 1<<16)
	if err := binary.Read(f.r, binary.LittleEndian, &f.hdr); err != nil {
		return nil, fmt.Errorf("fixture header: %w", err)
	}
	os.RemoveAll(dir) // the files stay mapped
	f.space = NewSpace(f)
	return f, nil
}

func (f *fixture) send(parts ...any) error {
	for _, p := range parts {
		if err := binary.Write(f.w, binary.LittleEndian, p); err != nil {
			return err
		}
	}
	return f.w.Flush()
}

func (f *fixture) status() (uint64, error) {
	var v uint64
	err := binary.Read(f.r, binary.LittleEndian, &v)
	return v, err
}

// MapCode implements Mapper: the fixture maps RWX memory, and the test
// keeps a view it copies into the fixture after writing a detour.
func (f *fixture) MapCode(addr uint64, size int) ([]byte, error) {
	if err := f.send(byte('M'), addr, uint64(size)); err != nil {
		return nil, err
	}
	if st, err := f.status(); err != nil || st != 0 {
		return nil, fmt.Errorf("fixture map %#x+%#x: status %d %v", addr, size, st, err)
	}
	f.mapped = append(f.mapped, Interval{addr, addr + uint64(size) - 1})
	v := make([]byte, size)
	f.views[addr] = v
	return v, nil
}

// Gaps implements Mapper: free memory around the fixture's code.
func (f *fixture) Gaps() []Interval {
	var out []Interval
	for _, g := range []Interval{{0x100000, f.Code - 1}, {f.Code + f.CodeSize, f.StackLo - 1}} {
		out = append(out, g)
	}
	return out
}

// write copies b to addr in the fixture.
func (f *fixture) write(addr uint64, b []byte) error {
	if err := f.send(byte('W'), addr, uint32(len(b)), b); err != nil {
		return err
	}
	_, err := f.status()
	return err
}

// run jumps to entry with st and the untraced buffer u (both updated) and
// the traced object accessible (prot 3) or armed (0); it returns the
// signal that stopped the code, or 0, and the RIP the signal came at.
func (f *fixture) run(entry uint64, prot uint32, st *state, u []byte) (sig int, rip uint64, err error) {
	if err := f.send(byte('R'), entry, prot, st, u); err != nil {
		return 0, 0, err
	}
	s, err := f.status()
	if err != nil {
		return 0, 0, err
	}
	if rip, err = f.status(); err != nil {
		return 0, 0, err
	}
	if err := binary.Read(f.r, binary.LittleEndian, st); err != nil {
		return 0, 0, err
	}
	if _, err := io.ReadFull(f.r, u); err != nil {
		return 0, 0, err
	}
	return int(s), rip, nil
}
