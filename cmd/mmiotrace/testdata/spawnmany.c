/* Creates threads, child processes and grandchildren in quick succession,
 * so that new tracees' first stops race their creators' clone and fork
 * events in the tracer. Exits 0 when every one of them ran. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void *nop(void *a) { return a; }

int main(void) {
	for (int i = 0; i < 30; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, nop, NULL) || pthread_join(t, NULL)) return 1;
		pid_t c = fork();
		if (c == 0) {
			pid_t g = fork();
			if (g == 0) _exit(7);
			int st;
			waitpid(g, &st, 0);
			_exit(WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 2);
		}
		int st;
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 3;
	}
	return 0;
}
