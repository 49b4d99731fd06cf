// Package asm is the small x86-64 assembler of the code mmiotrace writes
// into the programs it traces: the detours of optimized probes
// (kmmio/optprobe) and the seccomp shim a spawned program starts from
// (internal/ptrace). Every memory operand it emits is [base + disp32] and
// every branch is rel32, so that the size of the code does not depend on
// where it is placed or where its labels land; labels and absolute branch
// targets are resolved by Finish.
package asm
