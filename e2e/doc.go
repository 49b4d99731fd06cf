// Package e2e holds the end-to-end tests of mmiotrace: they build the
// mmiotrace command and C fixture programs, run real traced processes, and
// compare the logs with what the programs say they did.
//
// The package has no code of its own; run it with `go test ./e2e`.
package e2e
