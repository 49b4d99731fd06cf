// native runs single x86-64 instructions on a given register and memory
// state and reports the state after, for the differential tests of package
// x86. Protocol (little-endian, binary, on stdin/stdout):
//
//   at start it writes: u64 code address, u64 memory address, u64 FS base,
//   u64 GS base;
//   then for each case read: u8 code[16], u32 len, u32 pad, struct state,
//   u8 mem[MEMSZ]; and write: u64 status (0, or the signal that stopped the
//   instruction), struct state, u8 mem[MEMSZ].
//
// The instruction is copied to CODE and followed by an absolute jump back to
// the trampoline, which saves every register the instruction can change.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define REGION 0x40000000UL
#define CODE (REGION + 0x800)
#define MEM (REGION + 0x1000)
#define MEMSZ 1024

struct state {
	uint64_t gpr[16]; // rax rcx rdx rbx rsp rbp rsi rdi r8-r15
	uint64_t rflags;
	uint64_t k[8];
	uint8_t zmm[32][64];
};

struct state st;
uint64_t saved_rsp;
uint64_t code_ptr = CODE;
extern void run_case(void);
extern char exit_point[];

#define ST_RFLAGS 128
#define ST_K 136
#define ST_ZMM 200

__asm__(
	".text\n"
	".globl run_case\n"
	"run_case:\n"
	"push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"mov %rsp, saved_rsp(%rip)\n"
#define K(i) "kmovq st+136+8*" #i "(%rip), %k" #i "\n"
	K(0) K(1) K(2) K(3) K(4) K(5) K(6) K(7)
#define Z(i) "vmovdqu64 st+200+64*" #i "(%rip), %zmm" #i "\n"
	Z(0) Z(1) Z(2) Z(3) Z(4) Z(5) Z(6) Z(7) Z(8) Z(9) Z(10) Z(11) Z(12) Z(13) Z(14) Z(15)
	Z(16) Z(17) Z(18) Z(19) Z(20) Z(21) Z(22) Z(23) Z(24) Z(25) Z(26) Z(27) Z(28) Z(29) Z(30) Z(31)
	"pushq st+128(%rip)\n"
	"popfq\n"
	"mov st+0(%rip), %rax\n"
	"mov st+8(%rip), %rcx\n"
	"mov st+16(%rip), %rdx\n"
	"mov st+24(%rip), %rbx\n"
	"mov st+32(%rip), %rsp\n"
	"mov st+40(%rip), %rbp\n"
	"mov st+48(%rip), %rsi\n"
	"mov st+56(%rip), %rdi\n"
	"mov st+64(%rip), %r8\n"
	"mov st+72(%rip), %r9\n"
	"mov st+80(%rip), %r10\n"
	"mov st+88(%rip), %r11\n"
	"mov st+96(%rip), %r12\n"
	"mov st+104(%rip), %r13\n"
	"mov st+112(%rip), %r14\n"
	"mov st+120(%rip), %r15\n"
	"jmp *code_ptr(%rip)\n"
	".globl exit_point\n"
	"exit_point:\n"
	"mov %rax, st+0(%rip)\n"
	"mov %rcx, st+8(%rip)\n"
	"mov %rdx, st+16(%rip)\n"
	"mov %rbx, st+24(%rip)\n"
	"mov %rsp, st+32(%rip)\n"
	"mov %rbp, st+40(%rip)\n"
	"mov %rsi, st+48(%rip)\n"
	"mov %rdi, st+56(%rip)\n"
	"mov %r8, st+64(%rip)\n"
	"mov %r9, st+72(%rip)\n"
	"mov %r10, st+80(%rip)\n"
	"mov %r11, st+88(%rip)\n"
	"mov %r12, st+96(%rip)\n"
	"mov %r13, st+104(%rip)\n"
	"mov %r14, st+112(%rip)\n"
	"mov %r15, st+120(%rip)\n"
	"mov saved_rsp(%rip), %rsp\n"
	"pushfq\n"
	"popq st+128(%rip)\n"
	"cld\n"
#define KS(i) "kmovq %k" #i ", st+136+8*" #i "(%rip)\n"
	KS(0) KS(1) KS(2) KS(3) KS(4) KS(5) KS(6) KS(7)
#define ZS(i) "vmovdqu64 %zmm" #i ", st+200+64*" #i "(%rip)\n"
	ZS(0) ZS(1) ZS(2) ZS(3) ZS(4) ZS(5) ZS(6) ZS(7) ZS(8) ZS(9) ZS(10) ZS(11) ZS(12) ZS(13) ZS(14) ZS(15)
	ZS(16) ZS(17) ZS(18) ZS(19) ZS(20) ZS(21) ZS(22) ZS(23) ZS(24) ZS(25) ZS(26) ZS(27) ZS(28) ZS(29) ZS(30) ZS(31)
	"vzeroupper\n"
	"pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"ret\n");

static sigjmp_buf env;

static void onfault(int sig) { siglongjmp(env, sig); }

static void readfull(void *p, size_t n) {
	if (fread(p, 1, n, stdin) != n) {
		exit(0);
	}
}

static void writefull(const void *p, size_t n) {
	if (fwrite(p, 1, n, stdout) != n) {
		exit(1);
	}
}

int main(void) {
	uint8_t *region = mmap((void *)REGION, 0x2000, PROT_READ | PROT_WRITE | PROT_EXEC,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (region != (void *)REGION) {
		perror("mmap");
		return 1;
	}
	// GS base points below the memory buffer so GS-relative operands can
	// reach it with small displacements.
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, REGION) != 0) {
		perror("arch_prctl");
		return 1;
	}
	uint64_t fsbase, gsbase;
	syscall(SYS_arch_prctl, ARCH_GET_FS, &fsbase);
	syscall(SYS_arch_prctl, ARCH_GET_GS, &gsbase);

	static uint8_t altstack[65536];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	struct sigaction sa = {.sa_handler = onfault, .sa_flags = SA_ONSTACK | SA_NODEFER};
	sigaction(SIGSEGV, &sa, NULL);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGILL, &sa, NULL);
	sigaction(SIGFPE, &sa, NULL);

	uint64_t hdr[4] = {CODE, MEM, fsbase, gsbase};
	writefull(hdr, sizeof hdr);
	fflush(stdout);

	for (;;) {
		struct {
			uint8_t code[16];
			uint32_t len, pad;
		} in;
		readfull(&in, sizeof in);
		readfull(&st, sizeof st);
		readfull((void *)MEM, MEMSZ);
		uint8_t *code = (uint8_t *)CODE;
		memcpy(code, in.code, in.len);
		// jmp *0(%rip); .quad exit_point
		uint8_t jmp[6] = {0xff, 0x25, 0, 0, 0, 0};
		memcpy(code + in.len, jmp, 6);
		uint64_t target = (uint64_t)exit_point;
		memcpy(code + in.len + 6, &target, 8);

		uint64_t status = sigsetjmp(env, 1);
		if (status == 0) {
			run_case();
		}
		writefull(&status, sizeof status);
		writefull(&st, sizeof st);
		writefull((void *)MEM, MEMSZ);
		fflush(stdout);
	}
}
