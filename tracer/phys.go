package tracer

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mmiotrace/mmiotrace/trace"
)

// pageSize is the x86-64 base page size.
const pageSize = 4096

// The expressions of this file are compiled on first use, not at package
// init, which every mmiotrace process (the waker too) runs.

// resourceFile matches a PCI BAR file in sysfs and captures the device
// directory and the BAR number ("resource2" and "resource2_wc" are BAR 2).
var resourceFile = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(/sys/.*/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])/resource([0-9]+)(_wc)?$`)
})

// uioFile matches a UIO device node.
var uioFile = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/dev/(uio[0-9]+)$`) })

// vfioCdev matches a VFIO device's character device (the iommufd API).
var vfioCdev = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^/dev/vfio/devices/(vfio[0-9]+)$`) })

// vfioAnon is how /proc/PID/maps names a VFIO device file obtained from a
// group (VFIO_GROUP_GET_DEVICE_FD): an anonymous inode, the same for every
// device.
const vfioAnon = "anon_inode:[vfio-device]"

// pciName matches a PCI device's sysfs name, dddd:bb:dd.f.
var pciName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$`) })

// VFIO region offsets: a device file's mmap offset is the region index
// shifted left by 40 (VFIO_PCI_OFFSET_SHIFT) plus the offset in the region;
// regions 0-5 are the BARs and 6 the ROM, as in sysfs "resource".
const (
	vfioShift    = 40
	vfioBARCount = 7
)

// physInfo is where a mapping lands on the bus.
type physInfo struct {
	phys   uint64 // bus address of the mapping's first byte
	pciDir string // sysfs directory of the PCI device behind it, if any
	why    string // why the device is not known, where it should be
}

// physBase returns the bus ("physical") address of the first byte of m, as
// the kernel's mmiotrace would log it, and the PCI device behind it, for
// every way a user-space driver reaches a device:
//   - a PCI resource file (/sys/bus/pci/devices/D/resourceN): the BAR's
//     start from the device's sysfs "resource" file, plus the offset;
//   - /dev/mem: the file offset, which is the physical address; the device
//     is the one with a BAR that holds it;
//   - /dev/uioN: the UIO map's addr (the mmap offset N pages selects map N);
//     the device is /sys/class/uio/uioN/device, if a PCI device;
//   - VFIO (/dev/vfio/devices/vfioN, or a group's device file): the BAR's
//     start plus the offset in the region, instead of the region offset
//     (index<<40); the device is /sys/class/vfio-dev/vfioN/device, or the
//     vfio-device-syspath of the program's VFIO device files (fdinfo);
//   - any other file: the file offset;
//   - anonymous memory: the virtual address.
//
// procDir is the program's /proc/PID directory.
func physBase(m *Mapping, procDir string) physInfo {
	switch {
	case m.Path == vfioAnon:
		return vfioPhys(m, vfioGroupDevice(m, procDir))
	case m.Anonymous():
		return physInfo{phys: m.Start}
	case m.Path == "/dev/mem":
		return physInfo{phys: m.Offset, pciDir: pciDeviceAt(m.Offset)}
	}
	if sm := resourceFile().FindStringSubmatch(m.Path); sm != nil {
		bar, _ := strconv.Atoi(sm[2])
		res, err := readResources(sm[1])
		if err == nil && bar < len(res) {
			return physInfo{phys: res[bar].start + m.Offset, pciDir: sm[1]}
		}
		return physInfo{phys: m.Offset, pciDir: sm[1]}
	}
	if sm := uioFile().FindStringSubmatch(m.Path); sm != nil {
		info := physInfo{phys: m.Offset}
		n := m.Offset / pageSize
		b, err := os.ReadFile(fmt.Sprintf("/sys/class/uio/%s/maps/map%d/addr", sm[1], n))
		if err == nil {
			if a, err := strconv.ParseUint(strings.TrimSpace(string(b)), 0, 64); err == nil {
				info.phys = a
			}
		}
		info.pciDir, _ = pciDirOf("/sys/class/uio/" + sm[1] + "/device")
		return info
	}
	if sm := vfioCdev().FindStringSubmatch(m.Path); sm != nil {
		dir, err := pciDirOf("/sys/class/vfio-dev/" + sm[1] + "/device")
		if err != nil {
			return physInfo{phys: m.Offset, why: err.Error()}
		}
		return vfioPhys(m, []string{dir})
	}
	return physInfo{phys: m.Offset}
}

// pciDirOf resolves a sysfs link to a device and returns the device's
// directory under /sys/bus/pci/devices, or an error if it is not a PCI
// device.
func pciDirOf(link string) (string, error) {
	real, err := filepath.EvalSymlinks(link)
	if err != nil {
		return "", err
	}
	name := filepath.Base(real)
	if !pciName().MatchString(name) {
		return "", fmt.Errorf("%s is not a PCI device", real)
	}
	dir := "/sys/bus/pci/devices/" + name
	if _, err := os.Stat(dir); err != nil {
		return real, nil
	}
	return dir, nil
}

// pciDeviceAt returns the PCI device one of whose memory BARs (or ROM)
// holds bus address phys, or "".
func pciDeviceAt(phys uint64) string {
	const ioresourceMem = 0x200
	devs, _ := filepath.Glob("/sys/bus/pci/devices/*")
	for _, d := range devs {
		res, err := readResources(d)
		if err != nil {
			continue
		}
		for _, r := range res[:min(len(res), vfioBARCount)] {
			if r.flags&ioresourceMem != 0 && r.start < r.end && r.start <= phys && phys <= r.end {
				return d
			}
		}
	}
	return ""
}

// vfioPhys places a VFIO region mapping on the bus, given the devices it
// may belong to: when several do (a program with more than one VFIO device
// file from groups), the ones whose BAR of that index can hold the mapping
// remain, and if that is not one device, it is not told.
func vfioPhys(m *Mapping, devs []string) physInfo {
	idx, off := m.Offset>>vfioShift, m.Offset&(1<<vfioShift-1)
	info := physInfo{phys: m.Offset}
	var fit []string
	var bar resource
	for _, d := range devs {
		res, err := readResources(d)
		if err != nil || idx >= vfioBARCount || idx >= uint64(len(res)) {
			continue
		}
		r := res[idx]
		if r.start < r.end && off+m.Len() <= r.end-r.start+1 {
			fit, bar = append(fit, d), r
		}
	}
	switch {
	case len(fit) == 1:
		info.phys, info.pciDir = bar.start+off, fit[0]
	case len(devs) == 0:
		info.why = "no open VFIO device file names its device"
	case idx >= vfioBARCount:
		info.why = fmt.Sprintf("VFIO region %d is not a BAR", idx)
	default:
		info.why = fmt.Sprintf("VFIO region %d of %d devices could hold it", idx, len(fit))
	}
	return info
}

// vfioGroupDevice lists the distinct PCI devices of the program's open VFIO
// device files, from the vfio-device-syspath line the kernel puts in their
// fdinfo (Linux 6.9 and later).
func vfioGroupDevice(m *Mapping, procDir string) []string {
	ents, err := os.ReadDir(filepath.Join(procDir, "fd"))
	if err != nil {
		return nil
	}
	var devs []string
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(procDir, "fd", e.Name())); err != nil || l != vfioAnon {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procDir, "fdinfo", e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if p, ok := strings.CutPrefix(line, "vfio-device-syspath:"); ok {
				if dir, err := pciDirOf(strings.TrimSpace(p)); err == nil && !slices.Contains(devs, dir) {
					devs = append(devs, dir)
				}
			}
		}
	}
	return devs
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
	d := trace.PCIDev{Bus: uint8(bus), DevFn: uint8(dev<<3 | fn), Vendor: uint16(hexFile("vendor")),
		Device: uint16(hexFile("device")), IRQ: uint32(hexFile("irq"))}
	for i := 0; i < 7 && i < len(res); i++ {
		r := res[i]
		d.Start[i] = r.start | r.flags&0xf
		if r.start < r.end {
			d.Size[i] = r.end - r.start + 1
		}
	}
	if drv, err := os.Readlink(filepath.Join(dir, "driver")); err == nil {
		d.Driver = filepath.Base(drv)
	}
	return d.String(), nil
}
