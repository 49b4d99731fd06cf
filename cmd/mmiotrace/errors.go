package main

import (
	"regexp"
	"strings"
	"sync"
)

// userError renders an error for users in one line, without the Go package
// prefixes that the libraries' wrapped errors carry ("kmmio: ", "hwbp: ",
// "symbols: "): the libraries keep them (their callers may log them, and
// errors.Is still works through %w), and this is the one place where they
// are dropped. docs/CLI.md says so.
func userError(err error) string {
	return stripPrefixes(err.Error())
}

// pkgPrefixRE matches a package prefix at the start of the message or of a
// wrapped part (after ": " or "(").
var pkgPrefixRE = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(^|: |\()(?:` + strings.Join(goPackages, "|") + `): `)
})

// goPackages are the packages whose names prefix error messages: mmiotrace's
// own, and those of the standard library that reach users.
var goPackages = []string{
	"kmmio", "hwbp", "symbols", "x86", "ptrace", "tracer", "trace", "tpcollect", "wire",
	"procmaps", "regmap", "report", "decode", "ctf", "perfetto", "tracepoint",
	"elf", "dwarf", "strconv\\.\\w+",
}

// stripPrefixes removes package prefixes from a message, however deep in
// the chain of wrapped errors they are.
func stripPrefixes(msg string) string {
	for {
		s := pkgPrefixRE().ReplaceAllString(msg, "$1")
		if s == msg {
			return s
		}
		msg = s
	}
}
