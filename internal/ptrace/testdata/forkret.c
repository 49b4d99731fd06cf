/* forkret forks and prints what fork returned in the parent, for
 * TestInjectAtForkEvent: a syscall injected at the parent's fork event stop
 * must leave fork's return value (the child's pid) in place. */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void) {
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	printf("%d\n", (int)pid);
	fflush(stdout);
	if (pid > 0)
		waitpid(pid, NULL, 0);
	return 0;
}
