package procmaps

import (
	"os"
	"testing"

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
