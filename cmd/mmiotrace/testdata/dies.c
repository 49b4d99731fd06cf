/* Hammers a traced shared mapping from two threads, then is killed by
 * SIGKILL while a thread is in the middle of its accesses. The log must
 * keep every access made before, and mmiotrace must report the kill. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint32_t *reg;

static void *hammer(void *arg) {
	(void)arg;
	for (uint32_t i = 0;; i++) reg[1] = i;
	return NULL;
}

int main(int argc, char **argv) {
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) return 1;
	reg = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (reg == MAP_FAILED) return 1;
	unlink(argv[1]);
	pthread_t t;
	pthread_create(&t, NULL, hammer, NULL);
	for (uint32_t i = 0; i < 200; i++) reg[0] = i; /* 200 known stores */
	kill(getpid(), SIGKILL);
	return 0;
}
