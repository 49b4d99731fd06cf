package procmaps

import (
	"errors"
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	data := `00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/dbus-daemon
7f2c4a000000-7f2c4a001000 rw-s 00003000 00:1a 99    /dev/shm/my dev (deleted)
7ffd2a1e6000-7ffd2a207000 rw-p 00000000 00:00 0                          [stack]
7f2c4b000000-7f2c4b100000 ---p 00000000 00:00 0
`
	maps, err := Parse([]byte(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(maps) != 4 {
		t.Fatalf("%d mappings", len(maps))
	}
	m := maps[1]
	if m.Start != 0x7f2c4a000000 || m.End != 0x7f2c4a001000 || m.Prot() != ProtRead|ProtWrite || !m.Shared() ||
		m.Offset != 0x3000 || m.Path != "/dev/shm/my dev" || !m.Deleted || m.Anonymous() || m.Dev != unix.Mkdev(0, 0x1a) || m.Inode != 99 {
		t.Errorf("shared mapping parsed as %+v", m)
	}
	if maps[0].Prot() != ProtRead|ProtExec || maps[0].Shared() || maps[0].Dev != unix.Mkdev(8, 2) {
		t.Errorf("text mapping parsed as %+v", maps[0])
	}
	if !maps[2].Anonymous() || maps[2].Path != "[stack]" || !maps[3].Anonymous() || maps[3].Prot() != 0 || maps[3].Path != "" {
		t.Errorf("anonymous mappings parsed as %+v, %+v", maps[2], maps[3])
	}
	for _, bad := range []string{"nonsense\n", "0-1 rwxp 0 08 1 /x\n", "0-1 rwx 0 08:02 1 /x\n", "0-zz rwxp 0 08:02 1\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse accepted %q", bad)
		}
	}
}

// TestReadSelf reads this process's own mappings and finds its executable.
func TestReadSelf(t *testing.T) {
	maps, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	for _, m := range maps {
		if m.Path == exe && m.Prot()&ProtExec != 0 {
			return
		}
	}
	t.Errorf("no executable mapping of %s among %d mappings", exe, len(maps))
}

// TestQuery checks Query against Read for the file mappings of this
// process (their first, middle and last byte), for a mapping of a file
// removed since, and for a hole, with the kernel's PROCMAP_QUERY and with
// the fallback that reads the file. Anonymous mappings are left out: the
// Go runtime grows and merges them while the test runs.
func TestQuery(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/mapped"
	if err := os.WriteFile(path, make([]byte, 3*4096), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, 3*4096, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	os.Remove(path)
	base := uint64(uintptr(unsafe.Pointer(&mem[0])))
	// A hole of one page in the middle of it.
	if _, _, e := unix.Syscall(unix.SYS_MUNMAP, uintptr(base+4096), 4096, 0); e != 0 {
		t.Fatal(e)
	}

	for _, fallback := range []bool{false, true} {
		saved := noQuery.Load()
		noQuery.Store(fallback)
		maps, err := Read(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := query(os.Getpid(), base); !fallback && (errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EINVAL)) {
			t.Logf("this kernel has no PROCMAP_QUERY: the fallback serves both runs")
		}
		checked, sawDeleted := 0, false
		for _, want := range maps {
			if want.Inode == 0 {
				continue
			}
			for _, a := range []uint64{want.Start, want.Start + want.Len()/2, want.End - 1} {
				got, ok, err := Query(os.Getpid(), a)
				if err != nil || !ok || got != want {
					t.Errorf("fallback %v: Query(%#x) = %+v, %v, %v; want %+v", fallback, a, got, ok, err, want)
				}
			}
			checked++
			sawDeleted = sawDeleted || want.Deleted && want.Start == base && want.Path == path
		}
		if checked < 3 || !sawDeleted {
			t.Errorf("fallback %v: %d file mappings checked, the removed file's seen %v", fallback, checked, sawDeleted)
		}
		if got, ok, err := Query(os.Getpid(), base+4096); err != nil || ok {
			t.Errorf("fallback %v: Query of the hole at %#x = %+v, %v, %v", fallback, base+4096, got, ok, err)
		}
		noQuery.Store(saved)
	}
}
