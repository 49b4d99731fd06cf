// The PCIDEV test's driver: maps LEN bytes of PATH at OFFSET, shared, and
// makes a fixed set of accesses to it, one of them a 16-byte vector store.
// Usage: pcidev PATH OFFSET LEN (numbers in any base strtoull takes)
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc != 4)
		return 2;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	off_t off = (off_t)strtoull(argv[2], NULL, 0);
	size_t len = strtoull(argv[3], NULL, 0);
	volatile uint8_t *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
	if (m == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	*(volatile uint32_t *)(m + 0x10) = 0x12345678;
	uint32_t v = *(volatile uint32_t *)(m + 0x10);
	*(volatile uint64_t *)(m + 0x100) = 0x1122334455667788ULL;
	uint8_t b = m[0x3];
	uint8_t src[16];
	for (int i = 0; i < 16; i++)
		src[i] = (uint8_t)(0xa0 + i);
	asm volatile("movdqu (%1), %%xmm0; movdqu %%xmm0, (%0)" ::"r"(m + 0x40), "r"(src) : "xmm0", "memory");
	munmap((void *)m, len);
	close(fd);
	printf("read %#x %#x\n", v, b);
	return v == 0x12345678 ? 0 : 1;
}
