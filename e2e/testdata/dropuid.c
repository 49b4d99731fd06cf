// dropuid.c: drops root for nobody, then maps SHM (which nobody may write)
// and hands it to write(2) and read(2). Traced by a root mmiotrace, the
// range filter cannot be installed in the program any more (no
// CAP_SYS_ADMIN, no no_new_privs): the tracer must fall back to stopping
// at every system call, and the calls must still work.
//
// Usage: dropuid SHM
#define _GNU_SOURCE
#include <fcntl.h>
#include <grp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		return 3;
	int fd = open(argv[1], O_RDWR);
	if (fd < 0)
		return 4;
	volatile uint8_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return 5;
	for (int i = 0; i < 16; i++)
		p[i] = 'a' + i;
	int pp[2];
	if (pipe(pp))
		return 6;
	if (write(pp[1], (void *)p, 16) != 16)
		return 7;
	if (read(pp[0], (void *)(p + 100), 16) != 16)
		return 8;
	if (write(1, (void *)(p + 100), 16) != 16)
		return 9;
	return 0;
}
