// Package procmaps reads /proc/PID/maps: the one parser of it that the
// tracer, the symbol resolver and the syscall injector share.
package procmaps
