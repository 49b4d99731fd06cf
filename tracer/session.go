package tracer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/internal/sysfilter"
	"github.com/mmiotrace/mmiotrace/internal/x86"
	"github.com/mmiotrace/mmiotrace/kmmio"
	"github.com/mmiotrace/mmiotrace/trace"
)

// Recorder receives the records of a session. trace.Buffer is one. Append
// may block (the traced program then waits: nothing is dropped) and is
// called from the tracer loop and, for MARK and TP records, from other
// goroutines.
type Recorder interface {
	Append(*trace.Record) error
}

// Config describes a tracing session.
type Config struct {
	// Argv is the command to spawn; PID the process to attach to. Exactly
	// one is set.
	Argv []string
	PID  int
	// Self is the path of the mmiotrace executable, which RunHelper must
	// handle, for the waker.
	Self string
	// Env is the spawned program's environment; nil means the tracer's.
	Env []string
	// Stdio of the spawned program; nil entries default to os.Stdin,
	// os.Stdout and os.Stderr.
	Stdio [3]*os.File
	// Select says what to trace.
	Select Selection
	// Out receives the records.
	Out Recorder
	// Watches, if set, makes this a `watch` session: it resolves the
	// watchpoints to place (see WatchResolver).
	Watches WatchResolver
	// WatchBackend chooses what serves watches; the zero value probes the
	// host (BackendAuto).
	WatchBackend WatchBackend
	// Info, if set, receives informational lines (where each watch went).
	Info func(string)
	// Warn, if set, receives warnings (a glob that matches nothing yet).
	Warn func(string)
	// Started, if set, is called once the program is traced, with its pid.
	Started func(pid int)
	// NoPin leaves the program's threads where the scheduler puts them,
	// instead of on the tracer's CPU (see pin.go).
	NoPin bool
	// Stopped, if set, is called when a tracer failure (a log that cannot
	// be written, Abort) has stopped the tracing of a spawned program,
	// which then runs on untraced to its end (see Run), with the failure
	// that Run will return.
	Stopped func(error)
	// NoFollow leaves the processes the program creates untraced (their
	// pages are restored at their first stop); by default they are traced
	// (follow.go).
	NoFollow bool
	// NoOptimize keeps every access on the trap path: no instruction is
	// patched (see optimize.go and package kmmio/optprobe).
	NoOptimize bool
	// OptimizeAfter is how many times an instruction traps on a traced
	// page before it is patched with an optimized probe; 0 means 1.
	OptimizeAfter int
	// RingSlots is the number of records the ring of optimized probes
	// holds per process (a power of two); 0 means optprobe.RingSlots. A
	// small ring makes detours take their slow path often (for tests).
	RingSlots int
}

// Result is how a session ended.
type Result struct {
	// ExitCode is the traced program's exit status, 128+N if a signal N
	// killed it, or -1 when the tracer detached from a live program.
	ExitCode int
	// Signal is the signal that killed the program, or 0.
	Signal   syscall.Signal
	Detached bool
}

// MapStats counts the accesses to one traced mapping.
type MapStats struct {
	ID                     uint32
	PID                    int // the process whose map it is
	Path                   string
	Phys, Virt, Len        uint64
	Reads, Writes, Unknown uint64
	Unmapped               bool
}

// Counters are the live totals of a session, safe to read from any goroutine.
type Counters struct {
	Reads, Writes, Unknown atomic.Uint64
	Emulated, Stepped      atomic.Uint64
	Maps                   atomic.Int64  // mappings traced now
	Syscalls               atomic.Uint64 // system calls served on traced memory
	Procs                  atomic.Int64  // processes traced now
	ProcsSeen              atomic.Int64  // processes traced in the session
	// Optimized probes: accesses recorded by detours without a trap,
	// records their slow path left to the tracer, sites patched now and
	// ever.
	Detoured, Slow atomic.Uint64
	Sites          atomic.Int64
	Patched        atomic.Uint64
}

// Tracer runs one session. Create it with New, run it with Run.
type Tracer struct {
	cfg    Config
	Counts Counters

	// *process is the current process: the one whose stop is being
	// handled. The loop handles one stop at a time and selects the stopped
	// thread's process first (use); code that works on another process
	// (a new child, every process at detach) selects it, too. Its fields
	// (pid, mem, engine, maps, watch...) are therefore always those of the
	// address space being worked on.
	*process
	root    *process // the program: spawned or attached
	procs   map[int]*process
	spawned bool // we started it: seccomp filter, PTRACE_O_EXITKILL
	proc    *os.Process

	threads map[int]*thread
	queue   []stop // stops collected while stopping threads, handled next

	nextID  uint32
	stats   map[uint32]*MapStats
	order   []uint32
	pciSeen map[string]bool
	// buildIDs caches the build ids of the files of CODE records.
	buildIDs map[fileID][]byte
	code     [16]byte
	vec      x86.VecRegs
	xsave    []byte
	hit      hitState
	pinned   bool // the tracer and the program share CPU cpu
	cpu      int
	// watchStats are every watch's counts, in the order placed.
	watchStats []*WatchStats
	perfLost   atomic.Uint64
	// watchPlan says which mechanisms serve watches (planWatches).
	watchPlan watchPlan
	// drain reads the rings of optimized probes (optdrain.go); nil until
	// the first process is optimized.
	drain *drainer

	pidSeen   atomic.Int64            // the pid, for other goroutines
	foreign   map[int]bool            // fork children: kept running, not traced
	early     map[int]unix.WaitStatus // first stops of tracees not announced yet
	vforked   map[int]bool            // vfork children still sharing the program's memory
	forked    []int                   // fork children whose pages are still armed
	forkedOpt map[int]*optInherited   // their inherited optimized probes (optSnapshot)
	waker     *wakerConn
	cancel    atomic.Bool // detach (attached) or kill (spawned): Ctrl-C
	force     atomic.Bool // stop waiting for threads: a second Ctrl-C
	killAll   atomic.Bool // kill the program's child processes too
	abortErr  atomic.Pointer[error]
	lastSig   [65]atomic.Int64 // when the program last got each signal, unix ns
	result    Result
	warned    map[string]bool // warnOnce
	err       error
	// outErr is the first error of the log (Out): the session ends as a
	// tracer failure once the stop at hand is handled.
	outErr error
	// passthrough: tracing ended by a failure, the spawned program runs
	// on untraced, with mmiotrace as a tracer that only passes every stop
	// on (see untrace).
	passthrough bool
	// nextDrain is when the loop next takes every ready report (takeReady).
	nextDrain time.Time
	// quietProtect: protection changes are not the waker's business (a
	// page disarmed for a single step).
	quietProtect bool
}

// process is one traced process: a thread group and what the tracer keeps
// about the address space it runs in.
type process struct {
	pid    int // thread-group id
	mem    *ptrace.Mem
	inj    ptrace.Injector
	injTID int // the stopped thread that injected syscalls run in
	engine *kmmio.Engine
	maps   []*tmap // traced pieces, by address
	icache map[uint64]*x86.Inst
	watch  *watchSet
	perf   *perfSet // the perf backend of watches, when in use
	// leaderMask is the process's affinity before pinning, for threads
	// born while pinned.
	leaderMask unix.CPUSet
	// shadow holds the original bytes under the process's int3s and
	// patches, for every goroutine that reads its code (the perf reader,
	// too).
	shadow atomic.Pointer[codeShadow]
	parent int    // the parent's pid, for PROC lines
	exe    string // the program it runs
	// forked: its state was copied from its parent by fork and is checked
	// against its own maps at its first stop.
	forked bool
	// scratch is memory the tracer mapped in it, for bounced system calls
	// and filter programs.
	scratch []*scratch
	// filters are the ranges its seccomp range filters cover (inherited
	// by its children, kept across exec), of filterInsns instructions in
	// all; syscallStops: it stops at every system call instead.
	filters      []sysfilter.Range
	filterInsns  int
	syscallStops bool
	// exposer is the thread whose exposed system call has disarmed pages
	// of this memory, if any (sysmem.go).
	exposer *thread
	// brk is the heap's page-aligned end as last seen (0: not yet), for
	// --range selections over the heap.
	brk uint64
	// opt is the optimized probes' state (optimize.go), nil until used;
	// optInherited, those of its parent, inherited by fork and removed at
	// its first stop.
	opt          *optProc
	optInherited *optInherited
}

// newProcess returns the tracer's state for process pid, with nothing
// traced yet.
func (t *Tracer) newProcess(pid int) *process {
	p := &process{pid: pid, icache: make(map[uint64]*x86.Inst)}
	p.inj.Pending = t.holdSignal
	p.inj.JobStop = func(tid, sig int) {
		if th := t.threads[tid]; th != nil {
			th.jobStopped = ptrace.IsStopSignal(unix.Signal(sig))
		}
	}
	if t.cfg.Watches != nil {
		p.watch = newWatchSet(t.cfg.Watches, t.watchPlan)
	}
	return p
}

// use makes p the current process.
func (t *Tracer) use(p *process) { t.process = p }

// stop is a wait status held back to be handled by the loop.
type stop struct {
	tid int
	ws  unix.WaitStatus
}

// New checks cfg and returns a Tracer.
func New(cfg Config) (*Tracer, error) {
	if (len(cfg.Argv) == 0) == (cfg.PID == 0) {
		return nil, errors.New("mmiotrace: give either a command or a pid")
	}
	if cfg.Out == nil {
		return nil, errors.New("mmiotrace: no output")
	}
	for i, f := range []*os.File{os.Stdin, os.Stdout, os.Stderr} {
		if cfg.Stdio[i] == nil {
			cfg.Stdio[i] = f
		}
	}
	for _, g := range cfg.Select.Globs {
		if err := ValidateGlob(g); err != nil {
			return nil, err
		}
	}
	t := &Tracer{
		cfg:     cfg,
		threads: make(map[int]*thread),
		stats:   make(map[uint32]*MapStats),
		pciSeen: make(map[string]bool),
		procs:   make(map[int]*process),
		foreign: make(map[int]bool),
		early:   make(map[int]unix.WaitStatus),
		vforked: make(map[int]bool),
		xsave:   make([]byte, 16384),
		nextID:  1,
	}
	if cfg.Watches != nil {
		plan, err := planWatches(cfg.WatchBackend)
		if err != nil {
			return nil, err
		}
		t.watchPlan = plan
	}
	t.root = t.newProcess(0)
	t.use(t.root)
	return t, nil
}

// PerfLost returns how many perf samples of watch hits the kernel dropped
// (the ring was full); 0 with the ptrace backend, which cannot lose any.
func (t *Tracer) PerfLost() uint64 { return t.perfLost.Load() }

// Stats returns the per-mapping counts, in map id order.
func (t *Tracer) Stats() []MapStats {
	out := make([]MapStats, 0, len(t.order))
	for _, id := range t.order {
		out = append(out, *t.stats[id])
	}
	if t.drain != nil {
		t.drain.addCounts(out)
	}
	return out
}

// ThreadCount returns how many threads of the program are traced. Call it
// only from the tracer's goroutine: from Config.Started, which runs there,
// for the count at the start of a session. A session that only collects
// tracepoints (no ptrace) counts the program's threads in /proc.
func (t *Tracer) ThreadCount() int {
	if t.threads != nil {
		return len(t.threads)
	}
	tids, err := tasks(t.pid)
	if err != nil {
		return 0
	}
	return len(tids)
}

// PID returns the traced program's process id, once started.
func (t *Tracer) PID() int { return int(t.pidSeen.Load()) }

// Run traces until the program exits or ctx is cancelled. It locks the
// calling goroutine to its OS thread for its whole run: every ptrace request
// must come from the thread that attached.
//
// On cancellation an attached program is detached, with every page restored
// and every thread running (a thread stopped by job control stays stopped).
// A spawned program is killed instead: it carries a seccomp filter that fails
// its mmap calls without a tracer. (To let a spawned program end on its own,
// forward it the signal and keep ctx alive.) Force makes a detach stop
// waiting for threads that do not stop.
//
// On a tracer failure (a log that cannot be written, Abort, a failed
// request) tracing stops and the program is left unharmed: an attached one
// is detached as on cancellation; a spawned one keeps running, untraced,
// with mmiotrace as a bare tracer that passes its stops on (its seccomp
// filter needs one), and Run returns when it ends (Config.Stopped says when
// tracing stopped). Run then returns the failure, with every record made
// until then already passed to Out.
func (t *Tracer) Run(ctx context.Context) (Result, error) {
	if t.passive() {
		return t.runPassive(ctx)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	defer quietStops()()
	// The waker starts before the pinning: it inherits this thread's CPU
	// affinity, and its start (a Go runtime's, 10 ms or more on hosts
	// with slow page faults) must not take the CPU the tracer and the
	// program are about to share.
	if err := t.startWaker(); err != nil {
		return Result{}, err
	}
	defer t.stopWaker()
	if !t.cfg.NoPin {
		t.cpu, t.pinned = pinSelf()
	}
	if t.watch != nil && t.watch.plan.note != "" {
		t.info(t.watch.plan.note)
	}
	if len(t.cfg.Argv) > 0 {
		if err := t.spawn(); err != nil {
			return Result{}, err
		}
	} else if err := t.attach(); err != nil {
		return Result{}, err
	}
	t.pidSeen.Store(int64(t.root.pid))
	if t.cfg.Started != nil {
		t.cfg.Started(t.root.pid)
	}
	stopWatch := context.AfterFunc(ctx, func() {
		t.cancel.Store(true)
		t.wake()
	})
	defer stopWatch()

	err := t.loop()
	if perr := t.stopPerf(); err == nil {
		err = perr
	}
	if err == nil && t.over() && !t.result.Detached {
		// The processes are gone, and their mappings with them: their
		// accesses still in the rings come before the UNMAPs.
		err = t.closeDrain()
		for _, p := range t.procs {
			if perr := t.processGone(p); err == nil {
				err = perr
			}
		}
	}
	if err != nil && !t.over() {
		// A tracer failure: leave nothing behind in a live program.
		if t.spawned && t.cfg.Stopped != nil {
			t.cfg.Stopped(err)
		}
		if derr := t.abandon(); derr != nil {
			err = fmt.Errorf("%w (and while cleaning up: %v)", err, derr)
		}
	}
	if derr := t.closeDrain(); err == nil {
		err = derr
	}
	for _, p := range t.procs {
		t.use(p)
		t.closeMaps()
		if t.mem != nil {
			t.mem.Close()
		}
	}
	return t.result, err
}

// over reports that the traced program is gone.
func (t *Tracer) over() bool { return len(t.threads) == 0 }

// Kill kills a spawned program and the child processes it started, which
// carry its seccomp filter and cannot run on without mmiotrace (for a second
// Ctrl-C). Safe from any goroutine.
func (t *Tracer) Kill() {
	if pid := t.pidSeen.Load(); len(t.cfg.Argv) > 0 && pid > 0 {
		syscall.Kill(int(pid), syscall.SIGKILL)
		t.killAll.Store(true)
		t.wake()
	}
}

// Force makes the end of a session stop waiting for threads that do not
// stop (a second Ctrl-C): a detach under way, or the next one, restores the
// program's pages through the threads that did stop and detaches them; the
// others stay attached until mmiotrace exits, when the kernel detaches
// them. A spawned program is killed, as by Kill. Safe from any goroutine.
func (t *Tracer) Force() {
	t.force.Store(true)
	t.wake()
}

// Abort ends the session as a tracer failure (see Run) with err: for a
// failure found outside the tracer, such as a log that cannot be written.
// Safe from any goroutine; the first error wins.
func (t *Tracer) Abort(err error) {
	t.abortErr.CompareAndSwap(nil, &err)
	t.wake()
}

func (t *Tracer) aborted() error {
	if p := t.abortErr.Load(); p != nil {
		return *p
	}
	return nil
}

// LastSignal returns when the traced program last received sig (a signal
// stop of any of its threads), and false if it never did or if the session
// does not see the program's signals (one that only collects tracepoints).
// Safe from any goroutine.
func (t *Tracer) LastSignal(sig syscall.Signal) (time.Time, bool) {
	if t.passive() || sig <= 0 || int(sig) >= len(t.lastSig) {
		return time.Time{}, false
	}
	ns := t.lastSig[sig].Load()
	if ns == 0 {
		return time.Time{}, true
	}
	return time.Unix(0, ns), true
}

// sawSignal records that the program received sig.
func (t *Tracer) sawSignal(sig int) {
	if sig > 0 && sig < len(t.lastSig) {
		t.lastSig[sig].Store(time.Now().UnixNano())
	}
}
