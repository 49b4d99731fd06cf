// Command tpspin fires tracepoint spin:ev from one goroutine in a tight
// loop, forever, the program of issue 12, item 6, and answers on stdin:
//
//	ping   prints "pong N", N the garbage collections so far
//	open   opens /dev/null and prints "open ok", or the error
//
// It prints "ready" first. Run it with MMIOTRACE_TRACEPOINTS=1.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

var (
	prov = tracepoint.MustNewProvider("spin")
	ev   = tracepoint.MustNew[uint64](prov, "ev")
)

func main() {
	go func() {
		for i := uint64(0); ; i++ {
			ev.Fire(i)
		}
	}()
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "ping":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Println("pong", ms.NumGC)
		case "open":
			f, err := os.Open(os.DevNull)
			if err != nil {
				fmt.Println("open", err)
				continue
			}
			f.Close()
			fmt.Println("open ok")
		}
	}
}
