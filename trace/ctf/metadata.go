package ctf

import "github.com/mmiotrace/mmiotrace/trace"

// eventID is the id of each kind's event class in the metadata. The order
// is part of the format: the binary stream holds these numbers.
var eventID = map[trace.Kind]uint16{
	trace.KindMap:      0,
	trace.KindUnmap:    1,
	trace.KindRead:     2,
	trace.KindWrite:    3,
	trace.KindReadVec:  4,
	trace.KindWriteVec: 5,
	trace.KindUnknown:  6,
	trace.KindMark:     7,
	trace.KindExec:     8,
	trace.KindEvent:    9,
	trace.KindPCIDev:   10,
	trace.KindName:     11,
	trace.KindCode:     12,
	trace.KindProc:     13,
	trace.KindSyscall:  14,
}

// Magic is the first word of every CTF packet.
const Magic = 0xC1FC1FC1

// metadata is the trace's TSDL description: little-endian, byte-aligned
// integers, one stream whose event header is a 16-bit id and a 64-bit
// timestamp of the monotonic clock (nanoseconds, offset 0: the log's
// CLOCK_MONOTONIC times as they are).
const metadata = `/* CTF 1.8 */

typealias integer { size = 8; align = 8; signed = false; } := uint8_t;
typealias integer { size = 16; align = 8; signed = false; } := uint16_t;
typealias integer { size = 32; align = 8; signed = false; } := uint32_t;
typealias integer { size = 32; align = 8; signed = true; } := int32_t;
typealias integer { size = 64; align = 8; signed = false; } := uint64_t;
typealias integer { size = 8; align = 8; signed = false; base = 16; } := hex8_t;
typealias integer { size = 16; align = 8; signed = false; base = 16; } := hex16_t;
typealias integer { size = 64; align = 8; signed = false; base = 16; } := hex64_t;

trace {
	major = 1;
	minor = 8;
	byte_order = le;
	packet.header := struct {
		uint32_t magic;
		uint32_t stream_id;
	};
};

env {
	tracer_name = "mmiotrace";
	log_version = "` + trace.Version + `";
};

clock {
	name = monotonic;
	description = "CLOCK_MONOTONIC";
	freq = 1000000000;
	precision = 1000;
	offset_s = 0;
	offset = 0;
	absolute = false;
};

typealias integer { size = 64; align = 8; signed = false; map = clock.monotonic.value; } := monotonic_t;

struct tp_field {
	string name;
	string value;
};

stream {
	id = 0;
	packet.context := struct {
		monotonic_t timestamp_begin;
		monotonic_t timestamp_end;
		uint64_t content_size;
		uint64_t packet_size;
	};
	event.header := struct {
		uint16_t id;
		monotonic_t timestamp;
	};
};

event {
	name = "MAP";
	id = 0;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		hex64_t phys;
		hex64_t virt;
		hex64_t len;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "UNMAP";
	id = 1;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "R";
	id = 2;
	stream_id = 0;
	fields := struct {
		uint8_t width;
		uint32_t map_id;
		hex64_t phys;
		hex64_t value;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "W";
	id = 3;
	stream_id = 0;
	fields := struct {
		uint8_t width;
		uint32_t map_id;
		hex64_t phys;
		hex64_t value;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "RV";
	id = 4;
	stream_id = 0;
	fields := struct {
		uint8_t width;
		uint32_t map_id;
		hex64_t phys;
		string value;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "WV";
	id = 5;
	stream_id = 0;
	fields := struct {
		uint8_t width;
		uint32_t map_id;
		hex64_t phys;
		string value;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "UNKNOWN";
	id = 6;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		hex64_t phys;
		hex8_t opcode[3];
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "MARK";
	id = 7;
	stream_id = 0;
	fields := struct {
		string text;
	};
};

event {
	name = "X";
	id = 8;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		hex64_t addr;
		hex64_t pc;
		int32_t tid;
	};
};

event {
	name = "TP";
	id = 9;
	stream_id = 0;
	fields := struct {
		int32_t tid;
		string name;
		uint32_t nfields;
		struct tp_field fields[nfields];
	};
};

event {
	name = "PCIDEV";
	id = 10;
	stream_id = 0;
	fields := struct {
		hex8_t bus;
		hex8_t devfn;
		hex16_t vendor;
		hex16_t device;
		uint32_t irq;
		hex64_t start[7];
		hex64_t size[7];
		string driver;
	};
};

event {
	name = "NAME";
	id = 11;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		string name;
	};
};

event {
	name = "CODE";
	id = 12;
	stream_id = 0;
	fields := struct {
		int32_t pid;
		hex64_t start;
		hex64_t end;
		hex64_t offset;
		string build_id;
		string path;
	};
};

event {
	name = "PROC";
	id = 13;
	stream_id = 0;
	fields := struct {
		int32_t pid;
		int32_t ppid;
		string program;
	};
};

event {
	name = "SYS";
	id = 14;
	stream_id = 0;
	fields := struct {
		uint32_t map_id;
		hex64_t phys;
		hex64_t len;
		string dir;
		string syscall;
		hex64_t pc;
		int32_t tid;
	};
};
`
