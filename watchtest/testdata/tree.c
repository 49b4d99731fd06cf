/* tree.c: watch fixture for process trees and system calls. `counter`
 * shares a page with `msg`, a buffer the program hands to system calls.
 * Every access to counter is made with inline asm and appended to $WT_LOG
 * as "tid R|W width addr value", with one write(2) on an O_APPEND
 * descriptor so that the lines of all processes interleave whole.
 *
 * Modes (argv[1]):
 *   server N   N forked workers update counter; the parent before and after
 *   exec       children execute /bin/true twice (no counter there), then
 *              this program again as "worker", which updates counter
 *   worker     updates counter
 *   write      writes msg to stdout with write(2) and reads it back from a
 *              pipe with read(2), updating counter between the calls
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct page {
	volatile uint64_t counter;
	char msg[4000];
} shared __attribute__((aligned(4096)));

static int logfd = -1;

static void logacc(char dir, int width, volatile void *addr, uint64_t v)
{
	char line[128];
	int n = snprintf(line, sizeof line, "%d %c %d 0x%lx 0x%lx\n", gettid(), dir, width,
			 (unsigned long)(uintptr_t)addr, (unsigned long)v);
	if (logfd >= 0 && write(logfd, line, n) != n)
		_exit(20);
}

static void st8(volatile void *p, uint64_t v) { __asm__ volatile("movq %1, %0" : "=m"(*(volatile uint64_t *)p) : "r"(v)); logacc('W', 8, p, v); }
static uint64_t ld8(volatile void *p) { uint64_t v; __asm__ volatile("movq %1, %0" : "=r"(v) : "m"(*(volatile uint64_t *)p)); logacc('R', 8, p, v); return v; }

static void bump(int n)
{
	for (int i = 0; i < n; i++)
		st8(&shared.counter, ld8(&shared.counter) + 1);
}

static void waitall(void)
{
	int st;
	while (wait(&st) > 0)
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			_exit(13);
}

int main(int argc, char **argv)
{
	const char *log = getenv("WT_LOG");
	if (log)
		logfd = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "server")) {
		int n = argc > 2 ? atoi(argv[2]) : 4;
		bump(1);
		for (int i = 0; i < n; i++)
			if (fork() == 0) {
				bump(3);
				_exit(0);
			}
		waitall();
		bump(1);
	} else if (!strcmp(argv[1], "exec")) {
		bump(1);
		for (int i = 0; i < 2; i++) {
			if (fork() == 0) {
				execl("/bin/true", "true", (char *)NULL);
				_exit(14);
			}
			waitall();
		}
		if (fork() == 0) {
			execl("/proc/self/exe", argv[0], "worker", (char *)NULL);
			_exit(15);
		}
		waitall();
	} else if (!strcmp(argv[1], "worker")) {
		bump(2);
	} else if (!strcmp(argv[1], "write")) {
		int p[2];
		if (pipe(p))
			return 16;
		for (int i = 0; i < 3; i++) {
			bump(1);
			uint64_t v = ld8(&shared.counter);
			int n = snprintf(shared.msg, sizeof shared.msg, "line %d: counter %lu\n", i, (unsigned long)v);
			if (write(1, shared.msg, n) != n || write(p[1], shared.msg, n) != n)
				return 17;
			memset(shared.msg, 0, sizeof shared.msg);
			bump(1);
			if (read(p[0], shared.msg, sizeof shared.msg) != n)
				return 18;
			if (write(1, shared.msg, n) != n)
				return 19;
		}
	} else {
		return 2;
	}
	return 0;
}
