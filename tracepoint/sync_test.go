package tracepoint_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// spin fires tp in a tight loop until stop is set: the loop of issue 12,
// item 6, whose goroutine the garbage collector finds stopped between two
// instructions and scans conservatively.
//
//go:noinline
func spin(tp *tracepoint.Tracepoint[uint64], stop *atomic.Bool) {
	for i := uint64(0); ; i++ {
		tp.Fire(i)
		if i%(1<<20) == 0 && stop.Load() {
			return
		}
	}
}

// TestSyncTightLoop detaches a probe from a tracepoint that a goroutine
// fires in a tight loop, and checks that Sync returns, with the probe no
// longer called, in bounded time, several times over. The garbage
// collector alone could not prove the grace period here: the looping
// goroutine keeps a dead copy of the retired probe array's address in a
// register, which a conservative scan counts as a live reference.
func TestSyncTightLoop(t *testing.T) {
	p := newProvider(t)
	tp := tracepoint.MustNew[uint64](p, "spin")
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		spin(tp, &stop)
		close(done)
	}()
	defer func() {
		stop.Store(true)
		<-done
	}()
	for round := range 5 {
		var calls atomic.Int64
		probe := tracepoint.NewProbe(func(_ any, _ uint64) { calls.Add(1) }, nil)
		if err := tp.Register(probe); err != nil {
			t.Fatal(err)
		}
		for calls.Load() < 1000 {
			time.Sleep(time.Millisecond)
		}
		if err := tp.Unregister(probe); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		synced := make(chan struct{})
		go func() {
			tracepoint.Sync()
			close(synced)
		}()
		select {
		case <-synced:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Sync did not return in 20 s while a goroutine fires in a tight loop", round)
		}
		after := calls.Load()
		time.Sleep(10 * time.Millisecond)
		if calls.Load() != after {
			t.Fatalf("round %d: probe called after Unregister and Sync", round)
		}
		t.Logf("round %d: Sync took %v", round, time.Since(start).Round(time.Microsecond))
	}
}
