// Package watchtest holds the end-to-end tests of `mmiotrace watch`: it
// builds the CLI and C and Go fixture programs that log their own accesses
// to watched globals, runs them under the CLI and compares the two logs
// exactly, per thread: direction, width, address and value.
//
// The package has no non-test code.
package watchtest
