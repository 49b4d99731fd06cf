// Fixture for the hwbp tests: stores to a global in a loop. It prints the
// addresses the tests need, stops itself, and after being continued stores
// 1..N to counter (N from argv[1]) with one instruction whose end is the
// global label after_store, where a write watchpoint's trap must leave RIP.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

volatile long counter;
volatile long untouched;
volatile int other;
extern char after_store[];

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 3;
	printf("%p %p %p %p\n", (void *)&counter, (void *)&untouched, (void *)&other, (void *)after_store);
	fflush(stdout);
	raise(SIGSTOP);
	for (long i = 1; i <= n; i++) {
		__asm__ volatile("movq %1, %0\n\t.globl after_store\nafter_store:" : "=m"(counter) : "r"(i) : "memory");
		other = (int)i;
	}
	return 0;
}
