// xstate loads known values into zmm0-31 and k0-k7, stops with int3 so that
// a tracer can read and rewrite them through NT_X86_XSTATE, then prints the
// registers as they are after the stop: 32 lines of 64 bytes in hex, then 8
// lines with the opmask registers.
#include <stdint.h>
#include <stdio.h>

uint8_t zin[32][64] __attribute__((aligned(64)));
uint8_t zout[32][64] __attribute__((aligned(64)));
uint64_t kin[8], kout[8];

int main(void) {
	for (int i = 0; i < 32; i++)
		for (int j = 0; j < 64; j++)
			zin[i][j] = (uint8_t)(i * 64 + j) ^ 0x5a;
	for (int i = 0; i < 8; i++)
		kin[i] = 0x0101010101010101ULL * (uint64_t)(i + 1);
	__asm__ volatile(
#define L(i) "vmovdqu64 zin+64*" #i "(%%rip), %%zmm" #i "\n"
		L(0) L(1) L(2) L(3) L(4) L(5) L(6) L(7) L(8) L(9) L(10) L(11) L(12) L(13) L(14) L(15)
		L(16) L(17) L(18) L(19) L(20) L(21) L(22) L(23) L(24) L(25) L(26) L(27) L(28) L(29) L(30) L(31)
#define KL(i) "kmovq kin+8*" #i "(%%rip), %%k" #i "\n"
		KL(0) KL(1) KL(2) KL(3) KL(4) KL(5) KL(6) KL(7)
		"int3\n"
#define S(i) "vmovdqu64 %%zmm" #i ", zout+64*" #i "(%%rip)\n"
		S(0) S(1) S(2) S(3) S(4) S(5) S(6) S(7) S(8) S(9) S(10) S(11) S(12) S(13) S(14) S(15)
		S(16) S(17) S(18) S(19) S(20) S(21) S(22) S(23) S(24) S(25) S(26) S(27) S(28) S(29) S(30) S(31)
#define KS(i) "kmovq %%k" #i ", kout+8*" #i "(%%rip)\n"
		KS(0) KS(1) KS(2) KS(3) KS(4) KS(5) KS(6) KS(7)
		"vzeroupper\n" ::: "memory");
	for (int i = 0; i < 32; i++) {
		for (int j = 0; j < 64; j++)
			printf("%02x", zout[i][j]);
		printf("\n");
	}
	for (int i = 0; i < 8; i++)
		printf("%016llx\n", (unsigned long long)kout[i]);
	return 0;
}
