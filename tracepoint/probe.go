package tracepoint

import (
	"reflect"
	"unsafe"
)

// Probe is a function attached to tracepoints, with the user data passed to
// it on every call. The *Probe is the registration's identity: register the
// same Probe on many tracepoints, and pass it again to Unregister. Make one
// with NewProbe (typed) or NewRawProbe (any payload).
//
// Probes run synchronously inside Fire, on the firing goroutine, possibly on
// many goroutines at once: they must be safe for concurrent use, should be
// quick, and must not block for long.
type Probe struct {
	fn   func(data any, ev Event)
	typ  reflect.Type // payload type accepted; nil: any
	data any
	// attach, when set, is called under the registry lock when the probe is
	// about to become callable from tracepoint c (the collector uses it to
	// describe c ahead of c's events).
	attach func(c *core)
}

// NewProbe returns a probe for tracepoints of payload type T. fn receives
// data and a copy of the fired payload.
func NewProbe[T any](fn func(data any, ev T), data any) *Probe {
	return &Probe{
		fn: func(data any, ev Event) {
			fn(data, *(*T)(ev.p))
		},
		typ:  reflect.TypeFor[T](),
		data: data,
	}
}

// NewRawProbe returns a probe for tracepoints of any payload type. fn reads
// the payload through the Event, without allocating.
func NewRawProbe(fn func(data any, ev Event), data any) *Probe {
	return &Probe{fn: fn, data: data}
}

// Data returns the user data given when the probe was made.
func (p *Probe) Data() any { return p.data }

// Event is a fired tracepoint as a raw probe sees it: which tracepoint, and
// its payload. It points into the firing goroutine's stack and is valid only
// during the probe call: a probe must not keep it, or anything it returns
// other than copies, after returning.
type Event struct {
	c *core
	p unsafe.Pointer
}

// Provider returns the provider's name.
func (e Event) Provider() string { return e.c.provider.name }

// Name returns the event's name, without the provider.
func (e Event) Name() string { return e.c.name }

// FullName returns "provider:event".
func (e Event) FullName() string { return e.c.full }

// NumField returns the number of payload fields.
func (e Event) NumField() int { return len(e.c.schema.fields) }

// Field describes payload field i.
func (e Event) Field(i int) Field {
	f := e.c.schema.fields[i]
	return Field{Name: f.Name, Type: f.Type}
}

// Int returns field i as a signed integer: integer fields converted, booleans
// as 0 or 1, anything else 0.
func (e Event) Int(i int) int64 { return e.c.schema.int(i, e.p) }

// Uint returns field i as an unsigned integer, converted as by Int.
func (e Event) Uint(i int) uint64 { return e.c.schema.uint(i, e.p) }

// Float returns float field i, or 0 if it is not a float.
func (e Event) Float(i int) float64 { return e.c.schema.float(i, e.p) }

// Bool returns field i as a boolean: non-zero integers and true booleans
// are true.
func (e Event) Bool(i int) bool { return e.c.schema.int(i, e.p) != 0 }

// String returns string field i, or "" if it is not a string. The result
// shares memory with the payload: copy it (strings.Clone) to keep it beyond
// the probe call if the firer might reuse that memory.
func (e Event) String(i int) string {
	if e.c.schema.fields[i].Type != "string" {
		return ""
	}
	return *(*string)(unsafe.Add(e.p, e.c.schema.src[i]))
}

// AppendText appends "provider:event name=value ..." to b, values rendered as
// the collector renders them. It allocates only if b must grow.
func (e Event) AppendText(b []byte) []byte {
	b = append(b, e.c.full...)
	for i := range e.c.schema.fields {
		b = append(b, ' ')
		b = append(b, e.c.schema.fields[i].Name...)
		b = append(b, '=')
		b = e.c.schema.appendValue(b, i, e.p)
	}
	return b
}

// Payload returns a copy of the fired value, as an interface holding the
// tracepoint's payload type. It allocates.
func (e Event) Payload() any {
	return reflect.NewAt(e.c.schema.typ, e.p).Elem().Interface()
}
