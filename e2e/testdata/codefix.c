// The CODE test's program: a PIE that, given "exec", copies its
// /proc/self/maps to OUT.0 and executes itself again; then (in the new
// image) dlopens LIB, calls into it, and copies its /proc/self/maps to OUT.
// Usage: codefix LIB OUT [exec]
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void copy_maps(const char *to) {
	FILE *in = fopen("/proc/self/maps", "r"), *out = fopen(to, "w");
	if (!in || !out) {
		perror(to);
		exit(1);
	}
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		fwrite(buf, 1, n, out);
	fclose(in);
	fclose(out);
}

int main(int argc, char **argv) {
	if (argc < 3)
		return 2;
	if (argc > 3 && strcmp(argv[3], "exec") == 0) {
		char first[4096];
		snprintf(first, sizeof first, "%s.0", argv[2]);
		copy_maps(first);
		char *args[] = {argv[0], argv[1], argv[2], NULL};
		execv("/proc/self/exe", args);
		perror("execv");
		return 1;
	}
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	int (*answer)(int) = (int (*)(int))dlsym(h, "codelib_answer");
	if (!answer || answer(2) != 42) {
		fprintf(stderr, "codelib_answer: wrong\n");
		return 1;
	}
	copy_maps(argv[2]);
	return 0;
}
