/* libwt.c: a shared library loaded with dlopen by fix.c; its lib_counter is
 * watched as libwt.so:lib_counter. */
#include <stdint.h>

volatile uint32_t lib_counter;

void lib_set(uint32_t v) { __asm__ volatile("movl %1, %0" : "=m"(lib_counter) : "r"(v)); }
uint32_t lib_get(void) { uint32_t v; __asm__ volatile("movl %1, %0" : "=r"(v) : "m"(lib_counter)); return v; }
