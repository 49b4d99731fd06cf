//go:build race

package tpcollect_test

// buildFlags builds the traced program under the race detector too when the
// tests run under it.
var buildFlags = []string{"-race"}
