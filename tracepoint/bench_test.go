package tracepoint_test

import (
	"testing"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// benchEvent is a typical payload: a few scalars and a short string.
type benchEvent struct {
	Addr  uint64
	Value uint32
	Write bool
	Dev   string
}

var (
	benchProv  = tracepoint.MustNewProvider("bench")
	tpDisabled = tracepoint.MustNew[benchEvent](benchProv, "disabled")
	tpOneProbe = tracepoint.MustNew[benchEvent](benchProv, "one_probe")
	tpRawProbe = tracepoint.MustNew[benchEvent](benchProv, "raw_probe")
	benchSink  uint64
)

// BenchmarkFireDisabled fires a tracepoint with no probe attached.
func BenchmarkFireDisabled(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tpDisabled.Fire(benchEvent{Addr: uint64(i), Value: 7, Write: true, Dev: "bar0"})
	}
}

// BenchmarkFireOneProbe fires a tracepoint with one typed no-op probe.
func BenchmarkFireOneProbe(b *testing.B) {
	p := tracepoint.NewProbe(func(_ any, ev benchEvent) {}, nil)
	if err := tpOneProbe.Register(p); err != nil {
		b.Fatal(err)
	}
	defer tpOneProbe.Unregister(p)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tpOneProbe.Fire(benchEvent{Addr: uint64(i), Value: 7, Write: true, Dev: "bar0"})
	}
}

// BenchmarkFireRawProbe fires a tracepoint with one raw probe reading a field.
func BenchmarkFireRawProbe(b *testing.B) {
	p := tracepoint.NewRawProbe(func(_ any, ev tracepoint.Event) { benchSink += ev.Uint(0) }, nil)
	if err := tpRawProbe.Register(p); err != nil {
		b.Fatal(err)
	}
	defer tpRawProbe.Unregister(p)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tpRawProbe.Fire(benchEvent{Addr: uint64(i), Value: 7, Write: true, Dev: "bar0"})
	}
}

// bigEvent has more fields than the compiler keeps in registers, so its
// literal is built in memory before Fire's check: see docs/TRACEPOINTS.md.
type bigEvent struct {
	A, B, C, D uint64
	E, F       int32
	G, H       string
	I          float64
	J          bool
}

var tpBig = tracepoint.MustNew[bigEvent](benchProv, "big")

// BenchmarkFireDisabledBig fires a disabled tracepoint with a ten-field payload.
func BenchmarkFireDisabledBig(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		tpBig.Fire(bigEvent{A: uint64(i), G: "x", H: "y"})
	}
}

// BenchmarkFireDisabledBigGuarded guards the same fire with Enabled.
func BenchmarkFireDisabledBigGuarded(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if tpBig.Enabled() {
			tpBig.Fire(bigEvent{A: uint64(i), G: "x", H: "y"})
		}
	}
}
