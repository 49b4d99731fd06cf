/* Maps a page, prints its address, then loops: pause() until a signal,
 * reading the page each time, so the test can inject system calls into it
 * both at a signal stop and inside a blocking system call. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
static void on_usr1(int s) { (void)s; }
int main(void) {
	signal(SIGUSR1, on_usr1);
	volatile uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	p[0] = 0x1234;
	printf("%p\n", (void *)p);
	fflush(stdout);
	for (;;) {
		pause();
		if (p[0] == 0xdead) return 42;
	}
}
