/* An instruction the emulator leaves to the CPU (bsf with a memory source)
 * on a mapping of a character device (/dev/zero, MAP_SHARED): reading it
 * again to describe the access could disturb a real device, so the trace
 * must log it as UNKNOWN with its opcode bytes; an emulated load next to
 * it is logged as an R. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
	int fd = open("/dev/zero", O_RDWR);
	volatile uint64_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) return 1;
	p[1] = 0x80;
	uint64_t r;
	__asm__ volatile("bsfq 8(%1), %0" : "=r"(r) : "r"(p) : "cc", "memory");
	printf("bsf %lu load %lu\n", (unsigned long)r, (unsigned long)p[1]);
	return 0;
}
