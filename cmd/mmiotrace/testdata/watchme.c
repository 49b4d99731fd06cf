/* Globals written and read with plain movs by the main thread and by a
 * thread created later, for comparing watch backends. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
volatile uint32_t counter;
volatile uint8_t flag8;
volatile uint64_t wide;
static void *thr(void *a) {
	(void)a;
	for (int i = 0; i < 50; i++) counter += 100;
	return 0;
}
int main(void) {
	for (int i = 0; i < 100; i++) counter = i;
	uint32_t s = counter;
	flag8 = 7;
	for (uint64_t i = 0; i < 20; i++) wide = i << 40;
	pthread_t t;
	pthread_create(&t, 0, thr, 0);
	pthread_join(t, 0);
	printf("%u %u %u\n", s, counter, flag8);
	return 0;
}
