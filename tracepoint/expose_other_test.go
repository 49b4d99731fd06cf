//go:build !linux

package tracepoint_test

import (
	"errors"
	"testing"

	"github.com/mmiotrace/mmiotrace/tracepoint"
)

// TestExposeNotSupported: where a collector cannot reach the program,
// Expose says so, and the rest of the package works.
func TestExposeNotSupported(t *testing.T) {
	if err := tracepoint.Expose(); !errors.Is(err, tracepoint.ErrNotSupported) {
		t.Fatalf("Expose = %v, want ErrNotSupported", err)
	}
	if tracepoint.SocketPath() != "" {
		t.Fatal("a socket path without a socket")
	}
	if err := tracepoint.Unexpose(); err != nil {
		t.Fatal(err)
	}
}
