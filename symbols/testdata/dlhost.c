// Fixture for the dlopen test: prints "ready", waits for one line on stdin,
// dlopens argv[1], prints "loaded", and waits for stdin to close.
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
	char c;
	printf("ready\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0 && c != '\n')
		;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	printf("loaded\n");
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}
