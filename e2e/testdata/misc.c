// misc.c: small programs for exit status, signal and --range tests.
//
// Usage:
//
//	misc exit N SHM      map SHM, store to it, exit with status N
//	misc signal N SHM    map SHM, store to it, die of signal N
//	misc segv SHM        map SHM read-only; load from it, then make two
//	                     faults of its own (a store to the read-only
//	                     mapping, a load from an unmapped address), caught
//	                     by a SIGSEGV handler; print what the handler saw
//	misc fixed           map anonymous memory at 0x200000000 (two pages),
//	                     store and load in both pages, print the values
//	misc unlinked SHM    create SHM, unlink it, then map it, store to it and
//	                     load back, print the value
#define _GNU_SOURCE
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static volatile uint32_t *mapshm(const char *name, int prot)
{
	int fd = open(name, O_RDWR | O_CREAT, 0600);
	if (fd < 0 || ftruncate(fd, 4096) < 0) {
		perror(name);
		exit(2);
	}
	void *p = mmap(NULL, 4096, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

static sigjmp_buf env;
static volatile void *faultaddr;
static volatile int faultcode;

static void onsegv(int sig, siginfo_t *si, void *uc)
{
	faultaddr = si->si_addr;
	faultcode = si->si_code;
	siglongjmp(env, 1);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "exit")) {
		volatile uint32_t *p = mapshm(argv[3], PROT_READ | PROT_WRITE);
		p[1] = 0x77;
		return atoi(argv[2]);
	}
	if (argc == 4 && !strcmp(argv[1], "signal")) {
		volatile uint32_t *p = mapshm(argv[3], PROT_READ | PROT_WRITE);
		p[1] = 0x78;
		signal(atoi(argv[2]), SIG_DFL);
		raise(atoi(argv[2]));
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "segv")) {
		volatile uint32_t *p = mapshm(argv[2], PROT_READ);
		struct sigaction sa = {0};
		sa.sa_sigaction = onsegv;
		sa.sa_flags = SA_SIGINFO | SA_NODEFER;
		sigaction(SIGSEGV, &sa, NULL);
		printf("load %x\n", p[2]);
		if (!sigsetjmp(env, 1)) {
			p[3] = 1;
			printf("store to read-only: no fault\n");
		} else {
			printf("store to read-only: fault at +%ld code %d\n", (long)((char *)faultaddr - (char *)p), faultcode);
		}
		if (!sigsetjmp(env, 1)) {
			printf("unmapped: no fault %x\n", *(volatile int *)16);
		} else {
			printf("unmapped: fault at %p code %d\n", faultaddr, faultcode);
		}
		printf("load %x\n", p[2]);
		return 0;
	}
	if (argc == 3 && !strcmp(argv[1], "unlinked")) {
		int fd = open(argv[2], O_RDWR | O_CREAT, 0600);
		if (fd < 0 || unlink(argv[2]) < 0 || ftruncate(fd, 4096) < 0) {
			perror(argv[2]);
			return 2;
		}
		volatile uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 2;
		}
		p[3] = 0x5eed;
		printf("value %#x\n", p[3]);
		return 0;
	}
	if (argc == 2 && !strcmp(argv[1], "fixed")) {
		volatile uint8_t *m = mmap((void *)0x200000000, 8192, PROT_READ | PROT_WRITE,
					   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		if (m != (void *)0x200000000) {
			perror("mmap fixed");
			return 2;
		}
		*(volatile uint32_t *)(m + 0x10) = 0x11223344;
		*(volatile uint64_t *)(m + 0x1010) = 0x5566778899aabbccULL;
		printf("%x %lx\n", *(volatile uint32_t *)(m + 0x10), *(volatile uint64_t *)(m + 0x1010));
		return 0;
	}
	fprintf(stderr, "usage: see misc.c\n");
	return 2;
}
