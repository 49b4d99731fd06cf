// Command gofix is the Go fixture of the watch tests: it stores to and loads
// from package globals of sizes 1, 2, 4 and 8, on the main goroutine and on
// a goroutine locked to a thread started after tracing began, and logs each
// access to $WT_LOG as "tid R|W width addr value".
package main

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

var (
	g8  uint8
	g16 uint16
	g32 uint32
	g64 uint64
)

var (
	logMu sync.Mutex
	logf  *os.File
)

func logAcc(dir byte, width int, addr unsafe.Pointer, v uint64) {
	logMu.Lock()
	fmt.Fprintf(logf, "%d %c %d %#x %#x\n", syscall.Gettid(), dir, width, uintptr(addr), v)
	logMu.Unlock()
}

// The accessors are not inlined so each access is one plain MOV of the
// variable's width.

//go:noinline
func st8(v uint8) { g8 = v }

//go:noinline
func st16(v uint16) { g16 = v }

//go:noinline
func st32(v uint32) { g32 = v }

//go:noinline
func st64(v uint64) { g64 = v }

//go:noinline
func ld8() uint8 { return g8 }

//go:noinline
func ld16() uint16 { return g16 }

//go:noinline
func ld32() uint32 { return g32 }

//go:noinline
func ld64() uint64 { return g64 }

func seq(base uint64) {
	st8(uint8(base + 0x11))
	logAcc('W', 1, unsafe.Pointer(&g8), uint64(uint8(base+0x11)))
	st16(uint16(base + 0x2222))
	logAcc('W', 2, unsafe.Pointer(&g16), uint64(uint16(base+0x2222)))
	st32(uint32(base + 0x33333333))
	logAcc('W', 4, unsafe.Pointer(&g32), uint64(uint32(base+0x33333333)))
	st64(base + 0x4444444444444444)
	logAcc('W', 8, unsafe.Pointer(&g64), base+0x4444444444444444)
	v8 := ld8()
	logAcc('R', 1, unsafe.Pointer(&g8), uint64(v8))
	v16 := ld16()
	logAcc('R', 2, unsafe.Pointer(&g16), uint64(v16))
	v32 := ld32()
	logAcc('R', 4, unsafe.Pointer(&g32), uint64(v32))
	v64 := ld64()
	logAcc('R', 8, unsafe.Pointer(&g64), v64)
}

func main() {
	f, err := os.Create(os.Getenv("WT_LOG"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	logf = f
	runtime.LockOSThread()
	seq(0)
	done := make(chan bool)
	go func() {
		// Locked and never unlocked: the thread exits with the goroutine.
		runtime.LockOSThread()
		seq(0x1000)
		done <- true
	}()
	<-done
	seq(0x2000)
	f.Close()
}
