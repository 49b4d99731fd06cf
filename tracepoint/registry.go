package tracepoint

import (
	"cmp"
	"fmt"
	"path"
	"reflect"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/mmiotrace/mmiotrace/internal/tpcollect/wire"
)

// DefaultPriority is the priority of probes registered without one. Higher
// priorities run first; probes of equal priority run in registration order.
const DefaultPriority = 10

// reg is the process's one registry of providers, tracepoints and probe
// registrations. Its mutex serialises every change; Fire never takes it.
var reg = registry{providers: make(map[string]*Provider), byID: make(map[uint32]*core)}

type registry struct {
	mu        sync.Mutex
	providers map[string]*Provider
	// sorted holds every live tracepoint ordered by (provider, event). It is
	// replaced, never modified, so iterators read it without the mutex.
	sorted  atomicSlice
	regs    []*registration // in registration order
	seq     uint64
	nextID  uint32
	byID    map[uint32]*core // every tracepoint ever declared, for decoding old records
	retired []weak.Pointer[probeArray]
}

// registration is one (pattern, probe) pair.
type registration struct {
	pattern string
	probe   *Probe
	prio    int
	seq     uint64
}

// Provider is a named group of tracepoints that comes and goes as a unit, as
// a kernel module does: a subsystem or plugin makes one when it starts and
// closes it when it stops. Probes registered by name attach to its
// tracepoints as they are declared and detach when it closes.
type Provider struct {
	name   string
	tps    map[string]*core // guarded by reg.mu
	closed bool             // guarded by reg.mu
}

// NewProvider opens provider name. Names are made of letters, digits, '_',
// '.' and '-'. Only one open provider may have a given name.
func NewProvider(name string) (*Provider, error) {
	if !validName(name) {
		return nil, fmt.Errorf("new provider %q: %w", name, ErrName)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if _, ok := reg.providers[name]; ok {
		return nil, fmt.Errorf("new provider %q: %w", name, ErrExists)
	}
	p := &Provider{name: name, tps: make(map[string]*core)}
	reg.providers[name] = p
	return p, nil
}

// MustNewProvider is like NewProvider but panics on error, for package-level
// variables.
func MustNewProvider(name string) *Provider {
	p, err := NewProvider(name)
	if err != nil {
		panic(err)
	}
	return p
}

// Name returns the provider's name.
func (p *Provider) Name() string { return p.name }

// Close removes the provider and its tracepoints: they are disabled, leave
// iteration, and firing them does nothing from then on. Registrations by name
// stay and apply to a later provider of the same name. As with Unregister, a
// Fire already running may still be calling probes; Sync waits for it.
func (p *Provider) Close() error {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if p.closed {
		return fmt.Errorf("close provider %q: %w", p.name, ErrClosed)
	}
	p.closed = true
	delete(reg.providers, p.name)
	for _, c := range p.tps {
		c.live = false
		reg.publish(c, nil)
	}
	reg.sorted.store(slices.DeleteFunc(slices.Clone(reg.sorted.load()), func(c *core) bool { return c.provider == p }))
	return nil
}

// add declares tracepoint name of payload type t in p.
func (p *Provider) add(c *core, name string, t reflect.Type) error {
	if !validName(name) {
		return fmt.Errorf("new tracepoint %s:%q: %w", p.name, name, ErrName)
	}
	s, err := newSchema(t)
	if err != nil {
		return fmt.Errorf("new tracepoint %s:%s: payload %v: %w", p.name, name, t, err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if p.closed {
		return fmt.Errorf("new tracepoint %s:%s: %w", p.name, name, ErrClosed)
	}
	if _, ok := p.tps[name]; ok {
		return fmt.Errorf("new tracepoint %s:%s: %w", p.name, name, ErrExists)
	}
	reg.nextID++ // ids start at 1: 0 is wire.MetaID
	*c = core{id: reg.nextID, provider: p, name: name, full: p.name + ":" + name, schema: s, live: true}
	p.tps[name] = c
	reg.byID[c.id] = c
	all := reg.sorted.load()
	i, _ := slices.BinarySearchFunc(all, c, compareCore)
	reg.sorted.store(slices.Insert(slices.Clone(all), i, c))
	reg.rebuild(c)
	return nil
}

func compareCore(a, b *core) int {
	if c := cmp.Compare(a.provider.name, b.provider.name); c != 0 {
		return c
	}
	return cmp.Compare(a.name, b.name)
}

// validName reports whether s is a usable provider, event or field name:
// the collector's rule, since names go into its log unquoted.
func validName(s string) bool { return wire.ValidName(s) }

// normPattern checks a registration pattern and puts it in canonical form.
// Patterns use path.Match syntax over "provider:event"; one without ':'
// names providers and means "pattern:*".
func normPattern(pattern string) (string, error) {
	if pattern == "" || strings.ContainsAny(pattern, " \t\n/") {
		return "", fmt.Errorf("pattern %q: %w", pattern, ErrName)
	}
	if !strings.Contains(pattern, ":") {
		pattern += ":*"
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return "", fmt.Errorf("pattern %q: %w: %v", pattern, ErrName, err)
	}
	return pattern, nil
}

func isLiteral(pattern string) bool { return !strings.ContainsAny(pattern, `*?[\`) }

func (r *registration) matches(c *core) bool {
	if r.probe.typ != nil && r.probe.typ != c.schema.typ {
		return false
	}
	ok, _ := path.Match(r.pattern, c.full)
	return ok
}

// Register attaches p, with DefaultPriority, to every tracepoint whose
// "provider:event" name matches pattern, now and as providers arrive later.
// See RegisterPriority.
func Register(pattern string, p *Probe) error {
	return RegisterPriority(pattern, p, DefaultPriority)
}

// RegisterPriority attaches p with priority prio (higher runs first) to every
// tracepoint whose "provider:event" name matches pattern, now and whenever a
// matching tracepoint is declared later, until Unregister. Patterns follow
// path.Match ("net:*", "*:rx_*"); a pattern without ':' matches a provider's
// every event. A typed probe attaches only to tracepoints of its payload
// type; for a literal name, a live tracepoint of another type is an error.
//
// Registering the same probe with the same pattern twice is an error. If two
// patterns attach one probe to the same tracepoint, it is called once, at the
// higher priority. Registering is safe while other goroutines fire: the new
// probe array is built aside and published with one atomic store.
func RegisterPriority(pattern string, p *Probe, prio int) error {
	if p == nil {
		return fmt.Errorf("register on %q: nil probe", pattern)
	}
	pat, err := normPattern(pattern)
	if err != nil {
		return fmt.Errorf("register probe: %w", err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	for _, r := range reg.regs {
		if r.pattern == pat && r.probe == p {
			return fmt.Errorf("register probe on %s: %w", pat, ErrExists)
		}
	}
	if p.typ != nil && isLiteral(pat) {
		prov, ev, _ := strings.Cut(pat, ":")
		if pr := reg.providers[prov]; pr != nil {
			if c := pr.tps[ev]; c != nil && c.schema.typ != p.typ {
				return fmt.Errorf("register probe on %s: %w: probe takes %v, tracepoint fires %v", pat, ErrType, p.typ, c.schema.typ)
			}
		}
	}
	reg.seq++
	r := &registration{pattern: pat, probe: p, prio: prio, seq: reg.seq}
	reg.regs = append(reg.regs, r)
	reg.rebuildMatching(r)
	return nil
}

// Unregister removes the registration of p with pattern (the same pattern
// given to Register). Fires that start after it returns never call p through
// this registration. A Fire already running when it is called may still call
// p, once, after Unregister returns; Sync waits until every such Fire has
// finished. Unregistering a pair that is not registered is an error.
func Unregister(pattern string, p *Probe) error {
	pat, err := normPattern(pattern)
	if err != nil {
		return fmt.Errorf("unregister probe: %w", err)
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	i := slices.IndexFunc(reg.regs, func(r *registration) bool { return r.pattern == pat && r.probe == p })
	if i < 0 {
		return fmt.Errorf("unregister probe from %s: %w", pat, ErrNotFound)
	}
	r := reg.regs[i]
	reg.regs = slices.Delete(reg.regs, i, i+1)
	reg.rebuildMatching(r)
	return nil
}

// rebuildMatching recomputes the probe arrays of the live tracepoints r
// matches.
func (g *registry) rebuildMatching(r *registration) {
	for _, c := range g.sorted.load() {
		if r.matches(c) {
			g.rebuild(c)
		}
	}
}

// rebuild recomputes c's probe array from the registrations and publishes it.
func (g *registry) rebuild(c *core) {
	var rs []*registration
	for _, r := range g.regs {
		if r.matches(c) {
			rs = append(rs, r)
		}
	}
	slices.SortStableFunc(rs, func(a, b *registration) int {
		if a.prio != b.prio {
			return cmp.Compare(b.prio, a.prio)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	var es []entry
	for _, r := range rs {
		if !slices.ContainsFunc(es, func(e entry) bool { return e.probe == r.probe }) {
			es = append(es, entry{fn: r.probe.fn, data: r.probe.data, probe: r.probe})
		}
	}
	old := c.probes.Load()
	if old != nil && slices.EqualFunc(old.e, es, func(a, b entry) bool { return a.probe == b.probe }) {
		return
	}
	// Tell probes that are new to c before c can call them, so a collector
	// describes c in its ring ahead of c's first event.
	for _, e := range es {
		if e.probe.attach != nil && (old == nil || !slices.ContainsFunc(old.e, func(o entry) bool { return o.probe == e.probe })) {
			e.probe.attach(c)
		}
	}
	if len(es) == 0 {
		g.publish(c, nil)
	} else {
		g.publish(c, &probeArray{e: es})
	}
}

// publish makes pa c's probe array and retires the old one for Sync.
func (g *registry) publish(c *core, pa *probeArray) {
	old := c.probes.Swap(pa)
	if old == nil {
		return
	}
	if len(g.retired) >= 64 {
		g.retired = slices.DeleteFunc(g.retired, func(w weak.Pointer[probeArray]) bool { return w.Value() == nil })
	}
	g.retired = append(g.retired, weak.Make(old))
}
