//go:build race

package main_test

// buildFlags builds the demo under the race detector too when the tests run
// under it.
var buildFlags = []string{"-race"}
