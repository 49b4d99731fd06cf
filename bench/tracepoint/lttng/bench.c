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
 */
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

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: bench int|rich N R\n");
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
