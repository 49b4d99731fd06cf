package main_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

// TestCollectDemo runs the example as `mmiotrace record -e 'demo:*'` does:
// started with the environment variable asking it to record demo:* from
// init, then collected from outside until it exits. Every request must show
// up as one doorbell, one irq and one completion, with none lost.
func TestCollectDemo(t *testing.T) {
	bin := testenv.BuildGo(t, ".", buildFlags...)
	const n = 20
	cmd := exec.Command(bin, "-n", "20", "-i", "10ms", "-q", "2")
	cmd.Env = append(os.Environ(), tpcollect.EnvVar+"="+tpcollect.EnvValue([]string{"demo:*"}))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tpcollect.WaitForSocket(ctx, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	s, err := tpcollect.Open(cmd.Process.Pid, []string{"demo:*"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Adopted() {
		t.Error("session did not adopt the ring started at init")
	}
	// The session may open while the demo is still initialising, before it
	// has declared its tracepoints: how many matched at Open varies, and the
	// events below must all arrive regardless.
	var evs []tpcollect.Event
	poll := func() {
		if _, err := s.Poll(func(e tpcollect.Event) { evs = append(evs, e) }); err != nil {
			t.Fatal(err)
		}
	}
	done := false
	for !done {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("demo failed: %v", err)
			}
			exited <- nil // for Cleanup
			done = true
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("demo did not finish")
		}
		poll()
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	poll()
	if s.Lost() != 0 {
		t.Errorf("lost %d events", s.Lost())
	}
	count := map[string]int{}
	tails := map[string]int{}
	for _, e := range evs {
		count[e.Name]++
		if e.Provider != "demo" {
			t.Errorf("event from provider %q", e.Provider)
		}
		if e.Name == "doorbell" {
			if len(e.Fields) != 3 || e.Fields[0].Name != "queue" || e.Fields[2].Name != "reg" {
				t.Fatalf("doorbell fields %v", e.Fields)
			}
			tails[e.Fields[0].Value]++
		}
	}
	for _, name := range []string{"doorbell", "irq", "complete"} {
		if count[name] != n {
			t.Errorf("got %d demo:%s events, want %d (all: %v)", count[name], name, n, count)
		}
	}
	if tails["0"] != n/2 || tails["1"] != n/2 {
		t.Errorf("doorbells per queue %v, want %d each", tails, n/2)
	}
	// The first event is the first doorbell, fired before the collector
	// connected: the ring started at init kept it.
	if len(evs) > 0 {
		first := evs[0]
		if first.Name != "doorbell" || first.Fields[1].Value != "1" {
			t.Errorf("first event %+v, want demo:doorbell tail=1", first)
		}
	}
}
