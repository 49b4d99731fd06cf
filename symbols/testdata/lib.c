// Shared library fixture: a global with a known value.
long libval = 0x5eed1234cafe;
int libarr[3] = {7, 8, 9};
long libget(void) { return libval + libarr[1]; }
