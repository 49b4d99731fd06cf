package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// pageSize is the x86-64 base page size.
const pageSize = 4096

// resourceFile matches a PCI BAR file in sysfs and captures the device
// directory and the BAR number ("resource2" and "resource2_wc" are BAR 2).
var resourceFile = regexp.MustCompile(`^(/sys/.*/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/resource([0-9]+)(_wc)?$`)

// uioFile matches a UIO device node.
var uioFile = regexp.MustCompile(`^/dev/(uio[0-9]+)$`)

// physBase returns the bus ("physical") address of the first byte of m, as
// the kernel's mmiotrace would log it, and the sysfs directory of the PCI
// device behind it, if any:
//   - a PCI resource file: the BAR's start from the device's sysfs
//     "resource" file, plus the mapping's offset;
//   - /dev/mem: the file offset, which is the physical address;
//   - /dev/uioN: the UIO map's addr (the mmap offset N pages selects map N);
//   - any other file: the file offset;
//   - anonymous memory: the virtual address.
func physBase(m *Mapping) (phys uint64, pciDir string) {
	switch {
	case m.Anonymous():
		return m.Start, ""
	case m.Path == "/dev/mem":
		return m.Offset, ""
	}
	if sm := resourceFile.FindStringSubmatch(m.Path); sm != nil {
		bar, _ := strconv.Atoi(sm[2])
		res, err := readResources(sm[1])
		if err == nil && bar < len(res) {
			return res[bar].start + m.Offset, sm[1]
		}
		return m.Offset, sm[1]
	}
	if sm := uioFile.FindStringSubmatch(m.Path); sm != nil {
		n := m.Offset / pageSize
		b, err := os.ReadFile(fmt.Sprintf("/sys/class/uio/%s/maps/map%d/addr", sm[1], n))
		if err == nil {
			if a, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64); err == nil {
				return a, ""
			}
		}
		return m.Offset, ""
	}
	return m.Offset, ""
}

// resource is one line of a PCI device's sysfs "resource" file.
type resource struct{ start, end, flags uint64 }

func readResources(dir string) ([]resource, error) {
	b, err := os.ReadFile(filepath.Join(dir, "resource"))
	if err != nil {
		return nil, err
	}
	var out []resource
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line) // "0x<start> 0x<end> 0x<flags>"
		if len(f) != 3 {
			return nil, fmt.Errorf("%s/resource: bad line %q", dir, line)
		}
		var v [3]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 0, 64)
			if err != nil {
				return nil, fmt.Errorf("%s/resource: %w", dir, err)
			}
			v[i] = n
		}
		out = append(out, resource{v[0], v[1], v[2]})
	}
	return out, nil
}

// pciDevLine renders the PCIDEV line the kernel's mmiotrace writes for a
// device, from its sysfs directory: bus and devfn, vendor and device ids,
// irq, the start (with the low flag bits) and size of the first seven
// resources, and the bound driver's name if any. demmio uses it to name
// registers.
func pciDevLine(dir string) (string, error) {
	name := filepath.Base(dir) // dddd:bb:dd.f
	var dom, bus, dev, fn uint
	if _, err := fmt.Sscanf(name, "%x:%x:%x.%x", &dom, &bus, &dev, &fn); err != nil {
		return "", fmt.Errorf("pci device %s: %w", dir, err)
	}
	hexFile := func(f string) uint64 {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64)
		return v
	}
	res, err := readResources(dir)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%02x%02x %04x%04x %x", bus, dev<<3|fn, hexFile("vendor"), hexFile("device"), hexFile("irq"))
	for i := 0; i < 7; i++ {
		var r resource
		if i < len(res) {
			r = res[i]
		}
		fmt.Fprintf(&sb, " %x", r.start|r.flags&0xf)
	}
	for i := 0; i < 7; i++ {
		var size uint64
		if i < len(res) && res[i].start < res[i].end {
			size = res[i].end - res[i].start + 1
		}
		fmt.Fprintf(&sb, " %x", size)
	}
	if drv, err := os.Readlink(filepath.Join(dir, "driver")); err == nil {
		sb.WriteString(" " + filepath.Base(drv))
	}
	return sb.String(), nil
}
