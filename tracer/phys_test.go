package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mmiotrace/mmiotrace/internal/testenv"
)

// pciDeviceWithBAR finds a PCI device in sysfs with a non-empty BAR 0..5.
func pciDeviceWithBAR(t *testing.T) (dir string, bar int, res resource) {
	t.Helper()
	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	for _, d := range devs {
		rs, err := readResources(d)
		if err != nil {
			continue
		}
		for i := 0; i < 6 && i < len(rs); i++ {
			if rs[i].end > rs[i].start {
				return d, i, rs[i]
			}
		}
	}
	testenv.Skip(t, "no PCI device with a BAR in sysfs")
	return "", 0, resource{}
}

// TestPCIResourcePhys checks that a mapping of a BAR's resource file gets
// the BAR's bus address, through both sysfs spellings of its path.
func TestPCIResourcePhys(t *testing.T) {
	dir, bar, res := pciDeviceWithBAR(t)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, real} {
		m := Mapping{Start: 0x7f0000000000, End: 0x7f0000001000, Inode: 1, Offset: 0x1000,
			Path: fmt.Sprintf("%s/resource%d", p, bar)}
		pi := physBase(&m, "/proc/self")
		phys, pci := pi.phys, pi.pciDir
		if phys != res.start+0x1000 || pci != p {
			t.Errorf("physBase(%s) = %#x, %q; want %#x, %q", m.Path, phys, pci, res.start+0x1000, p)
		}
		if !isDevice(&m) {
			t.Errorf("%s is not taken for a device", m.Path)
		}
	}
}

// TestPCIDevLine checks the PCIDEV line against the kernel's layout: bus and
// devfn, vendor and device, irq, seven starts with flag bits, seven sizes,
// driver.
func TestPCIDevLine(t *testing.T) {
	dir, bar, res := pciDeviceWithBAR(t)
	line, err := pciDevLine(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(line)
	if len(f) < 17 {
		t.Fatalf("PCIDEV line %q has %d fields, want at least 17", line, len(f))
	}
	var dom, bus, dev, fn uint
	fmt.Sscanf(filepath.Base(dir), "%x:%x:%x.%x", &dom, &bus, &dev, &fn)
	if want := fmt.Sprintf("%02x%02x", bus, dev<<3|fn); f[0] != want {
		t.Errorf("bus/devfn %s, want %s", f[0], want)
	}
	vendor, _ := os.ReadFile(dir + "/vendor")
	device, _ := os.ReadFile(dir + "/device")
	if want := strings.TrimPrefix(strings.TrimSpace(string(vendor)), "0x") + strings.TrimPrefix(strings.TrimSpace(string(device)), "0x"); f[1] != want {
		t.Errorf("vendor/device %s, want %s", f[1], want)
	}
	if want := fmt.Sprintf("%x", res.start|res.flags&0xf); f[3+bar] != want {
		t.Errorf("BAR %d start %s, want %s", bar, f[3+bar], want)
	}
	if want := fmt.Sprintf("%x", res.end-res.start+1); f[10+bar] != want {
		t.Errorf("BAR %d size %s, want %s", bar, f[10+bar], want)
	}
	if drv, err := os.Readlink(dir + "/driver"); err == nil && f[len(f)-1] != filepath.Base(drv) {
		t.Errorf("driver %s, want %s", f[len(f)-1], filepath.Base(drv))
	}
}

// TestVFIOGroupDevice checks the mapping of a VFIO group's device file
// (anon_inode:[vfio-device], the same name for every device) to its PCI
// device, from the vfio-device-syspath of the program's open device files,
// with a fake /proc/PID and fake devices: one device, and two devices told
// apart by whether their BAR of the region's index can hold the mapping.
func TestVFIOGroupDevice(t *testing.T) {
	root := t.TempDir()
	mkdev := func(name, resource string) string {
		dir := filepath.Join(root, "devices", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resource"), []byte(resource), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// a: BAR 2 of 64 KiB at 0xf0000000; b: BAR 2 of 4 KiB at 0xe0000000.
	a := mkdev("0000:01:00.0", "0x0 0x0 0x0\n0x0 0x0 0x0\n0xf0000000 0xf000ffff 0x40200\n")
	b := mkdev("0000:02:00.0", "0x0 0x0 0x0\n0x0 0x0 0x0\n0xe0000000 0xe0000fff 0x40200\n")
	proc := func(devs ...string) string {
		p := t.TempDir()
		os.Mkdir(filepath.Join(p, "fd"), 0o755)
		os.Mkdir(filepath.Join(p, "fdinfo"), 0o755)
		os.Symlink("/dev/null", filepath.Join(p, "fd", "0"))
		os.WriteFile(filepath.Join(p, "fdinfo", "0"), []byte("pos:\t0\n"), 0o644)
		for i, d := range devs {
			fd := fmt.Sprint(i + 3)
			os.Symlink(vfioAnon, filepath.Join(p, "fd", fd))
			os.WriteFile(filepath.Join(p, "fdinfo", fd), []byte("pos:\t0\nflags:\t02000002\nvfio-device-syspath: "+d+"\n"), 0o644)
		}
		return p
	}
	for _, tc := range []struct {
		name     string
		proc     string
		off, len uint64
		phys     uint64
		dir      string
	}{
		{"one device", proc(a), 2<<40 | 0x100, 0x1000, 0xf0000100, a},
		{"two, one fits", proc(b, a), 2<<40 | 0x2000, 0x1000, 0xf0002000, a},
		{"two, both fit", proc(a, b), 2 << 40, 0x1000, 2 << 40, ""},
		{"closed fd", proc(), 2 << 40, 0x1000, 2 << 40, ""},
		{"config region", proc(a), 7 << 40, 0x1000, 7 << 40, ""},
	} {
		m := Mapping{Start: 0x7f0000000000, End: 0x7f0000000000 + tc.len, Inode: 1234, Offset: tc.off, Path: vfioAnon}
		pi := physBase(&m, tc.proc)
		if pi.phys != tc.phys || pi.pciDir != tc.dir || (tc.dir == "") != (pi.why != "") {
			t.Errorf("%s: physBase = %#x, %q (%s); want %#x, %q", tc.name, pi.phys, pi.pciDir, pi.why, tc.phys, tc.dir)
		}
	}
}
