package feature

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/mmiotrace/mmiotrace/internal/minielf"
)

// The probe child is a static ELF executable that package minielf builds
// around these instructions, with the watched word at the start of its
// zeroed read-write page:
//
//	mov dword [probeWord], probeValue   ; the watched write
//	mov edi, [probeWord]
//	mov eax, SYS_exit_group
//	syscall
//
// so it exits with status probeValue exactly when its write landed: a
// positive control for probes that watch the write.
const (
	probeWord  = minielf.Data
	probeValue = 42
	// probeStoreEnd is the address after the watched store: where a data
	// breakpoint's trap leaves RIP.
	probeStoreEnd = minielf.Base + minielf.CodeOffset + 11
)

func probeCode() []byte {
	var c []byte
	le := binary.LittleEndian
	c = append(c, 0xc7, 0x04, 0x25) // mov dword [abs32], imm32
	c = le.AppendUint32(c, probeWord)
	c = le.AppendUint32(c, probeValue)
	c = append(c, 0x8b, 0x3c, 0x25) // mov edi, [abs32]
	c = le.AppendUint32(c, probeWord)
	c = append(c, 0xb8) // mov eax, imm32
	c = le.AppendUint32(c, unix.SYS_EXIT_GROUP)
	c = append(c, 0x0f, 0x05) // syscall
	return c
}

// probeExecutable writes the probe child to a memfd, or to a temporary
// file, and returns a path that execve accepts and a function that
// releases it.
func probeExecutable(memfd bool) (string, func(), error) {
	img, err := minielf.Image(probeCode())
	if err != nil {
		return "", nil, err
	}
	exe, err := minielf.Write(img, "mmiotrace-probe", memfd)
	if err != nil {
		return "", nil, fmt.Errorf("probe program: %w", err)
	}
	return exe.Path, func() { exe.Close() }, nil
}
