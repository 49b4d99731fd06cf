// Package decode prints a log for people, as envytools' demmio does for
// NVIDIA's registers but for any device: one line per record, each access
// with the names of the register and bit fields it touches (package
// regmap), what their values mean, and the accessing instruction as
// function+offset. System calls on traced memory (SYS records) are shown
// with the registers their range covers, processes (PROC records) with
// their parent and program.
//
// A Writer is fed records in log order and is not safe for concurrent use.
// Its memory does not grow with the log.
package decode
