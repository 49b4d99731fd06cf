// vforkstop.c: a program with a thread that cannot stop for a tracer: its
// main thread waits in vfork for a child that is stopped, which no signal
// but SIGKILL interrupts. For the test of a detach that must end anyway.
//
// Usage: vforkstop SHMPATH
//
// It maps two pages of the /dev/shm file SHMPATH, prints "PID ADDR", and
// starts a thread that stores a counter to the second page and loads it
// back, over and over. On a "go" line on stdin, the main thread calls
// vfork; the child prints "child PID" and stops itself with SIGSTOP, then
// exits when continued. The main thread then stops the worker thread,
// checks the page, prints "ok ROUNDS" (or "FAIL ...") and exits 0 (or 1).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint8_t *bar;
static volatile int stop;
static volatile long rounds, bad;

static void *run(void *arg)
{
	(void)arg;
	volatile uint64_t *slot = (uint64_t *)(bar + 0x1000);
	struct timespec ts = {0, 100000};
	for (uint64_t k = 1; !stop; k++) {
		uint64_t r;
		asm volatile("movq %1, (%0)" ::"r"(slot), "r"(k) : "memory");
		asm volatile("movq (%1), %0" : "=r"(r) : "r"(slot) : "memory");
		if (r != k)
			bad++;
		rounds++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 0x2000) < 0)
		return 2;
	bar = mmap(NULL, 0x2000, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("%d %p\n", getpid(), (void *)bar);
	pthread_t t;
	pthread_create(&t, NULL, run, NULL);
	char line[64];
	if (!fgets(line, sizeof line, stdin) || strncmp(line, "go", 2) != 0)
		return 2;
	pid_t child = vfork();
	if (child == 0) {
		char msg[64];
		int n = snprintf(msg, sizeof msg, "child %d\n", getpid());
		write(1, msg, n);
		raise(SIGSTOP);
		_exit(0);
	}
	int st;
	waitpid(child, &st, 0);
	stop = 1;
	pthread_join(t, NULL);
	if (bad || *(volatile uint64_t *)(bar + 0x1000) == 0) {
		printf("FAIL %ld bad rounds\n", bad);
		return 1;
	}
	printf("ok %ld\n", rounds);
	return 0;
}
