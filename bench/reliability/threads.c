/*
 * Cost of creating and joining a thread, untraced or under `mmiotrace
 * record -p` (each new thread is a clone event, a first stop, its pinning
 * to the tracer's CPU and a line to the waker).
 *
 *   threads N          N threads created and joined, one at a time
 *   threads N traced   the same, once a tracer has attached
 *
 * Prints "threads <ns per thread>".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void *nop(void *a) { return a; }

static int traced(void)
{
	char buf[4096];
	FILE *f = fopen("/proc/self/status", "r");
	int t = 0;
	while (f && fgets(buf, sizeof buf, f))
		if (!strncmp(buf, "TracerPid:", 10))
			t = atoi(buf + 10);
	if (f)
		fclose(f);
	return t;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int n = atoi(argv[1]);
	if (argc > 2)
		while (!traced())
			usleep(1000);
	usleep(20000);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		pthread_t t;
		pthread_create(&t, NULL, nop, NULL);
		pthread_join(t, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	printf("threads %.0f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}
