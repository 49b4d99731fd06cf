package minielf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// Base is the address of the image's first byte, and of the
	// read-execute segment.
	Base = 0x400000
	// CodeOffset is where the code starts in the image: after the ELF
	// header and the two program headers. Base+CodeOffset is the entry.
	CodeOffset = ehdrSize + 2*phdrSize
	// Data is the address of the zeroed read-write page.
	Data = Base + 0x100000
	// DataSize is the size of the read-write page.
	DataSize = 0x1000
	// MaxCode is the most code and read-only data an image holds: the
	// read-execute segment must end below Data.
	MaxCode = Data - Base - CodeOffset

	ehdrSize = 64
	phdrSize = 56
)

// Image returns the executable image whose code (and read-only data) is
// code, placed at Base+CodeOffset. It fails if code is empty or too large.
func Image(code []byte) ([]byte, error) {
	if len(code) == 0 || len(code) > MaxCode {
		return nil, fmt.Errorf("minielf: %d bytes of code, want 1 to %d", len(code), MaxCode)
	}
	size := uint64(CodeOffset + len(code))
	le := binary.LittleEndian
	b := make([]byte, 0, size)
	// ELF header.
	b = append(b, 0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */, 0 /* System V */)
	b = append(b, make([]byte, 8)...)
	b = le.AppendUint16(b, 2)    // ET_EXEC
	b = le.AppendUint16(b, 0x3e) // EM_X86_64
	b = le.AppendUint32(b, 1)
	b = le.AppendUint64(b, Base+CodeOffset) // entry
	b = le.AppendUint64(b, ehdrSize)        // program headers
	b = le.AppendUint64(b, 0)               // no section headers
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
	phdr(5 /* R+X */, 0, Base, size, size)
	phdr(6 /* R+W */, 0, Data, 0, DataSize)
	return append(b, code...), nil
}

// Executable is an image written where execve accepts it.
type Executable struct {
	// Path is what to execute. For an image in memory it is
	// /proc/self/fd/N, which names the file only in this process and its
	// children until they exec: see Fd.
	Path string
	f    *os.File
}

// InMemory says whether the image is in a memfd rather than in a file.
func (e *Executable) InMemory() bool { return e.f != nil }

// File returns the memfd holding the image, opened read-only, or nil for an
// image in a file. Passing it to a child as fd N and executing
// /proc/self/fd/N keeps the child's exec independent of the fd numbers it
// inherits.
func (e *Executable) File() *os.File { return e.f }

// Close releases the image: it closes the memfd or removes the file.
func (e *Executable) Close() error {
	if e.f != nil {
		return e.f.Close()
	}
	return os.Remove(e.Path)
}

// Write stores img in a memfd (inMemory) or a temporary file, executable.
// The memfd is reopened read-only and its writable descriptor closed, so
// that kernels that refuse to execute a file open for writing (ETXTBSY)
// accept it.
func Write(img []byte, name string, inMemory bool) (*Executable, error) {
	if inMemory {
		fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("%s: memfd_create: %w", name, err)
		}
		w := os.NewFile(uintptr(fd), name)
		defer w.Close()
		if _, err := w.Write(img); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		r, err := os.Open(fmt.Sprintf("/proc/self/fd/%d", fd))
		if err != nil {
			return nil, fmt.Errorf("%s: reopen memfd: %w", name, err)
		}
		return &Executable{Path: fmt.Sprintf("/proc/self/fd/%d", r.Fd()), f: r}, nil
	}
	f, err := os.CreateTemp("", name+"-*")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	_, werr := f.Write(img)
	cerr := f.Chmod(0o700)
	if err := errors.Join(werr, cerr, f.Close()); err != nil {
		os.Remove(f.Name())
		return nil, fmt.Errorf("%s: write %s: %w", name, f.Name(), err)
	}
	return &Executable{Path: f.Name()}, nil
}

// Refused says whether an execve error means that this kind of
// Executable cannot be run here, so that the other kind should be tried:
// EACCES (vm.memfd_noexec, a noexec mount) or ETXTBSY.
func Refused(err error) bool {
	return errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.ETXTBSY)
}
