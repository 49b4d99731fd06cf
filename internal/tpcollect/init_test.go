package tpcollect_test

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
	"github.com/mmiotrace/mmiotrace/internal/tpcollect"
)

// TestOpenDuringInit connects the way `mmiotrace record -e` does, as soon as
// the socket appears, which is while the program is still initialising and
// has not declared its tracepoints. The session must adopt the ring started
// at init, succeed although nothing matches yet, and collect every event.
func TestOpenDuringInit(t *testing.T) {
	bin := testenv.BuildGo(t, "./testdata/tpslow", buildFlags...)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), tpcollect.EnvVar+"="+tpcollect.EnvValue([]string{"slow:*"}))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := tpcollect.WaitForSocket(ctx, cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	s, err := tpcollect.Open(cmd.Process.Pid, []string{"slow:*"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.Adopted() {
		t.Fatal("session did not adopt the ring started at init")
	}
	if n := len(s.Tracepoints()); n != 0 {
		t.Fatalf("%d tracepoints matched during init; the test program was too quick to check anything", n)
	}
	var got []string
	poll := func() {
		if _, err := s.Poll(func(e tpcollect.Event) {
			if e.Provider != "slow" || e.Name != "ev" || len(e.Fields) != 1 {
				t.Fatalf("event %+v", e)
			}
			got = append(got, e.Fields[0].Value)
		}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-exited:
		exited <- err
	case <-ctx.Done():
		t.Fatal("program did not exit")
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	poll()
	if len(got) != 10 || s.Lost() != 0 {
		t.Fatalf("got %d events %v, lost %d; want 10, 0", len(got), got, s.Lost())
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("event %d has value %s", i, v)
		}
	}
}
