package procmaps

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// procmapQuery is struct procmap_query of linux/fs.h (Linux 6.11).
type procmapQuery struct {
	size        uint64
	queryFlags  uint64
	queryAddr   uint64
	vmaStart    uint64
	vmaEnd      uint64
	vmaFlags    uint64
	vmaPageSize uint64
	vmaOffset   uint64
	inode       uint64
	devMajor    uint32
	devMinor    uint32
	nameSize    uint32
	buildIDSize uint32
	nameAddr    uint64
	buildIDAddr uint64
}

const (
	ioctlProcmapQuery = 0xC0686611 // _IOWR('f', 17, struct procmap_query)

	vmaReadable   = 0x01
	vmaWritable   = 0x02
	vmaExecutable = 0x04
	vmaShared     = 0x08
)

// noQuery is set once the kernel has refused PROCMAP_QUERY (older than
// 6.11): Query then reads the whole file. Tests set it to check that path.
var noQuery atomic.Bool

// Query returns the mapping of process pid that holds addr, and false when
// none does. It asks the kernel for that one mapping (the PROCMAP_QUERY
// ioctl of Linux 6.11), which costs a few system calls where reading and
// parsing the whole of /proc/PID/maps costs a fraction of a millisecond
// with a program's few hundred mappings; on older kernels it does that.
func Query(pid int, addr uint64) (Mapping, bool, error) {
	if !noQuery.Load() {
		m, ok, err := query(pid, addr)
		if !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
			return m, ok, err
		}
		noQuery.Store(true)
	}
	maps, err := Read(pid)
	if err != nil {
		return Mapping{}, false, err
	}
	for _, m := range maps {
		if addr >= m.Start && addr < m.End {
			return m, true, nil
		}
	}
	return Mapping{}, false, nil
}

func query(pid int, addr uint64) (Mapping, bool, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return Mapping{}, false, err
	}
	defer f.Close()
	var name [4096]byte
	q := procmapQuery{queryAddr: addr, nameSize: uint32(len(name)), nameAddr: uint64(uintptr(unsafe.Pointer(&name[0])))}
	q.size = uint64(unsafe.Sizeof(q))
	sc, err := f.SyscallConn()
	if err != nil {
		return Mapping{}, false, err
	}
	var errno unix.Errno
	if err := sc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, ioctlProcmapQuery, uintptr(unsafe.Pointer(&q)))
	}); err != nil {
		return Mapping{}, false, err
	}
	switch errno {
	case 0:
	case unix.ENOENT:
		return Mapping{}, false, nil // no mapping holds addr
	default:
		return Mapping{}, false, fmt.Errorf("PROCMAP_QUERY %#x in process %d: %w", addr, pid, errno)
	}
	perms := []byte("---p")
	for i, bit := range []uint64{vmaReadable, vmaWritable, vmaExecutable} {
		if q.vmaFlags&bit != 0 {
			perms[i] = "rwx"[i]
		}
	}
	if q.vmaFlags&vmaShared != 0 {
		perms[3] = 's'
	}
	m := Mapping{Start: q.vmaStart, End: q.vmaEnd, Perms: string(perms), Offset: q.vmaOffset,
		Dev: unix.Mkdev(q.devMajor, q.devMinor), Inode: q.inode}
	if q.nameSize > 0 {
		m.Path = string(name[:q.nameSize-1]) // the size counts the NUL
	}
	if p, ok := strings.CutSuffix(m.Path, " (deleted)"); ok {
		m.Path, m.Deleted = p, true
	}
	return m, true, nil
}
