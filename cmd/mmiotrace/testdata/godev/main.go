// Command godev is a Go program driving a shared-memory "device" from
// eight goroutines: each stores its own sequence into its own register with
// atomic stores (XCHG), and all of them increment a shared counter with
// atomic adds (LOCK XADD). The test compares the trace with these
// sequences.
package main

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

const (
	goroutines = 8
	perG       = 300
	counterOff = 1024
)

func main() {
	f, err := os.OpenFile(os.Args[1], os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		panic(err)
	}
	defer os.Remove(os.Args[1])
	if err := f.Truncate(4096); err != nil {
		panic(err)
	}
	mem, err := syscall.Mmap(int(f.Fd()), 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		panic(err)
	}
	counter := (*uint32)(unsafe.Pointer(&mem[counterOff]))
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reg := (*uint32)(unsafe.Pointer(&mem[g*8]))
			for i := range perG {
				atomic.StoreUint32(reg, uint32(g<<16|i))
				atomic.AddUint32(counter, 1)
			}
		}()
	}
	wg.Wait()
	fmt.Println("counter", atomic.LoadUint32(counter))
}
