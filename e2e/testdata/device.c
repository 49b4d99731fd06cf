// device.c: a simulated device over a shared /dev/shm file, and a driver
// that makes every kind of access mmiotrace must trace, with inline asm so
// that the instruction is known.
//
// Usage: device LOG SHMNAME
//
// The device is four pages of a /dev/shm file mapped MAP_SHARED. Page 0
// holds doorbell channels (one per driver thread: CMD at +0, STATUS at +4,
// ARG at +8, RESULT at +16, channel c at c*0x100); pages 1-3 are scratch
// memory for the access kinds. A device thread serves the doorbells through
// pread/pwrite on the file descriptor, never through the mapping, so it
// makes no traced access.
//
// Every access the driver threads make through the mapping is appended to
// LOG as "TID R|W WIDTH OFFSET BYTES", BYTES being the accessed bytes in
// memory order, in hex; values come from what the instruction loaded
// (registers after the load) or stored. Old and new memory around
// read-modify-write instructions is read with pread, which is not traced.
// Every result (registers, flags, memory) is also checked against the same
// instruction run natively on a stack copy; a mismatch is logged as a
// "FAIL" line and the exit status is 1.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE 0x4000
#define ARITH 0x8d5 /* CF PF AF ZF SF OF */

static int fd;
static uint8_t *bar;
static FILE *logf;
static pthread_mutex_t logmu = PTHREAD_MUTEX_INITIALIZER;
static volatile int stop, failed;

static void logacc(char dir, int width, const volatile void *addr, const void *val)
{
	const uint8_t *v = val;
	pthread_mutex_lock(&logmu);
	fprintf(logf, "%d %c %d %lx ", gettid(), dir, width, (unsigned long)((const uint8_t *)addr - bar));
	for (int i = 0; i < width; i++)
		fprintf(logf, "%02x", v[i]);
	fputc('\n', logf);
	pthread_mutex_unlock(&logmu);
}

static void fail(const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	pthread_mutex_lock(&logmu);
	fprintf(logf, "FAIL ");
	vfprintf(logf, f, ap);
	fputc('\n', logf);
	pthread_mutex_unlock(&logmu);
	va_end(ap);
	failed = 1;
}

static void peek(void *dst, int n, unsigned long off)
{
	if (pread(fd, dst, n, off) != n) {
		perror("pread");
		exit(2);
	}
}

static void poke(const void *src, int n, unsigned long off)
{
	if (pwrite(fd, src, n, off) != n) {
		perror("pwrite");
		exit(2);
	}
}

#define OFF(p) ((unsigned long)((uint8_t *)(p) - bar))

// ---- plain moves ----------------------------------------------------------

static void movs(void)
{
	uint8_t *m = bar + 0x1000;
	uint64_t v;
	uint8_t b = 0xa5;
	uint16_t w = 0xbeef;
	uint32_t d = 0xdeadbeef;
	uint64_t q = 0x0123456789abcdefULL;

	// Register stores, every width.
	asm volatile("movb %1, (%0)" ::"r"(m), "q"(b) : "memory");
	logacc('W', 1, m, &b);
	asm volatile("movw %1, (%0)" ::"r"(m + 2), "r"(w) : "memory");
	logacc('W', 2, m + 2, &w);
	asm volatile("movl %1, (%0)" ::"r"(m + 4), "r"(d) : "memory");
	logacc('W', 4, m + 4, &d);
	asm volatile("movq %1, (%0)" ::"r"(m + 8), "r"(q) : "memory");
	logacc('W', 8, m + 8, &q);
	// A high-byte register and a REX-only byte register.
	{
		uint64_t ax = 0x7700;
		asm volatile("movb %%ah, (%0)" ::"r"(m + 16), "a"(ax) : "memory");
		uint8_t e = 0x77;
		logacc('W', 1, m + 16, &e);
		register uint8_t sil asm("sil") = 0x66;
		asm volatile("movb %1, (%0)" ::"r"(m + 17), "r"(sil) : "memory");
		e = 0x66;
		logacc('W', 1, m + 17, &e);
	}

	// Immediate stores, every width (the 8-byte one sign-extends imm32).
	asm volatile("movb $0x5a, (%0)" ::"r"(m + 24) : "memory");
	b = 0x5a;
	logacc('W', 1, m + 24, &b);
	asm volatile("movw $0x1234, (%0)" ::"r"(m + 26) : "memory");
	w = 0x1234;
	logacc('W', 2, m + 26, &w);
	asm volatile("movl $0x89abcdef, (%0)" ::"r"(m + 28) : "memory");
	d = 0x89abcdef;
	logacc('W', 4, m + 28, &d);
	asm volatile("movq $-0x12345678, (%0)" ::"r"(m + 32) : "memory");
	q = (uint64_t)-0x12345678LL;
	logacc('W', 8, m + 32, &q);
	// RIP-relative would need the mapping in the image; a base+index*scale+disp form instead.
	{
		uint64_t idx = 3;
		asm volatile("movl $0x600dcafe, 0x10(%0,%1,4)" ::"r"(m), "r"(idx) : "memory");
		d = 0x600dcafe;
		logacc('W', 4, m + 0x10 + 12, &d);
	}

	// Loads, every width; the value is the register after the load.
	v = 0;
	asm volatile("movb (%1), %b0" : "+q"(v) : "r"(m) : "memory");
	logacc('R', 1, m, &v);
	if ((uint8_t)v != 0xa5)
		fail("movb load %lx", v);
	asm volatile("movw (%1), %w0" : "+r"(v) : "r"(m + 2) : "memory");
	logacc('R', 2, m + 2, &v);
	asm volatile("movl (%1), %k0" : "=r"(v) : "r"(m + 4) : "memory");
	logacc('R', 4, m + 4, &v);
	if (v != 0xdeadbeef)
		fail("movl load %lx", v);
	asm volatile("movq (%1), %0" : "=r"(v) : "r"(m + 8) : "memory");
	logacc('R', 8, m + 8, &v);
	if (v != 0x0123456789abcdefULL)
		fail("movq load %lx", v);
	{
		uint64_t ax = 0;
		asm volatile("movb (%1), %%ah" : "+a"(ax) : "r"(m + 16) : "memory");
		uint8_t e = ax >> 8;
		logacc('R', 1, m + 16, &e);
		if (ax != 0x7700)
			fail("movb ah load %lx", ax);
	}
	// A 32-bit load zeroes the upper half; a 16-bit one keeps it.
	v = ~0ULL;
	asm volatile("movw (%1), %w0" : "+r"(v) : "r"(m + 26) : "memory");
	logacc('R', 2, m + 26, &v);
	if (v != 0xffffffffffff1234ULL)
		fail("movw merge %lx", v);

	// Zero and sign extension: the record has the memory operand's width.
	asm volatile("movzbl (%1), %k0" : "=r"(v) : "r"(m) : "memory");
	logacc('R', 1, m, &v);
	if (v != 0xa5)
		fail("movzx b %lx", v);
	asm volatile("movzwl (%1), %k0" : "=r"(v) : "r"(m + 2) : "memory");
	logacc('R', 2, m + 2, &v);
	if (v != 0xbeef)
		fail("movzx w %lx", v);
	asm volatile("movsbq (%1), %0" : "=r"(v) : "r"(m) : "memory");
	logacc('R', 1, m, &v);
	if (v != 0xffffffffffffffa5ULL)
		fail("movsx b %lx", v);
	asm volatile("movswq (%1), %0" : "=r"(v) : "r"(m + 2) : "memory");
	logacc('R', 2, m + 2, &v);
	if (v != 0xffffffffffffbeefULL)
		fail("movsx w %lx", v);
	asm volatile("movslq (%1), %0" : "=r"(v) : "r"(m + 4) : "memory");
	logacc('R', 4, m + 4, &v);
	if (v != 0xffffffffdeadbeefULL)
		fail("movsxd %lx", v);
	// movbe: the record holds the bytes in memory order.
	asm volatile("movbe (%1), %k0" : "=r"(v) : "r"(m + 4) : "memory");
	{
		uint32_t raw = __builtin_bswap32((uint32_t)v);
		logacc('R', 4, m + 4, &raw);
		if (raw != 0xdeadbeef)
			fail("movbe %lx", v);
	}
}

// ---- SSE, AVX, AVX-512 ----------------------------------------------------

static void vec(void)
{
	uint8_t *m = bar + 0x1100; // 64-byte aligned
	uint8_t src[64] __attribute__((aligned(64)));
	uint8_t dst[64] __attribute__((aligned(64)));
	for (int i = 0; i < 64; i++)
		src[i] = 0x40 + i * 3;

	uint32_t d = 0xfeedf00d;
	asm volatile("movd %1, %%xmm0; movd %%xmm0, (%0)" ::"r"(m), "r"(d) : "xmm0", "memory");
	logacc('W', 4, m, &d);
	d = 0;
	asm volatile("movd (%1), %%xmm1; movd %%xmm1, %0" : "=r"(d) : "r"(m) : "xmm1", "memory");
	logacc('R', 4, m, &d);
	if (d != 0xfeedf00d)
		fail("movd %x", d);

	uint64_t q = 0x1122334455667788ULL;
	asm volatile("movq %1, %%xmm0; movq %%xmm0, (%0)" ::"r"(m + 8), "r"(q) : "xmm0", "memory");
	logacc('W', 8, m + 8, &q);
	q = 0;
	asm volatile("movq (%1), %%xmm2; movq %%xmm2, %0" : "=r"(q) : "r"(m + 8) : "xmm2", "memory");
	logacc('R', 8, m + 8, &q);
	if (q != 0x1122334455667788ULL)
		fail("movq %lx", q);

#define V16(st, ld, off)                                                                       \
	do {                                                                                   \
		asm volatile("movdqu (%1), %%xmm3; " st " %%xmm3, (%0)" ::"r"(m + off), "r"(src)   \
			     : "xmm3", "memory");                                              \
		logacc('W', 16, m + off, src);                                                 \
		memset(dst, 0, 64);                                                            \
		asm volatile(ld " (%0), %%xmm4; movdqu %%xmm4, (%1)" ::"r"(m + off), "r"(dst)      \
			     : "xmm4", "memory");                                              \
		logacc('R', 16, m + off, dst);                                                 \
		if (memcmp(src, dst, 16))                                                      \
			fail(ld " mismatch");                                                  \
		src[0]++;                                                                      \
	} while (0)
	V16("movdqa", "movdqa", 0x40);
	V16("movdqu", "movdqu", 0x51);
	V16("movaps", "movaps", 0x60);
	V16("movups", "movups", 0x73);

	asm volatile("vmovdqu (%1), %%ymm5; vmovdqu %%ymm5, (%0); vzeroupper" ::"r"(m + 0x81), "r"(src)
		     : "xmm5", "memory");
	logacc('W', 32, m + 0x81, src);
	memset(dst, 0, 64);
	asm volatile("vmovdqu (%0), %%ymm6; vmovdqu %%ymm6, (%1); vzeroupper" ::"r"(m + 0x81), "r"(dst)
		     : "xmm6", "memory");
	logacc('R', 32, m + 0x81, dst);
	if (memcmp(src, dst, 32))
		fail("vmovdqu ymm mismatch");

	src[1]++;
	asm volatile("vmovdqu64 (%1), %%zmm7; vmovdqu64 %%zmm7, (%0); vzeroupper" ::"r"(m + 0xc0), "r"(src)
		     : "xmm7", "memory");
	logacc('W', 64, m + 0xc0, src);
	memset(dst, 0, 64);
	asm volatile("vmovdqu64 (%0), %%zmm8; vmovdqu64 %%zmm8, (%1); vzeroupper" ::"r"(m + 0xc0), "r"(dst)
		     : "xmm8", "memory");
	logacc('R', 64, m + 0xc0, dst);
	if (memcmp(src, dst, 64))
		fail("vmovdqu64 mismatch");

	src[2]++;
	asm volatile("vmovdqu32 (%1), %%zmm9; vmovdqu32 %%zmm9, (%0); vzeroupper" ::"r"(m + 0x104), "r"(src)
		     : "xmm9", "memory");
	logacc('W', 64, m + 0x104, src);
	memset(dst, 0, 64);
	asm volatile("vmovdqu32 (%0), %%zmm10; vmovdqu32 %%zmm10, (%1); vzeroupper" ::"r"(m + 0x104), "r"(dst)
		     : "xmm10", "memory");
	logacc('R', 64, m + 0x104, dst);
	if (memcmp(src, dst, 64))
		fail("vmovdqu32 mismatch");
}

// ---- string instructions ----------------------------------------------------

static void strings(void)
{
	uint8_t *s = bar + 0x1200, *d = bar + 0x1300;
	uint8_t pre[64];
	peek(pre, sizeof pre, OFF(s));

#define REPMOVS(insn, width, count)                                                             \
	do {                                                                                    \
		void *si = s, *di = d;                                                          \
		uint64_t cx = count;                                                            \
		asm volatile("cld; rep " insn : "+S"(si), "+D"(di), "+c"(cx)::"memory");        \
		for (int i = 0; i < count; i++) {                                               \
			logacc('R', width, s + i * width, pre + i * width);                     \
			logacc('W', width, d + i * width, pre + i * width);                     \
		}                                                                               \
		if (cx != 0 || si != s + count * width || di != d + count * width)               \
			fail(insn " registers");                                                \
	} while (0)
	REPMOVS("movsb", 1, 5);
	REPMOVS("movsl", 4, 3);
	REPMOVS("movsq", 8, 2);

	{
		void *di = bar + 0x1380;
		uint64_t cx = 4, ax = 0x3c;
		asm volatile("cld; rep stosb" : "+D"(di), "+c"(cx) : "a"(ax) : "memory");
		uint8_t e = 0x3c;
		for (int i = 0; i < 4; i++)
			logacc('W', 1, bar + 0x1380 + i, &e);
		di = bar + 0x1390;
		cx = 3, ax = 0xabcd1234;
		asm volatile("cld; rep stosl" : "+D"(di), "+c"(cx) : "a"(ax) : "memory");
		uint32_t e4 = 0xabcd1234;
		for (int i = 0; i < 3; i++)
			logacc('W', 4, bar + 0x1390 + 4 * i, &e4);
		if (di != bar + 0x139c || cx != 0)
			fail("rep stosl registers");
	}
}

// ---- read-modify-write, compares, locked ops --------------------------------

// RMW runs insn (AT&T, "OP src, mem") natively on a stack copy and then on
// the mapping, and logs R old, W new.
#define RMW(insn, type, srccons, srcval, off)                                                   \
	do {                                                                                    \
		type *p = (type *)(bar + (off));                                                \
		type old, loc, nw;                                                              \
		uint64_t fl, flt;                                                               \
		peek(&old, sizeof old, off);                                                    \
		loc = old;                                                                      \
		asm volatile(insn " %2, %0; pushfq; popq %1" : "+m"(loc), "=r"(fl) : srccons(srcval) : "cc"); \
		asm volatile(insn " %2, %0; pushfq; popq %1" : "+m"(*p), "=r"(flt) : srccons(srcval) : "cc", "memory"); \
		peek(&nw, sizeof nw, off);                                                      \
		if (nw != loc || (fl ^ flt) & ARITH)                                            \
			fail(insn " at %lx: got %lx flags %lx, want %lx flags %lx", off, (uint64_t)nw, flt, (uint64_t)loc, fl); \
		logacc('R', sizeof(type), p, &old);                                             \
		logacc('W', sizeof(type), p, &nw);                                              \
	} while (0)

// UNARY is RMW for one-operand instructions.
#define UNARY(insn, type, off)                                                                  \
	do {                                                                                    \
		type *p = (type *)(bar + (off));                                                \
		type old, loc, nw;                                                              \
		uint64_t fl, flt;                                                               \
		peek(&old, sizeof old, off);                                                    \
		loc = old;                                                                      \
		asm volatile(insn " %0; pushfq; popq %1" : "+m"(loc), "=r"(fl)::"cc");          \
		asm volatile(insn " %0; pushfq; popq %1" : "+m"(*p), "=r"(flt)::"cc", "memory"); \
		peek(&nw, sizeof nw, off);                                                      \
		if (nw != loc || (fl ^ flt) & ARITH)                                            \
			fail(insn " at %lx: got %lx, want %lx", off, (uint64_t)nw, (uint64_t)loc); \
		logacc('R', sizeof(type), p, &old);                                             \
		logacc('W', sizeof(type), p, &nw);                                              \
	} while (0)

// READONLY runs insn ("OP src, mem", which only reads mem) and logs R.
#define READONLY(insn, type, srccons, srcval, off)                                              \
	do {                                                                                    \
		type *p = (type *)(bar + (off));                                                \
		type old, loc;                                                                  \
		uint64_t fl, flt;                                                               \
		peek(&old, sizeof old, off);                                                    \
		loc = old;                                                                      \
		asm volatile(insn " %2, %0; pushfq; popq %1" : "+m"(loc), "=r"(fl) : srccons(srcval) : "cc"); \
		asm volatile(insn " %2, %0; pushfq; popq %1" : "+m"(*p), "=r"(flt) : srccons(srcval) : "cc", "memory"); \
		if ((fl ^ flt) & ARITH)                                                         \
			fail(insn " flags %lx want %lx", flt, fl);                              \
		logacc('R', sizeof(type), p, &old);                                             \
	} while (0)

static void seed(unsigned long off, uint64_t v)
{
	poke(&v, 8, off);
}

static void rmw(void)
{
	const unsigned long o = 0x1400;
	seed(o, 0x8000000000000001ULL);
	seed(o + 8, 0x00000000ffffff7fULL);
	seed(o + 16, 0x0102030405060708ULL);

	RMW("addb", uint8_t, "q", (uint8_t)0x81, o + 8);
	RMW("addw", uint16_t, "r", (uint16_t)0x7fff, o + 10);
	RMW("addl", uint32_t, "r", 0x80000000u, o + 12);
	RMW("addq", uint64_t, "r", 0x7fffffffffffffffULL, o);
	RMW("addl", uint32_t, "n", 0x11, o + 16);
	RMW("subq", uint64_t, "r", 2ULL, o);
	RMW("subb", uint8_t, "n", 0x7f, o + 20);
	RMW("subw", uint16_t, "n", -3, o + 22);
	RMW("andl", uint32_t, "r", 0xf0f0f0f0u, o + 16);
	RMW("andq", uint64_t, "n", -16, o);
	RMW("orw", uint16_t, "r", (uint16_t)0x8001, o + 18);
	RMW("orb", uint8_t, "n", 0x40, o + 9);
	RMW("xorq", uint64_t, "r", 0xffff0000ffff0000ULL, o + 8);
	RMW("xorl", uint32_t, "n", 0x55555555, o + 4);
	RMW("adcl", uint32_t, "r", 1u, o + 12);
	RMW("lock addl", uint32_t, "r", 0x100u, o + 16);
	RMW("lock orq", uint64_t, "n", 0x300, o + 8);
	RMW("btsl", uint32_t, "n", 5, o + 20);
	RMW("btrq", uint64_t, "n", 63, o);
	UNARY("incb", uint8_t, o + 3);
	UNARY("incq", uint64_t, o + 8);
	UNARY("decw", uint16_t, o + 6);
	UNARY("decl", uint32_t, o + 12);
	UNARY("notl", uint32_t, o + 16);
	UNARY("notb", uint8_t, o + 1);
	UNARY("negq", uint64_t, o);
	UNARY("negw", uint16_t, o + 22);
	UNARY("lock incl", uint32_t, o + 4);

	READONLY("cmpl", uint32_t, "n", 0x7f, o + 8);
	READONLY("cmpq", uint64_t, "r", 0x1234ULL, o);
	READONLY("cmpb", uint8_t, "q", (uint8_t)0x80, o + 16);
	READONLY("testw", uint16_t, "r", (uint16_t)0x00ff, o + 18);
	READONLY("testl", uint32_t, "n", 0x80000000, o + 12);
	READONLY("testb", uint8_t, "n", 0x01, o + 2);
	READONLY("btl", uint32_t, "n", 7, o + 20);

	// ALU with a memory source: one R, the register changes.
	{
		uint64_t *p = (uint64_t *)(bar + o + 16), old, r = 5, want;
		peek(&old, 8, o + 16);
		want = r + old;
		asm volatile("addq (%1), %0" : "+r"(r) : "r"(p) : "cc", "memory");
		logacc('R', 8, p, &old);
		if (r != want)
			fail("addq load %lx want %lx", r, want);
		uint32_t c = 0x1000, fl, flt;
		asm volatile("cmpl %2, %1; pushfq; popq %q0" : "=r"(fl) : "r"(c), "m"(*(uint32_t *)&old) : "cc");
		asm volatile("cmpl (%2), %1; pushfq; popq %q0" : "=r"(flt) : "r"(c), "r"(p) : "cc", "memory");
		logacc('R', 4, p, &old);
		if ((fl ^ flt) & ARITH)
			fail("cmpl load flags");
	}

	// xchg (implicitly locked): R old, W the register; the register gets old.
	{
		uint32_t *p = (uint32_t *)(bar + o + 24), old, r = 0xcafef00d, nw;
		peek(&old, 4, o + 24);
		uint32_t was = r;
		asm volatile("xchgl %0, (%1)" : "+r"(r) : "r"(p) : "memory");
		peek(&nw, 4, o + 24);
		logacc('R', 4, p, &old);
		logacc('W', 4, p, &was);
		if (r != old || nw != was)
			fail("xchg");
		uint8_t b = 0x99, bold, bw = b;
		peek(&bold, 1, o + 28);
		asm volatile("xchgb %0, (%1)" : "+q"(b) : "r"(bar + o + 28) : "memory");
		logacc('R', 1, bar + o + 28, &bold);
		logacc('W', 1, bar + o + 28, &bw);
		if (b != bold)
			fail("xchgb");
	}
	// lock cmpxchg, success: R old, W new; failure: R old, W old (the CPU
	// writes the old value back).
	{
		uint64_t *p = (uint64_t *)(bar + o + 32), old, nw = 0xa1a2a3a4a5a6a7a8ULL, acc;
		seed(o + 32, 0x55);
		old = 0x55;
		acc = 0x55;
		uint8_t zf;
		asm volatile("lock cmpxchgq %3, (%2); setz %1" : "+a"(acc), "=q"(zf) : "r"(p), "r"(nw) : "cc", "memory");
		logacc('R', 8, p, &old);
		logacc('W', 8, p, &nw);
		if (!zf || acc != 0x55)
			fail("cmpxchg success zf=%d acc=%lx", zf, acc);
		acc = 0x66;
		asm volatile("lock cmpxchgq %3, (%2); setz %1" : "+a"(acc), "=q"(zf) : "r"(p), "r"(old) : "cc", "memory");
		logacc('R', 8, p, &nw);
		logacc('W', 8, p, &nw);
		if (zf || acc != nw)
			fail("cmpxchg failure zf=%d acc=%lx", zf, acc);
		uint16_t *p2 = (uint16_t *)(bar + o + 40), o2, n2 = 0x4242, a2;
		peek(&o2, 2, o + 40);
		a2 = o2;
		asm volatile("lock cmpxchgw %2, (%1)" : "+a"(a2) : "r"(p2), "r"(n2) : "cc", "memory");
		logacc('R', 2, p2, &o2);
		logacc('W', 2, p2, &n2);
	}
	// lock xadd: R old, W old+src; the register gets old.
	{
		uint32_t *p = (uint32_t *)(bar + o + 44), old, r = 0x10001, sum;
		peek(&old, 4, o + 44);
		asm volatile("lock xaddl %0, (%1)" : "+r"(r) : "r"(p) : "cc", "memory");
		sum = old + 0x10001;
		logacc('R', 4, p, &old);
		logacc('W', 4, p, &sum);
		if (r != old)
			fail("xadd register");
		uint64_t *q = (uint64_t *)(bar + o + 48), qold, qr = 7, qsum;
		peek(&qold, 8, o + 48);
		asm volatile("lock xaddq %0, (%1)" : "+r"(qr) : "r"(q) : "cc", "memory");
		peek(&qsum, 8, o + 48);
		logacc('R', 8, q, &qold);
		logacc('W', 8, q, &qsum);
		if (qr != qold || qsum != qold + 7)
			fail("xaddq");
	}
}

// ---- single-stepped instructions and page-straddling accesses ---------------

static void stepped(void)
{
	// bsf with a memory source is not emulated: the tracer single-steps it
	// and logs the operand it read.
	{
		unsigned long off = 0x1500;
		seed(off, 0x0000010000000000ULL);
		uint64_t *p = (uint64_t *)(bar + off), old, r;
		peek(&old, 8, off);
		asm volatile("bsfq (%1), %0" : "=r"(r) : "r"(p) : "cc", "memory");
		logacc('R', 8, p, &old);
		if (r != 40)
			fail("bsf %lu", r);
	}
	// setcc to memory: a stepped store.
	{
		uint8_t *p = bar + 0x1508, one = 1;
		asm volatile("cmp %%eax, %%eax; setz (%0)" ::"r"(p) : "cc", "memory", "eax");
		logacc('W', 1, p, &one);
	}
	// shl on memory: a stepped read-modify-write.
	{
		uint32_t *p = (uint32_t *)(bar + 0x150c), old, nw;
		seed(0x150c, 0x40000003);
		peek(&old, 4, 0x150c);
		asm volatile("shll $1, (%0)" ::"r"(p) : "cc", "memory");
		peek(&nw, 4, 0x150c);
		logacc('R', 4, p, &old);
		logacc('W', 4, p, &nw);
		if (nw != 0x80000006)
			fail("shl %x", nw);
	}

	// Accesses across the boundary of two traced pages: one record each.
	{
		unsigned long off = 0x1ffc;
		uint64_t q = 0x8877665544332211ULL, r;
		uint64_t *p = (uint64_t *)(bar + off);
		asm volatile("movq %1, (%0)" ::"r"(p), "r"(q) : "memory");
		logacc('W', 8, p, &q);
		asm volatile("movq (%1), %0" : "=r"(r) : "r"(p) : "memory");
		logacc('R', 8, p, &r);
		if (r != q)
			fail("straddle load %lx", r);
		uint8_t src[16], dst[16];
		for (int i = 0; i < 16; i++)
			src[i] = 0xe0 + i;
		asm volatile("movdqu (%1), %%xmm0; movdqu %%xmm0, (%0)" ::"r"(bar + 0x2ff8), "r"(src) : "xmm0", "memory");
		logacc('W', 16, bar + 0x2ff8, src);
		asm volatile("movdqu (%0), %%xmm0; movdqu %%xmm0, (%1)" ::"r"(bar + 0x2ff8), "r"(dst) : "xmm0", "memory");
		logacc('R', 16, bar + 0x2ff8, dst);
		if (memcmp(src, dst, 16))
			fail("straddle movdqu");
		// A stepped instruction across the boundary.
		uint64_t old;
		peek(&old, 8, 0x2ffc);
		asm volatile("bsrq (%1), %0" : "=r"(r) : "r"(bar + 0x2ffc) : "cc", "memory");
		logacc('R', 8, bar + 0x2ffc, &old);
		if (r != 63 - (uint64_t)__builtin_clzll(old))
			fail("straddle bsr %lu", r);
	}
}

// ---- doorbells ----------------------------------------------------------------

#define NCHAN 2
#define RINGS 20

// device serves the doorbells: when a channel's CMD changes, it computes
// RESULT = ARG*3 + CMD and then sets STATUS = CMD. It only uses pread and
// pwrite, so it makes no traced access.
static void *device(void *arg)
{
	uint32_t last[NCHAN] = {0};
	while (!stop) {
		int busy = 0;
		for (int c = 0; c < NCHAN; c++) {
			uint32_t cmd;
			uint64_t a, res;
			peek(&cmd, 4, c * 0x100);
			if (cmd == 0 || cmd == last[c])
				continue;
			last[c] = cmd;
			peek(&a, 8, c * 0x100 + 8);
			res = a * 3 + cmd;
			poke(&res, 8, c * 0x100 + 16);
			poke(&cmd, 4, c * 0x100 + 4);
			busy = 1;
		}
		if (!busy)
			sched_yield();
	}
	return NULL;
}

// driver rings a channel's doorbell RINGS times: it stores ARG and CMD,
// polls STATUS until the device answers and loads RESULT.
static void *driver(void *arg)
{
	int c = (int)(long)arg;
	volatile uint8_t *ch = bar + c * 0x100;
	for (uint32_t seq = 1; seq <= RINGS; seq++) {
		uint64_t a = 0x1000 * (c + 1) + seq;
		asm volatile("movq %1, (%0)" ::"r"(ch + 8), "r"(a) : "memory");
		logacc('W', 8, ch + 8, &a);
		asm volatile("movl %1, (%0)" ::"r"(ch), "r"(seq) : "memory");
		logacc('W', 4, ch, &seq);
		for (;;) {
			uint32_t st;
			asm volatile("movl (%1), %0" : "=r"(st) : "r"(ch + 4) : "memory");
			logacc('R', 4, ch + 4, &st);
			if (st == seq)
				break;
			sched_yield();
		}
		uint64_t r;
		asm volatile("movq (%1), %0" : "=r"(r) : "r"(ch + 16) : "memory");
		logacc('R', 8, ch + 16, &r);
		if (r != a * 3 + seq)
			fail("channel %d ring %u: result %lx", c, seq, r);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: device LOG SHMNAME\n");
		return 2;
	}
	logf = fopen(argv[1], "w");
	if (!logf) {
		perror(argv[1]);
		return 2;
	}
	fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0) {
		perror(argv[2]);
		return 2;
	}
	// Scratch pages get a pattern, written through the file, not the map.
	uint8_t pat[SIZE - 0x1000];
	for (int i = 0; i < (int)sizeof pat; i++)
		pat[i] = i * 7 + 1;
	poke(pat, sizeof pat, 0x1000);
	bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED) {
		perror("mmap");
		return 2;
	}

	pthread_t dev, drv;
	pthread_create(&dev, NULL, device, NULL);
	pthread_create(&drv, NULL, driver, (void *)1L);
	movs();
	vec();
	strings();
	rmw();
	stepped();
	driver((void *)0L);
	pthread_join(drv, NULL);
	stop = 1;
	pthread_join(dev, NULL);

	munmap(bar, SIZE);
	close(fd);
	unlink(argv[2]);
	fclose(logf);
	return failed;
}
