// Command gobench measures package tracepoint the way bench/tracepoint's C
// program measures LTTng-UST, so that run.sh can compare them in one run: it
// fires a tracepoint N times in a loop, R times over after one untimed
// warm-up loop, and prints the fastest
// and the median cost per event, timed with the monotonic clock around each
// loop.
//
//	gobench -event int|rich -mode disabled|noop|collected -n N -r R
//
// Output, one line: "<event> <mode> <n> <min ns> <median ns> <collected> <lost>".
//
//	gobench -mode burst -threads T -n N [-ring BYTES]
//	gobench -mode fire -threads T -n N
//
// The sustained-rate case: T goroutines fire the rich event N times each, at
// once, as fast as they can, into a collector in blocking mode (the
// default), so that nothing is lost and the goroutines wait for the
// collector. burst starts its own collector process, as in mode collected,
// and prints "burst <T> <events in all> <seconds until the collector had
// them all> <collected> <lost>"; fire only fires and prints "fire <T>
// <events> <seconds>", for a collector that started the program (`mmiotrace
// record -e gobench:rich_event -- gobench -mode fire ...`).
//
// Modes: disabled fires with no probe attached; noop with one typed probe
// that does nothing; collected with the tracepoint enabled by a collector in
// a separate process (this program re-run with -collect), which maps the
// shared ring and writes every raw record to a file, as lttng-consumerd
// writes LTTng's buffers to the trace directory. The collector's counts of
// events received and lost come back in the last two columns.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// Rich is the Go twin of the C provider's rich_event.
type Rich struct {
	Addr  uint64 `tracepoint:"addr"`
	Value uint32 `tracepoint:"value"`
	Write bool   `tracepoint:"write"`
	Dev   string `tracepoint:"dev"`
}

var (
	prov   = tracepoint.MustNewProvider("gobench")
	tpInt  = tracepoint.MustNew[int32](prov, "int_event")
	tpRich = tracepoint.MustNew[Rich](prov, "rich_event")
)

func main() {
	event := flag.String("event", "int", "int or rich")
	mode := flag.String("mode", "disabled", "disabled, noop or collected")
	n := flag.Int("n", 1_000_000, "events per loop")
	r := flag.Int("r", 5, "loops")
	ring := flag.Int("ring", 32<<20, "ring size in bytes for -mode collected and burst (0: the default)")
	threads := flag.Int("threads", 4, "goroutines for -mode burst and fire")
	collect := flag.Int("collect", 0, "internal: collect from this pid, writing raw records to -out")
	out := flag.String("out", os.DevNull, "internal: the collector's output file")
	flag.Parse()
	if *collect != 0 {
		if err := collector(*collect, *event, *ring, *out); err != nil {
			fmt.Fprintln(os.Stderr, "gobench collector:", err)
			os.Exit(1)
		}
		return
	}
	if *n <= 0 || *r <= 0 || *threads <= 0 || (*event != "int" && *event != "rich") {
		fmt.Fprintln(os.Stderr, "gobench: bad -event, -n, -r or -threads")
		os.Exit(2)
	}
	if *mode == "burst" || *mode == "fire" {
		if err := burst(*mode, *threads, *n, *ring, *out); err != nil {
			fmt.Fprintln(os.Stderr, "gobench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*event, *mode, *n, *r, *ring, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gobench:", err)
		os.Exit(1)
	}
}

func run(event, mode string, n, r, ring int, out string) error {
	enabled := func() bool { return tpInt.Enabled() }
	if event == "rich" {
		enabled = tpRich.Enabled
	}
	var child *collectorProc
	switch mode {
	case "disabled":
	case "noop":
		p := tracepoint.NewProbe(func(any, int32) {}, nil)
		if event == "rich" {
			p = tracepoint.NewProbe(func(any, Rich) {}, nil)
		}
		if err := tracepoint.Register("gobench:"+event+"_event", p); err != nil {
			return err
		}
	case "collected":
		var err error
		if child, err = startCollector(event, ring, out); err != nil {
			return err
		}
		defer child.cmd.Process.Kill()
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if want := mode != "disabled"; enabled() != want {
		return fmt.Errorf("mode %s: tracepoint enabled=%v", mode, enabled())
	}
	per := make([]float64, r)
	// Loop -1 warms up caches, page tables and the ring, untimed.
	for k := -1; k < r; k++ {
		t0 := time.Now()
		if event == "rich" {
			for i := range n {
				tpRich.Fire(Rich{Addr: uint64(i), Value: 7, Write: true, Dev: "bar0"})
			}
		} else {
			for i := range n {
				tpInt.Fire(int32(i))
			}
		}
		if k >= 0 {
			per[k] = float64(time.Since(t0).Nanoseconds()) / float64(n)
		}
	}
	got, lost := "-", "-"
	if child != nil {
		var err error
		if got, lost, err = child.finish(); err != nil {
			return err
		}
	}
	sorted := slices.Clone(per)
	slices.Sort(sorted)
	fmt.Printf("%s %s %d %.3f %.3f %s %s\n", event, mode, n, sorted[0], sorted[r/2], got, lost)
	return nil
}

// fireBurst fires the rich event n times from each of threads goroutines
// at once and returns how long that took.
func fireBurst(threads, n int) time.Duration {
	start := time.Now()
	var wg sync.WaitGroup
	for k := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				tpRich.Fire(Rich{Addr: uint64(i), Value: uint32(k), Write: true, Dev: "bar0"})
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// burst runs the sustained-rate case (see the package comment).
func burst(mode string, threads, n, ring int, out string) error {
	if mode == "fire" {
		d := fireBurst(threads, n)
		fmt.Printf("fire %d %d %.6f\n", threads, threads*n, d.Seconds())
		return nil
	}
	child, err := startCollector("rich", ring, out)
	if err != nil {
		return err
	}
	defer child.cmd.Process.Kill()
	start := time.Now()
	fireBurst(threads, n)
	got, lost, err := child.finish()
	if err != nil {
		return err
	}
	fmt.Printf("burst %d %d %.6f %s %s\n", threads, threads*n, time.Since(start).Seconds(), got, lost)
	return nil
}

// collectorProc is this program re-run as the collector of its own event.
type collectorProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startCollector exposes this process's tracepoints and starts a collector
// process for the event, returning once it collects.
func startCollector(event string, ring int, out string) (*collectorProc, error) {
	if err := tracepoint.Expose(); err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := &collectorProc{cmd: exec.Command(self, "-collect", strconv.Itoa(os.Getpid()), "-event", event, "-ring", strconv.Itoa(ring), "-out", out)}
	c.cmd.Stderr = os.Stderr
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	c.out = bufio.NewScanner(stdout)
	if !c.out.Scan() || c.out.Text() != "ready" {
		c.cmd.Process.Kill()
		return nil, fmt.Errorf("collector did not start: %q %v", c.out.Text(), c.out.Err())
	}
	return c, nil
}

// finish tells the collector to stop, drain and report, and returns the
// events it collected and the events the program counted as lost.
func (c *collectorProc) finish() (got, lost string, err error) {
	c.in.Close()
	if !c.out.Scan() {
		return "", "", fmt.Errorf("collector said nothing: %v", c.out.Err())
	}
	f := strings.Fields(c.out.Text())
	if len(f) != 2 {
		return "", "", fmt.Errorf("collector said %q", c.out.Text())
	}
	if err := c.cmd.Wait(); err != nil {
		return "", "", fmt.Errorf("collector: %w", err)
	}
	return f[0], f[1], nil
}

// collector enables gobench:<event>_event in process pid, says "ready", and
// writes raw records to out until its stdin closes; then it stops the
// session, drains it and prints "<events> <lost>".
func collector(pid int, event string, ring int, out string) error {
	s, err := tpcollect.OpenOptions(pid, []string{"gobench:" + event + "_event"}, tpcollect.Options{RingSize: ring})
	if err != nil {
		return err
	}
	defer s.Close()
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	var hdr [16]byte
	write := func(rec tpcollect.Record) {
		// The record's id, time and payload, about what LTTng stores.
		hdr[0], hdr[1], hdr[2], hdr[3] = byte(rec.ID), byte(rec.ID>>8), byte(rec.ID>>16), byte(rec.ID>>24)
		t := uint64(rec.Time)
		for i := range 8 {
			hdr[4+i] = byte(t >> (8 * i))
		}
		w.Write(hdr[:12])
		w.Write(rec.Payload)
	}
	fmt.Println("ready")
	var stop atomic.Bool
	go func() {
		io.Copy(io.Discard, os.Stdin)
		stop.Store(true)
	}()
	var total int
	for !stop.Load() {
		k, err := s.PollRaw(write)
		if err != nil {
			return err
		}
		total += k
		if k < 1024 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	if err := s.Stop(); err != nil {
		return err
	}
	k, err := s.PollRaw(write)
	if err != nil {
		return err
	}
	total += k
	if err := w.Flush(); err != nil {
		return err
	}
	fmt.Println(total, s.Lost())
	return nil
}
