package tracepoint

import (
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// Errors returned by this package, wrapped with context.
var (
	// ErrExists reports a provider, tracepoint or registration that already exists.
	ErrExists = errors.New("already exists")
	// ErrNotFound reports an unknown registration.
	ErrNotFound = errors.New("not found")
	// ErrType reports a typed probe whose payload type differs from the tracepoint's.
	ErrType = errors.New("payload type mismatch")
	// ErrName reports a malformed provider name, event name or pattern.
	ErrName = errors.New("bad name")
	// ErrClosed reports an operation on a provider that has been closed.
	ErrClosed = errors.New("provider closed")
)

// Tracepoint is a static tracepoint with payload type T. Declare one with
// New, fire it with Fire, attach probes with Register. Its zero value is not
// usable.
type Tracepoint[T any] struct {
	c core
}

// core is the part of a tracepoint that does not depend on its payload type.
type core struct {
	// probes is the array Fire calls, nil when no probe is attached: this one
	// pointer is the tracepoint's on/off state. It is replaced, never
	// modified, under reg.mu.
	probes atomic.Pointer[probeArray]

	id       uint32
	provider *Provider
	name     string // event name
	full     string // "provider:event"
	schema   *schema
	live     bool // guarded by reg.mu: its provider is open
}

// probeArray is one published set of probes, highest priority first. It is
// immutable once published. Fire keeps it reachable for as long as it runs,
// which is what Sync relies on.
type probeArray struct {
	e []entry
}

type entry struct {
	fn    func(data any, ev Event)
	data  any
	probe *Probe
}

// New declares tracepoint p:name with payload type T. T is a struct of
// booleans, integers, floats and strings, or a single such value; see the
// package documentation for the rules. If probes registered by name match the
// new tracepoint, it starts enabled.
func New[T any](p *Provider, name string) (*Tracepoint[T], error) {
	tp := new(Tracepoint[T])
	if err := p.add(&tp.c, name, reflect.TypeFor[T]()); err != nil {
		return nil, err
	}
	return tp, nil
}

// MustNew is like New but panics on error. It suits package-level variables,
// where a bad declaration is a programming error found at start-up.
func MustNew[T any](p *Provider, name string) *Tracepoint[T] {
	tp, err := New[T](p, name)
	if err != nil {
		panic(err)
	}
	return tp
}

// Enabled reports whether any probe is attached: one atomic load. Use it to
// skip building an expensive payload:
//
//	if tp.Enabled() {
//		tp.Fire(Ev{Name: expensive()})
//	}
func (tp *Tracepoint[T]) Enabled() bool { return tp.c.probes.Load() != nil }

// Fire calls every attached probe, highest priority first, with ev. With no
// probe attached it costs one atomic load and a branch. It takes no lock,
// allocates nothing and may be called from any number of goroutines.
func (tp *Tracepoint[T]) Fire(ev T) {
	if tp.c.probes.Load() != nil {
		fireValue(&tp.c, ev)
	}
}

// fireValue is Fire's out-of-line half: it runs the probes on ev. Taking ev
// by value, rather than taking its address in Fire, lets the compiler build
// small payloads in registers and only on the enabled path; keeping it out
// of line keeps Fire small enough to inline into its callers. It loads the
// probe array again, and may find it changed or gone, which is as if Fire had
// started a moment later.
//
//go:noinline
func fireValue[T any](c *core, ev T) {
	pa := c.probes.Load()
	if pa == nil {
		return
	}
	e := Event{c: c, p: noescape(unsafe.Pointer(&ev))}
	for i := range pa.e {
		pe := &pa.e[i]
		pe.fn(pe.data, e)
	}
	// Race builds only: tell the detector this Fire is done, while pa is
	// still reachable, so Sync cannot return before it.
	raceFireDone()
	// pa must stay reachable until the last probe returns: Sync learns that
	// no Fire is still using a retired array when the GC finds it unreachable.
	runtime.KeepAlive(pa)
}

// noescape hides p from escape analysis. Fire passes a pointer to its
// argument to probes through function values, which the compiler must assume
// keep it; they do not (an Event is valid only during the call), and hiding
// it keeps the argument on the stack so that firing never allocates. The
// pointer is laundered through a uintptr held in memory, the runtime's own
// trick, written so that no uintptr is converted back to a pointer.
//
//go:nosplit
func noescape(p unsafe.Pointer) unsafe.Pointer {
	x := uintptr(p)
	return *(*unsafe.Pointer)(unsafe.Pointer(&x))
}

// Name returns the tracepoint's full name, "provider:event".
func (tp *Tracepoint[T]) Name() string { return tp.c.full }

// Provider returns the provider the tracepoint belongs to.
func (tp *Tracepoint[T]) Provider() *Provider { return tp.c.provider }

// Info describes the tracepoint now.
func (tp *Tracepoint[T]) Info() Info { return tp.c.info() }

// Register attaches p with DefaultPriority. It is RegisterPriority(tp.Name(),
// p, DefaultPriority): the registration is by name, so it also applies to a
// later provider of the same name after this one closes.
func (tp *Tracepoint[T]) Register(p *Probe) error {
	return tp.RegisterPriority(p, DefaultPriority)
}

// RegisterPriority attaches p with priority prio; higher runs first.
func (tp *Tracepoint[T]) RegisterPriority(p *Probe, prio int) error {
	if p == nil {
		return fmt.Errorf("register probe on %s: nil probe", tp.c.full)
	}
	if p.typ != nil && p.typ != tp.c.schema.typ {
		return fmt.Errorf("register probe on %s: %w: probe takes %v, tracepoint fires %v", tp.c.full, ErrType, p.typ, tp.c.schema.typ)
	}
	reg.mu.Lock()
	live := tp.c.live
	reg.mu.Unlock()
	if !live {
		return fmt.Errorf("register probe on %s: %w", tp.c.full, ErrClosed)
	}
	return RegisterPriority(tp.c.full, p, prio)
}

// Unregister detaches p. It is Unregister(tp.Name(), p). Fires that start
// after it returns do not call p; one already running may still call it.
// Call Sync to wait for those.
func (tp *Tracepoint[T]) Unregister(p *Probe) error {
	return Unregister(tp.c.full, p)
}

// Field describes one payload field.
type Field struct {
	Name string
	Type string // bool, int8..int64, int, uint8..uint64, uint, uintptr, float32, float64 or string
}

// Info describes a tracepoint at the time it was taken.
type Info struct {
	Provider string
	Name     string // the event name, without the provider
	Fields   []Field
	Enabled  bool // at least one probe was attached
	Probes   int  // how many probes were attached
}

// FullName returns "provider:event".
func (i Info) FullName() string { return i.Provider + ":" + i.Name }

func (c *core) info() Info {
	fs := make([]Field, len(c.schema.fields))
	for i, f := range c.schema.fields {
		fs[i] = Field{Name: f.Name, Type: f.Type}
	}
	n := 0
	if pa := c.probes.Load(); pa != nil {
		n = len(pa.e)
	}
	return Info{Provider: c.provider.name, Name: c.name, Fields: fs, Enabled: n > 0, Probes: n}
}

// desc describes c for the collector.
func (c *core) desc() wire.Desc {
	return wire.Desc{
		ID:        c.id,
		Provider:  c.provider.name,
		Name:      c.name,
		Enabled:   c.probes.Load() != nil,
		FixedSize: int(c.schema.hi - c.schema.lo),
		Fields:    append([]wire.Field(nil), c.schema.fields...),
	}
}
