// goasync: goroutines, each locked to its thread, make loads and stores
// through a shared file mapping in tight loops while another goroutine
// allocates (the garbage collector preempts the loops with signals, in the
// middle of patched code). Every access is logged per thread, as device.c
// does, for an exact comparison with the trace.
//
// Usage: goasync LOG SHM THREADS ROUNDS
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: goasync LOG SHM THREADS ROUNDS")
		os.Exit(2)
	}
	threads, _ := strconv.Atoi(os.Args[3])
	rounds, _ := strconv.Atoi(os.Args[4])
	f, err := os.OpenFile(os.Args[2], os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		fail(err)
	}
	if err := f.Truncate(4096); err != nil {
		fail(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		fail(err)
	}
	var stop atomic.Bool
	go func() { // garbage: GC cycles, and their preemption requests
		var keep [][]byte
		for !stop.Load() {
			keep = append(keep, make([]byte, 4096))
			if len(keep) > 1000 {
				keep = keep[:0]
			}
		}
	}()
	logs := make([][]byte, threads)
	var wg sync.WaitGroup
	for i := 0; i < threads; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			runtime.LockOSThread()
			tid := syscall.Gettid()
			p := (*uint64)(unsafe.Pointer(&mem[64*i]))
			var b []byte
			for k := 0; k < rounds; k++ {
				v := uint64(i)<<56 | uint64(k)
				store(p, v)
				b = line(b, tid, 'W', 64*i, v)
				r := atomic.LoadUint64(p)
				b = line(b, tid, 'R', 64*i, r)
				if r != v {
					fail(fmt.Errorf("thread %d round %d: loaded %#x, stored %#x", i, k, r, v))
				}
			}
			logs[i] = b
		}(i)
	}
	wg.Wait()
	stop.Store(true)
	out, err := os.Create(os.Args[1])
	if err != nil {
		fail(err)
	}
	for _, b := range logs {
		out.Write(b)
	}
	out.Close()
}

// store is a plain 8-byte store (atomic.StoreUint64 is an xchg, which
// also loads).
//
//go:noinline
func store(p *uint64, v uint64) { *p = v }

// line appends "TID DIR 8 OFFSET BYTES" with the value's bytes in memory
// order.
func line(b []byte, tid int, dir byte, off int, v uint64) []byte {
	b = strconv.AppendInt(b, int64(tid), 10)
	b = append(b, ' ', dir, ' ', '8', ' ')
	b = strconv.AppendInt(b, int64(off), 16)
	b = append(b, ' ')
	for i := 0; i < 8; i++ {
		b = append(b, "0123456789abcdef"[v>>(8*i+4)&15], "0123456789abcdef"[v>>(8*i)&15])
	}
	return append(b, '\n')
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "FAIL", err)
	os.Exit(1)
}
