package feature

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
)

// child is the probe program started under PTRACE_TRACEME, stopped at its
// exec. Every method must run on the OS thread that started it.
type child struct {
	pid   int
	timer *time.Timer
}

// onTracerThread runs fn on a fresh OS thread that no other goroutine ever
// uses: ptrace requests must come from the thread that became the tracer,
// and the thread is discarded afterwards (the goroutine exits locked).
func onTracerThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- fn()
	}()
	return <-done
}

// startChild starts the probe program traced by the calling (locked)
// thread and returns it stopped at its exec.
func startChild() (*child, error) {
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Ptrace: true}}
	var pid int
	var err error
	for _, memfd := range []bool{true, false} {
		path, release, perr := probeExecutable(memfd)
		if perr != nil {
			err = perr
			continue
		}
		pid, err = syscall.ForkExec(path, []string{"mmiotrace-probe"}, attr)
		release()
		// EACCES from a memfd: vm.memfd_noexec forbids executing one;
		// ETXTBSY: an older kernel refused it (see minielf.Write).
		if !minielf.Refused(err) {
			break
		}
	}
	if errors.Is(err, syscall.EPERM) {
		return nil, unsupported("ptrace", "PTRACE_TRACEME refused (a sandbox or seccomp policy forbids ptrace)")
	}
	if err != nil {
		return nil, fmt.Errorf("start probe program: %w", err)
	}
	c := &child{pid: pid}
	// The program runs five instructions: it cannot take long unless
	// something is badly wrong, and then it must not outlive the probe.
	c.timer = time.AfterFunc(5*time.Second, func() { syscall.Kill(pid, syscall.SIGKILL) })
	ws, err := c.wait()
	if err != nil {
		return nil, err
	}
	if !ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP {
		c.finish()
		return nil, fmt.Errorf("probe program: want a SIGTRAP stop at exec, got status %#x", uint32(ws))
	}
	if err := unix.PtraceSetOptions(pid, unix.PTRACE_O_EXITKILL); err != nil {
		c.finish()
		return nil, err
	}
	return c, nil
}

// wait waits for a stop or the end of traced child pid.
func wait(pid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err != unix.EINTR {
			return ws, err
		}
	}
}

// peekUser and pokeUser read and write a word of a stopped tracee's
// struct user (the debug registers live there).
func peekUser(pid int, off uintptr) (uint64, error) {
	var v uint64
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKUSR, uintptr(pid), off, uintptr(unsafe.Pointer(&v)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return v, nil
}

func pokeUser(pid int, off uintptr, v uint64) error {
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_POKEUSR, uintptr(pid), off, uintptr(v), 0, 0); e != 0 {
		return e
	}
	return nil
}

func (c *child) wait() (unix.WaitStatus, error) {
	for {
		ws, err := wait(c.pid)
		if err != nil {
			return 0, fmt.Errorf("probe program: %w", err)
		}
		if ws.Stopped() || ws.Exited() || ws.Signaled() {
			return ws, nil
		}
	}
}

// runToExit resumes the child and reports whether it stopped with SIGTRAP
// (and where) before exiting, and its exit status.
func (c *child) runToExit() (trapped bool, rip uint64, status int, err error) {
	defer c.finish()
	if err := unix.PtraceCont(c.pid, 0); err != nil {
		return false, 0, 0, err
	}
	for {
		ws, err := c.wait()
		if err != nil {
			return trapped, rip, 0, err
		}
		switch {
		case ws.Exited():
			return trapped, rip, ws.ExitStatus(), nil
		case ws.Signaled():
			return trapped, rip, 0, fmt.Errorf("probe program killed by %v", ws.Signal())
		case ws.StopSignal() == syscall.SIGTRAP && !trapped:
			trapped = true
			var regs unix.PtraceRegs
			if err := unix.PtraceGetRegs(c.pid, &regs); err != nil {
				return trapped, 0, 0, err
			}
			rip = regs.Rip
			if err := unix.PtraceCont(c.pid, 0); err != nil {
				return trapped, rip, 0, err
			}
		default:
			if err := unix.PtraceCont(c.pid, 0); err != nil {
				return trapped, rip, 0, err
			}
		}
	}
}

// finish kills and reaps the child if it is still there.
func (c *child) finish() {
	c.timer.Stop()
	if syscall.Kill(c.pid, syscall.SIGKILL) == nil {
		for {
			if ws, err := wait(c.pid); err != nil || ws.Exited() || ws.Signaled() {
				return
			}
		}
	}
}

func probePtrace() error {
	return onTracerThread(func() error {
		c, err := startChild()
		if err != nil {
			return err
		}
		// A single step is the other ptrace service the tracer needs.
		defer c.finish()
		if err := unix.PtraceSingleStep(c.pid); err != nil {
			return unsupported("ptrace", fmt.Sprintf("PTRACE_SINGLESTEP: %v", err))
		}
		ws, err := c.wait()
		if err != nil {
			return err
		}
		if !ws.Stopped() || ws.StopSignal() != syscall.SIGTRAP {
			return unsupported("ptrace", fmt.Sprintf("a single step did not trap (status %#x)", uint32(ws)))
		}
		return nil
	})
}

// debugRegOffset is offsetof(struct user, u_debugreg) on x86-64.
const debugRegOffset = 848

// dr7Write4Slot0 enables DR0 (L0) for 4-byte writes (R/W0 = 01, LEN0 = 11).
const dr7Write4Slot0 = 1 | 1<<16 | 3<<18

const drFeature = "debug-register traps"

func probeDebugRegisters() error {
	return onTracerThread(func() error {
		c, err := startChild()
		if err != nil {
			return err
		}
		if err := pokeUser(c.pid, debugRegOffset, probeWord); err != nil {
			c.finish()
			return unsupported(drFeature, fmt.Sprintf("ptrace refused DR0: %v", err))
		}
		if err := pokeUser(c.pid, debugRegOffset+7*8, dr7Write4Slot0); err != nil {
			c.finish()
			return unsupported(drFeature, fmt.Sprintf("ptrace refused DR7: %v", err))
		}
		if v, err := peekUser(c.pid, debugRegOffset+7*8); err != nil || v != dr7Write4Slot0 {
			c.finish()
			return unsupported(drFeature, fmt.Sprintf("DR7 reads back %#x, %v", v, err))
		}
		trapped, rip, status, err := c.runToExit()
		if err != nil {
			return err
		}
		if status != probeValue {
			return fmt.Errorf("probe program exited %d, want %d: its write did not land", status, probeValue)
		}
		if !trapped {
			return unsupported(drFeature, "set through ptrace and read back, but a write to the watched word did not trap")
		}
		if rip != probeStoreEnd {
			return fmt.Errorf("debug trap at %#x, want %#x (after the store)", rip, probeStoreEnd)
		}
		return nil
	})
}

const perfFeature = "perf breakpoints"

// perf_event_attr.bp_type and bp_len values (linux/hw_breakpoint.h).
const (
	hwBreakpointW    = 2
	hwBreakpointLen4 = 4
)

func probePerfBreakpoint() error {
	return onTracerThread(func() error {
		c, err := startChild()
		if err != nil {
			return err
		}
		attr := unix.PerfEventAttr{
			Type:    unix.PERF_TYPE_BREAKPOINT,
			Size:    uint32(unsafe.Sizeof(unix.PerfEventAttr{})),
			Bits:    unix.PerfBitExcludeKernel | unix.PerfBitExcludeHv,
			Bp_type: hwBreakpointW,
			Ext1:    probeWord,
			Ext2:    hwBreakpointLen4,
		}
		fd, err := unix.PerfEventOpen(&attr, c.pid, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err != nil {
			c.finish()
			switch {
			case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
				return unsupported(perfFeature, fmt.Sprintf("perf_event_open: %v (kernel.perf_event_paranoid=%s)", err, readTrim("/proc/sys/kernel/perf_event_paranoid")))
			case errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
				return unsupported(perfFeature, fmt.Sprintf("perf_event_open: %v", err))
			}
			return fmt.Errorf("perf_event_open: %w", err)
		}
		defer unix.Close(fd)
		_, _, status, err := c.runToExit()
		if err != nil {
			return err
		}
		if status != probeValue {
			return fmt.Errorf("probe program exited %d, want %d: its write did not land", status, probeValue)
		}
		var b [8]byte
		if n, err := unix.Read(fd, b[:]); err != nil || n != 8 {
			return fmt.Errorf("read perf counter: %d bytes, %v", n, err)
		}
		if n := *(*uint64)(unsafe.Pointer(&b[0])); n != 1 {
			return unsupported(perfFeature, fmt.Sprintf("a breakpoint event counted %d of 1 write", n))
		}
		return nil
	})
}

func probeMapFiles() error {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.HasPrefix(fields[5], "/") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil {
			continue
		}
		// maps pads addresses to 8 digits; map_files names do not.
		g, err := os.Open(fmt.Sprintf("/proc/self/map_files/%x-%x", start, end))
		if err == nil {
			g.Close()
			return nil
		}
		if errors.Is(err, os.ErrPermission) {
			return unsupported("/proc/PID/map_files", "opening an entry needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE")
		}
		if errors.Is(err, os.ErrNotExist) {
			return unsupported("/proc/PID/map_files", "the kernel has no map_files directory")
		}
		return err
	}
	return errors.New("map_files: no file mapping of our own to try")
}

const (
	seccompGetActionAvail = 2
	seccompRetTrace       = 0x7ff00000
)

func probeSeccomp() error {
	if _, err := unix.PrctlRetInt(unix.PR_GET_SECCOMP, 0, 0, 0, 0); errors.Is(err, unix.EINVAL) {
		return unsupported("seccomp", "the kernel is built without seccomp")
	}
	action := uint32(seccompRetTrace)
	_, _, e := unix.Syscall(unix.SYS_SECCOMP, seccompGetActionAvail, 0, uintptr(unsafe.Pointer(&action)))
	switch e {
	case 0:
		return nil
	case unix.EOPNOTSUPP, unix.ENOSYS, unix.EINVAL:
		return unsupported("seccomp RET_TRACE", e.Error())
	}
	return fmt.Errorf("seccomp(SECCOMP_GET_ACTION_AVAIL): %w", e)
}

func probeAVX512() error {
	if !cpu.X86.HasAVX512F || !cpu.X86.HasAVX512BW || !cpu.X86.HasAVX512VL {
		return unsupported("AVX-512", "the CPU or the kernel lacks AVX-512 F, BW or VL")
	}
	return nil
}

func probeInvariantTSC() error {
	flags := cpuFlags()
	if flags == nil {
		return errors.New("no flags in /proc/cpuinfo")
	}
	for _, want := range []string{"tsc", "constant_tsc", "nonstop_tsc"} {
		if !flags[want] {
			return unsupported("invariant TSC", "the CPU lacks "+want)
		}
	}
	if v, err := unix.PrctlRetInt(unix.PR_GET_TSC, 0, 0, 0, 0); err == nil && v != unix.PR_TSC_ENABLE {
		// PR_GET_TSC writes through its argument; a failure means the
		// question is moot (not x86) and is left to the flags.
		return unsupported("invariant TSC", "RDTSC is disabled for this process (PR_SET_TSC)")
	}
	return nil
}

func cpuFlags() map[string]bool {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return nil
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			m := map[string]bool{}
			for _, f := range strings.Fields(v) {
				m[f] = true
			}
			return m
		}
	}
	return nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

// YamaPtraceScope returns kernel.yama.ptrace_scope, and false when Yama is
// absent (ptrace is then limited by capabilities alone).
func YamaPtraceScope() (int, bool) {
	n, err := strconv.Atoi(readTrim("/proc/sys/kernel/yama/ptrace_scope"))
	return n, err == nil
}
