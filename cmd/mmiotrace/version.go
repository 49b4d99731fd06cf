package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
)

const versionHelp = `Usage:
  mmiotrace version
  mmiotrace --version

Print mmiotrace's version (the module version, or "(devel)" for a build
from a checkout), the revision of the sources it was built from, and the Go
toolchain, from the build information Go embeds in the executable.

Examples:
  mmiotrace --version
`

func runVersion(args []string) int {
	fs := newFlags("version", versionHelp)
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		usageError("version", "unexpected argument %q", fs.Arg(0))
		return exitUsage
	}
	printVersion(os.Stdout)
	return exitOK
}

// printVersion prints one line:
//
//	mmiotrace (devel) rev 3cac960a1b2c (modified) 2025-01-02T03:04:05Z, go1.26.8 linux/amd64
func printVersion(w io.Writer) {
	version, rev, when, modified := "unknown", "", "", false
	goVersion := runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				when = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	line := "mmiotrace " + version
	if rev != "" {
		line += " rev " + rev[:min(len(rev), 12)]
		if modified {
			line += " (modified)"
		}
		if when != "" {
			line += " " + when
		}
	}
	fmt.Fprintf(w, "%s, %s %s/%s\n", line, goVersion, runtime.GOOS, runtime.GOARCH)
}
