package feature

import (
	"errors"
	"fmt"
	"os/exec"
	"testing"
)

// TestProbesConclusive: every probe gives a conclusive answer on this host
// (works, or ErrNotSupported with a reason), and the same one again from
// the cache.
func TestProbesConclusive(t *testing.T) {
	for _, f := range All() {
		err := f.Probe()
		if err != nil && !errors.Is(err, ErrNotSupported) {
			t.Errorf("%s: inconclusive: %v", f.Name, err)
			continue
		}
		var ue *UnsupportedError
		if err != nil && (!errors.As(err, &ue) || ue.Reason == "" || ue.Feature == "") {
			t.Errorf("%s: %v does not say which feature and why", f.Name, err)
		}
		if again := f.Probe(); fmt.Sprint(again) != fmt.Sprint(err) {
			t.Errorf("%s: second answer %v differs from first %v", f.Name, again, err)
		}
		t.Logf("%-22s %v", f.Name, err)
	}
}

// TestProbeProgram: the probe program itself is a valid executable whose
// store lands (exit status probeValue), untraced: the debug-register and
// perf probes can only say "no trap" because of this positive control.
func TestProbeProgram(t *testing.T) {
	for _, memfd := range []bool{true, false} {
		path, release, err := probeExecutable(memfd)
		if err != nil {
			t.Fatal(err)
		}
		err = exec.Command(path).Run()
		release()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != probeValue {
			t.Errorf("memfd=%v: probe program: %v, want exit status %d", memfd, err, probeValue)
		}
	}
}

// TestDebugRegisterProbeSeesTrap checks the probe's positive path where the
// host has it, and otherwise that ptrace itself works, so that a "no trap"
// answer is about the debug registers and not a broken probe.
func TestDebugRegisterProbeSeesTrap(t *testing.T) {
	if err := Ptrace(); err != nil {
		t.Fatalf("ptrace: %v", err)
	}
	err := DebugRegisterTraps()
	var ue *UnsupportedError
	switch {
	case err == nil:
		t.Log("debug registers trap on this host, after the store as the SDM says")
	case errors.As(err, &ue):
		t.Logf("this host's debug registers do not trap: %s", ue.Reason)
	default:
		t.Fatalf("inconclusive: %v", err)
	}
}

func TestUnsupportedErrorIs(t *testing.T) {
	err := fmt.Errorf("watch: %w", unsupported("x", "y"))
	if !errors.Is(err, ErrNotSupported) {
		t.Fatal("wrapped UnsupportedError is not ErrNotSupported")
	}
	if got := err.Error(); got != "watch: x not supported: y" {
		t.Errorf("message %q", got)
	}
}
