/*
 * A toy user-space driver for a simulated device, to show `mmiotrace record`.
 *
 * The "device" is a 4 KiB register file in /dev/shm, served by a device
 * thread that reads and writes it through the file descriptor (pread and
 * pwrite are system calls, not accesses to the mapping, so only the
 * driver's register accesses appear in the log). The driver maps the file
 * like a BAR and programs it with ordinary loads and stores:
 *
 *   0x00 ID      (ro)  0x4d4d494f ("MMIO")
 *   0x04 CTRL    (rw)  bit 0: enable
 *   0x08 DATA    (rw)  operand
 *   0x0c DOORBELL(wo)  write 1 to run a command
 *   0x10 STATUS  (ro)  bit 0: done; the result is in RESULT
 *   0x14 RESULT  (ro)  DATA * 3 + 1
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { ID = 0x00, CTRL = 0x04, DATA = 0x08, DOORBELL = 0x0c, STATUS = 0x10, RESULT = 0x14 };

static int fd;
static volatile int stop;

static uint32_t rd(off_t off) { uint32_t v = 0; pread(fd, &v, 4, off); return v; }
static void wr(off_t off, uint32_t v) { pwrite(fd, &v, 4, off); }

static void *device(void *arg) {
	(void)arg;
	wr(ID, 0x4d4d494f);
	while (!stop) {
		if (rd(DOORBELL) == 1) {
			wr(DOORBELL, 0);
			wr(RESULT, rd(DATA) * 3 + 1);
			wr(STATUS, 1);
		}
		usleep(100);
	}
	return NULL;
}

int main(int argc, char **argv) {
	const char *path = argc > 1 ? argv[1] : "/dev/shm/mmiotrace-example";
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) { perror(path); return 1; }
	pthread_t dev;
	pthread_create(&dev, NULL, device, NULL);
	while (rd(ID) == 0) usleep(100);

	volatile uint32_t *bar = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED) { perror("mmap"); return 1; }
	printf("device id %#x\n", bar[ID / 4]);
	bar[CTRL / 4] |= 1;                         /* read-modify-write */
	for (uint32_t i = 1; i <= 3; i++) {
		bar[DATA / 4] = i * 10;
		bar[DOORBELL / 4] = 1;
		while (!(bar[STATUS / 4] & 1))      /* poll */
			usleep(200);
		printf("command %u: result %u\n", i, bar[RESULT / 4]);
		bar[STATUS / 4] = 0;
	}
	bar[CTRL / 4] &= ~1u;
	munmap((void *)bar, 4096);
	stop = 1;
	pthread_join(dev, NULL);
	unlink(path);
	return 0;
}
