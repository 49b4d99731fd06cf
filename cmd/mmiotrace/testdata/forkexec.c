/* Maps a shared file and stores to it, forks a child that stores to the
 * same mapping (the child is not traced, and must not die of the parent's
 * armed pages), then executes itself, whose new image maps the file again
 * and stores once more. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile uint32_t *map(const char *path) {
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) _exit(10);
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) _exit(11);
	return p;
}

int main(int argc, char **argv) {
	volatile uint32_t *p = map(argv[1]);
	if (argc > 2) { /* the executed image */
		p[2] = 0x33;
		return p[1] == 0x22 ? 0 : 12;
	}
	p[0] = 0x11;
	pid_t c = fork();
	if (c == 0) {
		p[1] = 0x22; /* untraced, but must work */
		_exit(p[1] == 0x22 ? 0 : 13);
	}
	int st;
	waitpid(c, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return 14;
	execl("/proc/self/exe", argv[0], argv[1], "again", (char *)NULL);
	return 15;
}
