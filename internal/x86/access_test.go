package x86

import (
	"bytes"
	"encoding/binary"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// guardedPage maps two pages and makes the second inaccessible, so that an
// access that strays past the end of the first faults.
func guardedPage(t *testing.T) []byte {
	t.Helper()
	m, err := unix.Mmap(-1, 0, 2*unix.Getpagesize(), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(m) })
	ps := unix.Getpagesize()
	if err := unix.Mprotect(m[ps:], unix.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	return m[:ps]
}

// TestLoadStoreAt checks every width at the very end of a page followed by
// an inaccessible one (so no access is wider than asked), and at unaligned
// addresses.
func TestLoadStoreAt(t *testing.T) {
	page := guardedPage(t)
	for _, n := range []int{1, 2, 4, 8, 16, 32, 64} {
		for _, off := range []int{len(page) - n, len(page) - n - 1, 3} {
			src := make([]byte, n)
			for i := range src {
				src[i] = byte(n*7 + i + off)
			}
			clear(page)
			p := unsafe.Pointer(&page[off])
			StoreAt(p, src)
			if !bytes.Equal(page[off:off+n], src) {
				t.Errorf("StoreAt width %d at %d: memory % x, want % x", n, off, page[off:off+n], src)
			}
			if off > 0 && page[off-1] != 0 || off+n < len(page) && page[off+n] != 0 {
				t.Errorf("StoreAt width %d at %d wrote outside its bytes", n, off)
			}
			got := make([]byte, n)
			LoadAt(p, got)
			if !bytes.Equal(got, src) {
				t.Errorf("LoadAt width %d at %d: % x, want % x", n, off, got, src)
			}
		}
	}
}

func TestCompareAndSwapAt(t *testing.T) {
	page := guardedPage(t)
	for _, n := range []int{1, 2, 4, 8} {
		off := len(page) - n
		p := unsafe.Pointer(&page[off])
		cur := make([]byte, n)
		for i := range cur {
			cur[i] = byte(0x10 + i)
		}
		copy(page[off:], cur)
		wrong, next := make([]byte, n), make([]byte, n)
		for i := range next {
			next[i] = byte(0xE0 + i)
			wrong[i] = cur[i]
		}
		wrong[n-1] ^= 0x80 // differs in the top byte only
		if CompareAndSwapAt(p, wrong, next) || !bytes.Equal(page[off:], cur) {
			t.Errorf("width %d: swapped with a wrong old value", n)
		}
		if !CompareAndSwapAt(p, cur, next) || !bytes.Equal(page[off:], next) {
			t.Errorf("width %d: did not swap with the right old value", n)
		}
	}
}

// TestCompareAndSwapAtConcurrent checks atomicity: two goroutines
// increment one counter with CAS loops, and no increment is lost.
func TestCompareAndSwapAtConcurrent(t *testing.T) {
	page := guardedPage(t)
	p := unsafe.Pointer(&page[8])
	const per = 20000
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			old, new := make([]byte, 4), make([]byte, 4)
			for i := 0; i < per; i++ {
				for {
					LoadAt(p, old)
					binary.LittleEndian.PutUint32(new, binary.LittleEndian.Uint32(old)+1)
					if CompareAndSwapAt(p, old, new) {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	if got := binary.LittleEndian.Uint32(page[8:]); got != 2*per {
		t.Errorf("counter %d, want %d", got, 2*per)
	}
}

// aliasMem is a Memory over memory mapped into the tracer's own address
// space, as the tracer uses for alias mappings: page is mapped at base.
type aliasMem struct {
	page []byte
	base uint64
}

func (m aliasMem) ptr(addr uint64) unsafe.Pointer { return unsafe.Pointer(&m.page[addr-m.base]) }

func (m aliasMem) Load(addr uint64, b []byte) error {
	LoadAt(m.ptr(addr), b)
	return nil
}
func (m aliasMem) Store(addr uint64, b []byte) error {
	StoreAt(m.ptr(addr), b)
	return nil
}
func (m aliasMem) CompareAndSwap(addr uint64, old, new []byte) (bool, error) {
	return CompareAndSwapAt(m.ptr(addr), old, new), nil
}

// TestEmulateOnAlias runs Emulate with LoadAt/StoreAt/CompareAndSwapAt
// as the Memory, the way the tracer does with an alias mapping.
func TestEmulateOnAlias(t *testing.T) {
	page := guardedPage(t)
	base := uint64(uintptr(unsafe.Pointer(&page[0])))
	binary.LittleEndian.PutUint32(page[0x40:], 41)
	r := Regs{Rdi: base + 0x40, Rax: 1}
	if err := Emulate(mustDecode(t, 0xF0, 0x0F, 0xC1, 0x07), &r, nil, aliasMem{page, base}); err != nil { // lock xadd [rdi], eax
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(page[0x40:]); got != 42 || r.Rax != 41 {
		t.Errorf("mem %d rax %d, want 42 and 41", got, r.Rax)
	}
	v := new(VecRegs)
	for i := range v.Z[3] {
		v.Z[3][i] = byte(i)
	}
	r.Rdi = base + uint64(len(page)-64)
	if err := Emulate(mustDecode(t, 0x62, 0xF1, 0xFE, 0x48, 0x7F, 0x1F), &r, v, aliasMem{page, base}); err != nil { // vmovdqu64 [rdi], zmm3
		t.Fatal(err)
	}
	if !bytes.Equal(page[len(page)-64:], v.Z[3][:]) {
		t.Errorf("vmovdqu64 store: % x", page[len(page)-64:])
	}
}
