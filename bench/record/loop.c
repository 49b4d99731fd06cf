// loop.c: the benchmark loop of bench/record: N 4-byte loads from a
// shared /dev/shm file mapping, timed inside the program so that start-up
// (and, under mmiotrace, attaching and arming) is not counted.
//
// Usage: loop plain|kernel N
//
// plain   the loop as it is (run it untraced, or under mmiotrace record)
// kernel  the kernel mmiotrace's method done in-process, per access: the
//         page is PROT_NONE; the SIGSEGV handler makes it readable and sets
//         the trap flag; after the one instruction, the SIGTRAP handler
//         protects the page again and clears the trap flag
//
// It prints the nanoseconds per access.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

static volatile uint32_t *page;

static void onsegv(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	mprotect((void *)page, 4096, PROT_READ | PROT_WRITE);
	uc->uc_mcontext.gregs[REG_EFL] |= 0x100;
}

static void ontrap(int sig, siginfo_t *si, void *ctx)
{
	ucontext_t *uc = ctx;
	mprotect((void *)page, 4096, PROT_NONE);
	uc->uc_mcontext.gregs[REG_EFL] &= ~0x100;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: loop plain|kernel N\n");
		return 2;
	}
	long n = atol(argv[2]);
	char name[64];
	snprintf(name, sizeof name, "/dev/shm/mmiotrace-bench-%d", getpid());
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) {
		perror(name);
		return 1;
	}
	page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	unlink(name);
	if (page == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	if (!strcmp(argv[1], "kernel")) {
		struct sigaction sa = {0};
		sa.sa_flags = SA_SIGINFO;
		sa.sa_sigaction = onsegv;
		sigaction(SIGSEGV, &sa, NULL);
		sa.sa_sigaction = ontrap;
		sigaction(SIGTRAP, &sa, NULL);
		mprotect((void *)page, 4096, PROT_NONE);
	}
	uint32_t sum = 0;
	double t0 = now();
	for (long i = 0; i < n; i++) {
		uint32_t v;
		asm volatile("movl (%1), %0" : "=r"(v) : "r"(page + (i & 15)) : "memory");
		sum += v;
	}
	double t1 = now();
	printf("%.1f\n", (t1 - t0) / n);
	return sum == 12345; // keep the loads
}
