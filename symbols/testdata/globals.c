// Fixture for the symbols tests: globals with known values. It prints
// "ready" and the address of counter, then waits for stdin to close.
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int counter = 0x1234abcd;
uint64_t big[4] = {0x1111, 0x2222, 0x3333, 0x4444};
char message[] = "hello, watcher";
__attribute__((used)) static volatile int hidden = 77;
__thread int tlsvar = 5;

// An array whose ELF size is forced to 0 (built with -fno-toplevel-reorder),
// so that only DWARF knows it is 24 bytes.
long dwsize[3] = {0x5151, 0x5252, 0x5353};
__asm__(".size dwsize, 0");

// A symbol without .size, as hand-written assembly often defines them.
__asm__(".data\n.globl nosize\n.p2align 3\nnosize: .quad 0x4242424242424242\n.text\n");

int bump(int x) { return x + hidden; }

int main(void) {
	char c;
	printf("ready %p\n", (void *)&counter);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		counter = bump(counter) + tlsvar + (int)dwsize[1];
	return 0;
}
