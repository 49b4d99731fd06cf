// sysproc.c: the program recorded into sysproc.log, a golden input of
// trace/decode and trace/report with SYS and PROC records. It drives the
// simulated device of examples/device (regmap/testdata/device.regs) in a
// /dev/shm file, hands parts of the mapping to write(2) and read(2) on a
// pipe, from two threads, then forks a child that does the same and
// executes this program again ("child" mode), which maps the file anew.
//
// Recorded so (docs/REPORT.md, "Golden files"):
//
//	gcc -O1 -g -pthread -o /tmp/sysproc sysproc.c
//	mmiotrace record --map '/dev/shm/sysproc-*' -o sysproc.log -- /tmp/sysproc /dev/shm/sysproc-dev
//
// then the paths of CODE and PROC lines renamed to /nonexistent/..., so
// that PCs are named by file and offset on any machine.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE 0x1000
#define REG(off) (*(volatile uint32_t *)(bar + (off)))

static uint8_t *bar;
static int pp[2];

static void map(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0)
		_exit(10);
	bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED)
		_exit(11);
	close(fd);
}

// through sends n bytes at src of the mapping through the pipe (the kernel
// reads them) and back into dst (the kernel writes them).
static void through(unsigned src, unsigned dst, size_t n)
{
	if (write(pp[1], bar + src, n) != (ssize_t)n)
		_exit(12);
	if (read(pp[0], bar + dst, n) != (ssize_t)n)
		_exit(13);
}

// operate runs one operation of the device: DATA, CTRL, the doorbell, then
// STATUS and RESULT are read back.
static void operate(uint32_t data)
{
	REG(0x08) = data;
	REG(0x04) = 1 | 2 << 1; // EN, MODE=FAST
	REG(0x0c) = 1;          // RING
	REG(0x10) = 1;          // the device's answer: DONE
	REG(0x14) = data * 3 + 1;
	if (!(REG(0x10) & 1))
		_exit(14);
	if (REG(0x14) != data * 3 + 1)
		_exit(15);
}

static void *thread_main(void *arg)
{
	(void)arg;
	operate(7);
	through(0x10, 0x210, 8); // STATUS..RESULT, into no register
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2 || pipe(pp) < 0)
		return 2;
	map(argv[1]);
	if (argc > 2 && !strcmp(argv[2], "child")) {
		operate(42);
		through(0x04, 0x08, 4); // CTRL into DATA
		return 0;
	}
	REG(0x00) = 0x4f494d4d; // ID: "MMIO"
	for (int i = 0; i < 4; i++)
		*(volatile uint64_t *)(bar + 0x100 + 0x10 * i) = 0x10001ull * (i + 1);
	operate(5);
	through(0x100, 0x140, 0x40); // QUEUE[0]..QUEUE[3] into the space after
	through(0x06, 0x200, 6);     // CTRL+2..DATA: registers cut
	pthread_t th;
	if (pthread_create(&th, NULL, thread_main, NULL) || pthread_join(th, NULL))
		return 3;
	pid_t c = fork();
	if (c < 0)
		return 4;
	if (c == 0) {
		operate(9);
		through(0x00, 0x08, 4); // ID into DATA
		execl("/proc/self/exe", argv[0], argv[1], "child", (char *)NULL);
		_exit(16);
	}
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 5;
	operate(11);
	munmap(bar, SIZE);
	return 0;
}
