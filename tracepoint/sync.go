package tracepoint

import (
	"bytes"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"time"
	"weak"
)

// Sync waits until no Fire that started before the call is still running
// probes from an array since replaced: after Unregister(p) and then Sync, p is
// not running and will not be called through that registration again. This is
// the kernel's tracepoint_synchronize_unregister.
//
// It blocks for as long as a probe it waits for keeps running, and returns
// at once when nothing was replaced since the last Sync. Otherwise it costs a
// garbage collection, and sometimes a snapshot of every goroutine's stack
// (see below), repeated with a growing pause (1 ms doubling to 250 ms) while
// a probe it waits for is still running: a long wait costs a few
// collections a second, not a busy loop.
//
// How it knows: every Fire keeps the probe array it loaded reachable until
// its last probe returns, so a replaced array that the garbage collector
// finds unreachable has no Fire left in it. That proof can be delayed without
// bound: the collector scans the registers of a goroutine stopped between
// two instructions conservatively, and a goroutine that loops on a disabled
// tracepoint may keep a dead copy of the array's address in a register it
// never reuses. So when a collection leaves an array alive, Sync takes a
// snapshot of every goroutine's stack (runtime.Stack, which stops the world
// for about a microsecond per goroutine): all probes run inside one function
// of this package, and if no goroutine is inside it, no Fire that loaded a
// replaced array is still running. Either proof ends the wait.
func Sync() { syncUntil(nil) }

// syncUntil is Sync that gives up, returning false, once stop (if not nil)
// returns true; it is asked between attempts. It reports whether the grace
// period was proved.
func syncUntil(stop func() bool) bool {
	reg.mu.Lock()
	pending := reg.retired
	reg.retired = nil
	reg.mu.Unlock()
	pause := time.Duration(0)
	for {
		pending = slices.DeleteFunc(pending, func(w weak.Pointer[probeArray]) bool { return w.Value() == nil })
		if len(pending) == 0 {
			raceSyncDone()
			return true
		}
		if pause > 0 && noFireRunning() {
			raceSyncDone()
			return true
		}
		if stop != nil && stop() {
			// The arrays stay pending for the next Sync.
			reg.mu.Lock()
			reg.retired = append(reg.retired, pending...)
			reg.mu.Unlock()
			return false
		}
		if pause > 0 {
			time.Sleep(pause)
		}
		pause = min(2*pause+time.Millisecond, syncMaxPause)
		runtime.GC()
	}
}

// syncMaxPause bounds Sync's pause between attempts.
const syncMaxPause = 250 * time.Millisecond

// fireFrame is how fireValue's frames start in a goroutine dump:
// "<import path>.fireValue[". Its generic instances differ only within
// the brackets.
var fireFrame = func() []byte {
	name := runtime.FuncForPC(reflect.ValueOf(fireValue[int]).Pointer()).Name()
	name, _, _ = strings.Cut(name, "[")
	return []byte("\n" + name + "[")
}()

// noFireRunning reports whether a snapshot of every goroutine's stack shows
// none inside fireValue, the only function that calls probes. A stack too
// deep to be printed whole (its middle frames elided) counts as running.
func noFireRunning() bool {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return !bytes.Contains(buf, fireFrame) && !bytes.Contains(buf, []byte("frames elided..."))
}
