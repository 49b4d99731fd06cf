// Command tracepoint is a toy user-space driver with static tracepoints, to
// show package tracepoint and `mmiotrace record -e`.
//
// A driver goroutine submits requests to a simulated device: it fills a
// descriptor and rings the device's doorbell (tracepoint demo:doorbell). The
// device goroutine takes the descriptor, does the work and raises an
// interrupt (demo:irq). The driver reaps the completion (demo:complete).
//
// Collect its events from outside with mmiotrace:
//
//	go build -o /tmp/tpdemo ./examples/tracepoint
//	mmiotrace record -e 'demo:*' -- /tmp/tpdemo -n 100
//
// or start it with MMIOTRACE_TRACEPOINTS=1 and use `mmiotrace tp list -p PID`
// and `mmiotrace record -e 'demo:doorbell' -p PID` while it runs. With -probe
// it also attaches an in-process probe that prints every event to stderr.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// Doorbell is demo:doorbell's payload: the driver has queued descriptors up
// to Tail on queue Queue and writes Tail to the doorbell register at Reg.
type Doorbell struct {
	Queue uint16  `tracepoint:"queue"`
	Tail  uint32  `tracepoint:"tail"`
	Reg   uintptr `tracepoint:"reg"`
}

// IRQ is demo:irq's payload: the device raised vector Vector with the
// interrupt status register reading Status.
type IRQ struct {
	Vector uint8  `tracepoint:"vector"`
	Status uint32 `tracepoint:"status"`
}

// Complete is demo:complete's payload: request Tag finished with Result after
// Latency, having moved Bytes bytes.
type Complete struct {
	Tag     uint32        `tracepoint:"tag"`
	Bytes   int           `tracepoint:"bytes"`
	Latency time.Duration `tracepoint:"latency_ns"`
	Result  string        `tracepoint:"result"`
}

// The provider and its tracepoints are package-level variables, declared at
// start-up; firing one that no one listens to costs about a nanosecond.
var (
	demo       = tracepoint.MustNewProvider("demo")
	tpDoorbell = tracepoint.MustNew[Doorbell](demo, "doorbell")
	tpIRQ      = tracepoint.MustNew[IRQ](demo, "irq")
	tpComplete = tracepoint.MustNew[Complete](demo, "complete")
)

// Simulated device registers.
const (
	regBase     = 0xfebf0000
	regDoorbell = regBase + 0x1000 // one 4-byte doorbell per queue, 4 bytes apart
	irqVector   = 33
	queueDepth  = 16
)

// request is one descriptor in the submission queue.
type request struct {
	tag    uint32
	bytes  int
	queued time.Time
}

func main() {
	n := flag.Int("n", 200, "requests to submit (0: until -d elapses)")
	dur := flag.Duration("d", 0, "stop after this long (0: no limit)")
	interval := flag.Duration("i", 5*time.Millisecond, "pause between requests")
	queues := flag.Int("q", 2, "number of queues")
	expose := flag.Bool("expose", false, "call tracepoint.Expose (as if "+tracepoint.EnvVar+"=1)")
	probe := flag.Bool("probe", false, "print every event from an in-process probe")
	flag.Parse()
	if *n <= 0 && *dur <= 0 {
		fmt.Fprintln(os.Stderr, "tracepoint demo: give -n or -d")
		os.Exit(2)
	}
	if *queues < 1 || *queues > 64 {
		fmt.Fprintln(os.Stderr, "tracepoint demo: -q must be 1..64")
		os.Exit(2)
	}
	if *expose {
		if err := tracepoint.Expose(); err != nil {
			fmt.Fprintln(os.Stderr, "tracepoint demo:", err)
			os.Exit(1)
		}
	}
	if *probe {
		// A raw probe takes any payload: register it on every demo event.
		p := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) {
			fmt.Fprintf(os.Stderr, "probe: %s\n", ev.AppendText(nil))
		}, nil)
		if err := tracepoint.Register("demo:*", p); err != nil {
			fmt.Fprintln(os.Stderr, "tracepoint demo:", err)
			os.Exit(1)
		}
		defer func() {
			tracepoint.Unregister("demo:*", p)
			tracepoint.Sync()
		}()
	}
	if sock := tracepoint.SocketPath(); sock != "" {
		fmt.Fprintf(os.Stderr, "tracepoint demo: pid %d, tracepoints exposed at %s\n", os.Getpid(), sock)
	} else {
		fmt.Fprintf(os.Stderr, "tracepoint demo: pid %d, tracepoints not exposed (set %s=1 or use -expose)\n", os.Getpid(), tracepoint.EnvVar)
	}

	sq := make(chan request, queueDepth) // submission queue
	cq := make(chan request, queueDepth) // completion queue
	go device(sq, cq)

	var deadline <-chan time.Time
	if *dur > 0 {
		deadline = time.After(*dur)
	}
	tails := make([]uint32, *queues)
	submitted, completed := 0, 0
	tick := time.NewTicker(*interval)
	defer tick.Stop()
loop:
	for *n <= 0 || submitted < *n {
		select {
		case <-deadline:
			break loop
		case <-tick.C:
		}
		q := submitted % *queues
		tails[q] = (tails[q] + 1) % queueDepth
		r := request{tag: uint32(submitted), bytes: 512 << (submitted % 4), queued: time.Now()}
		// Ring the doorbell: the device may start on r from here on.
		tpDoorbell.Fire(Doorbell{Queue: uint16(q), Tail: tails[q], Reg: uintptr(regDoorbell + 4*q)})
		sq <- r
		submitted++
		completed += reap(cq, false)
	}
	close(sq)
	for completed < submitted {
		completed += reap(cq, true)
	}
	fmt.Fprintf(os.Stderr, "tracepoint demo: %d requests completed\n", completed)
}

// device serves the submission queue: it "transfers" each request, then
// raises an interrupt and posts the completion.
func device(sq <-chan request, cq chan<- request) {
	for r := range sq {
		time.Sleep(100 * time.Microsecond) // the transfer
		// Status: bit 0 completion, bits 8..15 the request's queue slot.
		tpIRQ.Fire(IRQ{Vector: irqVector, Status: 1 | (r.tag%queueDepth)<<8})
		cq <- r
	}
	close(cq)
}

// reap takes completions: all that are ready, or at least one when wait is
// set. It returns how many it took.
func reap(cq <-chan request, wait bool) int {
	n := 0
	for {
		var r request
		var ok bool
		if wait && n == 0 {
			r, ok = <-cq
		} else {
			select {
			case r, ok = <-cq:
			default:
				return n
			}
		}
		if !ok {
			return n
		}
		// Building the payload calls time.Since: guard it with Enabled so
		// that a disabled tracepoint costs only the check.
		if tpComplete.Enabled() {
			tpComplete.Fire(Complete{Tag: r.tag, Bytes: r.bytes, Latency: time.Since(r.queued), Result: "ok"})
		}
		n++
	}
}
