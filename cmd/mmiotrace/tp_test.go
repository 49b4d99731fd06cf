package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
	"github.com/mmiotrace/mmiotrace/trace"
)

// eachEvent calls fn for each TP line of the log at path, without holding
// the log in memory.
func eachEvent(t *testing.T, path string, fn func(r *trace.Record)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if !bytes.HasPrefix(sc.Bytes(), []byte("TP ")) {
			continue
		}
		r, ok, err := trace.ParseLine(sc.Text())
		if err != nil || !ok {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		fn(&r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

var tpSummary = regexp.MustCompile(`mmiotrace: (\d+) tracepoint events, lost (\d+)`)

// tpCounts reads the events and losses of record's summary.
func tpCounts(t *testing.T, out []byte) (events, lost int) {
	t.Helper()
	m := tpSummary.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no tracepoint summary in:\n%s", out)
	}
	events, _ = strconv.Atoi(string(m[1]))
	lost, _ = strconv.Atoi(string(m[2]))
	return events, lost
}

// burstTags is tpburst's tag of event i: tags[i%5].
var burstTags = []string{"", "a", "bb", "ccc", "dddd"}

// checkBurst checks a log of tpburst's events: each goroutine's events, in
// its order, none twice, each with its payload. It returns how many.
func checkBurst(t *testing.T, log string, g, n int) int {
	t.Helper()
	seen := make([][]bool, g)
	for k := range seen {
		seen[k] = make([]bool, n)
	}
	last := make([]int, g)
	for k := range last {
		last[k] = -1
	}
	total := 0
	eachEvent(t, log, func(r *trace.Record) {
		if r.Text != "burst:ev" || len(r.Fields) != 3 || r.Fields[0].Name != "g" || r.Fields[1].Name != "seq" || r.Fields[2].Name != "tag" {
			t.Fatalf("event %+v", r)
		}
		k, err1 := strconv.Atoi(r.Fields[0].Value)
		seq, err2 := strconv.Atoi(r.Fields[1].Value)
		if err1 != nil || err2 != nil || k < 0 || k >= g || seq < 0 || seq >= n {
			t.Fatalf("event %+v", r)
		}
		if seen[k][seq] {
			t.Fatalf("goroutine %d event %d logged twice", k, seq)
		}
		if seq <= last[k] {
			t.Fatalf("goroutine %d: event %d logged after %d", k, seq, last[k])
		}
		if r.Fields[2].Value != burstTags[seq%len(burstTags)] {
			t.Fatalf("goroutine %d event %d has tag %q", k, seq, r.Fields[2].Value)
		}
		seen[k][seq], last[k] = true, seq
		total++
	})
	return total
}

// TestRecordTracepointBurst is issue 12, item 7: four goroutines fire
// 250,000 events each as fast as they can. With default settings every
// event reaches the log exactly once, with its payload: the firing
// goroutines wait for room rather than lose events.
func TestRecordTracepointBurst(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildGo(t, "testdata/tpburst")
	log := filepath.Join(t.TempDir(), "burst.log")
	const g, n = 4, 250_000
	start := time.Now()
	out, err := exec.Command(bin, "record", "-e", "burst:*", "-o", log, "--", prog, "-g", strconv.Itoa(g), "-n", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	took := time.Since(start)
	events, lost := tpCounts(t, out)
	if events != g*n || lost != 0 {
		t.Fatalf("summary says %d events, %d lost; want %d, 0:\n%s", events, lost, g*n, out)
	}
	if got := checkBurst(t, log, g, n); got != g*n {
		t.Fatalf("%d events in the log, want %d", got, g*n)
	}
	t.Logf("%d events in %v: %s", g*n, took.Round(time.Millisecond), bytes.TrimSpace(out))
}

// TestRecordTracepointDiscard is the same burst with --tp-discard and a
// small ring: events are lost, and the summary counts every one of them.
func TestRecordTracepointDiscard(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildGo(t, "testdata/tpburst")
	log := filepath.Join(t.TempDir(), "discard.log")
	const g, n = 4, 250_000
	out, err := exec.Command(bin, "record", "-e", "burst:*", "--tp-discard", "--tp-ring", "64K", "-o", log, "--", prog,
		"-g", strconv.Itoa(g), "-n", strconv.Itoa(n)).CombinedOutput()
	if err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	events, lost := tpCounts(t, out)
	if lost == 0 || events+lost != g*n || !strings.Contains(string(out), "--tp-discard") {
		t.Fatalf("summary says %d events, %d lost; want some lost, and %d in all:\n%s", events, lost, g*n, out)
	}
	if got := checkBurst(t, log, g, n); got != events {
		t.Fatalf("%d events in the log, summary says %d", got, events)
	}
	t.Logf("%s", bytes.TrimSpace(out))

	for _, bad := range []string{"0", "12Q", "-1", "2G", "K"} {
		cmd := exec.Command(bin, "record", "-e", "burst:*", "--tp-ring", bad, "--", prog, "-n", "1")
		out, err := cmd.CombinedOutput()
		if cmd.ProcessState.ExitCode() != exitUsage || !strings.Contains(string(out), "--tp-ring") {
			t.Errorf("--tp-ring %s: %v\n%s", bad, err, out)
		}
	}
}

// spinProg is a running tpspin.
type spinProg struct {
	cmd *exec.Cmd
	in  io.Writer
	out *bufio.Scanner
}

func startSpin(t *testing.T) *spinProg {
	t.Helper()
	cmd := exec.Command(testenv.BuildGo(t, "testdata/tpspin"))
	cmd.Env = append(os.Environ(), tpcollect.EnvVar+"=1")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	p := &spinProg{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	p.ask(t, "", "ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tpcollect.WaitForSocket(ctx, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return p
}

// ask sends cmd (unless empty) and returns the answer, which must start
// with want, within 10 s: the program must be responsive.
func (p *spinProg) ask(t *testing.T, cmd, want string) string {
	t.Helper()
	if cmd != "" {
		fmt.Fprintln(p.in, cmd)
	}
	line := make(chan string, 1)
	go func() {
		if p.out.Scan() {
			line <- p.out.Text()
		}
		close(line)
	}()
	select {
	case l := <-line:
		if !strings.HasPrefix(l, want) {
			t.Fatalf("program answered %q to %q, want %q", l, cmd, want)
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatalf("program did not answer %q within 10 s", cmd)
	}
	return ""
}

// gcs returns the program's garbage collection count.
func (p *spinProg) gcs(t *testing.T) int {
	n, err := strconv.Atoi(strings.TrimPrefix(p.ask(t, "ping", "pong "), "pong "))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (p *spinProg) ringMapped(t *testing.T) bool {
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(maps), "mmiotrace-tracepoints")
}

// TestRecordTracepointsDetach is issue 12, item 6: `record -e -p` against a
// goroutine that fires in a tight loop. Ctrl-C (then, in a second round,
// SIGKILL) must end mmiotrace within a bound, and the program must go on
// normally: answering, releasing its ring, and not forcing garbage
// collections in a loop (it did about 880 a second).
func TestRecordTracepointsDetach(t *testing.T) {
	bin := mmiotraceBin(t)
	p := startSpin(t)
	pid := strconv.Itoa(p.cmd.Process.Pid)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		log := filepath.Join(t.TempDir(), "spin.log")
		rec := exec.Command(bin, "record", "-e", "spin:ev", "-o", log, "-p", pid)
		var out bytes.Buffer
		rec.Stdout, rec.Stderr = &out, &out
		if err := rec.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !p.ringMapped(t) {
			if time.Now().After(deadline) {
				t.Fatalf("%v: collection did not start:\n%s", sig, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
		start := time.Now()
		rec.Process.Signal(sig)
		exited := make(chan error, 1)
		go func() { exited <- rec.Wait() }()
		var err error
		select {
		case err = <-exited:
		case <-time.After(15 * time.Second):
			rec.Process.Kill()
			t.Fatalf("%v: mmiotrace still running 15 s later:\n%s", sig, out.String())
		}
		t.Logf("%v: mmiotrace exited after %v: %s", sig, time.Since(start).Round(time.Millisecond), bytes.TrimSpace(out.Bytes()))
		if sig == syscall.SIGINT {
			if err != nil {
				t.Fatalf("record: %v\n%s", err, out.String())
			}
			// The loop fires 0, 1, 2...: what was collected is one run of
			// that sequence, every value once.
			events, lost := tpCounts(t, out.Bytes())
			next, got := -1, 0
			eachEvent(t, log, func(r *trace.Record) {
				v, err := strconv.Atoi(r.Fields[0].Value)
				if err != nil || (next >= 0 && v != next) {
					t.Fatalf("event %+v after %d", r, next-1)
				}
				next = v + 1
				got++
			})
			if got == 0 || got != events || lost > 1 {
				t.Fatalf("%d events in the log; summary: %d events, %d lost", got, events, lost)
			}
		}
		p.ask(t, "open", "open ok")
		deadline = time.Now().Add(10 * time.Second)
		for p.ringMapped(t) {
			if time.Now().After(deadline) {
				t.Fatalf("%v: the program still maps its ring 10 s after mmiotrace exited", sig)
			}
			time.Sleep(10 * time.Millisecond)
		}
		before := p.gcs(t)
		time.Sleep(time.Second)
		if n := p.gcs(t) - before; n > 20 {
			t.Fatalf("%v: the program ran %d garbage collections in the second after mmiotrace left", sig, n)
		}
	}
}
