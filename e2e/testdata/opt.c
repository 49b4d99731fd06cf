// opt.c: programs for the tests of optimized probes, one per mode. Each maps
// a /dev/shm file (the traced mapping), makes accesses through it with
// inline asm, and logs them as device.c does ("TID R|W WIDTH OFFSET BYTES",
// one line each, in the thread's program order), or checks something and
// exits 1 with a FAIL line on stderr.
//
// Usage: opt MODE LOG SHM [N]
//
//	signals    a loop of stores and loads while SIGALRM arrives every
//	           100 µs; the handler makes an access of its own each time.
//	           The log has the main loop's accesses, then one line
//	           "HANDLER n" with the handler's count: the test rebuilds both
//	           sequences (the handler's interleaving is not known).
//	newthreads the main thread makes the site hot, then four threads run the
//	           same site: each must be logged with its own id.
//	churn      four threads hammer the mapping while the main thread makes
//	           their code writable and read-only again and again (patches
//	           go and come back).
//	fork       a hot loop, then a fork: the untraced child checks that it
//	           has the original code, none of the tracer's mappings and a
//	           zero GS base, and runs the loop itself; then the parent's
//	           loop again. Exit status: the child's.
//	jit        code written into an anonymous page, made executable, made
//	           hot, then rewritten (mprotect RW, new code, mprotect RX) to
//	           load another offset: the log must follow the new code.
//	guard      a loop that jumps into the middle of a patched window (an
//	           instruction after the probed one): guards redirect it.
//	munmap     a hot loop over one file, munmap, a second file mapped at
//	           the same address, the same loop.
//	exec       a hot loop, then exec of this program in mode "again"
//	           (same SHM, log LOG.2, the same N), which runs the loop again
//	           in the new image: the tracer must forget the old image's
//	           patches and mappings without touching the new one.
//	detach     (attach mode) two threads in a hot loop; on SIGUSR1 they
//	           stop and the program checks that the tracer left nothing:
//	           code, mappings, GS base, the mapping's protection.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE 0x2000

static uint8_t *bar;
static const char *shm;
static FILE *logf;
static pthread_mutex_t logmu = PTHREAD_MUTEX_INITIALIZER;

struct tlog {
	char *b;
	size_t len, cap;
};

static void logacc(struct tlog *l, char dir, int width, const volatile void *addr, uint64_t v)
{
	if (l->len + 128 > l->cap) {
		l->cap = l->cap * 2 + 4096;
		l->b = realloc(l->b, l->cap);
	}
	l->len += sprintf(l->b + l->len, "%d %c %d %lx ", gettid(), dir, width,
			  (unsigned long)((const uint8_t *)addr - bar));
	for (int i = 0; i < width; i++)
		l->len += sprintf(l->b + l->len, "%02x", (unsigned)(v >> (8 * i)) & 0xff);
	l->b[l->len++] = '\n';
}

static void flushlog(struct tlog *l)
{
	pthread_mutex_lock(&logmu);
	fwrite(l->b, 1, l->len, logf);
	pthread_mutex_unlock(&logmu);
	l->len = 0;
}

static void fail(const char *what)
{
	fprintf(stderr, "FAIL %s\n", what);
	exit(1);
}

static uint8_t *mapfile(const char *path, void *at)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0)
		fail("open shm");
	void *p = mmap(at, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | (at ? MAP_FIXED : 0), fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		fail("mmap");
	return p;
}

// The hot site: a 3-byte load (shorter than a jump: the window relocates
// what follows) and a 3-byte store. Each function is aligned, so that the
// window of one does not take in the other's first instruction (a call
// target: calls would land on a guard, and after a few the tracer gives
// the window up; TestOptGuard covers that).
__attribute__((noinline, aligned(64))) static uint32_t hot_load(volatile uint32_t *p)
{
	uint32_t v;
	asm volatile("movl 0x10(%1), %0" : "=r"(v) : "r"(p) : "memory");
	return v;
}

__attribute__((noinline, aligned(64))) static void hot_store(volatile uint32_t *p, uint32_t v)
{
	asm volatile("movl %1, 0x20(%0)" ::"r"(p), "r"(v) : "memory");
}

// loop makes n store+load rounds at slot (4-byte aligned offset), logged.
static void loop(struct tlog *l, int slot, int n, uint32_t tag)
{
	volatile uint32_t *p = (volatile uint32_t *)(bar + slot);
	for (int i = 0; i < n; i++) {
		uint32_t v = tag << 20 | i;
		hot_store(p, v);
		logacc(l, 'W', 4, (uint8_t *)p + 0x20, v);
		uint32_t r = hot_load((volatile uint32_t *)((uint8_t *)p + 0x10));
		logacc(l, 'R', 4, (uint8_t *)p + 0x20, r);
		if (r != v)
			fail("loaded value");
	}
}

// ---- signals ----------------------------------------------------------

static volatile uint32_t handled;

static void onalarm(int sig)
{
	(void)sig;
	uint32_t k = handled++;
	volatile uint32_t *q = (volatile uint32_t *)(bar + 0x1000 + (k % 16) * 4);
	asm volatile("movl %1, (%0)" ::"r"(q), "r"(k) : "memory");
}

static int mode_signals(int n)
{
	struct sigaction sa = {.sa_handler = onalarm, .sa_flags = SA_RESTART};
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 100}, {0, 100}};
	setitimer(ITIMER_REAL, &it, NULL);
	volatile uint32_t *a = (volatile uint32_t *)bar;
	for (int i = 0; i < n; i++) {
		uint32_t r;
		asm volatile("movl %1, (%0)" ::"r"(a + i % 16), "r"((uint32_t)i) : "memory");
		asm volatile("movl (%1), %0" : "=r"(r) : "r"(a + (i + 5) % 16) : "memory");
		uint32_t want = i >= 11 ? (uint32_t)(i - 11) : 0;
		if (r != want)
			fail("signals: loaded value");
	}
	struct itimerval off = {0};
	setitimer(ITIMER_REAL, &off, NULL);
	fprintf(logf, "HANDLER %u\n", handled);
	return 0;
}

// ---- newthreads, churn ------------------------------------------------

struct thr {
	pthread_t pt;
	int idx, n;
	struct tlog l;
};

static volatile int stop;

static void *run_loop(void *arg)
{
	struct thr *t = arg;
	loop(&t->l, 0x100 + 0x40 * t->idx, t->n, t->idx + 1);
	flushlog(&t->l);
	return NULL;
}

static int threads(int n, int churn)
{
	struct tlog main = {0};
	loop(&main, 0x80, 10, 0); // the sites are patched by now
	flushlog(&main);
	struct thr ts[4];
	for (int i = 0; i < 4; i++) {
		memset(&ts[i], 0, sizeof ts[i]);
		ts[i].idx = i;
		ts[i].n = n;
		pthread_create(&ts[i].pt, NULL, run_loop, &ts[i]);
	}
	if (churn) {
		// Making the code writable unpatches its sites (a JIT would
		// rewrite it); made read-only again, the next traps patch them
		// again. All while the threads run through them.
		uintptr_t page = (uintptr_t)hot_load & ~(uintptr_t)4095;
		size_t len = ((uintptr_t)hot_store + 64 - page + 4095) & ~(size_t)4095;
		for (int i = 0; i < 100; i++) {
			if (mprotect((void *)page, len, PROT_READ | PROT_WRITE | PROT_EXEC) != 0)
				fail("mprotect rwx");
			usleep(300);
			if (mprotect((void *)page, len, PROT_READ | PROT_EXEC) != 0)
				fail("mprotect rx");
			usleep(300);
		}
	}
	for (int i = 0; i < 4; i++)
		pthread_join(ts[i].pt, NULL);
	return 0;
}

// ---- fork -------------------------------------------------------------

static int mode_fork(int n)
{
	uint8_t orig[64];
	memcpy(orig, (void *)hot_load, sizeof orig);
	struct tlog l = {0};
	loop(&l, 0x80, n, 1);
	flushlog(&l);
	fflush(logf);
	pid_t c = fork();
	if (c == 0) {
		if (memcmp(orig, (void *)hot_load, sizeof orig) != 0)
			fail("child: patched code");
		unsigned long gs = 1;
		syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
		if (gs != 0)
			fail("child: GS base");
		FILE *m = fopen("/proc/self/maps", "r");
		char line[512];
		int mine = 0;
		while (fgets(line, sizeof line, m)) {
			if (strstr(line, "mmiotrace-ring"))
				fail("child: the tracer's ring is mapped");
			if (strstr(line, shm))
				mine++;
			if (strstr(line, " r-xp ") && strstr(line, " 00:00 0 ") && !strchr(line, '[')) {
				fprintf(stderr, "child: %s", line);
				fail("child: anonymous code is mapped");
			}
		}
		fclose(m);
		if (mine != 1)
			fail("child: the traced file is mapped more than once");
		volatile uint32_t *p = (volatile uint32_t *)(bar + 0x80);
		for (int i = 0; i < n; i++) {
			hot_store(p, i);
			if (hot_load((volatile uint32_t *)((uint8_t *)p + 0x10)) != (uint32_t)i)
				fail("child: loaded value");
		}
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	loop(&l, 0x80, n, 2);
	flushlog(&l);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

// ---- exec -------------------------------------------------------------

static int mode_exec(int n, char **argv)
{
	struct tlog l = {0};
	loop(&l, 0x80, n, 1);
	flushlog(&l);
	fclose(logf);
	char log2[4096];
	snprintf(log2, sizeof log2, "%s.2", argv[2]);
	char nb[32];
	snprintf(nb, sizeof nb, "%d", n);
	char *args[] = {argv[0], "again", log2, argv[3], nb, NULL};
	execv("/proc/self/exe", args);
	fail("exec");
	return 1;
}

static int mode_again(int n)
{
	struct tlog l = {0};
	loop(&l, 0x80, n, 2);
	flushlog(&l);
	return 0;
}

// ---- jit --------------------------------------------------------------

typedef uint32_t (*loadfn)(volatile void *);

static int mode_jit(int n)
{
	uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	// mov eax, [rdi+OFF8]; nop x4; ret
	uint8_t fn[] = {0x8b, 0x47, 0x10, 0x90, 0x90, 0x90, 0x90, 0xc3};
	struct tlog l = {0};
	for (int round = 0; round < 3; round++) {
		uint8_t off = 0x10 + 0x10 * round;
		fn[2] = off;
		mprotect(code, 4096, PROT_READ | PROT_WRITE);
		memcpy(code, fn, sizeof fn);
		mprotect(code, 4096, PROT_READ | PROT_EXEC);
		for (int i = 0; i < n; i++) {
			uint32_t v = round << 24 | i;
			volatile uint32_t *q = (volatile uint32_t *)(bar + off);
			asm volatile("movl %1, (%0)" ::"r"(q), "r"(v) : "memory");
			logacc(&l, 'W', 4, q, v);
			uint32_t r = ((loadfn)code)(bar);
			logacc(&l, 'R', 4, q, r);
			if (r != v)
				fail("jit: loaded value");
		}
	}
	flushlog(&l);
	return 0;
}

// ---- guard --------------------------------------------------------------

static int mode_guard(int n)
{
	struct tlog l = {0};
	volatile uint32_t *p = (volatile uint32_t *)(bar + 0x40);
	for (int i = 0; i < n; i++) {
		uint32_t v = i, r = 0, k = i & 1;
		asm volatile("movl %1, (%0)" ::"r"(p), "r"(v) : "memory");
		logacc(&l, 'W', 4, p, v);
		// Every other round jumps straight to "2:", the instruction
		// after the 2-byte load: an interior boundary of its window.
		asm volatile("testl %2, %2\n\t"
			     "jnz 2f\n\t"
			     "movl (%1), %0\n\t"
			     "2: addl $0, %0\n\t"
			     "nop; nop; nop\n\t"
			     : "+r"(r)
			     : "r"(p), "r"(k)
			     : "memory", "cc");
		if (!k) {
			logacc(&l, 'R', 4, p, r);
			if (r != v)
				fail("guard: loaded value");
		}
	}
	flushlog(&l);
	return 0;
}

// ---- munmap -------------------------------------------------------------

static int mode_munmap(int n, const char *second)
{
	struct tlog l = {0};
	loop(&l, 0x80, n, 1);
	flushlog(&l);
	void *at = bar;
	munmap(bar, SIZE);
	bar = mapfile(second, at);
	loop(&l, 0x80, n, 2);
	flushlog(&l);
	unlink(second);
	return 0;
}

// ---- detach -------------------------------------------------------------

static volatile int checkreq;
static uint8_t detach_orig[64];

static void onusr1(int sig)
{
	(void)sig;
	checkreq = 1;
}

static void *busy(void *arg)
{
	volatile uint32_t *p = (volatile uint32_t *)(bar + 0x100 + 0x40 * (long)arg);
	for (uint32_t i = 0; !checkreq; i++) {
		hot_store(p, i);
		if (hot_load((volatile uint32_t *)((uint8_t *)p + 0x10)) != i)
			fail("detach: loaded value");
	}
	return NULL;
}

static int mode_detach(void)
{
	memcpy(detach_orig, (void *)hot_load, sizeof detach_orig);
	struct sigaction sa = {.sa_handler = onusr1};
	sigaction(SIGUSR1, &sa, NULL);
	printf("%d\n", getpid());
	fflush(stdout);
	pthread_t a, b;
	pthread_create(&a, NULL, busy, (void *)0);
	pthread_create(&b, NULL, busy, (void *)1);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	if (memcmp(detach_orig, (void *)hot_load, sizeof detach_orig) != 0)
		fail("detach: code still patched");
	unsigned long gs = 1;
	syscall(SYS_arch_prctl, ARCH_GET_GS, &gs);
	if (gs != 0)
		fail("detach: GS base");
	FILE *m = fopen("/proc/self/maps", "r");
	char line[512];
	while (fgets(line, sizeof line, m)) {
		if (strstr(line, "mmiotrace-ring"))
			fail("detach: the tracer's ring is still mapped");
		if (strstr(line, shm) && !strstr(line, "rw-s"))
			fail("detach: the traced mapping's protection");
		if (strstr(line, " r-xp ") && strstr(line, " 00:00 0 ") && !strchr(line, '[')) {
			fprintf(stderr, "detach: %s", line);
			fail("detach: anonymous code still mapped");
		}
	}
	fclose(m);
	puts("ok");
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: opt MODE LOG SHM [N]\n");
		return 2;
	}
	const char *mode = argv[1];
	shm = argv[3];
	int n = argc > 4 ? atoi(argv[4]) : 1000;
	logf = fopen(argv[2], "w");
	if (!logf)
		fail("log");
	bar = mapfile(shm, NULL);
	int rc = 2;
	if (!strcmp(mode, "signals"))
		rc = mode_signals(n);
	else if (!strcmp(mode, "newthreads"))
		rc = threads(n, 0);
	else if (!strcmp(mode, "churn"))
		rc = threads(n, 1);
	else if (!strcmp(mode, "fork"))
		rc = mode_fork(n);
	else if (!strcmp(mode, "jit"))
		rc = mode_jit(n);
	else if (!strcmp(mode, "guard"))
		rc = mode_guard(n);
	else if (!strcmp(mode, "munmap"))
		rc = mode_munmap(n, argv[5]);
	else if (!strcmp(mode, "exec"))
		rc = mode_exec(n, argv);
	else if (!strcmp(mode, "again"))
		rc = mode_again(n);
	else if (!strcmp(mode, "detach"))
		rc = mode_detach();
	fclose(logf);
	unlink(shm);
	return rc;
}
