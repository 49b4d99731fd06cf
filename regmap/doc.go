// Package regmap reads descriptions of a device's registers and names the
// accesses of a log with them: which register an address is, which of its
// bit fields a value sets, and what their values mean.
//
// Three formats are read, each in a file of its own, into one model (Map):
//
//   - text.go: mmiotrace's own line format (docs/REGMAP.md), one register
//     per line with its fields and their enumerated values;
//   - svd.go: CMSIS-SVD XML, the vendor format behind most microcontroller
//     and many SoC peripherals (peripherals, clusters, registers, fields,
//     derivedFrom, dim arrays);
//   - header.go: C headers of #define REG_NAME 0xOFFSET, as most PCI drivers
//     describe their registers, with BIT(n), GENMASK(h, l) and _MASK fields.
//
// Load sniffs the format from the file's first bytes.
//
// Addresses in a Map are offsets from the start of the device's register
// block, or bus addresses when Map.Absolute is set (SVD peripherals have
// base addresses; the text format's "base" directive sets one). Binding says
// which maps of a log a Map applies to and from which base the offsets count
// (see docs/REGMAP.md).
//
// A Map is immutable once loaded and safe for concurrent use.
package regmap
