//go:build !linux

package tracepoint

import (
	"fmt"
	"os"
	"runtime"
)

func expose() error {
	return fmt.Errorf("expose tracepoints on %s: %w", runtime.GOOS, ErrNotSupported)
}

func unexpose() error { return nil }

func socketPath() string { return "" }

func init() {
	// Whoever set EnvVar expects a collector to find this program: say
	// once why none will.
	if v := os.Getenv(EnvVar); v != "" && v != "0" {
		fmt.Fprintf(os.Stderr, "tracepoint: %s is set: %v\n", EnvVar, expose())
	}
}
