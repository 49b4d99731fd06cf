// worker.c: a long-running program for attach, detach and mark tests,
// driven by commands on stdin.
//
// Usage: worker shm PATH THREADS | worker anon THREADS
//
// It maps two pages (of the /dev/shm file PATH, shared, or anonymous
// private memory), prints "PID ADDR" and starts THREADS threads that each
// store a counter to their own slot, load it back and check it, about ten
// thousand times a second. Commands, one a line, each answered with a line:
//
//	count        the number of store+load rounds done so far
//	touch V      the main thread stores the 32-bit V at offset 0x800 ("done")
//	quit         stop the threads, check the pages, print "ok ROUNDS" or
//	             "FAIL ..." and exit 0 (or 1)
//
// End of input means quit.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define SIZE 0x2000

static uint8_t *bar;
static volatile int stop;
static volatile long rounds, bad;

static void *run(void *arg)
{
	long idx = (long)arg;
	volatile uint64_t *slot = (uint64_t *)(bar + 0x1000 + 64 * idx);
	struct timespec ts = {0, 100000};
	for (uint64_t k = 1; !stop; k++) {
		uint64_t v = idx << 48 | k, r;
		asm volatile("movq %1, (%0)" ::"r"(slot), "r"(v) : "memory");
		asm volatile("movq (%1), %0" : "=r"(r) : "r"(slot) : "memory");
		if (r != v)
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&rounds, 1, __ATOMIC_RELAXED);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int nthreads;
	if (argc == 4 && !strcmp(argv[1], "shm")) {
		int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, SIZE) < 0) {
			perror(argv[2]);
			return 2;
		}
		bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		nthreads = atoi(argv[3]);
	} else if (argc == 3 && !strcmp(argv[1], "anon")) {
		bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		nthreads = atoi(argv[2]);
	} else {
		fprintf(stderr, "usage: worker shm PATH THREADS | worker anon THREADS\n");
		return 2;
	}
	if (bar == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%d %p\n", getpid(), (void *)bar);

	pthread_t *ts = calloc(nthreads + 1, sizeof *ts);
	for (long i = 0; i < nthreads; i++)
		pthread_create(&ts[i], NULL, run, (void *)i);

	char line[128];
	while (fgets(line, sizeof line, stdin)) {
		unsigned v;
		if (!strncmp(line, "count", 5)) {
			printf("%ld\n", __atomic_load_n(&rounds, __ATOMIC_RELAXED));
		} else if (sscanf(line, "touch %u", &v) == 1) {
			asm volatile("movl %1, (%0)" ::"r"(bar + 0x800), "r"(v) : "memory");
			printf("done\n");
		} else if (!strncmp(line, "quit", 4)) {
			break;
		} else {
			printf("FAIL unknown command %s", line);
		}
	}
	if (ferror(stdin))
		fprintf(stderr, "worker: stdin: %m\n");
	else if (feof(stdin))
		fprintf(stderr, "worker: end of input\n");
	stop = 1;
	for (int i = 0; i < nthreads; i++)
		pthread_join(ts[i], NULL);
	// Every slot holds the last value its thread stored.
	for (long i = 0; i < nthreads; i++) {
		uint64_t v = *(volatile uint64_t *)(bar + 0x1000 + 64 * i);
		if (v >> 48 != (uint64_t)i || (v & 0xffffffffffff) == 0)
			bad++;
	}
	if (bad) {
		printf("FAIL %ld bad rounds\n", bad);
		return 1;
	}
	printf("ok %ld\n", rounds);
	if (fflush(stdout) != 0) {
		// Seen rarely after a detach (see the e2e report): say why.
		fprintf(stderr, "worker: write ok line: %m\n");
		return 3;
	}
	return 0;
}
