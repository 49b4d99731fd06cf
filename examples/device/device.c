// device.c: a tiny user-space "driver" for a simulated device, to try
// mmiotrace record on. The device is a /dev/shm file with a register
// block; a device thread plays the hardware, through pread/pwrite on the
// file (so only the driver's accesses go through the mapping, and only
// they are traced).
//
// Registers (32-bit): ID at 0x00, CTRL at 0x04, STATUS at 0x08, DATA at
// 0x0c. The driver reads ID, resets the device through CTRL, waits for
// STATUS.READY, then asks for the squares of 1..4: it writes DATA and sets
// CTRL.GO, polls STATUS.DONE and reads DATA back.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

enum { ID = 0x00, CTRL = 0x04, STATUS = 0x08, DATA = 0x0c };
enum { CTRL_RESET = 1, CTRL_GO = 2, STATUS_READY = 1, STATUS_DONE = 2 };

static int fd;
static volatile int stop;

static uint32_t hw_read(int reg)
{
	uint32_t v = 0;
	pread(fd, &v, 4, reg);
	return v;
}

static void hw_write(int reg, uint32_t v) { pwrite(fd, &v, 4, reg); }

// device is the hardware: it reacts to CTRL writes.
static void *device(void *arg)
{
	hw_write(ID, 0x5a5a0001);
	while (!stop) {
		uint32_t ctrl = hw_read(CTRL);
		if (ctrl & CTRL_RESET) {
			hw_write(CTRL, 0);
			hw_write(STATUS, STATUS_READY);
		} else if (ctrl & CTRL_GO) {
			uint32_t x = hw_read(DATA);
			hw_write(DATA, x * x);
			hw_write(CTRL, 0);
			hw_write(STATUS, STATUS_READY | STATUS_DONE);
		} else {
			sched_yield();
		}
	}
	return NULL;
}

// The driver's register accessors: plain volatile 32-bit loads and stores,
// as a UIO or VFIO driver makes them.
static volatile uint32_t *regs;
static uint32_t readl(int reg) { return regs[reg / 4]; }
static void writel(uint32_t v, int reg) { regs[reg / 4] = v; }

int main(void)
{
	char name[64];
	snprintf(name, sizeof name, "/dev/shm/mmiotrace-example-%d", getpid());
	fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) {
		perror(name);
		return 1;
	}
	pthread_t dev;
	hw_write(ID, 0x5a5a0001);
	pthread_create(&dev, NULL, device, NULL);

	regs = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (regs == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	printf("device id %#x\n", readl(ID));
	writel(CTRL_RESET, CTRL);
	while (!(readl(STATUS) & STATUS_READY))
		sched_yield();
	for (uint32_t x = 1; x <= 4; x++) {
		writel(x, DATA);
		writel(CTRL_GO, CTRL);
		while (!(readl(STATUS) & STATUS_DONE))
			sched_yield();
		printf("%u squared is %u\n", x, readl(DATA));
		writel(STATUS_READY, STATUS); // acknowledge DONE
	}
	munmap((void *)regs, 4096);
	stop = 1;
	pthread_join(dev, NULL);
	unlink(name);
	return 0;
}
