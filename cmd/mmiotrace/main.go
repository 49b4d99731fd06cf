// Command mmiotrace traces a user-space program's accesses to device memory
// (or any mapping) in the kernel's mmiotrace format, watches its variables
// with hardware breakpoints, and collects its tracepoints.
//
// Run `mmiotrace help` for the commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/mmiotrace/mmiotrace/tracer"
)

// Exit codes of mmiotrace itself. A traced program's own exit status is
// passed through instead when it ran to its end (128+N when signal N killed
// it, as a shell reports it).
const (
	exitOK    = 0
	exitError = 1 // the tracer failed: see the message
	exitUsage = 2 // bad command line
)

type command struct {
	name, summary string
	run           func(args []string) int
}

var commands []command

func init() {
	commands = []command{
		{"record", "trace a program's loads and stores to chosen mappings", runRecord},
		{"mark", "add a MARK line to a running record session", runMark},
		{"watch", "log every access to variables, by name, with values", runWatch},
		{"symbols", "list the symbols watch accepts", runSymbols},
		{"tp", "list a Go program's tracepoints", runTp},
		{"check", "probe what this host supports, and what mmiotrace uses instead", runCheck},
		{"convert", "convert a log to CTF (babeltrace2) or Perfetto JSON", runConvert},
		{"decode", "print a log with register and field names", runDecode},
		{"report", "summarize a log, as text and as an HTML page with charts", runReport},
		{"version", "print the version and how mmiotrace was built", runVersion},
		{"help", "show help for a command", runHelp},
	}
}

const usageText = `mmiotrace traces user-space programs the way the kernel's mmiotrace,
hw_breakpoint and tracepoints trace the kernel.

Usage:
  mmiotrace COMMAND [flags] [args]

Commands:
%s
Examples:
  mmiotrace record -o dev.log -- ./mydriver --probe     # trace device mappings
  mmiotrace record --map '/dev/shm/*' -o - -- ./sim     # any file mapping
  mmiotrace record -p 1234                              # attach; Ctrl-C detaches
  mmiotrace mark "reset done"                           # annotate a session
  mmiotrace watch counter 'state:-w-' -- ./app          # watch variables
  mmiotrace record -e 'demo:*' -- ./goapp               # collect tracepoints
  mmiotrace convert --to perfetto -o dev.json dev.log   # for ui.perfetto.dev
  mmiotrace decode --regs dev.h dev.log                 # name registers and fields
  mmiotrace report -o dev.html dev.log                  # statistics and charts

Run 'mmiotrace COMMAND --help' for a command's flags; 'mmiotrace --version'
for the version.
`

func usage(w io.Writer) {
	var list string
	for _, c := range commands {
		list += fmt.Sprintf("  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, usageText, list)
}

func main() {
	if code, ok := tracer.RunHelper(os.Args); ok {
		os.Exit(code)
	}
	// A write to a closed pipe (the log's reader went away: `-o - | head`)
	// must come back as EPIPE, for a clean end, not kill mmiotrace with
	// the program's pages still armed. A handler (rather than SIG_IGN,
	// which a spawned program would inherit) does it.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	os.Exit(dispatch(os.Args[1:]))
}

func dispatch(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(os.Stdout)
		return exitOK
	case "-version", "--version", "-V":
		return runVersion(nil)
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(args[1:])
		}
	}
	if strings.HasPrefix(args[0], "-") {
		errorf("unknown flag %s; see 'mmiotrace --help'", args[0])
	} else {
		errorf("unknown command %q; see 'mmiotrace --help'", args[0])
	}
	return exitUsage
}

func runHelp(args []string) int {
	if len(args) == 0 {
		usage(os.Stdout)
		return exitOK
	}
	for _, c := range commands {
		if c.name == args[0] && c.name != "help" {
			return c.run([]string{"--help"})
		}
	}
	errorf("unknown command %q; see 'mmiotrace --help'", args[0])
	return exitUsage
}

// newFlags returns a FlagSet for a command whose --help prints text
// (usage line, description, examples) and then the flags, spelled as the
// usage lines spell them (see printFlags).
func newFlags(name, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), text)
		fmt.Fprintln(fs.Output(), "\nFlags:")
		printFlags(fs.Output(), fs)
	}
	return fs
}

// dashed spells a flag as users type it: -o for one letter, --map for
// longer names (package flag accepts either number of dashes for both).
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// printFlags lists a command's flags, in place of flag.PrintDefaults (which
// spells every flag with one dash): the flag and its argument, then the
// usage text and the default, indented below.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		arg, usage := flag.UnquoteUsage(f)
		line := "  " + dashed(f.Name)
		if arg != "" {
			line += " " + arg
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			usage += fmt.Sprintf(" (default %q)", f.DefValue)
		}
		fmt.Fprintf(w, "%s\n      %s\n", line, usage)
	})
}

// parse parses flags, turning -h into a successful exit and errors into a
// usage exit; ok is false when the command should return code. A bad flag
// or value is reported in one line that points to the command's --help.
func parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(os.Stdout)
			fs.Usage()
			return exitOK, false
		}
	}
	out := fs.Output()
	fs.SetOutput(io.Discard) // package flag would print the whole help
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		usageError(fs.Name(), "%s", flagError(err))
		return exitUsage, false
	}
	return 0, true
}

// flagError rewords package flag's errors with the flags spelled as the
// help spells them.
func flagError(err error) string {
	msg := err.Error()
	for _, r := range []struct{ from, to string }{
		{"flag provided but not defined: ", "unknown flag "},
		{"flag needs an argument: ", "missing value for "},
		{"invalid boolean value ", "bad value "},
		{"invalid value ", "bad value "},
		{"for flag ", "for "},
		{": parse error", ": not a number"},
		{": value out of range", ": out of range"},
	} {
		msg = strings.Replace(msg, r.from, r.to, 1)
	}
	return flagNameRE().ReplaceAllStringFunc(msg, func(s string) string {
		return s[:1] + dashed(strings.TrimLeft(s[1:], "-"))
	})
}

// flagNameRE finds the flag names in package flag's messages: "-name" after
// a space, at the end or before a colon.
var flagNameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(` --?[a-zA-Z][-a-zA-Z0-9]*\b`) })

// usageError reports a bad command line in one line, pointing to the
// command's --help.
func usageError(cmd, format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = userError(err)
		}
	}
	errorf("%s: %s; see 'mmiotrace %s --help'", cmd, fmt.Sprintf(format, args...), strings.Fields(cmd)[0])
}

// parseInterleaved parses flags mixed with positional arguments, up to a
// "--" after which everything is the command to run.
func parseInterleaved(fs *flag.FlagSet, args []string) (pos, argv []string, code int, ok bool) {
	for i, a := range args {
		if a == "--" {
			args, argv = args[:i], args[i+1:]
			break
		}
	}
	for {
		if code, ok := parse(fs, args); !ok {
			return nil, nil, code, false
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, argv, 0, true
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return fmt.Sprint(*l) }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// errorf prints an error in one line. Errors among args are shown as
// userError shows them.
func errorf(format string, args ...any) {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = userError(err)
		}
	}
	fmt.Fprintf(os.Stderr, "mmiotrace: "+format+"\n", args...)
}
