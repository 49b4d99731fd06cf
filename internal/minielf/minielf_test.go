package minielf

import (
	"encoding/binary"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// exitCode is a program that stores 42 into the read-write page, loads it
// back and exits with it: both segments are mapped as the image says.
func exitCode() []byte {
	var c []byte
	le := binary.LittleEndian
	c = append(c, 0xc7, 0x04, 0x25) // mov dword [Data+8], 42
	c = le.AppendUint32(c, Data+8)
	c = le.AppendUint32(c, 42)
	c = append(c, 0x8b, 0x3c, 0x25) // mov edi, [Data+8]
	c = le.AppendUint32(c, Data+8)
	c = append(c, 0xb8) // mov eax, SYS_exit_group
	c = le.AppendUint32(c, unix.SYS_EXIT_GROUP)
	return append(c, 0x0f, 0x05) // syscall
}

// TestImageRuns writes an image in memory and in a file and runs it.
func TestImageRuns(t *testing.T) {
	img, err := Image(exitCode())
	if err != nil {
		t.Fatal(err)
	}
	for _, inMemory := range []bool{true, false} {
		exe, err := Write(img, "minielf-test", inMemory)
		if err != nil {
			t.Fatal(err)
		}
		if exe.InMemory() != inMemory || (exe.File() != nil) != inMemory {
			t.Errorf("inMemory %v: InMemory() %v, File() %v", inMemory, exe.InMemory(), exe.File())
		}
		err = exec.Command(exe.Path).Run()
		if inMemory && Refused(err) {
			t.Logf("this host refuses to execute a memfd: %v", err)
		} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 42 {
			t.Errorf("inMemory %v: %s ran with %v, want exit status 42", inMemory, exe.Path, err)
		}
		if err := exe.Close(); err != nil {
			t.Error(err)
		}
	}
}

// TestImageRefusesBadCode checks the bounds on the code's size.
func TestImageRefusesBadCode(t *testing.T) {
	for _, n := range []int{0, MaxCode + 1} {
		if _, err := Image(make([]byte, n)); err == nil {
			t.Errorf("Image of %d bytes of code succeeded", n)
		}
	}
	if _, err := Image(make([]byte, MaxCode)); err != nil {
		t.Errorf("Image of MaxCode bytes: %v", err)
	}
}
