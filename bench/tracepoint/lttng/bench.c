/*
 * bench fires an LTTng-UST tracepoint N times in a loop, R times over after
 * one untimed warm-up loop, and prints the fastest and the median cost per
 * event, measured with CLOCK_MONOTONIC around each loop:
 *
 *	bench int|rich N R
 *
 * Output, one line: "<event> <n> <min ns/event> <median ns/event> <enabled>".
 * Whether the event is enabled depends on the LTTng session run.sh set up
 * before starting the program; <enabled> says what the program saw.
 *
 *	bench burst THREADS N
 *
 * fires the rich event N times from each of THREADS threads at once, as fast
 * as they can (the sustained-rate case: run.sh records it in a blocking
 * channel, so that nothing is lost and the program waits for the consumer).
 * Output: "burst <threads> <events in all> <seconds> <enabled>".
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tp.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static long burst_n;

static void *burst_thread(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	for (long i = 0; i < burst_n; i++)
		tracepoint(mmtp, rich_event, (uint64_t)i, id, 1, "bar0");
	return NULL;
}

static int burst(int threads, long n)
{
	pthread_t th[64];
	burst_n = n;
	double t0 = now();
	for (int k = 0; k < threads; k++)
		if (pthread_create(&th[k], NULL, burst_thread, (void *)(uintptr_t)k) != 0) {
			perror("bench: pthread_create");
			return 1;
		}
	for (int k = 0; k < threads; k++)
		pthread_join(th[k], NULL);
	double secs = (now() - t0) / 1e9;
	printf("burst %d %ld %.6f %d\n", threads, threads * n, secs, tracepoint_enabled(mmtp, rich_event) != 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "burst") == 0) {
		int threads = atoi(argv[2]);
		long n = atol(argv[3]);
		if (threads <= 0 || threads > 64 || n <= 0) {
			fprintf(stderr, "bench: bad THREADS or N\n");
			return 2;
		}
		return burst(threads, n);
	}
	if (argc != 4) {
		fprintf(stderr, "usage: bench int|rich N R | bench burst THREADS N\n");
		return 2;
	}
	int rich = strcmp(argv[1], "rich") == 0;
	long n = atol(argv[2]);
	int r = atoi(argv[3]);
	if (n <= 0 || r <= 0 || r > 100) {
		fprintf(stderr, "bench: bad N or R\n");
		return 2;
	}
	double per[100];
	const char *dev = "bar0";
	/* Loop -1 warms up caches, page tables and the trace buffers, untimed. */
	for (int k = -1; k < r; k++) {
		double t0 = now();
		if (rich) {
			for (long i = 0; i < n; i++)
				tracepoint(mmtp, rich_event, (uint64_t)i, 7, 1, dev);
		} else {
			for (long i = 0; i < n; i++)
				tracepoint(mmtp, int_event, (int)i);
		}
		if (k >= 0)
			per[k] = (now() - t0) / n;
	}
	qsort(per, r, sizeof per[0], cmp);
	int enabled = rich ? tracepoint_enabled(mmtp, rich_event) : tracepoint_enabled(mmtp, int_event);
	printf("%s %ld %.3f %.3f %d\n", argv[1], n, per[0], per[r / 2], enabled != 0);
	return 0;
}
