// sysmatrix.c: system calls given buffers in a traced mapping. Every call
// prints its result (return value, errno, the bytes it wrote) on stdout,
// which must be the same traced and untraced; the kernel's accesses it
// expects mmiotrace to log go to EXPECT as "TID name R|W OFFSET LEN" lines.
// Hammer threads load and store the same pages all along.
//
// Usage: sysmatrix SHM|anon DIR EXPECT [wait]
//
// SHM is mapped shared (four pages); "anon" maps private anonymous memory
// at ANON instead. DIR is a scratch directory. With "wait", it prints its
// pid and the mapping's address, and waits for a line on stdin before the
// calls (for attaching).
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/random.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SIZE 0x4000
#define ANON 0x200000000000ul

static uint8_t *bar; // the traced mapping
static FILE *expect;
static volatile int stop;
static const char *dir;

// The hammers' words, on pages the calls use too.
#define HAMMER0 0xf00
#define HAMMER3 0x3f00

static void want(const char *name, const char *dir, const void *p, size_t n)
{
	fprintf(expect, "%d %s %s %lx %zx\n", gettid(), name, dir, (unsigned long)((const uint8_t *)p - bar), n);
}

static void show(const char *name, long ret, const void *data, size_t n)
{
	int e = ret < 0 ? errno : 0;
	printf("%s: %ld errno %d", name, ret, e);
	if (n) {
		printf(" data ");
		for (size_t i = 0; i < n; i++)
			printf("%02x", ((const uint8_t *)data)[i]);
	}
	printf("\n");
	fflush(stdout);
}

static void *hammer(void *arg)
{
	volatile uint64_t *w = (volatile uint64_t *)(bar + (uintptr_t)arg);
	uint64_t n = 0;
	while (!stop) {
		w[0] = ++n;
		if (w[0] != n)
			abort();
		sched_yield();
	}
	return NULL;
}

static void fill(uint8_t *p, size_t n, int seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed + 7 * i);
}

static int tmpfile_in(const char *name)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		perror(path);
		exit(2);
	}
	return fd;
}

// A thread that waits on a futex word in the mapping.
static void *waiter(void *arg)
{
	uint32_t *word = arg;
	want("futex", "R", word, 4);
	long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	show("futex wait (woken)", r, NULL, 0);
	return NULL;
}

// A thread that writes to a pipe after a while, for a blocking read.
static void *late_writer(void *arg)
{
	int fd = (intptr_t)arg;
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	if (write(fd, "late data", 9) != 9)
		abort();
	return NULL;
}

// Each call is made with syscall(2), so that its name is known; the
// offsets in the mapping never overlap.
static void calls(void)
{
	int p[2];
	char tmp[256];
	long r;
	uint8_t *B = bar;

	// write and read through a pipe
	if (pipe(p))
		exit(2);
	fill(B + 0x100, 100, 1);
	want("write", "R", B + 0x100, 100);
	r = syscall(SYS_write, p[1], B + 0x100, 100);
	show("write", r, NULL, 0);
	memset(tmp, 0, sizeof tmp);
	r = read(p[0], tmp, sizeof tmp);
	show("read back", r, tmp, r > 0 ? r : 0);
	fill((uint8_t *)tmp, 64, 2);
	if (write(p[1], tmp, 64) != 64)
		exit(2);
	memset(B + 0x200, 0xee, 128);
	want("read", "W", B + 0x200, 64);
	r = syscall(SYS_read, p[0], B + 0x200, 128);
	show("read", r, B + 0x200, 128);

	// a read that fails: EBADF, nothing written
	r = syscall(SYS_read, -1, B + 0x200, 16);
	show("read EBADF", r, B + 0x200, 16);

	// pwrite and pread on a file
	int fd = tmpfile_in("pfile");
	fill(B + 0x300, 200, 3);
	want("pwrite64", "R", B + 0x300, 200);
	r = syscall(SYS_pwrite64, fd, B + 0x300, 200, 10);
	show("pwrite", r, NULL, 0);
	memset(B + 0x400, 0, 300);
	want("pread64", "W", B + 0x400, 150);
	r = syscall(SYS_pread64, fd, B + 0x400, 300, 60);
	show("pread (short)", r, B + 0x400, 300);

	// writev and readv: the iovec array in the mapping, one buffer in
	// it, one on the stack
	struct iovec *iov = (struct iovec *)(B + 0x600);
	fill(B + 0x640, 45, 4);
	fill((uint8_t *)tmp, 25, 5);
	iov[0] = (struct iovec){B + 0x640, 45};
	iov[1] = (struct iovec){tmp, 25};
	want("writev", "R", iov, 32);
	want("writev", "R", B + 0x640, 45);
	r = syscall(SYS_writev, p[1], iov, 2);
	show("writev", r, NULL, 0);
	memset(B + 0x640, 0, 45);
	memset(tmp, 0, 25);
	iov[0] = (struct iovec){tmp, 25};
	iov[1] = (struct iovec){B + 0x640, 45};
	want("readv", "R", iov, 32);
	want("readv", "W", B + 0x640, 45);
	r = syscall(SYS_readv, p[0], iov, 2);
	show("readv", r, B + 0x640, 45);
	show("readv stack", r, tmp, 25);

	// preadv2 and pwritev2
	iov = (struct iovec *)(B + 0x6c0);
	iov[0] = (struct iovec){B + 0x700, 33};
	fill(B + 0x700, 33, 6);
	want("pwritev2", "R", iov, 16);
	want("pwritev2", "R", B + 0x700, 33);
	r = syscall(SYS_pwritev2, fd, iov, 1, 500, 0, 0);
	show("pwritev2", r, NULL, 0);
	memset(B + 0x700, 0, 33);
	want("preadv2", "R", iov, 16);
	want("preadv2", "W", B + 0x700, 33);
	r = syscall(SYS_preadv2, fd, iov, 1, 500, 0, 0);
	show("preadv2", r, B + 0x700, 33);

	// sendto and recvfrom on a stream socket pair; sendmsg and recvmsg
	// with the header, the data and an SCM_RIGHTS control message in the
	// mapping
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		exit(2);
	fill(B + 0x800, 77, 7);
	want("sendto", "R", B + 0x800, 77);
	r = syscall(SYS_sendto, sv[0], B + 0x800, 77, 0, NULL, 0);
	show("sendto", r, NULL, 0);
	memset(B + 0x880, 0, 100);
	want("recvfrom", "W", B + 0x880, 77);
	r = syscall(SYS_recvfrom, sv[1], B + 0x880, 100, 0, NULL, NULL);
	show("recvfrom", r, B + 0x880, 100);

	struct msghdr *mh = (struct msghdr *)(B + 0x900);
	struct iovec *miov = (struct iovec *)(B + 0x940);
	uint8_t *ctl = B + 0x960, *data = B + 0x9c0;
	memset(mh, 0, sizeof *mh);
	fill(data, 50, 8);
	miov[0] = (struct iovec){data, 50};
	mh->msg_iov = miov;
	mh->msg_iovlen = 1;
	mh->msg_control = ctl;
	mh->msg_controllen = CMSG_SPACE(sizeof(int));
	struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof fd);
	want("sendmsg", "R", mh, sizeof *mh);
	want("sendmsg", "R", miov, 16);
	want("sendmsg", "R", data, 50);
	want("sendmsg", "R", ctl, CMSG_SPACE(sizeof(int)));
	r = syscall(SYS_sendmsg, sv[0], mh, 0);
	show("sendmsg", r, NULL, 0);
	memset(data, 0, 60);
	memset(ctl, 0, 64);
	miov[0] = (struct iovec){data, 60};
	mh->msg_control = ctl;
	mh->msg_controllen = 64;
	want("recvmsg", "R", mh, sizeof *mh);
	want("recvmsg", "R", miov, 16);
	want("recvmsg", "W", &mh->msg_namelen, 4);
	want("recvmsg", "W", &mh->msg_controllen, 8);
	want("recvmsg", "W", &mh->msg_flags, 4);
	want("recvmsg", "W", data, 50);
	want("recvmsg", "W", ctl, CMSG_SPACE(sizeof(int)));
	r = syscall(SYS_recvmsg, sv[1], mh, 0);
	show("recvmsg", r, data, 60);
	show("recvmsg control", r, ctl, 64 - sizeof(int)); // the fd's number may differ
	cm = CMSG_FIRSTHDR(mh);
	int got = -1;
	if (cm && cm->cmsg_type == SCM_RIGHTS)
		memcpy(&got, CMSG_DATA(cm), sizeof got);
	struct stat st;
	printf("recvmsg: controllen %zu flags %d fd works %d\n", (size_t)mh->msg_controllen, mh->msg_flags,
	       got >= 0 && fstat(got, &st) == 0 && st.st_size == 533);

	// getdents64 of a directory with known files
	char sub[4096];
	snprintf(sub, sizeof sub, "%s/d", dir);
	mkdir(sub, 0700);
	for (int i = 0; i < 3; i++) {
		char f[4200];
		snprintf(f, sizeof f, "%s/file%d", sub, i);
		close(open(f, O_CREAT | O_WRONLY, 0600));
	}
	int dfd = open(sub, O_RDONLY | O_DIRECTORY);
	r = syscall(SYS_getdents64, dfd, B + 0x1000, 0x300);
	want("getdents64", "W", B + 0x1000, r > 0 ? r : 0);
	int names = 0;
	for (long off = 0; off < r;) {
		struct dirent64 *de = (struct dirent64 *)(B + 0x1000 + off);
		if (strncmp(de->d_name, "file", 4) == 0)
			names++;
		off += de->d_reclen;
	}
	printf("getdents64: positive %d, %d files\n", r > 0, names);
	close(dfd);

	// newfstatat with the path and the buffer in the mapping; fstat
	char *path = (char *)B + 0x1300;
	strcpy(path, sub);
	want("newfstatat", "R", path, strlen(sub) + 1);
	want("newfstatat", "W", B + 0x1400, sizeof(struct stat));
	r = syscall(SYS_newfstatat, AT_FDCWD, path, B + 0x1400, 0);
	show("newfstatat", r, NULL, 0);
	printf("newfstatat: dir %d\n", S_ISDIR(((struct stat *)(B + 0x1400))->st_mode));
	want("fstat", "W", B + 0x1500, sizeof(struct stat));
	r = syscall(SYS_fstat, fd, B + 0x1500);
	printf("fstat: %ld size %ld\n", r, (long)((struct stat *)(B + 0x1500))->st_size);

	// openat with the path in the mapping; readlink into it
	snprintf((char *)B + 0x1600, 256, "%s/pfile", dir);
	want("openat", "R", B + 0x1600, strlen((char *)B + 0x1600) + 1);
	int fd2 = syscall(SYS_openat, AT_FDCWD, B + 0x1600, O_RDONLY);
	printf("openat: ok %d\n", fd2 >= 0);
	char link[4096];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd2);
	memset(B + 0x1700, 0, 256);
	r = syscall(SYS_readlink, link, B + 0x1700, 256);
	want("readlink", "W", B + 0x1700, r > 0 ? r : 0);
	printf("readlink: same %d\n", r > 0 && strncmp((char *)B + 0x1700, (char *)B + 0x1600, r) == 0);

	// ioctl: a legacy request (FIONREAD) and a sized one (RNDGETENTCNT)
	if (write(p[1], "12345", 5) != 5)
		exit(2);
	int *cnt = (int *)(B + 0x1800);
	want("ioctl", "W", cnt, 4);
	r = syscall(SYS_ioctl, p[0], FIONREAD, cnt);
	show("ioctl FIONREAD", r, cnt, 4);
	int rnd = open("/dev/urandom", O_RDONLY);
	want("ioctl", "W", cnt + 1, 4);
	r = syscall(SYS_ioctl, rnd, RNDGETENTCNT, cnt + 1);
	printf("ioctl RNDGETENTCNT: %ld positive %d\n", r, cnt[1] > 0);
	if (read(p[0], tmp, 5) != 5)
		exit(2);

	// poll and epoll_wait with their arrays in the mapping
	struct pollfd *pfd = (struct pollfd *)(B + 0x1840);
	pfd[0] = (struct pollfd){.fd = p[0], .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = p[1], .events = POLLOUT};
	want("poll", "R", pfd, 16);
	want("poll", "W", pfd, 16);
	r = syscall(SYS_poll, pfd, 2, 0);
	show("poll", r, pfd, 16);
	int ep = epoll_create1(0);
	struct epoll_event *ev = (struct epoll_event *)(B + 0x1880);
	ev->events = EPOLLOUT;
	ev->data.u64 = 0x1122334455667788ull;
	want("epoll_ctl", "R", ev, sizeof *ev);
	r = syscall(SYS_epoll_ctl, ep, EPOLL_CTL_ADD, p[1], ev);
	show("epoll_ctl", r, NULL, 0);
	memset(ev, 0, 4 * sizeof *ev);
	want("epoll_wait", "W", ev, sizeof *ev);
	r = syscall(SYS_epoll_wait, ep, ev, 4, 0);
	show("epoll_wait", r, ev, 4 * sizeof *ev);

	// nanosleep with its request in the mapping
	struct timespec *ts = (struct timespec *)(B + 0x1900);
	*ts = (struct timespec){0, 1000 * 1000};
	want("nanosleep", "R", ts, 16);
	r = syscall(SYS_nanosleep, ts, NULL);
	show("nanosleep", r, NULL, 0);

	// sched_getattr, which the table does not know: the page its buffer
	// is on is disarmed for it, with the other threads stopped
	memset(B + 0x2000, 0, 56);
	want("syscall_315", "RW", B + 0x2000, 4096);
	r = syscall(315, 0, B + 0x2000, 56, 0);
	show("sched_getattr", r, B + 0x2000, 12);

	// futex: a wait that fails (EAGAIN), one that times out, one woken
	uint32_t *word = (uint32_t *)(B + 0x3000);
	*word = 1;
	want("futex", "R", word, 4);
	r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
	show("futex wait EAGAIN", r, NULL, 0);
	struct timespec to = {0, 10 * 1000 * 1000};
	want("futex", "R", word, 4);
	r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 1, &to, NULL, 0);
	show("futex wait ETIMEDOUT", r, NULL, 0);
	*word = 0;
	pthread_t w;
	pthread_create(&w, NULL, waiter, word);
	// Wake until the waiter was woken (it may not be waiting yet).
	struct timespec d = {0, 5 * 1000 * 1000};
	do {
		nanosleep(&d, NULL);
		r = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	} while (r == 0);
	pthread_join(w, NULL);
	printf("futex wake: %ld\n", r);

	// a blocking read into the mapping, written by another thread later
	pthread_t lw;
	pthread_create(&lw, NULL, late_writer, (void *)(intptr_t)p[1]);
	memset(B + 0x3100, 0, 16);
	want("read", "W", B + 0x3100, 9);
	r = syscall(SYS_read, p[0], B + 0x3100, 16);
	show("blocking read", r, B + 0x3100, 16);
	pthread_join(lw, NULL);

	// buffers that run off the mapping's end into unmapped memory
	want("write", "R", B + SIZE - 8, 8);
	r = syscall(SYS_write, p[1], B + SIZE - 8, 16);
	show("write off the end", r, NULL, 0);
	if (write(p[1], "0123456789abcdef", 16) != 16)
		exit(2);
	memset(B + SIZE - 8, 0, 8);
	// Run exposed (the buffer runs out of the traced pages into memory
	// the kernel cannot write): it fails as untraced, having written half.
	r = syscall(SYS_read, p[0], B + SIZE - 8, 16);
	show("read off the end", r, B + SIZE - 8, 8);
	r = read(p[0], tmp, sizeof tmp);
	show("read the rest", r, tmp, r > 0 ? r : 0);
	close(fd);
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	dir = argv[2];
	expect = fopen(argv[3], "w");
	// One more page reserved and unmapped after the mapping, so that a
	// buffer can run off its end.
	uint8_t *area;
	if (!strcmp(argv[1], "anon")) {
		area = mmap((void *)ANON, SIZE + 0x1000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		bar = mmap(area, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	} else {
		int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, SIZE) < 0)
			return 2;
		area = mmap(NULL, SIZE + 0x1000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		bar = mmap(area, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	}
	if (area == MAP_FAILED || bar == MAP_FAILED)
		return 2;
	munmap(area + SIZE, 0x1000);
	if (argc > 4) {
		printf("%d %#lx\n", getpid(), (unsigned long)bar);
		fflush(stdout);
		char line[16];
		if (!fgets(line, sizeof line, stdin))
			return 2;
	}
	pthread_t h[2];
	pthread_create(&h[0], NULL, hammer, (void *)HAMMER0);
	pthread_create(&h[1], NULL, hammer, (void *)HAMMER3);
	calls();
	stop = 1;
	pthread_join(h[0], NULL);
	pthread_join(h[1], NULL);
	fclose(expect);
	return 0;
}
