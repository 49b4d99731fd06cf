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
		phys, pci := physBase(&m)
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
