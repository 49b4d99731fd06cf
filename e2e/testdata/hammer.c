// hammer.c: many threads hammering the same two pages of a shared /dev/shm
// mapping, to check that no access is missing or extra under contention.
//
// Usage: hammer LOG SHMNAME THREADS ACCESSES
//
// Each thread makes ACCESSES accesses: stores and loads of its own slots
// (interleaved with the other threads' slots in the same cache lines and
// pages) and, every eighth access, a lock xadd on a counter all threads
// share. It logs them as device.c does ("TID R|W WIDTH OFFSET BYTES"). The
// counter must end at the number of xadds; a mismatch is a FAIL line.
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
static int nthreads, naccess;
static pthread_barrier_t start;

struct thr {
	pthread_t pt;
	int idx;
	char *log;
	size_t len;
};

static void logacc(struct thr *t, char dir, int width, const void *addr, uint64_t v)
{
	t->len += sprintf(t->log + t->len, "%d %c %d %lx ", gettid(), dir, width,
			  (unsigned long)((const uint8_t *)addr - bar));
	for (int i = 0; i < width; i++)
		t->len += sprintf(t->log + t->len, "%02x", (unsigned)(v >> (8 * i)) & 0xff);
	t->log[t->len++] = '\n';
}

static void *run(void *arg)
{
	struct thr *t = arg;
	pthread_barrier_wait(&start);
	for (int i = 0; i < naccess; i++) {
		// Slot: 8 bytes per thread, 16 threads per 128-byte line group,
		// walking over both pages.
		uint8_t *p = bar + 64 + ((i / 2) % 60) * 128 + t->idx * 8;
		uint64_t v;
		if (i % 8 == 7) {
			uint32_t *ctr = (uint32_t *)bar, r = 1;
			asm volatile("lock xaddl %0, (%1)" : "+r"(r) : "r"(ctr) : "cc", "memory");
			logacc(t, 'R', 4, ctr, r);
			logacc(t, 'W', 4, ctr, (uint32_t)(r + 1));
			i++;
		} else if (i % 2 == 0) {
			v = ((uint64_t)t->idx << 56) | ((uint64_t)i << 16) | 0xbeef;
			if (i % 4 == 0) {
				asm volatile("movq %1, (%0)" ::"r"(p), "r"(v) : "memory");
				logacc(t, 'W', 8, p, v);
			} else {
				asm volatile("movl %k1, (%0)" ::"r"(p), "r"(v) : "memory");
				logacc(t, 'W', 4, p, (uint32_t)v);
			}
		} else {
			asm volatile("movq (%1), %0" : "=r"(v) : "r"(p) : "memory");
			logacc(t, 'R', 8, p, v);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: hammer LOG SHMNAME THREADS ACCESSES\n");
		return 2;
	}
	nthreads = atoi(argv[3]);
	naccess = atoi(argv[4]);
	int fd = open(argv[2], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0) {
		perror(argv[2]);
		return 2;
	}
	bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED) {
		perror("mmap");
		return 2;
	}
	struct thr *ts = calloc(nthreads, sizeof *ts);
	pthread_barrier_init(&start, NULL, nthreads);
	for (int i = 0; i < nthreads; i++) {
		ts[i].idx = i;
		ts[i].log = malloc((size_t)naccess * 64 + 64);
		pthread_create(&ts[i].pt, NULL, run, &ts[i]);
	}
	int xadds = 0;
	for (int i = 0; i < naccess; i++)
		if (i % 8 == 7)
			xadds++, i++;
	FILE *f = fopen(argv[1], "w");
	for (int i = 0; i < nthreads; i++) {
		pthread_join(ts[i].pt, NULL);
		fwrite(ts[i].log, 1, ts[i].len, f);
	}
	uint32_t ctr;
	pread(fd, &ctr, 4, 0);
	if (ctr != (uint32_t)(xadds * nthreads))
		fprintf(f, "FAIL counter %u, want %u\n", ctr, xadds * nthreads);
	fclose(f);
	unlink(argv[2]);
	return 0;
}
