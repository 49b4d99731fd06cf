/*
 * Per-access cost of a traced 4-byte load from a shared file mapping.
 *
 *   loop N FILE     N loads through the mapping, timed inside the program
 *                   (run it untraced, or under `mmiotrace record`)
 *   kernel N FILE   the kernel kmmio's method done in-process: the page is
 *                   PROT_NONE; SIGSEGV unprotects it and sets the trap flag;
 *                   SIGTRAP protects it again (fault, mprotect, single-step,
 *                   mprotect per access)
 *   ptrace N        a raw ptrace stop/resume round trip: a child executes
 *                   int3 N times, the parent resumes it each time
 *   threads T N FILE [SPIN]  T threads each make N loads through the
 *                   mapping at once, with SPIN iterations of arithmetic on
 *                   registers (untraced work) after each load (for
 *                   pinning: do the threads keep their own CPUs?); prints
 *                   "threads <wall ns> <ns per access>", wall time from
 *                   the first thread's start to the last one's end
 *   sys KIND N FILE [traced]  N system calls, with FILE mapped shared (to
 *                   trace): KIND getppid (no memory), pread (64 bytes of
 *                   /dev/zero into a stack buffer: memory, not traced) or
 *                   pread-map (into the mapping: traced memory); with
 *                   "traced", first wait until a tracer has attached (for
 *                   `record -p`)
 *
 * Each prints one line: "<mode> <ns per access>" (sys: then the thread's
 * CPU time per call).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double cputime(void) {
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static volatile uint32_t *map_file(const char *path) {
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) { perror(path); exit(1); }
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap"); exit(1); }
	return p;
}

static uint32_t loads(volatile uint32_t *p, long n) {
	uint32_t s = 0;
	for (long i = 0; i < n; i++) s += p[i & 63];
	return s;
}

static void *page;

struct worker {
	volatile uint32_t *p;
	long n, spin;
	uint32_t sum;
};

static void *work(void *a) {
	struct worker *w = a;
	if (!w->spin) {
		w->sum = loads(w->p, w->n);
		return NULL;
	}
	uint32_t s = 0;
	for (long i = 0; i < w->n; i++) {
		uint32_t x = w->p[i & 63];
		for (long j = 0; j < w->spin; j++) {
			x = x * 1103515245u + 12345u;
			__asm__ volatile("" : "+r"(x)); /* keep the work */
		}
		s += x;
	}
	w->sum = s;
	return NULL;
}

static void on_segv(int sig, siginfo_t *si, void *uc) {
	(void)sig; (void)si;
	mprotect(page, 4096, PROT_READ | PROT_WRITE);
	((ucontext_t *)uc)->uc_mcontext.gregs[REG_EFL] |= 0x100;
}

static void on_trap(int sig, siginfo_t *si, void *uc) {
	(void)sig; (void)si;
	mprotect(page, 4096, PROT_NONE);
	((ucontext_t *)uc)->uc_mcontext.gregs[REG_EFL] &= ~0x100;
}

int main(int argc, char **argv) {
	if (argc < 3) { fprintf(stderr, "usage: loop|kernel N FILE | ptrace N | threads T N FILE [SPIN] | sys KIND N FILE [traced]\n"); return 2; }
	long n = atol(argv[2]);
	if (!strcmp(argv[1], "loop") || !strcmp(argv[1], "kernel")) {
		volatile uint32_t *p = map_file(argv[3]);
		if (!strcmp(argv[1], "kernel")) {
			page = (void *)p;
			struct sigaction sa = {0};
			sa.sa_flags = SA_SIGINFO;
			sa.sa_sigaction = on_segv;
			sigaction(SIGSEGV, &sa, NULL);
			sa.sa_sigaction = on_trap;
			sigaction(SIGTRAP, &sa, NULL);
			mprotect(page, 4096, PROT_NONE);
		}
		double t0 = now();
		uint32_t s = loads(p, n);
		double t1 = now();
		printf("%s %.1f\n", argv[1], (t1 - t0) / n);
		return s == 12345678 ? 3 : 0;
	}
	if (!strcmp(argv[1], "threads") && argc >= 5) {
		int t = atoi(argv[2]);
		n = atol(argv[3]);
		long spin = argc > 5 ? atol(argv[5]) : 0;
		volatile uint32_t *p = map_file(argv[4]);
		if (t < 1 || t > 64) return 2;
		struct worker w[64];
		pthread_t th[64];
		double t0 = now();
		for (int i = 0; i < t; i++) {
			w[i] = (struct worker){.p = p, .n = n, .spin = spin};
			pthread_create(&th[i], NULL, work, &w[i]);
		}
		uint32_t s = 0;
		for (int i = 0; i < t; i++) {
			pthread_join(th[i], NULL);
			s += w[i].sum;
		}
		double t1 = now();
		printf("threads %.0f %.1f\n", t1 - t0, (t1 - t0) / ((double)t * n));
		return s == 12345678 ? 3 : 0;
	}
	if (!strcmp(argv[1], "sys") && argc >= 5) {
		const char *kind = argv[2];
		n = atol(argv[3]);
		volatile uint32_t *p = map_file(argv[4]);
		if (argc > 5) { /* wait for the tracer */
			for (;;) {
				char buf[4096];
				FILE *f = fopen("/proc/self/status", "r");
				size_t k = fread(buf, 1, sizeof buf - 1, f);
				fclose(f);
				buf[k] = 0;
				char *tp = strstr(buf, "TracerPid:");
				if (tp && atoi(tp + 10) != 0) break;
				usleep(1000);
			}
			usleep(100000); /* let the tracer finish attaching */
		}
		int fd = open("/dev/zero", O_RDONLY);
		char stack[64];
		char *buf = !strcmp(kind, "pread-map") ? (char *)p + 512 : stack;
		int mem = strcmp(kind, "getppid") != 0;
		double t0 = now(), c0 = cputime();
		for (long i = 0; i < n; i++) {
			if (!mem)
				getppid();
			else if (pread(fd, buf, 64, 0) != 64)
				return 4;
		}
		double t1 = now(), c1 = cputime();
		/* wall time, and the thread's own CPU time (what the call costs
		 * the program, without the waits a loaded machine adds) */
		printf("%s %.1f %.1f\n", kind, (t1 - t0) / n, (c1 - c0) / n);
		return 0;
	}
	if (!strcmp(argv[1], "ptrace")) {
		pid_t c = fork();
		if (c == 0) {
			ptrace(PTRACE_TRACEME, 0, 0, 0);
			raise(SIGSTOP);
			for (long i = 0; i < n; i++) __asm__ volatile("int3");
			_exit(0);
		}
		int st;
		waitpid(c, &st, 0);
		ptrace(PTRACE_CONT, c, 0, 0);
		double t0 = now();
		for (long i = 0; i < n; i++) {
			waitpid(c, &st, 0);
			ptrace(PTRACE_CONT, c, 0, 0);
		}
		double t1 = now();
		waitpid(c, &st, 0);
		printf("ptrace %.1f\n", (t1 - t0) / n);
		return 0;
	}
	return 2;
}
