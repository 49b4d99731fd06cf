package trace

// IsWatch reports whether a MAP record and the text of its NAME record
// describe a watch (a variable given to `mmiotrace watch`) rather than a
// traced mapping. A watch's MAP has its address in both address fields, and
// its name is what the user typed ("counter", "libfoo.so:state",
// "0x601040/8"); a mapping's name is a path ("/dev/mem") or the kernel's
// name of anonymous memory ("[anon]", "[stack]"). Kernel logs have no NAME
// records: their maps are never watches.
func IsWatch(m *Record, name string) bool {
	return m.Kind == KindMap && m.Phys == m.Virt && name != "" && name[0] != '/' && name[0] != '['
}
