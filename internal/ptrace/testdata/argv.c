/* argv prints its arguments, one variable of its environment and which of
 * the descriptors 3 to 5 are open, for the shim's tests: the shim must pass
 * the arguments and environment through exactly and leave none of its own
 * descriptors behind. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	for (int i = 0; i < argc; i++)
		printf("%s|", argv[i]);
	const char *v = getenv("MMIOTRACE_SHIM_TEST");
	printf("%s|", v ? v : "(unset)");
	for (int fd = 3; fd <= 5; fd++)
		if (fcntl(fd, F_GETFD) != -1)
			printf("fd %d open|", fd);
	printf("\n");
	return 0;
}
