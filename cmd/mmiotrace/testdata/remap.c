/* Changes a traced mapping under the tracer: a partial munmap, mprotect
 * away and back, and mremap of the last page to a bigger mapping. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4 * 4096) < 0) return 10;
	volatile uint32_t *p = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) return 11;
	p[0] = 1;
	p[1024] = 2;
	p[2048] = 3;
	if (munmap((void *)(p + 1024), 4096)) return 12; /* the middle page */
	p[0] = 4;
	p[2048] = 5;
	if (mprotect((void *)p, 4096, PROT_READ)) return 13;
	uint32_t v = p[0];
	if (mprotect((void *)p, 4096, PROT_READ | PROT_WRITE)) return 14;
	p[0] = 6;
	volatile uint32_t *q = mremap((void *)(p + 2048), 4096, 2 * 4096, MREMAP_MAYMOVE);
	if (q == MAP_FAILED) return 15;
	q[1] = 7;
	q[1024] = 8;
	return v == 4 ? 0 : 16;
}
