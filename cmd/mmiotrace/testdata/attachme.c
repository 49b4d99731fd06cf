/* Fixture for the start-up line of an attach: maps the file given twice
 * (two traced mappings), starts two threads that wait, prints "ready", and
 * waits until its stdin closes. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static void *idle(void *a) {
	(void)a;
	for (;;)
		pause();
	return 0;
}

int main(int argc, char **argv) {
	if (argc < 2)
		return 2;
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 8192) < 0)
		return 3;
	volatile int *a = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	volatile int *b = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
	if (a == MAP_FAILED || b == MAP_FAILED)
		return 4;
	pthread_t t1, t2;
	pthread_create(&t1, 0, idle, 0);
	pthread_create(&t2, 0, idle, 0);
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		*a = *b + 1;
	unlink(argv[1]);
	return 0;
}
