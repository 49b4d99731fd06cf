package tpcollect_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

// prog is a running tpprog.
type prog struct {
	t   *testing.T
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startProg(t *testing.T, env string) *prog {
	t.Helper()
	bin := testenv.BuildGo(t, "./testdata/tpprog", buildFlags...)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), tpcollect.EnvVar+"="+env)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &prog{t: t, cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	p.expect("ready")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tpcollect.WaitForSocket(ctx, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *prog) pid() int { return p.cmd.Process.Pid }

// line reads the program's next output line.
func (p *prog) line() string {
	p.t.Helper()
	if !p.out.Scan() {
		p.t.Fatalf("program output ended: %v", p.out.Err())
	}
	return p.out.Text()
}

func (p *prog) expect(want string) {
	p.t.Helper()
	if got := p.line(); got != want {
		p.t.Fatalf("program said %q, want %q", got, want)
	}
}

func (p *prog) send(cmd string) {
	p.t.Helper()
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.t.Fatal(err)
	}
}

// reqFields is what the collector must decode for tpprog's ReqFor(i).
func reqFields(i int) []tpcollect.Field {
	m := `"GET"`
	if i%2 == 1 {
		m = `"POST"`
	}
	lat := strconv.FormatFloat(float64(i)/4, 'g', -1, 64)
	return []tpcollect.Field{
		{Name: "ID", Value: strconv.Itoa(i)},
		{Name: "Method", Value: m},
		{Name: "OK", Value: strconv.FormatBool(i%3 == 0)},
		{Name: "Lat", Value: lat},
		{Name: "Code", Value: strconv.Itoa(int(int16(-i)))},
		{Name: "Addr", Value: "0x" + strconv.FormatUint(uint64(0xfee00000+i), 16)},
		{Name: "note", Value: strconv.Quote(strings.Repeat("n", i%5))},
		{Name: "Small", Value: strconv.Itoa(int(uint8(i)))},
		{Name: "Scale", Value: "1.5"},
		{Name: "Signed", Value: strconv.FormatInt(-1<<40, 10)},
	}
}

func drain(t *testing.T, s *tpcollect.Session) []tpcollect.Event {
	t.Helper()
	var evs []tpcollect.Event
	for {
		n, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) })
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return evs
		}
	}
}

func TestEndToEnd(t *testing.T) {
	p := startProg(t, "1")

	list, err := tpcollect.List(p.pid())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range list {
		names = append(names, i.Provider+":"+i.Name)
		if i.Enabled {
			t.Errorf("%s:%s enabled before any collector", i.Provider, i.Name)
		}
	}
	if want := []string{"e2e:req", "e2e:tick", "other:skip"}; !slices.Equal(names, want) {
		t.Fatalf("List = %v, want %v", names, want)
	}
	wantFields := []string{"ID:uint64", "Method:string", "OK:bool", "Lat:float64", "Code:int16", "Addr:uintptr",
		"note:string", "Small:uint8", "Scale:float32", "Signed:int64"}
	if !slices.Equal(list[0].Fields, wantFields) || !slices.Equal(list[1].Fields, []string{"value:int"}) {
		t.Fatalf("fields: %v / %v", list[0].Fields, list[1].Fields)
	}

	if _, err := tpcollect.Open(p.pid(), []string{"nosuch:*"}); err == nil || !strings.Contains(err.Error(), "no tracepoint matches") {
		t.Fatalf("Open with no match: %v", err)
	}

	s, err := tpcollect.Open(p.pid(), []string{"e2e:*", "plugin:*"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Adopted() {
		t.Fatal("adopted a ring though none was started at init")
	}
	var matched []string
	for _, i := range s.Tracepoints() {
		matched = append(matched, i.Provider+":"+i.Name)
	}
	if want := []string{"e2e:req", "e2e:tick"}; !slices.Equal(matched, want) {
		t.Fatalf("enabled %v, want %v", matched, want)
	}

	const n = 1000
	p.send("fire " + strconv.Itoa(n))
	p.expect("done")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	evs := drain(t, s)
	if s.Lost() != 0 {
		t.Fatalf("lost %d events in a normal run", s.Lost())
	}
	var reqs, ticks, loads int
	var last int64
	for _, e := range evs {
		if e.Time < last {
			t.Fatalf("time went backwards at %+v", e)
		}
		last = e.Time
		switch e.Provider + ":" + e.Name {
		case "e2e:req":
			if want := reqFields(reqs); !slices.Equal(e.Fields, want) {
				t.Fatalf("req %d fields\n got %v\nwant %v", reqs, e.Fields, want)
			}
			reqs++
		case "e2e:tick":
			if want := []tpcollect.Field{{Name: "value", Value: strconv.Itoa(ticks)}}; !slices.Equal(e.Fields, want) {
				t.Fatalf("tick %d fields %v", ticks, e.Fields)
			}
			ticks++
		case "plugin:load":
			if want := []tpcollect.Field{{Name: "value", Value: strconv.Quote("mod" + strconv.Itoa(loads))}}; !slices.Equal(e.Fields, want) {
				t.Fatalf("plugin:load %d fields %v", loads, e.Fields)
			}
			loads++
		default:
			t.Fatalf("unexpected event %+v", e)
		}
	}
	if reqs != n || ticks != n || loads != 10 {
		t.Fatalf("got %d req, %d tick, %d plugin:load; want %d, %d, 10", reqs, ticks, loads, n, n)
	}
	// The events carry CLOCK_MONOTONIC times from this run.
	now := monoNow()
	if first := evs[0].Time; first > now || now-first > int64(time.Minute) {
		t.Fatalf("first event at %d, now %d: not CLOCK_MONOTONIC", first, now)
	}

	// Thread ids, when the program records them, are the firing thread's.
	s2, err := tpcollect.Open(p.pid(), []string{"e2e:tick"})
	if err != nil {
		t.Fatal(err)
	}
	p.send("tid")
	tidLine := p.line()
	p.expect("done")
	s2.Stop()
	tevs := drain(t, s2)
	s2.Close()
	if len(tevs) != 1 {
		t.Fatalf("tid run: %d events", len(tevs))
	}
	if s2.ThreadIDs() {
		if want := strings.TrimPrefix(tidLine, "tid "); strconv.Itoa(tevs[0].TID) != want {
			t.Fatalf("event TID %d, program's thread %s", tevs[0].TID, want)
		}
	} else if tevs[0].TID != -1 {
		t.Fatalf("TID %d without thread ids", tevs[0].TID)
	}

	// Closing the session disables the tracepoints in the program.
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		list, err := tpcollect.List(p.pid())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(list, func(i tpcollect.Info) bool { return i.Enabled }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracepoints still enabled after Close: %+v", list)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEndToEndLost overflows a one-page ring in discard mode, with no one
// draining it, and checks that the loss is counted exactly: every event
// fired is either collected or lost.
func TestEndToEndLost(t *testing.T) {
	p := startProg(t, "1")
	s, err := tpcollect.OpenOptions(p.pid(), []string{"e2e:tick"}, tpcollect.Options{RingSize: 4096, Discard: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 2000 // 2000 ticks of 32 bytes do not fit in 4096
	p.send("fire " + strconv.Itoa(n))
	p.expect("done")
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	evs := drain(t, s)
	lost := s.Lost()
	if lost == 0 {
		t.Fatal("overflowed ring reported no loss")
	}
	if uint64(len(evs))+lost != n {
		t.Fatalf("collected %d + lost %d != fired %d", len(evs), lost, n)
	}
	// What was kept is the start of the sequence, in order.
	for i, e := range evs {
		if e.Fields[0].Value != strconv.Itoa(i) {
			t.Fatalf("event %d is %v", i, e.Fields)
		}
	}
}

// TestEndToEndBoot starts the program recording from init, as `mmiotrace
// record -e` does, and checks that events fired before the collector
// connected are kept.
func TestEndToEndBoot(t *testing.T) {
	p := startProg(t, tpcollect.EnvValue([]string{"e2e:tick"}))
	s, err := tpcollect.Open(p.pid(), []string{"e2e:tick", "e2e:req"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Adopted() {
		t.Fatal("session did not adopt the ring started at init")
	}
	p.send("fire 3")
	p.expect("done")
	s.Stop()
	var got []string
	for _, e := range drain(t, s) {
		got = append(got, e.Name+"="+e.Fields[0].Value)
	}
	want := []string{"tick=100", "tick=101", "tick=102", "tick=103", "tick=104",
		"req=0", "tick=0", "req=1", "tick=1", "req=2", "tick=2"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v\nwant %v", got, want)
	}
}

func TestNotExposed(t *testing.T) {
	_, err := tpcollect.List(os.Getppid())
	if !errors.Is(err, tpcollect.ErrNotExposed) {
		t.Fatalf("List of a process without tracepoints: %v", err)
	}
	if _, err := tpcollect.Open(os.Getppid(), []string{"*"}); !errors.Is(err, tpcollect.ErrNotExposed) {
		t.Fatalf("Open of a process without tracepoints: %v", err)
	}
	// A process that exits without exposing ends the wait.
	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tpcollect.WaitForSocket(ctx, cmd.Process.Pid); err == nil || ctx.Err() != nil {
		t.Fatalf("WaitForSocket on an exiting process: %v", err)
	}
}
