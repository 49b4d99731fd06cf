// ptrace.c: the cost of one ptrace stop and resume, the floor for any
// ptrace-based tracer. The child raises int3 N times; the parent waits for
// each SIGTRAP stop and resumes it with PTRACE_CONT. Prints ns per round
// trip.
//
// Usage: ptrace N
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	pid_t pid = fork();
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		for (long i = 0; i < n; i++)
			asm volatile("int3");
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0); // the SIGSTOP
	ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_EXITKILL);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	ptrace(PTRACE_CONT, pid, 0, 0);
	long stops = 0;
	for (;;) {
		waitpid(pid, &st, 0);
		if (!WIFSTOPPED(st))
			break;
		stops++;
		ptrace(PTRACE_CONT, pid, 0, 0);
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (stops != n) {
		fprintf(stderr, "ptrace: %ld stops, want %ld\n", stops, n);
		return 1;
	}
	printf("%.1f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n);
	return 0;
}
