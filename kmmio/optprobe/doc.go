// Package optprobe builds optimized probes for kmmio: the generated code
// that lets a hot instruction of a traced program make its access to a
// traced mapping, and log it, without a trap.
//
// The kernel's kprobes start as a breakpoint and, once a probe has been
// hit, replace the breakpoint with a jump to a detour buffer that runs the
// handler and the relocated instructions (optprobes). kmmio's trap is the
// page fault of an armed page; this package is the same step for it. After
// an instruction has faulted on an armed page (tracer/optimize.go decides
// when), its bytes are replaced with a 5-byte jump (JumpLen) to a Detour
// that
//
//  1. computes the access's effective address with the program's own
//     registers, and, if it falls inside the traced range (Target), does
//     the access through an alias of the range mapped a second time,
//     accessible, in the program (same file or device behind it), with the
//     instruction's own width and semantics (the instruction is re-encoded
//     on the alias, or split into a load, the operation on a scratch
//     register, and a store);
//  2. writes a record (time stamp counter, thread, pc, address, width,
//     value, direction) into a shared ring that the tracer drains (Ring);
//  3. runs the instructions the jump displaced, relocated (reloc.go), and
//     jumps back to the end of the window.
//
// An access that is not to the target runs the program's instruction
// unchanged. The armed page stays armed: every instruction that was never
// patched still traps and is handled on the trap path.
//
// # Windows, guards and punning
//
// Most accesses are shorter than the jump (mov eax, [rdi+0x10] is three
// bytes). A Window is the probed instruction plus the instructions after
// it until the jump fits. A jump from elsewhere into the middle of a window
// would land inside the patch: each interior boundary gets an int3 (a
// guard), and the tracer moves a thread that traps there to the same
// instruction in the detour. Boundaries covered by the jump's rel32 get
// their 0xCC by instruction punning (E9Patch's technique): the detour is
// placed at an address whose displacement has 0xCC in that byte
// (Placements). Windows that cannot be made safe (a branch target that
// cannot be guarded, code that cannot be relocated) are refused, and their
// instruction stays on the trap path.
//
// # Threads, the ring and the slow path
//
// The detour tells threads apart by an identity block its GS base points
// to ({tid, IdentityMagic}); x86-64 Linux programs leave GS unused (neither
// the C library nor Go uses it). The ring is a bounded multi-producer queue
// (Vyukov's scheme; ring.go): a thread takes tickets in its program order,
// so the tracer reads every thread's records in program order. When the
// ring is full, or the thread has no identity, the detour takes its slow
// path: an int3 (Slow) where the tracer drains the ring and writes the
// record itself from the detour's frame. Nothing is ever dropped.
//
// Time stamps are the TSC read in the detour right after the access; Clock
// converts them to the tracer's CLOCK_MONOTONIC nanoseconds, so records of
// both paths share one timeline.
//
// # Leaving a detour without running it
//
// A thread that must leave a detour (a signal of the program's is due, the
// site is being unpatched, the session ends) is never left half-way. Exact
// addresses (Detour.Exact) are where its registers are the program's own
// and map to a program address. Anywhere else, PlaceAt says how far the
// block has got: before the access (undo: go back to the block's start
// with the program's registers, from the frame), in the middle of the
// access (single-step to its end), or after it (the tracer finishes the
// pending records and moves the thread on). Placing this in the package,
// generated with the code, keeps the tracer from having to understand the
// detour's instructions.
//
// # Instruction classes
//
// Classify says which instructions are handled: mov loads and stores of
// every width (register, immediate, moffs forms, movzx, movsx, movsxd,
// movnti, movbe); cmov, setcc and imul with a memory source; the ALU
// read-modify-write and compare group, shifts and rotates, and bt*, when
// not locked; xchg, xadd and cmpxchg, locked or not (the program's own
// instruction on the alias); SSE, AVX and AVX-512 moves without an opmask.
// Not handled: string instructions, masked AVX-512 moves, FS or GS segment
// overrides, and instructions whose register operand is RSP.
//
// # Invariants (kept by the tracer, tracer/optimize.go)
//
//   - Patch bytes go in and come out only while every thread of the
//     process is stopped; a thread whose RIP is in the window is moved to
//     the matching place in the detour, and back.
//   - Detour code is immutable once placed, and a retired (unpatched)
//     site's detour stays mapped until the image goes (exec, exit), since a
//     thread may still be in it or hold a queued trap from it.
//   - Every patched site gets its original bytes back, and every injected
//     mapping is removed, in every live process, at munmap or mremap of the
//     traced range, exec, detach and on the tracer's errors; a fork child
//     gets its inherited patches removed before it runs.
//   - Only code the program cannot write is patched; an mprotect that makes
//     it writable (a JIT about to rewrite it) unpatches its sites first, at
//     the call's entry, before the program can write.
//
// The package is pure code generation and data structures: it never calls
// ptrace. Its differential tests run each generated detour natively in a
// fixture against the CPU running the original instruction (registers,
// flags, memory and records compared), and its fuzz targets cover window
// planning, detour generation and ring slots.
package optprobe
