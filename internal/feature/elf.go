package feature

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The probe child is a static ELF executable of two segments that this
// package builds itself: code at probeBase (read, execute) and a zeroed
// word at probeWord (read, write, no file bytes). It runs
//
//	mov dword [probeWord], probeValue   ; the watched write
//	mov edi, [probeWord]
//	mov eax, SYS_exit_group
//	syscall
//
// so it exits with status probeValue exactly when its write landed: a
// positive control for probes that watch the write.
const (
	probeBase  = 0x400000
	probeWord  = probeBase + 0x1000
	probeValue = 42
	ehdrSize   = 64
	phdrSize   = 56
	codeOff    = ehdrSize + 2*phdrSize
	// probeStoreEnd is the address after the watched store: where a data
	// breakpoint's trap leaves RIP.
	probeStoreEnd = probeBase + codeOff + 11
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

// probeELF returns the probe child's executable image.
func probeELF() []byte {
	code := probeCode()
	size := uint64(codeOff + len(code))
	le := binary.LittleEndian
	b := make([]byte, 0, size)
	// ELF header.
	b = append(b, 0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* System V */)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, 2)    // ET_EXEC
	b = le.AppendUint16(b, 0x3e) // EM_X86_64
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, probeBase+codeOff) // entry
	b = le.AppendUint64(b, ehdrSize)          // program headers
	b = le.AppendUint64(b, 0)                 // no section headers
	b = le.AppendUint32(b, 0)
	b = le.AppendUint16(b, ehdrSize)
	b = le.AppendUint16(b, phdrSize)
	b = le.AppendUint16(b, 2)
	b = le.AppendUint16(b, 64)
	b = le.AppendUint16(b, 0)
	b = le.AppendUint16(b, 0)
	phdr := func(flags uint32, off, vaddr, filesz, memsz uint64) {
		b = le.AppendUint32(b, 1) // PT_LOAD
		b = le.AppendUint32(b, flags)
		b = le.AppendUint64(b, off)
		b = le.AppendUint64(b, vaddr)
		b = le.AppendUint64(b, vaddr)
		b = le.AppendUint64(b, filesz)
		b = le.AppendUint64(b, memsz)
		b = le.AppendUint64(b, 0x1000)
	}
	phdr(5 /* R+X */, 0, probeBase, size, size)
	phdr(6 /* R+W */, 0, probeWord, 0, 8)
	return append(b, code...)
}

// probeExecutable writes the probe child to a memfd, or to a temporary
// file, and returns a path that execve accepts and a function that
// releases it.
func probeExecutable(memfd bool) (string, func(), error) {
	img := probeELF()
	if memfd {
		fd, err := unix.MemfdCreate("mmiotrace-probe", unix.MFD_CLOEXEC)
		if err != nil {
			return "", nil, fmt.Errorf("probe program: memfd_create: %w", err)
		}
		f := os.NewFile(uintptr(fd), "mmiotrace-probe")
		if _, err := f.Write(img); err != nil {
			f.Close()
			return "", nil, fmt.Errorf("probe program: %w", err)
		}
		return fmt.Sprintf("/proc/self/fd/%d", fd), func() { f.Close() }, nil
	}
	f, err := os.CreateTemp("", "mmiotrace-probe-*")
	if err != nil {
		return "", nil, fmt.Errorf("probe program: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(img); err != nil || f.Chmod(0o700) != nil {
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("probe program: write %s failed", f.Name())
	}
	return f.Name(), func() { os.Remove(f.Name()) }, nil
}
