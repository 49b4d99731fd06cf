// Command tpslow declares its tracepoints late: a slow package-level
// initialiser runs first, after package tracepoint has already exposed the
// program (the environment variable the test sets). A collector that
// connects as soon as the socket appears meets a program with no tracepoint
// yet. main then fires demo:ev with values 0..9 and exits.
package main

import (
	"time"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

var (
	slow = func() int { time.Sleep(300 * time.Millisecond); return 1 }()
	prov = tracepoint.MustNewProvider("slow")
	ev   = tracepoint.MustNew[int](prov, "ev")
)

func main() {
	for i := range 10 {
		ev.Fire(i * slow)
	}
}
