package ptrace

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// runSpawned runs a spawned program to its end, passing its stops on, and
// returns its exit status.
func runSpawned(t *testing.T, s *Spawned) int {
	t.Helper()
	if err := Cont(s.PID, 0); err != nil {
		t.Fatal(err)
	}
	for {
		_, ws, err := Wait(s.PID, false)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ws.Exited():
			return ws.ExitStatus()
		case ws.Signaled():
			t.Fatalf("program killed by %v", ws.Signal())
		}
		sig := 0
		if ws.Stopped() && Event(ws) == 0 && !IsSyscallStop(ws) {
			sig = int(ws.StopSignal())
		}
		if err := Cont(s.PID, sig); err != nil {
			t.Fatal(err)
		}
	}
}

// spawnOutput spawns argv with env through the shim, from a memfd or from
// a file, runs it to its end and returns what it wrote on stdout.
func spawnOutput(t *testing.T, inMemory bool, argv, env []string) string {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		t.Fatal(err)
	}
	img, err := shimImageBytes(traceFilter(TracedSyscalls))
	if err != nil {
		t.Fatal(err)
	}
	s, refused, err := startShim(img, inMemory, path, argv, [3]*os.File{os.Stdin, w, os.Stderr}, env)
	w.Close()
	if refused {
		t.Fatalf("the shim was refused: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Proc.Release()
	if st := runSpawned(t, s); st != 0 {
		t.Errorf("%v exited %d", argv, st)
	}
	out, _ := io.ReadAll(r)
	return string(out)
}

// TestShimArgvEnv checks that the program the shim executes gets exactly
// the argument vector and environment Spawn was given, and only the three
// standard descriptors, from a memfd and from a file.
func TestShimArgvEnv(t *testing.T) {
	for _, inMemory := range []bool{true, false} {
		name := map[bool]string{true: "memfd", false: "file"}[inMemory]
		t.Run(name, func(t *testing.T) {
			bin := testenv.BuildC(t, "testdata/argv.c")
			argv := []string{bin, "one two", "", "three"}
			got := spawnOutput(t, inMemory, argv, []string{"MMIOTRACE_SHIM_TEST=v a l"})
			want := bin + "|one two||three|v a l|\n"
			if got != want {
				t.Errorf("program printed %q, want %q", got, want)
			}
		})
	}
}

// TestShimSeccompFilter checks that the shim installed the filter: the
// program's mmap calls stop with PTRACE_EVENT_SECCOMP and its other calls
// do not.
func TestShimSeccompFilter(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s, err := Spawn([]string{"true"}, [3]*os.File{os.Stdin, os.Stdout, os.Stderr}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Proc.Release()
	if err := Cont(s.PID, 0); err != nil {
		t.Fatal(err)
	}
	var stops, mmaps int
	for {
		_, ws, err := Wait(s.PID, false)
		if err != nil {
			t.Fatal(err)
		}
		if ws.Exited() || ws.Signaled() {
			break
		}
		sig := 0
		if Event(ws) == unix.PTRACE_EVENT_SECCOMP {
			stops++
			var regs unix.PtraceRegs
			if err := GetRegs(s.PID, &regs); err != nil {
				t.Fatal(err)
			}
			switch regs.Orig_rax {
			case unix.SYS_MMAP, unix.SYS_MUNMAP, unix.SYS_MREMAP, unix.SYS_MPROTECT:
				if regs.Orig_rax == unix.SYS_MMAP {
					mmaps++
				}
			default:
				t.Errorf("seccomp stop for system call %d, which the filter allows", regs.Orig_rax)
			}
		} else if ws.Stopped() && Event(ws) == 0 && !IsSyscallStop(ws) {
			sig = int(ws.StopSignal())
		}
		if err := Cont(s.PID, sig); err != nil {
			t.Fatal(err)
		}
	}
	if mmaps == 0 {
		t.Errorf("no seccomp stop for true's mmap calls (%d stops): the filter is not installed", stops)
	}
}

// TestShimExecFails checks the error for a command that is found but that
// execve refuses: the shim reports the errno and exits, and nothing is
// left running.
func TestShimExecFails(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	bad := filepath.Join(t.TempDir(), "not-a-program")
	if err := os.WriteFile(bad, []byte("\x00\x01\x02\x03 neither ELF nor script\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := Spawn([]string{bad}, [3]*os.File{os.Stdin, os.Stdout, os.Stderr}, nil, nil)
	if !errors.Is(err, syscall.ENOEXEC) || !strings.Contains(err.Error(), "execute "+bad) {
		t.Errorf("Spawn of a file that is no program: %v, want execute %s: %v", err, bad, syscall.ENOEXEC)
	}
}

// TestShimGateClosed checks that a shim whose gate closes without a byte
// (the tracer gave up before seizing it) exits without executing anything.
func TestShimGateClosed(t *testing.T) {
	img, err := shimImageBytes(traceFilter(TracedSyscalls))
	if err != nil {
		t.Fatal(err)
	}
	exe, err := minielf.Write(img, "mmiotrace-shim-test", false)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	gateR, gateW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer reportR.Close()
	marker := filepath.Join(t.TempDir(), "ran")
	attr := &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, gateR, reportW}}
	proc, err := os.StartProcess(exe.Path, []string{"mmiotrace-shim", "/usr/bin/touch", "touch", marker}, attr)
	gateR.Close()
	reportW.Close()
	if err != nil {
		t.Fatal(err)
	}
	gateW.Close()
	st, err := proc.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != shimExit {
		t.Errorf("shim exited %d, want %d", st.ExitCode(), shimExit)
	}
	report, _ := io.ReadAll(reportR)
	if string(report) != "\x01" {
		t.Errorf("shim reported %q, want only its ready byte", report)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the command ran although the gate closed")
	}
}
