package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/feature"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/trace"
)

// mmiotraceBin returns the CLI, built once per version of the sources.
func mmiotraceBin(t *testing.T) string {
	t.Helper()
	return testenv.BuildCLI(t)
}

func readLog(t *testing.T, path string) []trace.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := trace.ParseText(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestRecordExampleDevice traces the bundled example driver and checks its
// register accesses exactly, in program order: the device protocol fixes
// every access except how many times STATUS reads 0 while polling.
func TestRecordExampleDevice(t *testing.T) {
	bin := mmiotraceBin(t)
	dev := testenv.BuildC(t, "../../examples/device/device.c", "-pthread")
	log := filepath.Join(t.TempDir(), "dev.log")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-clitest-%d", os.Getpid())
	cmd := exec.Command(bin, "record", "-q", "--map", shm, "-o", log, "--", dev, shm)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "command 3: result 91") {
		t.Fatalf("the driver did not compute what it computes untraced:\n%s", out)
	}
	type acc struct {
		kind  trace.Kind
		off   uint64
		value uint64
	}
	var got []acc
	var maps, unmaps int
	for _, r := range readLog(t, log) {
		switch r.Kind {
		case trace.KindMap:
			maps++
		case trace.KindUnmap:
			unmaps++
		case trace.KindRead, trace.KindWrite:
			if r.Width != 4 {
				t.Errorf("access width %d, want 4: %+v", r.Width, r)
			}
			got = append(got, acc{r.Kind, r.Phys, r.Uint64()})
		case trace.KindUnknown:
			t.Errorf("UNKNOWN record: %+v", r)
		}
	}
	if maps != 1 || unmaps != 1 {
		t.Errorf("%d MAP and %d UNMAP records, want 1 and 1", maps, unmaps)
	}
	R, W := trace.KindRead, trace.KindWrite
	want := []acc{{R, 0x0, 0x4d4d494f}, {R, 0x4, 0}, {W, 0x4, 1}}
	i := 0
	expect := func(a acc) {
		t.Helper()
		if i >= len(got) || got[i] != a {
			t.Fatalf("access %d: got %+v, want %+v\nall: %+v", i, at(got, i), a, got)
		}
		i++
	}
	for _, a := range want {
		expect(a)
	}
	for n := uint64(1); n <= 3; n++ {
		expect(acc{W, 0x8, n * 10})
		expect(acc{W, 0xc, 1})
		for i < len(got) && got[i] == (acc{R, 0x10, 0}) {
			i++
		}
		expect(acc{R, 0x10, 1})
		expect(acc{R, 0x14, n*30 + 1})
		expect(acc{W, 0x10, 0})
	}
	expect(acc{R, 0x4, 1})
	expect(acc{W, 0x4, 0})
	if i != len(got) {
		t.Errorf("%d extra accesses: %+v", len(got)-i, got[i:])
	}
}

func at[T any](s []T, i int) any {
	if i < len(s) {
		return s[i]
	}
	return "nothing"
}

// TestRecordTracepoints collects a Go program's tracepoints into the log
// with -e, and checks every event and field.
func TestRecordTracepoints(t *testing.T) {
	bin := mmiotraceBin(t)
	demo := testenv.BuildGo(t, "../../examples/tracepoint")
	log := filepath.Join(t.TempDir(), "tp.log")
	out, err := exec.Command(bin, "record", "-q", "-e", "demo:doorbell", "-o", log, "--", demo, "-n", "50", "-q", "1").CombinedOutput()
	if err != nil {
		t.Fatalf("record -e: %v\n%s", err, out)
	}
	var tails []string
	for _, r := range readLog(t, log) {
		if r.Kind != trace.KindEvent {
			continue
		}
		if r.Text != "demo:doorbell" {
			t.Errorf("event %q collected, only demo:doorbell was asked for", r.Text)
		}
		for _, f := range r.Fields {
			if f.Name == "tail" {
				tails = append(tails, f.Value)
			}
		}
	}
	if len(tails) != 50 {
		t.Fatalf("%d demo:doorbell events, want 50\n%s", len(tails), out)
	}
	for i, v := range tails {
		if want := fmt.Sprint((i + 1) % 16); v != want { // the example's queue depth is 16
			t.Fatalf("event %d: tail=%s, want %s (all: %v)", i, v, want, tails)
		}
	}
}

// TestUsageErrors checks the one-line errors and exit codes of bad input:
// usage errors (exit 2) point to the command's --help, with flags spelled
// as the help spells them, and no error shows a Go package prefix.
func TestUsageErrors(t *testing.T) {
	bin := mmiotraceBin(t)
	notELF := filepath.Join(t.TempDir(), "notelf")
	os.WriteFile(notELF, bytes.Repeat([]byte("not an ELF file\n"), 8), 0o644)
	watchme := testenv.BuildC(t, "testdata/watchme.c", "-pthread")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"record", "--range", "zz+1", "--", "true"}, 2, "bad range"},
		{[]string{"record", "--range", "0x1000+0", "--", "true"}, 2, "length is zero"},
		{[]string{"record", "-p", "999999999"}, 1, "does not exist"},
		{[]string{"record", "--", "/nonexistent/prog"}, 1, "/nonexistent/prog"},
		{[]string{"record"}, 2, "give a command"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"--frob"}, 2, "unknown flag --frob; see 'mmiotrace --help'"},
		{[]string{"mark", "-p", "999999999", "hi"}, 1, "no mmiotrace session"},
		{[]string{"watch", "--", "true"}, 2, "no SPEC"},
		{[]string{"record", "--frob", "--", "true"}, 2, "record: unknown flag --frob; see 'mmiotrace record --help'"},
		{[]string{"record", "-frob", "--", "true"}, 2, "record: unknown flag --frob"},
		{[]string{"record", "-p", "abc"}, 2, `record: bad value "abc" for -p: not a number; see 'mmiotrace record --help'`},
		{[]string{"record", "--map"}, 2, "record: missing value for --map"},
		{[]string{"watch", "--backend", "x", "v", "--", "true"}, 2, "see 'mmiotrace watch --help'"},
		{[]string{"tp", "list", "--zz"}, 2, "tp list: unknown flag --zz; see 'mmiotrace tp --help'"},
		{[]string{"report", "--top", "-1", "x.log"}, 2, "see 'mmiotrace report --help'"},
		{[]string{"report", "a.log", "b.log"}, 2, "one LOG at most"},
		{[]string{"decode", "--map", "1", "x.log"}, 2, "--map and --base need --regs"},
		{[]string{"decode", "--regs", "x.regs", "--base", "zz", "x.log"}, 2, `--base "zz": not an address`},
		{[]string{"decode", "--regs", "/nonexistent/x.regs", "x.log"}, 1, "/nonexistent/x.regs"},
		{[]string{"report", "/nonexistent/x.log"}, 1, "/nonexistent/x.log"},
		{[]string{"version", "extra"}, 2, "unexpected argument"},
		// Errors wrapped by libraries that prefix their messages.
		{[]string{"symbols", notELF}, 1, "symbols: " + notELF + " is not an ELF file"},
		{[]string{"watch", "no_such_variable", "--", watchme}, 2, `watch: no symbol "no_such_variable"`},
	} {
		cmd := exec.Command(bin, tc.args...)
		cmd.Dir = t.TempDir() // where a default mmiotrace.log would go
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if code != tc.code {
			t.Errorf("mmiotrace %v: exit %d (%v), want %d; stderr %q", tc.args, code, err, tc.code, stderr.String())
		}
		msg := strings.TrimSpace(stderr.String())
		if !strings.Contains(msg, tc.msg) || strings.Count(msg, "\n") > 0 {
			t.Errorf("mmiotrace %v: stderr %q, want one line containing %q", tc.args, msg, tc.msg)
		}
		if code == 2 && !strings.Contains(msg, "--help'") {
			t.Errorf("mmiotrace %v: usage error %q does not point to --help", tc.args, msg)
		}
		if m := goPrefix.FindString(strings.TrimPrefix(msg, "mmiotrace: "+tc.args[0])); m != "" {
			t.Errorf("mmiotrace %v: %q shows the Go package prefix %q", tc.args, msg, m)
		}
	}
}

// goPrefix finds a Go package's name prefixing part of a message: after the
// "mmiotrace: COMMAND: " that starts every error, a package name followed
// by ": ".
var goPrefix = regexp.MustCompile(`: (kmmio|hwbp|symbols|x86|ptrace|tracer|trace|tpcollect|wire|procmaps|regmap|elf|dwarf|strconv\.\w+): `)

// TestErrorPrefixes checks the one place where package prefixes are
// dropped, on messages as the libraries build them.
func TestErrorPrefixes(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"symbols: no symbol \"x\" in /bin/ls", "no symbol \"x\" in /bin/ls"},
		{"trace /dev/mem at 0x7f00: kmmio: probe already registered", "trace /dev/mem at 0x7f00: probe already registered"},
		{"attach: hwbp: read of closed perf watch (and while cleaning up: kmmio: probe not registered)", "attach: read of closed perf watch (and while cleaning up: probe not registered)"},
		{`bad value: strconv.ParseUint: parsing "zz": invalid syntax`, `bad value: parsing "zz": invalid syntax`},
		{"mapping symbols: 3 found", "mapping symbols: 3 found"}, // a word, not a prefix
	} {
		if got := stripPrefixes(tc.in); got != tc.want {
			t.Errorf("stripPrefixes(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestExitStatus checks that the traced program's status becomes ours.
func TestExitStatus(t *testing.T) {
	bin := mmiotraceBin(t)
	for _, tc := range []struct {
		script string
		code   int
	}{
		{"exit 7", 7},
		{"kill -TERM $$", 128 + 15},
		{"exit 0", 0},
	} {
		cmd := exec.Command(bin, "record", "-q", "-o", os.DevNull, "--", "/bin/sh", "-c", tc.script)
		cmd.Run()
		if got := cmd.ProcessState.ExitCode(); got != tc.code {
			t.Errorf("%q: mmiotrace exited %d, want %d", tc.script, got, tc.code)
		}
	}
}

// TestHelp checks that every command has --help with examples, and lists
// its flags as its usage lines spell them: -o for one letter, --map for
// more.
func TestHelp(t *testing.T) {
	bin := mmiotraceBin(t)
	oneDash := regexp.MustCompile(`(?m)^\s+-[a-z][-a-z]+\b`)
	for _, c := range []string{"record", "mark", "watch", "symbols", "tp", "check", "convert", "decode", "report", "version"} {
		for _, args := range [][]string{{c, "--help"}, {"help", c}} {
			cmd := exec.Command(bin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || stderr.Len() > 0 {
				t.Errorf("%v: %v, stderr %q", args, err, stderr.String())
			}
			if !strings.Contains(string(out), "Examples:") {
				t.Errorf("%v has no examples:\n%s", args, out)
			}
			if m := oneDash.Find(out); m != nil {
				t.Errorf("%v spells a flag %q with one dash:\n%s", args, m, out)
			}
		}
	}
	out, _ := exec.Command(bin, "record", "--help").Output()
	for _, want := range []string{"\n  --map GLOB\n", "\n  -o FILE\n", "\n  --range ADDR+LEN\n", "(default \"mmiotrace.log\")"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("record --help lacks %q:\n%s", want, out)
		}
	}
	out, _ = exec.Command(bin, "--help").Output()
	for _, c := range []string{"check", "convert", "decode", "report", "version"} {
		if !strings.Contains(string(out), "\n  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, out)
		}
	}
}

// TestVersion checks --version and the version command against the build
// information of the binary, as `go version -m` reads it.
func TestVersion(t *testing.T) {
	bin := mmiotraceBin(t)
	a, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	line := string(a)
	if line != string(b) || strings.Count(line, "\n") != 1 || !strings.HasPrefix(line, "mmiotrace ") {
		t.Fatalf("--version %q, version %q: want the same one line", a, b)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	goVersion := regexp.MustCompile(`: (go\S+)`).FindSubmatch(info)
	if goVersion == nil || !strings.Contains(line, string(goVersion[1])+" linux/amd64") {
		t.Errorf("version %q does not name the Go of the build (%s)", line, info)
	}
	mod := regexp.MustCompile(`(?m)^\s+mod\s+\S+\s+(\S+)`).FindSubmatch(info)
	if mod == nil || !strings.HasPrefix(line, "mmiotrace "+string(mod[1])) {
		t.Errorf("version %q does not name the module version (%s)", line, info)
	}
	// A build from a git checkout (not a worktree) with -buildvcs records
	// the revision.
	if rev := regexp.MustCompile(`vcs.revision=([0-9a-f]{12})`).FindSubmatch(info); rev != nil && !strings.Contains(line, "rev "+string(rev[1])) {
		t.Errorf("version %q lacks the revision %s", line, rev[1])
	}
}

// TestStartupLine checks the line printed when tracing starts: for a
// spawned program, and, with the counts, for an attached one (three
// threads, two traced mappings of the file).
func TestStartupLine(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/attachme.c", "-pthread")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-attachme-%d", os.Getpid())
	defer os.Remove(shm)

	// Spawned: the program's stdin is closed at once; it exits.
	cmd := exec.Command(bin, "record", "--map", shm, "-o", os.DevNull, "--", prog, shm)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("record: %v\n%s", err, stderr.String())
	}
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if !regexp.MustCompile(`^mmiotrace: tracing PID \d+: 1 thread; Ctrl-C interrupts it$`).MatchString(first) {
		t.Errorf("first line %q, want the start-up line of a spawned program\n%s", first, stderr.String())
	}

	p := exec.Command(prog, shm)
	stdin, _ := p.StdinPipe()
	stdout, _ := p.StdoutPipe()
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	defer p.Process.Kill()
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	rec := exec.Command(bin, "record", "--map", shm, "-o", os.DevNull, "-p", fmt.Sprint(p.Process.Pid))
	errPipe, _ := rec.StderrPipe()
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(errPipe).ReadString('\n')
	rec.Process.Signal(os.Interrupt)
	go io.Copy(io.Discard, errPipe)
	rec.Wait()
	stdin.Close()
	p.Wait()
	want := fmt.Sprintf("mmiotrace: tracing PID %d: 3 threads, 2 maps; Ctrl-C detaches\n", p.Process.Pid)
	if err != nil || line != want {
		t.Errorf("start-up line %q (%v), want %q", line, err, want)
	}
}

// TestKilledBySignal checks that the end of a program killed by a signal is
// reported by the signal's name, as a shell does, not as a status.
func TestKilledBySignal(t *testing.T) {
	bin := mmiotraceBin(t)
	cmd := exec.Command(bin, "record", "-o", os.DevNull, "--", "/bin/sh", "-c", "kill -SEGV $$")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	if code := cmd.ProcessState.ExitCode(); code != 128+11 {
		t.Errorf("exit %d, want %d", code, 128+11)
	}
	if !strings.Contains(stderr.String(), "; killed by SIGSEGV;") || strings.Contains(stderr.String(), "exit status") {
		t.Errorf("summary does not say killed by SIGSEGV:\n%s", stderr.String())
	}
}

// TestTraceeKilledMidAccess kills a program while its threads hit a traced
// page: mmiotrace reports the kill as the program's status and keeps every
// access made before it.
func TestTraceeKilledMidAccess(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/dies.c", "-pthread")
	log := filepath.Join(t.TempDir(), "dies.log")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-dies-%d", os.Getpid())
	cmd := exec.Command(bin, "record", "-q", "--map", shm, "-o", log, "--", prog, shm)
	out, _ := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 128+9 {
		t.Fatalf("mmiotrace exited %d, want %d (killed by SIGKILL)\n%s", code, 128+9, out)
	}
	if len(out) != 0 {
		t.Errorf("unexpected output (an error?): %s", out)
	}
	var next uint64
	for _, r := range readLog(t, log) {
		if r.Kind == trace.KindWrite && r.Phys == 0 {
			if r.Uint64() != next {
				t.Fatalf("store %d to reg 0 has value %d", next, r.Uint64())
			}
			next++
		}
	}
	if next != 200 {
		t.Errorf("%d stores to reg 0 in the log, want all 200 made before the kill", next)
	}
}

// TestTracepointsListAndAttach lists a running program's tracepoints, then
// attaches to it with record -e -p and detaches with SIGINT.
func TestTracepointsListAndAttach(t *testing.T) {
	bin := mmiotraceBin(t)
	demo := testenv.BuildGo(t, "../../examples/tracepoint")
	prog := exec.Command(demo, "-n", "0", "-d", "20s", "-i", "1ms", "-q", "1")
	prog.Env = append(os.Environ(), "MMIOTRACE_TRACEPOINTS=1")
	var progErr bytes.Buffer
	prog.Stderr = &progErr
	if err := prog.Start(); err != nil {
		t.Fatal(err)
	}
	defer prog.Process.Kill()
	pid := fmt.Sprint(prog.Process.Pid)
	// Until the socket is up and the program has made its tracepoints:
	// the package's init exposes the socket before the program's own
	// package variables (the tracepoints) are initialised, and a list
	// taken in between is empty (it was, once, under load in CI).
	var list []byte
	for i := 0; i < 200; i++ {
		var err error
		list, err = exec.Command(bin, "tp", "list", "-p", pid).CombinedOutput()
		if err == nil && strings.Contains(string(list), "demo:doorbell") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, want := range []string{"demo:doorbell", "demo:irq", "demo:complete", "tail:"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("tp list lacks %q:\n%s", want, list)
		}
	}
	log := filepath.Join(t.TempDir(), "attach.log")
	rec := exec.Command(bin, "record", "-q", "-e", "demo:irq", "-o", log, "-p", pid)
	var recOut bytes.Buffer
	rec.Stdout, rec.Stderr = &recOut, &recOut
	if err := rec.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	rec.Process.Signal(os.Interrupt)
	if err := rec.Wait(); err != nil {
		t.Fatalf("record -p: %v\n%s", err, recOut.String())
	}
	n := 0
	for _, r := range readLog(t, log) {
		if r.Kind == trace.KindEvent {
			if r.Text != "demo:irq" {
				t.Errorf("collected %s, asked for demo:irq only", r.Text)
			}
			n++
		}
	}
	if n < 10 {
		t.Errorf("%d demo:irq events in half a second at one per ms", n)
	}
	// Detached: the program still runs, untraced.
	if err := prog.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("program gone after detach: %v", err)
	}
	status, _ := os.ReadFile("/proc/" + pid + "/status")
	if !strings.Contains(string(status), "TracerPid:\t0\n") {
		t.Errorf("program still traced after detach:\n%s", status)
	}
}

// TestRecordGoProgram traces a Go program whose goroutines store and
// atomically add to a shared mapping: every store of each goroutine is in
// the log in its order, and the counter's atomic adds read and write every
// value exactly once.
func TestRecordGoProgram(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildGo(t, "testdata/godev")
	log := filepath.Join(t.TempDir(), "go.log")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-godev-%d", os.Getpid())
	out, err := exec.Command(bin, "record", "-q", "--map", shm, "-o", log, "--", prog, shm).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "counter 2400") {
		t.Fatalf("record: %v\n%s", err, out)
	}
	next := make(map[uint64]uint64) // per register: the next value expected
	adds := make(map[uint64]bool)   // counter values written
	for _, r := range readLog(t, log) {
		switch {
		case r.Kind == trace.KindWrite && r.Phys < 64:
			g := r.Phys / 8
			if want := g<<16 | next[g]; r.Uint64() != want || r.Width != 4 {
				t.Fatalf("register %d: store %#x (width %d), want %#x", g, r.Uint64(), r.Width, want)
			}
			next[g]++
		case r.Kind == trace.KindWrite && r.Phys == 1024:
			if adds[r.Uint64()] {
				t.Fatalf("counter value %d written twice", r.Uint64())
			}
			adds[r.Uint64()] = true
		}
	}
	for g := uint64(0); g < 8; g++ {
		if next[g] != 300 {
			t.Errorf("register %d: %d stores in the log, want 300", g, next[g])
		}
	}
	for v := uint64(1); v <= 2400; v++ {
		if !adds[v] {
			t.Fatalf("counter value %d never written (%d values seen)", v, len(adds))
		}
	}
}

// TestAttachWithoutPermission attaches, as an unprivileged user, to a
// process of root's: one line saying what is needed, exit 1.
func TestAttachWithoutPermission(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.Skip(t, "needs root to run mmiotrace as another user")
	}
	bin := mmiotraceBin(t)
	dir, err := os.MkdirTemp("", "mmiotrace-perm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "mmiotrace")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := exec.Command("sleep", "10")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer victim.Process.Kill()
	cmd := exec.Command(exe, "record", "-o", "-", "-p", fmt.Sprint(victim.Process.Pid))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Run()
	msg := strings.TrimSpace(stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("exit %d, want 1 (%s)", code, msg)
	}
	if !strings.Contains(msg, "CAP_SYS_PTRACE") || !strings.Contains(msg, "ptrace_scope") || strings.Contains(msg, "\n") {
		t.Errorf("stderr %q: want one line naming CAP_SYS_PTRACE and ptrace_scope", msg)
	}
}

// TestWatchBackendsAgree watches the same program with every backend the
// host has (pages everywhere; ptrace and perf where debug registers trap,
// as probed): for plain loads and stores all must log the same hits, with
// the same values, widths, addresses, PCs and thread order.
func TestWatchBackendsAgree(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/watchme.c", "-pthread")
	type hit struct {
		kind      trace.Kind
		width     uint8
		addr, val uint64
		pc        uint64
		time      int64
	}
	run := func(backend string) map[int32][]hit {
		log := filepath.Join(t.TempDir(), backend+".log")
		out, err := exec.Command(bin, "watch", "-q", "--backend", backend, "counter", "flag8", "wide", "-o", log, "--", prog).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "99 5099 7") {
			t.Fatalf("watch --backend %s: %v\n%s", backend, err, out)
		}
		byThread := map[int32][]hit{}
		for _, r := range readLog(t, log) {
			if r.Kind == trace.KindRead || r.Kind == trace.KindWrite {
				byThread[r.TID] = append(byThread[r.TID], hit{r.Kind, r.Width, r.Phys, r.Uint64(), r.PC, r.Time})
			}
		}
		// perf's rings are drained one watch at a time: order by the time
		// of the hit.
		for _, s := range byThread {
			sort.SliceStable(s, func(i, j int) bool { return s[i].time < s[j].time })
		}
		return byThread
	}
	// Thread ids differ between runs: compare the threads' sequences,
	// sorted by length (the main thread has more hits).
	seqs := func(m map[int32][]hit) [][]hit {
		var out [][]hit
		for _, s := range m {
			out = append(out, s)
		}
		if len(out) == 2 && len(out[0]) < len(out[1]) {
			out[0], out[1] = out[1], out[0]
		}
		return out
	}
	names := []string{"pages"}
	if feature.DebugRegisterTraps() == nil {
		names = append(names, "ptrace")
	}
	if feature.PerfBreakpoints() == nil {
		names = append(names, "perf")
	}
	pt := seqs(run(names[0]))
	if len(pt) != 2 {
		t.Fatalf("threads with hits: %s %d; want 2", names[0], len(pt))
	}
	// 100 stores, a load, a store to flag8, 20 stores to wide, and printf's
	// loads of counter and flag8.
	if n := len(pt[0]); n != 100+1+1+20+2 {
		t.Errorf("main thread: %d hits with %s, want 124", n, names[0])
	}
	if n := len(pt[1]); n != 100 {
		t.Errorf("second thread: %d hits with %s, want 100 (50 loads, 50 stores)", n, names[0])
	}
	t.Logf("backends compared: %v", names)
	for _, other := range names[1:] {
		pf := seqs(run(other))
		if len(pf) != 2 {
			t.Fatalf("threads with hits: %s %d; want 2", other, len(pf))
		}
		for i := range pt {
			a, b := pt[i], pf[i]
			if len(a) != len(b) {
				t.Fatalf("thread %d: %d hits with %s, %d with %s", i, len(a), names[0], len(b), other)
			}
			for j := range a {
				// PCs differ between runs only by the load address (PIE).
				if a[j].kind != b[j].kind || a[j].width != b[j].width || a[j].val != b[j].val ||
					a[j].addr-a[0].addr != b[j].addr-b[0].addr || a[j].pc-a[0].pc != b[j].pc-b[0].pc {
					t.Fatalf("thread %d hit %d: %s %+v, %s %+v", i, j, names[0], a[j], other, b[j])
				}
			}
		}
	}
}

// TestWatchBackendRefused: an explicit --backend the host lacks (by the
// probe) is refused with one line and exit 1, before the program runs;
// where the host has it, it runs.
func TestWatchBackendRefused(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/watchme.c", "-pthread")
	for name, probe := range map[string]func() error{"ptrace": feature.DebugRegisterTraps, "perf": feature.PerfBreakpoints} {
		out, err := exec.Command(bin, "watch", "-q", "--backend", name, "counter", "-o", "/dev/null", "--", prog).CombinedOutput()
		perr := probe()
		if perr == nil {
			if err != nil {
				t.Errorf("--backend %s on a host that has it: %v\n%s", name, err, out)
			}
			continue
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("--backend %s where %v: %v, want exit 1\n%s", name, perr, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.Contains(lines[0], "--backend "+name) || !strings.Contains(lines[0], "--backend pages") ||
			strings.Contains(string(out), "99 5099 7") {
			t.Errorf("--backend %s: want one line naming the backend and the way out, and the program not run; got\n%s", name, out)
		}
	}
}

// TestUnknownOnDevice checks the UNKNOWN record: a single-stepped
// instruction on a device mapping is not described from memory, but logged
// with its first three opcode bytes.
func TestUnknownOnDevice(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/unknown.c")
	log := filepath.Join(t.TempDir(), "unknown.log")
	out, err := exec.Command(bin, "record", "-q", "--map", "/dev/zero", "-o", log, "--", prog).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "bsf 7 load 128") {
		t.Fatalf("record: %v\n%s", err, out)
	}
	var got []string
	for _, r := range readLog(t, log) {
		switch r.Kind {
		case trace.KindWrite, trace.KindRead:
			got = append(got, fmt.Sprintf("%v %d %#x %#x", r.Kind, r.Width, r.Phys, r.Uint64()))
		case trace.KindUnknown:
			got = append(got, fmt.Sprintf("UNKNOWN %#x %02x,%02x,%02x", r.Phys, r.Value[0], r.Value[1], r.Value[2]))
		}
	}
	// bsfq 8(%reg) is REX.W 0f bc: the first three bytes are 48 0f bc (or
	// 49 with r8-r15 as the base).
	want := []string{"W 8 0x8 0x80", "UNKNOWN 0x8 48,0f,bc", "R 8 0x8 0x80"}
	if len(got) == 3 && strings.HasPrefix(got[1], "UNKNOWN 0x8 49,0f,bc") {
		want[1] = got[1]
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("records:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestForkAndExec checks fork and exec: a forked child is traced under a
// map id of its own; exec ends every traced mapping with an UNMAP, and the
// new image's mappings are traced under new ids.
func TestForkAndExec(t *testing.T) {
	got := mapLines(recordShm(t, testenv.BuildC(t, "testdata/forkexec.c"), "forkexec"), false)
	sameLines(t, got, []string{
		"MAP 1", "W 1 0x0 0x11", // the parent
		"MAP 2", "W 2 0x4 0x22", "R 2 0x4 0x22", "UNMAP 2", // the child's copy, until it exits
		"UNMAP 1",                                          // exec
		"MAP 3", "W 3 0x8 0x33", "R 3 0x4 0x22", "UNMAP 3", // the new image, until exit
	})
}

// TestForkNoFollow: with --no-follow a forked child gets its parent's armed
// pages back and runs untraced.
func TestForkNoFollow(t *testing.T) {
	got := mapLines(recordShm(t, testenv.BuildC(t, "testdata/forkexec.c"), "forkexec", "--no-follow"), false)
	sameLines(t, got, []string{
		"MAP 1", "W 1 0x0 0x11", // the parent; the child's store is not traced
		"UNMAP 1",                                          // exec
		"MAP 2", "W 2 0x8 0x33", "R 2 0x4 0x22", "UNMAP 2", // the new image, until exit
	})
}

// TestMappingChanges follows a traced mapping through a partial munmap
// (the rest keeps its id), mprotect away and back (still traced), and
// mremap (a new id for the new mapping).
func TestMappingChanges(t *testing.T) {
	got := mapLines(recordShm(t, testenv.BuildC(t, "testdata/remap.c"), "remap"), true)
	sameLines(t, got, []string{
		"MAP 1 0x0 0x3000",
		"W 1 0x0 0x1", "W 1 0x1000 0x2", "W 1 0x2000 0x3",
		"W 1 0x0 0x4", "W 1 0x2000 0x5", // after the munmap of the middle page
		"R 1 0x0 0x4", "W 1 0x0 0x6", // read-only, then writable again
		"MAP 2 0x2000 0x2000", "W 2 0x2004 0x7", "W 2 0x3000 0x8", // mremap
		"UNMAP 1", "UNMAP 2", // exit
	})
}

// TestManyTracees spawns threads, children and grandchildren in quick
// succession: whichever comes first, a new tracee's first stop or its
// creator's event, every one must run on and the session must end.
func TestManyTracees(t *testing.T) {
	bin := mmiotraceBin(t)
	prog := testenv.BuildC(t, "testdata/spawnmany.c", "-pthread")
	for i := 0; i < 5; i++ {
		cmd := exec.Command(bin, "record", "-q", "-o", os.DevNull, "--", prog)
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Signal(syscall.SIGQUIT)
			<-done
			t.Fatalf("run %d: mmiotrace did not finish (a tracee left stopped?)", i)
		}
	}
}

// TestTracepointThreadIDs checks --tp-tids: every event carries the id of
// a thread of the program.
func TestTracepointThreadIDs(t *testing.T) {
	bin := mmiotraceBin(t)
	demo := testenv.BuildGo(t, "../../examples/tracepoint")
	log := filepath.Join(t.TempDir(), "tids.log")
	out, err := exec.Command(bin, "record", "-q", "--tp-tids", "-e", "demo:*", "-o", log, "--", demo, "-n", "20").CombinedOutput()
	if err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}
	n := 0
	for _, r := range readLog(t, log) {
		if r.Kind == trace.KindEvent {
			n++
			if r.TID <= 0 {
				t.Fatalf("event %s with tid %d", r.Text, r.TID)
			}
		}
	}
	if n != 60 {
		t.Errorf("%d events, want 60 (20 each of doorbell, irq, complete)", n)
	}
}

// TestVforkChild checks that a vfork child's access to a traced page, made
// in its parent's memory, is executed and logged with the child's id.
func TestVforkChild(t *testing.T) {
	var got []string
	tids := map[string]int32{}
	for _, r := range recordShm(t, testenv.BuildC(t, "testdata/vfork.c"), "vfork") {
		if r.Kind == trace.KindWrite || r.Kind == trace.KindRead {
			s := fmt.Sprintf("%v %#x %#x", r.Kind, r.Phys, r.Uint64())
			got = append(got, s)
			tids[s] = r.TID
		}
	}
	sameLines(t, got, []string{"W 0x0 0x1", "W 0xc 0x44", "R 0xc 0x44"})
	if tids["W 0xc 0x44"] == tids["W 0x0 0x1"] {
		t.Errorf("the child's store is logged with the parent's id %d", tids["W 0x0 0x1"])
	}
}

// recordShm traces prog (given the shm path as its argument) with --map shm
// and the flags, and returns the log's records.
func recordShm(t *testing.T, prog, name string, flags ...string) []trace.Record {
	t.Helper()
	bin := mmiotraceBin(t)
	log := filepath.Join(t.TempDir(), name+".log")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-%s-%d", name, os.Getpid())
	defer os.Remove(shm)
	args := append([]string{"record", "-q", "--map", shm, "-o", log}, flags...)
	out, err := exec.Command(bin, append(args, "--", prog, shm)...).CombinedOutput()
	if err != nil {
		t.Fatalf("record: %v (the fixture's status says where it failed)\n%s", err, out)
	}
	return readLog(t, log)
}

// mapLines renders MAP, UNMAP, R and W records in short form, for exact
// comparisons; withRange adds a MAP's phys and length.
func mapLines(recs []trace.Record, withRange bool) []string {
	var got []string
	for _, r := range recs {
		switch r.Kind {
		case trace.KindMap:
			if withRange {
				got = append(got, fmt.Sprintf("MAP %d %#x %#x", r.MapID, r.Phys, r.Len))
			} else {
				got = append(got, fmt.Sprintf("MAP %d", r.MapID))
			}
		case trace.KindUnmap:
			got = append(got, fmt.Sprintf("UNMAP %d", r.MapID))
		case trace.KindRead, trace.KindWrite:
			got = append(got, fmt.Sprintf("%v %d %#x %#x", r.Kind, r.MapID, r.Phys, r.Uint64()))
		}
	}
	return got
}

// sameLines fails t unless got is want.
func sameLines(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("records:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestReportAndDecode records the example driver (built with DWARF), then
// checks that report names each register's accessing instructions by the
// source lines that access it, and that decode names every access's
// register, fields and function.
func TestReportAndDecode(t *testing.T) {
	bin := mmiotraceBin(t)
	src := "../../examples/device/device.c"
	dev := testenv.BuildC(t, src, "-pthread")
	regs := "../../regmap/testdata/device.regs"
	dir := t.TempDir()
	log := filepath.Join(dir, "dev.log")
	shm := fmt.Sprintf("/dev/shm/mmiotrace-clireport-%d", os.Getpid())
	if out, err := exec.Command(bin, "record", "-q", "--map", shm, "-o", log, "--", dev, shm).CombinedOutput(); err != nil {
		t.Fatalf("record: %v\n%s", err, out)
	}

	// The source lines that access each register: bar[NAME / 4].
	code, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{}
	for i, l := range strings.Split(string(code), "\n") {
		if m := regexp.MustCompile(`bar\[([A-Z]+) / 4\]`).FindStringSubmatch(l); m != nil {
			want[m[1]] = append(want[m[1]], fmt.Sprintf("device.c:%d", i+1))
		}
	}
	out, err := exec.Command(bin, "report", "--pcs", "10", "--regs", regs, log).Output()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	got := map[string][]string{}
	reg := ""
	row := regexp.MustCompile(`^  0x[0-9a-f]+\s+([A-Z]+)\s`)
	pcLine := regexp.MustCompile(`^\s+\d+  0x[0-9a-f]+ main\+0x[0-9a-f]+ \((device\.c:\d+)\)$`)
	for _, l := range strings.Split(string(out), "\n") {
		if m := row.FindStringSubmatch(l); m != nil {
			reg = m[1]
			continue
		}
		if m := pcLine.FindStringSubmatch(l); m != nil && reg != "" {
			if !slices.Contains(got[reg], m[1]) {
				got[reg] = append(got[reg], m[1])
			}
		}
	}
	for name, lines := range want {
		sort.Strings(lines)
		sort.Strings(got[name])
		if fmt.Sprint(got[name]) != fmt.Sprint(lines) {
			t.Errorf("%s: report names its PCs at %v, the source accesses it at %v\n%s", name, got[name], lines, out)
		}
	}
	if !regexp.MustCompile(`(?m)^  0x8\s+DATA\s+4\s+0\s+3\s+3\s+0xa\s+0x1e$`).Match(out) {
		t.Errorf("no DATA row with 3 writes, 3 values, first 0xa, last 0x1e:\n%s", out)
	}

	dec, err := exec.Command(bin, "decode", "--regs", regs, log).Output()
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	accesses := 0
	for _, r := range readLog(t, log) {
		if r.Kind.IsAccess() {
			accesses++
		}
	}
	named := regexp.MustCompile(`(?m)^\s+[\d.]+\s+\d+ [RW] 4 #1 0x[0-9a-f]+ [A-Z]+ (<=|=>) 0x[0-9a-f]+( \{[^}]*\})? @main\+0x[0-9a-f]+$`)
	if n := len(named.FindAll(dec, -1)); n != accesses {
		t.Errorf("%d decoded accesses with a register and a function, want all %d:\n%s", n, accesses, dec)
	}
	for _, want := range []string{" ID => 0x4d4d494f @main+", " CTRL <= 0x1 {EN | MODE=OFF} @main+", " DOORBELL <= 0x1 {RING} @main+", " STATUS => 0x1 {DONE} @main+"} {
		if !bytes.Contains(dec, []byte(want)) {
			t.Errorf("decode output lacks %q:\n%s", want, dec)
		}
	}

	// The HTML page, from stdin (kept in a file for the second pass).
	page := filepath.Join(dir, "dev.html")
	cmd := exec.Command(bin, "report", "-o", page, "-")
	cmd.Stdin, _ = os.Open(log)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("report -o: %v\n%s", err, out)
	}
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(html, []byte(`"heat":[{"title":"map #1 `+shm)) || !bytes.Contains(html, []byte("<title>mmiotrace report: ")) {
		t.Errorf("the page lacks the map's heat map:\n%.3000s", html)
	}
}
