// heap.c: grows and shrinks the heap with brk and accesses it, for
// following brk under a --range over the heap. Every access is logged to
// LOG as "TID R|W WIDTH ADDR BYTES" (address and bytes in hex) and a
// write(2) from the heap goes to stdout.
//
// Usage: heap LOG [wait]   (or: heap break, which prints the initial break)
//
// It prints the break it starts from; with "wait", it then waits for a line
// on stdin.
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static FILE *logf_;

static uintptr_t brk_(uintptr_t to) { return syscall(SYS_brk, to); }

static void logst(int w, uintptr_t a, uint64_t v)
{
	fprintf(logf_, "%d W %d %lx ", gettid(), w, (unsigned long)a);
	for (int i = 0; i < w; i++)
		fprintf(logf_, "%02x", (unsigned)(v >> (8 * i)) & 0xff);
	fputc('\n', logf_);
}

static void st8(uintptr_t a, uint64_t v)
{
	*(volatile uint64_t *)a = v;
	logst(8, a, v);
}

static uint64_t ld8(uintptr_t a)
{
	uint64_t v = *(volatile uint64_t *)a;
	fprintf(logf_, "%d R 8 %lx ", gettid(), (unsigned long)a);
	for (int i = 0; i < 8; i++)
		fprintf(logf_, "%02x", (unsigned)(v >> (8 * i)) & 0xff);
	fputc('\n', logf_);
	return v;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "break")) {
		printf("%#lx\n", (unsigned long)brk_(0));
		return 0;
	}
	if (argc < 2)
		return 2;
	// stdio takes its memory (from malloc, so from the heap) first; the
	// break is then the fixture's to move.
	logf_ = fopen(argv[1], "w");
	static char buf[1 << 16];
	setvbuf(logf_, buf, _IOFBF, sizeof buf);
	printf("%#lx\n", (unsigned long)brk_(0));
	fflush(stdout);
	if (argc > 2) {
		char line[16];
		if (!fgets(line, sizeof line, stdin))
			return 2;
	}
	uintptr_t b0 = brk_(0);
	uintptr_t b = brk_(b0 + 0x3000);
	if (b != b0 + 0x3000)
		return 3;
	for (int i = 0; i < 3; i++)
		st8(b0 + 0x1000 * i + 8 * i, 0x1111 * (i + 1));
	for (int i = 0; i < 3; i++)
		if (ld8(b0 + 0x1000 * i + 8 * i) != 0x1111u * (i + 1))
			return 4;
	// Shrink to one page, then grow again by two.
	if (brk_(b0 + 0x1000) != b0 + 0x1000)
		return 5;
	st8(b0 + 0x800, 0x2222);
	if (brk_(b0 + 0x3000) != b0 + 0x3000)
		return 6;
	st8(b0 + 0x2ff8, 0x3333);
	ld8(b0 + 0x800);
	// The kernel reads the heap for write(2).
	const char *msg = "from the heap\n";
	uint64_t v8;
	uint32_t v4;
	uint16_t v2;
	memcpy(&v8, msg, 8);
	memcpy(&v4, msg + 8, 4);
	memcpy(&v2, msg + 12, 2);
	st8(b0 + 0x1800, v8);
	*(volatile uint32_t *)(b0 + 0x1808) = v4;
	logst(4, b0 + 0x1808, v4);
	*(volatile uint16_t *)(b0 + 0x180c) = v2;
	logst(2, b0 + 0x180c, v2);
	if (write(1, (void *)(b0 + 0x1800), 14) != 14)
		return 7;
	fclose(logf_);
	return 0;
}
