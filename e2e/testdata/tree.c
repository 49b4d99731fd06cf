// tree.c: process trees that touch a shared /dev/shm file, for following
// children. Every access through the mapping is made by a volatile load or
// store of 1, 2, 4 or 8 bytes (one mov) and appended to LOG as
// "PID TID R|W WIDTH OFFSET BYTES" (bytes in memory order, hex) with one
// write(2) on an O_APPEND descriptor, so that the lines of all processes
// interleave whole.
//
// Usage: tree MODE LOG SHM [ARG]
//
//	driver   map SHM, then two threads make accesses
//	fork     accesses, fork: the child (with a thread) makes accesses in
//	         the inherited mapping, then the parent again
//	vfork    accesses, then vfork and exec "tree driver"
//	spawn    accesses, then posix_spawn "tree driver"
//	grand    fork a child that forks a grandchild; both make accesses
//	chain N  exec "tree chain N-1" until N is 0, then be the driver; each
//	         image maps SHM and makes accesses
//	server   fork 4 workers that make accesses in the inherited mapping
//	mtfork   a thread makes accesses while the main thread forks 3 children
//	         that make accesses
//	serve    (attach tests) map SHM, print "PID ADDR", then serve stdin:
//	         "fork" forks a worker that makes accesses and waits for
//	         "go" on a pipe to make more; "go" releases the workers; "quit"
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE 0x2000

extern char **environ;
static int logfd;
static volatile uint8_t *bar;
static const char *self, *logpath, *shm;

static void logacc(char dir, int width, unsigned long off, const void *val)
{
	char line[128];
	const uint8_t *v = val;
	int n = snprintf(line, sizeof line, "%d %d %c %d %lx ", getpid(), gettid(), dir, width, off);
	for (int i = 0; i < width; i++)
		n += snprintf(line + n, sizeof line - n, "%02x", v[i]);
	line[n++] = '\n';
	if (write(logfd, line, n) != n)
		_exit(20);
}

static void map(void)
{
	int fd = open(shm, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, SIZE) < 0)
		_exit(10);
	bar = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (bar == MAP_FAILED)
		_exit(11);
	close(fd);
}

// accesses makes stores and loads of every width at offsets of its own
// (base), with values that say who made them (seed).
static void accesses(unsigned long base, uint64_t seed)
{
	for (int i = 0; i < 4; i++) {
		unsigned long off = base + 16 * i;
		uint8_t v1 = seed + i;
		uint16_t v2 = seed * 3 + i;
		uint32_t v4 = seed * 0x10001 + i;
		uint64_t v8 = seed * 0x100000001ull + i;
		*(volatile uint8_t *)(bar + off) = v1;
		logacc('W', 1, off, &v1);
		*(volatile uint16_t *)(bar + off + 2) = v2;
		logacc('W', 2, off + 2, &v2);
		*(volatile uint32_t *)(bar + off + 4) = v4;
		logacc('W', 4, off + 4, &v4);
		*(volatile uint64_t *)(bar + off + 8) = v8;
		logacc('W', 8, off + 8, &v8);
		uint8_t r1 = *(volatile uint8_t *)(bar + off);
		logacc('R', 1, off, &r1);
		uint32_t r4 = *(volatile uint32_t *)(bar + off + 4);
		logacc('R', 4, off + 4, &r4);
		uint64_t r8 = *(volatile uint64_t *)(bar + off + 8);
		logacc('R', 8, off + 8, &r8);
	}
}

// slot gives each process and thread its own part of the file, so that the
// values read are the ones it wrote.
static unsigned long slot(void) { return (unsigned long)(gettid() % 120) * 64; }

static void *thread_main(void *arg)
{
	(void)arg;
	accesses(slot(), gettid());
	return NULL;
}

static void *busy_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < 20; i++)
		accesses(slot(), gettid() + i);
	return NULL;
}

static void two_threads(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, thread_main, NULL))
		_exit(12);
	accesses(slot(), getpid());
	pthread_join(th, NULL);
}

static void waitall(void)
{
	int st;
	while (wait(&st) > 0)
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			_exit(13);
}

static void run(char *mode, char **argv);

static void exec_self(const char *mode, const char *arg)
{
	execl(self, self, mode, logpath, shm, arg, (char *)NULL);
	_exit(14);
}

static void run(char *mode, char **argv)
{
	if (!strcmp(mode, "driver")) {
		map();
		two_threads();
	} else if (!strcmp(mode, "fork")) {
		map();
		accesses(slot(), 1);
		pid_t c = fork();
		if (c == 0) {
			two_threads();
			_exit(0);
		}
		waitall();
		accesses(slot() + 32, 2);
	} else if (!strcmp(mode, "vfork")) {
		map();
		accesses(slot(), 3);
		pid_t c = vfork();
		if (c == 0)
			exec_self("driver", NULL);
		waitall();
		accesses(slot() + 32, 4);
	} else if (!strcmp(mode, "spawn")) {
		map();
		accesses(slot(), 5);
		char *args[] = {(char *)self, "driver", (char *)logpath, (char *)shm, NULL};
		pid_t c;
		if (posix_spawn(&c, self, NULL, NULL, args, environ))
			_exit(15);
		waitall();
		accesses(slot() + 32, 6);
	} else if (!strcmp(mode, "grand")) {
		map();
		if (fork() == 0) {
			accesses(slot(), 7);
			if (fork() == 0) {
				two_threads();
				_exit(0);
			}
			waitall();
			_exit(0);
		}
		waitall();
	} else if (!strcmp(mode, "chain")) {
		int n = atoi(argv[0]);
		map();
		accesses(slot(), 8 + n);
		if (n > 0) {
			char next[16];
			snprintf(next, sizeof next, "%d", n - 1);
			exec_self("chain", next);
		}
		two_threads();
	} else if (!strcmp(mode, "server")) {
		map();
		for (int i = 0; i < 4; i++)
			if (fork() == 0) {
				two_threads();
				_exit(0);
			}
		waitall();
	} else if (!strcmp(mode, "mtfork")) {
		map();
		pthread_t th;
		if (pthread_create(&th, NULL, busy_main, NULL))
			_exit(12);
		for (int i = 0; i < 3; i++) {
			if (fork() == 0) {
				two_threads();
				_exit(0);
			}
			waitall();
		}
		pthread_join(th, NULL);
	} else if (!strcmp(mode, "serve")) {
		map();
		int go[2];
		if (pipe(go))
			_exit(16);
		printf("%d %#lx\n", getpid(), (unsigned long)bar);
		fflush(stdout);
		char cmd[64];
		while (fgets(cmd, sizeof cmd, stdin)) {
			if (!strncmp(cmd, "fork", 4)) {
				pid_t c = fork();
				if (c == 0) {
					accesses(slot(), 9);
					char b;
					if (read(go[0], &b, 1) != 1)
						_exit(17);
					accesses(slot() + 32, 10);
					_exit(0);
				}
				// answer once the worker's first accesses are made:
				// its log lines end with its tid's last R.
				usleep(1);
				printf("%d\n", c);
			} else if (!strncmp(cmd, "go", 2)) {
				int n = atoi(cmd + 3);
				for (int i = 0; i < n; i++)
					if (write(go[1], "g", 1) != 1)
						_exit(18);
				waitall();
				printf("done\n");
			} else if (!strncmp(cmd, "quit", 4)) {
				break;
			}
			fflush(stdout);
		}
	} else {
		_exit(2);
	}
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	self = "/proc/self/exe";
	logpath = argv[2];
	shm = argv[3];
	logfd = open(logpath, O_WRONLY | O_APPEND | O_CREAT, 0600);
	if (logfd < 0)
		return 3;
	char buf[4096];
	ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
	if (n > 0) {
		buf[n] = 0;
		self = strdup(buf);
	}
	run(argv[1], argv + 4);
	return 0;
}
