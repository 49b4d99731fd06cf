package tracer

import (
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/procmaps"
	"github.com/mmiotrace/mmiotrace/internal/ptrace"
	"github.com/mmiotrace/mmiotrace/kmmio"
)

// The waker's watch over an attached program (see WakerArg): if the tracer
// is killed (SIGKILL cannot be caught), the kernel detaches every thread
// and lets it run, with the tracer's PROT_NONE pages still in place and
// its threads pinned to one CPU. The waker, whose end of a pipe the dying
// tracer closes, then gives the threads their CPU affinity back and, best
// effort, the armed pages their protection: it attaches to the program
// itself, stops it, injects mprotect, and detaches.
//
// The page restore comes too late for a thread that touches an armed page
// between the tracer's death and the waker's attach (microseconds for a
// thread that touches them all the time): that thread gets the SIGSEGV the
// page was armed to produce, and dies of it. So does a thread the tracer
// was handling (its stop's SIGSEGV, or the single-step's SIGTRAP, is
// delivered when the kernel detaches it), and a thread in the middle of an
// injected system call resumes in the vDSO with the tracer's registers.
// ptrace gives a tracer no way to arrange anything for after its death but
// PTRACE_O_EXITKILL, which kills instead. docs/RELIABILITY.md has the rest.
//
// Protocol lines, tracer to waker (PID, ADDR and LEN decimal and hex):
//
//	a PID ADDR PROT   the page at ADDR is armed; the program's own
//	                  protection of it is PROT
//	d PID ADDR LEN    the pages of [ADDR, ADDR+LEN) are not armed any more
//	x PID             no page of PID is armed any more (exec)
const (
	wakerArm    = "a %d %x %d\n"
	wakerDisarm = "d %d %x %x\n"
	wakerExec   = "x %d\n"
)

// watchdogProtect tells the waker about a protection change the tracer made
// in p: arming a page, or restoring it. Spawned programs die with the
// tracer (PTRACE_O_EXITKILL), and a page disarmed for a single step only
// is not worth a message.
func (t *Tracer) watchdogProtect(p *process, addr, length uint64, prot int) {
	if t.spawned || t.quietProtect || t.waker == nil {
		return
	}
	if prot != kmmio.ProtNone {
		t.waker.send(fmt.Sprintf(wakerDisarm, p.pid, addr, length))
		return
	}
	for a := addr &^ (kmmio.PageSize - 1); a < addr+length; a += kmmio.PageSize {
		if fp := p.engine.Page(a); fp != nil {
			t.waker.send(fmt.Sprintf(wakerArm, p.pid, a, fp.Prot))
		}
	}
}

// watchdogForgetAll tells the waker that p's image is gone (exec).
func (t *Tracer) watchdogForgetAll(p *process) {
	if !t.spawned && t.waker != nil {
		t.waker.send(fmt.Sprintf(wakerExec, p.pid))
	}
}

// forgetPages drops the probes of a range the program unmapped (see
// kmmio.Engine.Forget), and tells the waker.
func (t *Tracer) forgetPages(addr, length uint64) ([]*kmmio.Probe, error) {
	if !t.spawned && t.waker != nil {
		t.waker.send(fmt.Sprintf(wakerDisarm, t.pid, addr, length))
	}
	return t.engine.Forget(addr, length)
}

// armedPages is the waker's record of the pages armed in each process:
// page address to the program's protection.
type armedPages map[int]map[uint64]int

// line applies one protocol line; it reports whether it was one of these.
func (ap armedPages) line(f []string) bool {
	switch {
	case len(f) == 4 && f[0] == "a":
		pid, err1 := strconv.Atoi(f[1])
		addr, err2 := strconv.ParseUint(f[2], 16, 64)
		prot, err3 := strconv.Atoi(f[3])
		if err1 == nil && err2 == nil && err3 == nil {
			if ap[pid] == nil {
				ap[pid] = map[uint64]int{}
			}
			ap[pid][addr] = prot
		}
	case len(f) == 4 && f[0] == "d":
		pid, err1 := strconv.Atoi(f[1])
		addr, err2 := strconv.ParseUint(f[2], 16, 64)
		n, err3 := strconv.ParseUint(f[3], 16, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			for a := addr &^ (kmmio.PageSize - 1); a < addr+n; a += kmmio.PageSize {
				delete(ap[pid], a)
			}
		}
	case len(f) == 2 && f[0] == "x":
		if pid, err := strconv.Atoi(f[1]); err == nil {
			delete(ap, pid)
		}
	default:
		return false
	}
	return true
}

// restore gives the armed pages of every process their protection back,
// best effort (see above): once the kernel has detached the dead tracer's
// threads, it seizes and stops them, injects mprotect through one of them
// for each page that is still PROT_NONE, and detaches them.
func (ap armedPages) restore() {
	runtime.LockOSThread() // every ptrace request from the thread that seized
	for pid, pages := range ap {
		if len(pages) > 0 {
			restorePages(pid, pages)
		}
	}
}

func restorePages(pid int, pages map[uint64]int) {
	// The kernel detaches the tracees after it closed the tracer's files,
	// which is what woke us.
	for deadline := time.Now().Add(time.Second); tracerOf(pid) != 0; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			return
		}
	}
	seized := map[int]bool{}
	defer func() {
		for tid := range seized {
			ptrace.Detach(tid, 0)
		}
	}()
	for fresh := true; fresh; {
		fresh = false
		tids, err := tasks(pid)
		if err != nil {
			return // gone (killed by an armed page, most likely)
		}
		for _, tid := range tids {
			if !seized[tid] && ptrace.Seize(tid, 0) == nil {
				seized[tid] = true
				fresh = true
			}
		}
	}
	// Stop them, within a bound; signals they stop with are delivered
	// when they are detached.
	sigs := map[int]int{}
	stopped := map[int]bool{}
	for tid := range seized {
		ptrace.Interrupt(tid)
	}
	for deadline := time.Now().Add(time.Second); len(stopped) < len(seized) && time.Now().Before(deadline); {
		tid, ws, err := ptrace.Wait(-1, true)
		switch {
		case err != nil:
			return
		case tid == 0:
			time.Sleep(100 * time.Microsecond)
		case ws.Exited() || ws.Signaled():
			delete(seized, tid)
		case ws.Stopped():
			stopped[tid] = true
			if ptrace.Event(ws) == 0 {
				sigs[tid] = int(ws.StopSignal())
			}
		}
	}
	defer func() {
		for tid := range stopped {
			ptrace.Detach(tid, sigs[tid])
			delete(seized, tid)
		}
	}()
	var via int
	for tid := range stopped {
		via = tid
		break
	}
	if via == 0 {
		return
	}
	mem, err := ptrace.OpenMem(pid)
	if err != nil {
		return
	}
	defer mem.Close()
	sys, err := ptrace.FindSyscallInsn(pid, mem)
	if err != nil {
		return
	}
	inj := ptrace.Injector{SyscallAddr: sys, Pending: func(tid, sig int) { sigs[tid] = sig }}
	none := noneNow(pid)
	addrs := make([]uint64, 0, len(pages))
	for a := range pages {
		addrs = append(addrs, a)
	}
	sort.Slice(addrs, func(i, j int) bool { return addrs[i] < addrs[j] })
	for _, a := range addrs {
		// A page that is no longer PROT_NONE was changed since (by the
		// program, or by the tracer before the news reached us): leave it.
		if none(a) {
			inj.Syscall(via, unix.SYS_MPROTECT, a, kmmio.PageSize, uint64(pages[a]))
		}
	}
}

// noneNow returns a test of whether a page of pid is PROT_NONE now.
func noneNow(pid int) func(uint64) bool {
	maps, err := procmaps.Read(pid)
	if err != nil {
		return func(uint64) bool { return false }
	}
	return func(a uint64) bool {
		for _, m := range maps {
			if a >= m.Start && a < m.End {
				return m.Prot() == 0
			}
		}
		return false
	}
}
