/* A vfork child stores to a traced shared mapping before it exits: it runs
 * in its parent's memory, so its access is a hit like any thread's. */
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) return 10;
	volatile uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) return 11;
	p[0] = 1;
	pid_t c = vfork();
	if (c == 0) {
		p[3] = 0x44;
		_exit(0);
	}
	int st;
	waitpid(c, &st, 0);
	return p[3] == 0x44 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 12;
}
