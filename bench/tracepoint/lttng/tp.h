/*
 * LTTng-UST tracepoint provider "mmtp" for the comparison in
 * bench/tracepoint: one event with an int field, and one with the fields of
 * the Go benchmark's payload (addr, value, write flag, device name).
 */
#undef TRACEPOINT_PROVIDER
#define TRACEPOINT_PROVIDER mmtp

#undef TRACEPOINT_INCLUDE
#define TRACEPOINT_INCLUDE "./tp.h"

#if !defined(MMTP_TP_H) || defined(TRACEPOINT_HEADER_MULTI_READ)
#define MMTP_TP_H

#include <stdint.h>
#include <lttng/tracepoint.h>

TRACEPOINT_EVENT(mmtp, int_event,
	TP_ARGS(int, value),
	TP_FIELDS(ctf_integer(int, value, value)))

TRACEPOINT_EVENT(mmtp, rich_event,
	TP_ARGS(uint64_t, addr, uint32_t, value, int, write, const char *, dev),
	TP_FIELDS(
		ctf_integer_hex(uint64_t, addr, addr)
		ctf_integer(uint32_t, value, value)
		ctf_integer(uint8_t, write, write)
		ctf_string(dev, dev)))

#endif

#include <lttng/tracepoint-event.h>
