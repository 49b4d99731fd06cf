// busy.c: a program that keeps working through a session's failure: for
// the tests where the log fails (closed pipe, full disk) while mmiotrace
// spawned it.
//
// Usage: busy SHMPATH THREADS ROUNDS RESULT
//
// It maps two pages of the /dev/shm file SHMPATH and starts THREADS
// threads; each stores a counter to its own slot and loads it back ROUNDS
// times, and every 64 rounds maps and unmaps an anonymous page and
// allocates and frees 256 KiB (malloc's mmap): mapping calls that, in a
// spawned program, need a tracer to pass its seccomp filter. It writes
// "ok ROUNDS" (or "FAIL ...") to the file RESULT, never to stdout, which
// may be the log's pipe, and exits 0 (or 1).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SIZE 0x2000

static uint8_t *bar;
static long rounds;
static volatile long bad, rounds_done;
static char why[256];

static void *run(void *arg)
{
	long idx = (long)arg;
	volatile uint64_t *slot = (uint64_t *)(bar + 0x1000 + 64 * idx);
	for (long k = 1; k <= rounds; k++) {
		uint64_t v = (uint64_t)idx << 48 | k, r;
		asm volatile("movq %1, (%0)" ::"r"(slot), "r"(v) : "memory");
		asm volatile("movq (%1), %0" : "=r"(r) : "r"(slot) : "memory");
		if (r != v)
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		if (k % 64 == 0) {
			void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			char *m = malloc(256 << 10);
			if (p == MAP_FAILED || m == NULL) {
				snprintf(why, sizeof why, "thread %ld round %ld: mmap %s, malloc %s: %m", idx, k,
					 p == MAP_FAILED ? "failed" : "ok", m ? "ok" : "failed");
				__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
				return NULL;
			}
			memset(m, 1, 256 << 10);
			free(m);
			munmap(p, 4096);
		}
		__atomic_add_fetch(&rounds_done, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: busy SHMPATH THREADS ROUNDS RESULT\n");
		return 2;
	}
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0) {
		perror(argv[1]);
		return 2;
	}
	bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	int n = atoi(argv[2]);
	rounds = atol(argv[3]);
	pthread_t ts[64];
	if (n < 1 || n > 64)
		return 2;
	for (long i = 0; i < n; i++)
		pthread_create(&ts[i], NULL, run, (void *)i);
	for (int i = 0; i < n; i++)
		pthread_join(ts[i], NULL);
	FILE *f = fopen(argv[4], "w");
	if (f == NULL) {
		perror(argv[4]);
		return 2;
	}
	if (bad || rounds_done != n * rounds)
		fprintf(f, "FAIL %ld bad, %ld of %ld rounds: %s\n", bad, rounds_done, n * rounds, why);
	else
		fprintf(f, "ok %ld\n", rounds_done);
	fclose(f);
	return bad ? 1 : 0;
}
