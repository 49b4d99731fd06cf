// Command tpburst fires tracepoint burst:ev as fast as it can from several
// goroutines at once, each numbering its events from 0, and prints how many
// it fired: the tracepoint collection tests check that every event reached
// the log exactly once, or was counted as lost.
//
//	tpburst [-g GOROUTINES] [-n EVENTS_PER_GOROUTINE]
package main

import (
	"flag"
	"fmt"
	"sync"
	"time"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// Ev is one event: which goroutine fired it and its number in that
// goroutine's sequence, and a string to check payloads with strings.
type Ev struct {
	G   int32  `tracepoint:"g"`
	Seq uint64 `tracepoint:"seq"`
	Tag string `tracepoint:"tag"`
}

var (
	prov = tracepoint.MustNewProvider("burst")
	ev   = tracepoint.MustNew[Ev](prov, "ev")
)

// Tags cycle through strings of lengths 0 to 4, so that records differ in size.
var tags = []string{"", "a", "bb", "ccc", "dddd"}

func main() {
	g := flag.Int("g", 4, "goroutines")
	n := flag.Int("n", 250_000, "events per goroutine")
	flag.Parse()
	start := time.Now()
	var wg sync.WaitGroup
	for k := range *g {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range *n {
				ev.Fire(Ev{G: int32(k), Seq: uint64(i), Tag: tags[i%len(tags)]})
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	fmt.Printf("fired %d in %v (%.0f events/s)\n", *g**n, d.Round(time.Millisecond), float64(*g**n)/d.Seconds())
}
