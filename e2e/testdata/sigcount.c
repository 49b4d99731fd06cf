// sigcount.c: counts the SIGINTs it receives, while it works on a traced
// mapping, for the tests of how mmiotrace passes signals on.
//
// Usage: sigcount SHMPATH
//
// It maps a page of the /dev/shm file SHMPATH, prints "ready", and stores
// to the page every millisecond. 300 ms after its first SIGINT it prints
// "sigint N" (the SIGINTs received by then) and exits 0; with none in 20 s
// it exits 3.
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t count;

static void onint(int sig)
{
	(void)sig;
	count++;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0)
		return 2;
	volatile uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = onint;
	sigaction(SIGINT, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	struct timespec ms = {0, 1000000};
	for (int i = 0; i < 20000; i++) {
		*p = i;
		if (count > 0) {
			for (int j = 0; j < 300; j++) {
				*p = j;
				nanosleep(&ms, NULL);
			}
			printf("sigint %d\n", (int)count);
			return 0;
		}
		nanosleep(&ms, NULL);
	}
	return 3;
}
