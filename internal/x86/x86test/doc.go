// Package x86test encodes x86-64 instructions with a memory operand, for
// the tests that generate random instructions and run them against the
// CPU: internal/x86's emulator tests and kmmio/optprobe's detour tests.
// Each test keeps its own generator of operands and instruction families;
// this package holds what they share: the operand's encoding (Mem) and
// the legacy, VEX and EVEX encodings around it (Encoder), so that both
// suites encode exactly alike.
//
// It is a package for tests: nothing in mmiotrace's own code imports it.
package x86test
