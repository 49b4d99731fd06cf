package trace

import (
	"fmt"
	"strconv"
	"strings"
)

// PCIDev is what a PCIDEV line says of a PCI device, in the kernel's
// layout: bus and devfn, vendor and device ids, irq, the start of its six
// BARs and ROM (with the resource flag bits in the low four bits) and their
// sizes, and the bound driver, if any.
type PCIDev struct {
	Bus, DevFn     uint8
	Vendor, Device uint16
	IRQ            uint32
	Start, Size    [7]uint64
	Driver         string
}

// ParsePCIDev parses the text of a PCIDEV line (the fields after the
// keyword): "bbdd vvvvdddd irq start*7 size*7 [driver]", all hex.
func ParsePCIDev(text string) (PCIDev, error) {
	var d PCIDev
	f := strings.Fields(text)
	if len(f) < 17 || len(f[0]) != 4 || len(f[1]) != 8 {
		return d, fmt.Errorf("bad PCIDEV %q: want bus/devfn, vendor/device, irq, 7 starts, 7 sizes", text)
	}
	num := func(s string, bits int) uint64 {
		v, err := strconv.ParseUint(s, 16, bits)
		if err != nil && text != "" {
			text = "" // report the first error only
		}
		return v
	}
	bdf, ids := num(f[0], 16), num(f[1], 32)
	d.Bus, d.DevFn = uint8(bdf>>8), uint8(bdf)
	d.Vendor, d.Device = uint16(ids>>16), uint16(ids)
	d.IRQ = uint32(num(f[2], 32))
	for i := range 7 {
		d.Start[i], d.Size[i] = num(f[3+i], 64), num(f[10+i], 64)
	}
	if len(f) > 17 {
		d.Driver = strings.Join(f[17:], " ")
	}
	if text == "" {
		return PCIDev{}, fmt.Errorf("bad PCIDEV %q: not hex", strings.Join(f, " "))
	}
	return d, nil
}

// String renders the device as the text of its PCIDEV line.
func (d *PCIDev) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%02x%02x %04x%04x %x", d.Bus, d.DevFn, d.Vendor, d.Device, d.IRQ)
	for _, v := range d.Start {
		fmt.Fprintf(&sb, " %x", v)
	}
	for _, v := range d.Size {
		fmt.Fprintf(&sb, " %x", v)
	}
	if d.Driver != "" {
		sb.WriteString(" " + d.Driver)
	}
	return sb.String()
}

// Address returns the device's address as lspci prints it, bus:dev.fn.
func (d *PCIDev) Address() string {
	return fmt.Sprintf("%02x:%02x.%x", d.Bus, d.DevFn>>3, d.DevFn&7)
}
