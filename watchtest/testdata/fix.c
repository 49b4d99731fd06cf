/* fix.c: watch test fixture. Makes accesses of known width with inline asm
 * to globals of sizes 1, 2, 4 and 8 and logs each one itself to $WT_LOG as
 * "tid R|W width addr value" (X for calls of tick), for exact comparison
 * with the mmiotrace log.
 *
 * Modes (argv[1]):
 *   seq        main thread sequence, then a new thread's sequence, then main again
 *   page       accesses to 12 8-byte slots of one page-aligned array
 *   exec N     calls tick() N times
 *   loop       increments counter every 2 ms forever, printing "tick N" lines
 *              to $WT_LOG every 50 increments (for attach tests)
 *   bench N    N stores to counter
 *   dlopen LIB loads LIB after start and writes its lib_counter through lib_set
 *   execmt N T [step]
 *              T threads and main call tick N times each, all at once
 *              (tick_step with "step": its first instruction is one no
 *              emulator handles, so an int3 there is single-stepped)
 *   hot N      calls hot() N times, then logs "hot N" (no line per call)
 *   fork       tick twice, fork a child that calls tick 3 times (logging
 *              them) and must exit 0, tick once more
 *   reexec N   tick twice, then exec itself as "exec N"
 *   tickloop   calls tick every millisecond forever (attach tests)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

volatile uint8_t g8;
volatile uint16_t g16;
volatile uint32_t g32;
volatile uint64_t g64;
volatile uint64_t counter;
/* One page of its own: 12 watches on it all go to page protection. */
volatile uint64_t page[512] __attribute__((aligned(4096)));

static FILE *logf_;
static pthread_mutex_t logmu = PTHREAD_MUTEX_INITIALIZER;

static void logacc(char dir, int width, volatile void *addr, uint64_t v)
{
	pthread_mutex_lock(&logmu);
	fprintf(logf_, "%ld %c %d 0x%lx 0x%lx\n", (long)syscall(SYS_gettid), dir, width,
		(unsigned long)(uintptr_t)addr, (unsigned long)v);
	pthread_mutex_unlock(&logmu);
}

static void st1(volatile void *p, uint8_t v) { __asm__ volatile("movb %1, %0" : "=m"(*(volatile uint8_t *)p) : "q"(v)); logacc('W', 1, p, v); }
static void st2(volatile void *p, uint16_t v) { __asm__ volatile("movw %1, %0" : "=m"(*(volatile uint16_t *)p) : "r"(v)); logacc('W', 2, p, v); }
static void st4(volatile void *p, uint32_t v) { __asm__ volatile("movl %1, %0" : "=m"(*(volatile uint32_t *)p) : "r"(v)); logacc('W', 4, p, v); }
static void st8(volatile void *p, uint64_t v) { __asm__ volatile("movq %1, %0" : "=m"(*(volatile uint64_t *)p) : "r"(v)); logacc('W', 8, p, v); }
static uint8_t ld1(volatile void *p) { uint8_t v; __asm__ volatile("movb %1, %0" : "=q"(v) : "m"(*(volatile uint8_t *)p)); logacc('R', 1, p, v); return v; }
static uint16_t ld2(volatile void *p) { uint16_t v; __asm__ volatile("movw %1, %0" : "=r"(v) : "m"(*(volatile uint16_t *)p)); logacc('R', 2, p, v); return v; }
static uint32_t ld4(volatile void *p) { uint32_t v; __asm__ volatile("movl %1, %0" : "=r"(v) : "m"(*(volatile uint32_t *)p)); logacc('R', 4, p, v); return v; }
static uint64_t ld8(volatile void *p) { uint64_t v; __asm__ volatile("movq %1, %0" : "=r"(v) : "m"(*(volatile uint64_t *)p)); logacc('R', 8, p, v); return v; }

/* seq is one thread's known sequence; base makes each thread's values distinct. */
static void seq(uint64_t base)
{
	st1(&g8, (uint8_t)(base + 0x11));
	st2(&g16, (uint16_t)(base + 0x2222));
	st4(&g32, (uint32_t)(base + 0x33333333));
	st8(&g64, base + 0x4444444444444444ull);
	ld1(&g8);
	ld2(&g16);
	ld4(&g32);
	ld8(&g64);
	/* Narrower accesses inside wider variables. */
	st1((volatile char *)&g64 + 3, (uint8_t)(base + 0x55));
	ld2((volatile char *)&g32 + 2);
	st8(&counter, base + 1);
	ld8(&counter);
}

static void *thread_main(void *arg)
{
	seq((uint64_t)(uintptr_t)arg);
	return NULL;
}

__attribute__((noinline)) void tick(void)
{
	pthread_mutex_lock(&logmu);
	fprintf(logf_, "%ld X 0 0x%lx 0x0\n", (long)syscall(SYS_gettid), (unsigned long)(uintptr_t)&tick);
	pthread_mutex_unlock(&logmu);
	__asm__ volatile("" ::: "memory");
}

void tick_step(void);

/* tick_step's body: logs a call of tick_step. */
static __attribute__((noinline, used)) void tick_step_body(void)
{
	pthread_mutex_lock(&logmu);
	fprintf(logf_, "%ld X 0 0x%lx 0x0\n", (long)syscall(SYS_gettid), (unsigned long)(uintptr_t)&tick_step);
	pthread_mutex_unlock(&logmu);
}

/* A register-to-register move first, then the body. */
__asm__(".text\n.globl tick_step\n.type tick_step,@function\ntick_step:\n"
	"\tmovq %rsp, %rax\n\tjmp tick_step_body\n.size tick_step, .-tick_step\n");

volatile uint64_t hot_calls;

__attribute__((noinline)) void hot(void)
{
	hot_calls++;
	__asm__ volatile("" ::: "memory");
}

static pthread_barrier_t start_line;

static void (*tick_fn)(void) = tick;

static void *ticker(void *arg)
{
	int n = (int)(uintptr_t)arg;
	pthread_barrier_wait(&start_line);
	for (int i = 0; i < n; i++)
		tick_fn();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "seq";
	const char *path = getenv("WT_LOG");
	/* Appending: an image exec'd by reexec goes on with the same log. */
	logf_ = fopen(path ? path : "/dev/null", "a");
	if (!logf_) {
		perror("fopen");
		return 1;
	}
	setvbuf(logf_, NULL, _IOLBF, 0);
	if (!strcmp(mode, "seq")) {
		seq(0);
		pthread_t th;
		if (pthread_create(&th, NULL, thread_main, (void *)(uintptr_t)0x100) != 0)
			return 1;
		pthread_join(th, NULL);
		seq(0x200);
	} else if (!strcmp(mode, "page")) {
		for (int i = 0; i < 12; i++)
			st8(&page[i], 0x1000 + i);
		for (int i = 0; i < 12; i++)
			ld8(&page[i]);
		st1((volatile char *)&page[1] + 1, 0xab);
		st2((volatile char *)&page[5] + 2, 0xbeef);
		st4((volatile char *)&page[11] + 4, 0xdeadbeef);
		ld4((volatile char *)&page[11] + 4);
		ld1(&page[1]);
		st8(&page[12], 7); /* unwatched neighbour: must not appear */
	} else if (!strcmp(mode, "exec")) {
		int n = argc > 2 ? atoi(argv[2]) : 5;
		for (int i = 0; i < n; i++)
			tick();
	} else if (!strcmp(mode, "loop")) {
		for (uint64_t i = 1;; i++) {
			counter = i;
			if (i % 50 == 0) {
				pthread_mutex_lock(&logmu);
				fprintf(logf_, "tick %lu\n", (unsigned long)i);
				pthread_mutex_unlock(&logmu);
			}
			usleep(2000);
		}
	} else if (!strcmp(mode, "bench")) {
		long n = argc > 2 ? atol(argv[2]) : 200000;
		for (long i = 0; i < n; i++)
			__asm__ volatile("movq %1, %0" : "=m"(counter) : "r"((uint64_t)i));
	} else if (!strcmp(mode, "dlopen")) {
		usleep(20000);
		void *h = dlopen(argv[2], RTLD_NOW);
		if (!h) {
			fprintf(stderr, "dlopen: %s\n", dlerror());
			return 1;
		}
		void (*set)(uint32_t) = (void (*)(uint32_t))dlsym(h, "lib_set");
		uint32_t (*get)(void) = (uint32_t(*)(void))dlsym(h, "lib_get");
		volatile uint32_t *c = (volatile uint32_t *)dlsym(h, "lib_counter");
		if (!set || !get || !c)
			return 1;
		for (uint32_t i = 1; i <= 3; i++) {
			set(0xc0de0000 + i);
			logacc('W', 4, c, 0xc0de0000 + i);
		}
		uint32_t v = get();
		logacc('R', 4, c, v);
	} else if (!strcmp(mode, "execmt")) {
		int n = argc > 2 ? atoi(argv[2]) : 100;
		int nt = argc > 3 ? atoi(argv[3]) : 4;
		pthread_t th[64];
		if (nt > 64)
			nt = 64;
		if (argc > 4 && !strcmp(argv[4], "step"))
			tick_fn = tick_step;
		pthread_barrier_init(&start_line, NULL, nt + 1);
		for (int i = 0; i < nt; i++)
			if (pthread_create(&th[i], NULL, ticker, (void *)(uintptr_t)n) != 0)
				return 1;
		ticker((void *)(uintptr_t)n);
		for (int i = 0; i < nt; i++)
			pthread_join(th[i], NULL);
	} else if (!strcmp(mode, "hot")) {
		long n = argc > 2 ? atol(argv[2]) : 10000;
		for (long i = 0; i < n; i++)
			hot();
		fprintf(logf_, "hot %lu\n", (unsigned long)hot_calls);
	} else if (!strcmp(mode, "fork")) {
		tick();
		tick();
		pid_t c = fork();
		if (c < 0)
			return 1;
		if (c == 0) {
			for (int i = 0; i < 3; i++)
				tick();
			fflush(logf_);
			_exit(0);
		}
		int st;
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "child failed: status %#x\n", st);
			return 3;
		}
		tick();
	} else if (!strcmp(mode, "reexec")) {
		tick();
		tick();
		fflush(logf_);
		execl("/proc/self/exe", argv[0], "exec", argc > 2 ? argv[2] : "3", (char *)NULL);
		perror("exec");
		return 1;
	} else if (!strcmp(mode, "tickloop")) {
		for (;;) {
			tick();
			usleep(1000);
		}
	} else {
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	fclose(logf_);
	return 0;
}
