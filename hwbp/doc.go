// Package hwbp models the x86-64 debug registers and programs them for
// another process: hardware watchpoints ("data breakpoints") and hardware
// execution breakpoints, the user-space counterpart of the kernel's
// hw_breakpoint layer and its ksym tracer.
//
// The model part is pure: Kind and Mode (the ksym tracer's "rw-", "-w-",
// "--x" and "r--" notation), the DR7 control and DR6 status register layouts
// as the Intel SDM (Vol. 3, 18.2) defines them, Validate for what one debug
// register can watch, Split for covering an arbitrary range with aligned
// pieces, and Slots, the allocation of a thread's four address registers
// between pinned and flexible requests.
//
// Two backends put watches into a thread:
//
//   - Program, Clear, ReadDR6 and ResetDR6 write the thread's debug registers
//     through ptrace (PTRACE_POKEUSER into struct user). Every hit stops the
//     thread with SIGTRAP after the access, with RIP past the instruction, so
//     the tracer can read the new value exactly and synchronously. The caller
//     must be the ptrace tracer of the thread, on the OS thread that attached,
//     and the thread must be in a ptrace stop.
//
//   - OpenPerf opens a perf_event_open(2) breakpoint event on one thread with
//     a sampling ring buffer. Hits do not stop the thread: each one appends a
//     sample (IP, thread id, time, address, user registers) that the tracer
//     drains later. A sample carries no value; see PerfWatch.
//
// Debug registers are per thread and a new thread does not inherit them:
// whoever uses either backend must repeat it for every thread, at its clone
// stop for the ptrace backend.
//
// x86 has no read-only watchpoint. A read-only request (Mode.ReadOnly) is
// programmed as read/write and the caller drops the hits that wrote, as the
// kernel's ksym tracer did.
package hwbp
