package tracepoint_test

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// Doorbell is a payload: a struct of booleans, integers, floats and
// strings. Tags rename fields; a field tagged "-" reaches in-process probes
// only.
type Doorbell struct {
	Queue uint16  `tracepoint:"queue"`
	Tail  uint32  `tracepoint:"tail"`
	Reg   uintptr `tracepoint:"reg"`
	Note  []byte  `tracepoint:"-"`
}

// A provider groups tracepoints; package-level declarations suit them.
var (
	demo       = tracepoint.MustNewProvider("example")
	tpDoorbell = tracepoint.MustNew[Doorbell](demo, "doorbell")
	tpReset    = tracepoint.MustNew[string](demo, "reset") // one field, "value"
)

// Declare a tracepoint, attach a probe, fire it.
func Example() {
	p := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) {
		fmt.Printf("%s\n", ev.AppendText(nil))
	}, nil)
	if err := tracepoint.Register("example:*", p); err != nil {
		fmt.Println(err)
		return
	}
	defer tracepoint.Unregister("example:*", p)

	tpDoorbell.Fire(Doorbell{Queue: 1, Tail: 3, Reg: 0xfebf1004})
	tpReset.Fire("link down")
	// Output:
	// example:doorbell queue=1 tail=3 reg=0xfebf1004
	// example:reset value="link down"
}

// A typed probe receives a copy of the payload, and attaches only to
// tracepoints of its payload type.
func ExampleNewProbe() {
	var rings atomic.Uint64
	p := tracepoint.NewProbe(func(data any, ev Doorbell) {
		data.(*atomic.Uint64).Add(uint64(ev.Tail))
	}, &rings)
	if err := tpDoorbell.Register(p); err != nil {
		fmt.Println(err)
		return
	}
	for tail := range uint32(4) {
		tpDoorbell.Fire(Doorbell{Queue: 0, Tail: tail})
	}
	tpDoorbell.Unregister(p)
	tpDoorbell.Fire(Doorbell{Tail: 100}) // no probe: not counted
	fmt.Println(rings.Load())
	// A typed probe for another payload type does not fit.
	err := tpReset.Register(p)
	fmt.Println(errors.Is(err, tracepoint.ErrType))
	// Output:
	// 6
	// true
}

// Enabled guards a payload that is costly to build: it is one atomic load.
func ExampleTracepoint_Enabled() {
	expensive := func() string { return "computed" }
	fmt.Println(tpReset.Enabled())
	if tpReset.Enabled() {
		tpReset.Fire(expensive()) // not reached: no probe is attached
	}
	// Output:
	// false
}

// Probes registered by pattern attach to matching tracepoints declared
// later, in providers that open later, and run by priority.
func ExampleRegisterPriority() {
	first := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) { fmt.Println("first:", ev.FullName()) }, nil)
	second := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) { fmt.Println("second:", ev.FullName()) }, nil)
	tracepoint.RegisterPriority("plugin-*:load", second, 5)
	tracepoint.RegisterPriority("plugin-*:load", first, 20)
	defer tracepoint.Unregister("plugin-*:load", first)
	defer tracepoint.Unregister("plugin-*:load", second)

	prov := tracepoint.MustNewProvider("plugin-zip")
	load := tracepoint.MustNew[string](prov, "load")
	load.Fire("zip.so")
	prov.Close()
	load.Fire("after close") // a closed provider's tracepoints do nothing
	// Output:
	// first: plugin-zip:load
	// second: plugin-zip:load
}

// After Unregister and Sync, the probe is not running anywhere and will not
// be called again: what it uses may be freed.
func ExampleSync() {
	var buf []string
	p := tracepoint.NewProbe(func(_ any, v string) { buf = append(buf, v) }, nil)
	tpReset.Register(p)
	tpReset.Fire("one")
	tpReset.Unregister(p)
	tracepoint.Sync()
	buf = nil // no Fire can still be appending
	tpReset.Fire("two")
	fmt.Println(len(buf))
	// Output:
	// 0
}

// All lists the live tracepoints in (provider, event) order.
func ExampleAll() {
	for info := range tracepoint.All() {
		if info.Provider == "example" {
			fmt.Println(info.FullName(), info.Fields)
		}
	}
	// Output:
	// example:doorbell [{queue uint16} {tail uint32} {reg uintptr}]
	// example:reset [{value string}]
}

// Expose lets mmiotrace collect the program's tracepoints from outside. It
// needs Linux; elsewhere its error says so.
func ExampleExpose() {
	if err := tracepoint.Expose(); errors.Is(err, tracepoint.ErrNotSupported) {
		fmt.Println("tracepoints stay in-process here:", err)
	} else if err != nil {
		fmt.Println(err)
	}
}
