// Package tracer is the tracer behind `mmiotrace record`: the user-space
// counterpart of the kernel's mmiotrace. It spawns or attaches to a program,
// follows all of its threads and the processes it creates (follow.go),
// finds the mappings to trace (the ioremap hook: /proc/PID/maps at start,
// then every mmap, munmap, mremap, mprotect and brk), arms them with package
// kmmio, and turns every access the program makes to them into R, W (RV, WV
// for vector widths) and UNKNOWN records, in program order per thread.
// System calls given armed memory are served, so that the kernel reaches
// it, and logged as SYS records (sysmem.go). It also logs where the
// program's code is (CODE records: every executable file mapping with its
// build id, at start, after exec and after each mmap with PROT_EXEC), so
// that PCs can be symbolized later.
//
// # Executing a faulting access
//
// A thread that touches an armed page stops with SIGSEGV. The tracer decodes
// the instruction (package internal/x86) and, when it can, emulates it: it
// performs the access itself with the instruction's exact width, through a
// mapping of the same file or device in its own address space (an alias) or,
// for private and anonymous memory, through /proc/PID/mem; then it sets the
// registers as the CPU would and resumes the thread. The page stays armed
// throughout, so other threads, which keep running, cannot slip through it:
// no access is lost whatever the number of threads.
//
// An instruction that is not emulated is single-stepped as the kernel's kmmio
// does, with every other thread stopped first: the page is disarmed, the
// thread steps, the page is armed again. Its access is logged from the
// decoded operand (re-reading ordinary memory for the value), or as UNKNOWN
// with the opcode bytes where reading it again could disturb a device.
//
// # Threads and ordering
//
// All ptrace requests and waits run on one goroutine locked to its OS thread,
// because the kernel only accepts requests from the thread that attached.
// Records leave that goroutine through a trace.Buffer; the loop itself never
// formats text or writes files.
package tracer
