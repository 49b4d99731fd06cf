// exec: a stand-in for a traced program, for the differential tests of
// package optprobe. It maps, at fixed addresses, what the tracer would give
// a program: a traced object (a file mapped MAP_SHARED, PROT_NONE while
// detours run, as armed pages are), two aliases of it (one within 2 GiB,
// one far away), an untraced buffer, a stack, the ring (another shared
// file) and an identity block under GS. It then runs code the test writes
// from a register state the test gives and reports the state after.
//
// Usage: exec TRACEDFILE RINGFILE
//
// Protocol (binary, little endian) on stdin/stdout. At start it writes the
// header (struct hdr). Then commands, one byte each:
//   'M' u64 addr, u64 size: map RWX memory there (MAP_FIXED_NOREPLACE);
//       reply u64 0 or errno.
//   'W' u64 addr, u32 len, bytes: copy bytes there; reply u64 0.
//   'R' u64 entry, u32 prot (of the traced object), struct state,
//       u8 untraced[UNTRACED_SIZE]: jump to entry with the state; the code
//       must end with a jump to hdr.exit. Reply u64 status (0, or the
//       signal that stopped it), u64 RIP of that signal, struct state,
//       u8 untraced[UNTRACED_SIZE].
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define CODE 0x40000000UL
#define CODE_SIZE 0x10000UL
#define STACK_LO 0x4ff00000UL
#define TRACED 0x50000000UL
#define TRACED_SIZE 0x2000UL
#define UNTRACED 0x50010000UL
#define UNTRACED_SIZE 0x400UL
#define ALIAS_NEAR 0x58000000UL
#define ALIAS_FAR 0x500000000000UL
#define RING 0x70000000UL
#define IDENT 0x71000000UL
#define IDENT_MAGIC 0x4B4D4D49U

struct state {
	uint64_t gpr[16]; // encoding order
	uint64_t rflags;
	uint64_t k[8];
	uint8_t zmm[32][64];
};

struct hdr {
	uint64_t code, code_size, traced, traced_size, untraced, untraced_size;
	uint64_t stack_lo, stack_hi, alias_near, alias_far, ring, ident, tid, exit;
};

struct state st;
uint64_t host_rsp, entry;
extern char enter_case[], exit_case[];

// enter_case loads st and jumps to entry; exit_case stores st and returns
// to the caller of enter_case.
__asm__(".text\n"
	".globl enter_case\n"
	"enter_case:\n"
	"push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"mov %rsp, host_rsp(%rip)\n"
	".irp i,0,1,2,3,4,5,6,7\n kmovq st+136+8*\\i(%rip), %k\\i\n .endr\n"
	".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
	" vmovdqu64 st+200+64*\\i(%rip), %zmm\\i\n .endr\n"
	"pushq st+128(%rip); popfq\n"
	"mov st+8(%rip), %rcx; mov st+16(%rip), %rdx; mov st+24(%rip), %rbx\n"
	"mov st+32(%rip), %rsp; mov st+40(%rip), %rbp; mov st+48(%rip), %rsi\n"
	"mov st+56(%rip), %rdi; mov st+64(%rip), %r8; mov st+72(%rip), %r9\n"
	"mov st+80(%rip), %r10; mov st+88(%rip), %r11; mov st+96(%rip), %r12\n"
	"mov st+104(%rip), %r13; mov st+112(%rip), %r14; mov st+120(%rip), %r15\n"
	"mov st+0(%rip), %rax\n"
	"jmp *entry(%rip)\n"
	".globl exit_case\n"
	"exit_case:\n"
	"mov %rax, st+0(%rip); mov %rcx, st+8(%rip); mov %rdx, st+16(%rip)\n"
	"mov %rbx, st+24(%rip); mov %rsp, st+32(%rip); mov %rbp, st+40(%rip)\n"
	"mov %rsi, st+48(%rip); mov %rdi, st+56(%rip); mov %r8, st+64(%rip)\n"
	"mov %r9, st+72(%rip); mov %r10, st+80(%rip); mov %r11, st+88(%rip)\n"
	"mov %r12, st+96(%rip); mov %r13, st+104(%rip); mov %r14, st+112(%rip)\n"
	"mov %r15, st+120(%rip)\n"
	"mov host_rsp(%rip), %rsp\n"
	"pushfq; popq st+128(%rip)\n"
	"cld\n"
	".irp i,0,1,2,3,4,5,6,7\n kmovq %k\\i, st+136+8*\\i(%rip)\n .endr\n"
	".irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
	" vmovdqu64 %zmm\\i, st+200+64*\\i(%rip)\n .endr\n"
	"vzeroupper\n"
	"pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"ret\n");

static sigjmp_buf env;
static uint64_t fault_rip;

static void onsignal(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	fault_rip = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	siglongjmp(env, sig);
}

static void in(void *p, size_t n)
{
	if (fread(p, 1, n, stdin) != n)
		exit(0);
}

static void out(const void *p, size_t n)
{
	if (fwrite(p, 1, n, stdout) != n)
		exit(1);
}

static void reply(uint64_t v)
{
	out(&v, 8);
	fflush(stdout);
}

static void *must_map(uint64_t addr, size_t size, int prot, int flags, int fd)
{
	void *p = mmap((void *)addr, size, prot, flags | MAP_FIXED_NOREPLACE, fd, 0);
	if (p != (void *)addr) {
		perror("mmap");
		exit(2);
	}
	return p;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: exec TRACEDFILE RINGFILE\n");
		return 2;
	}
	int tfd = open(argv[1], O_RDWR), rfd = open(argv[2], O_RDWR);
	if (tfd < 0 || rfd < 0) {
		perror("open");
		return 2;
	}
	off_t rsize = lseek(rfd, 0, SEEK_END);
	must_map(CODE, CODE_SIZE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	must_map(STACK_LO, TRACED - STACK_LO, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	must_map(TRACED, TRACED_SIZE, PROT_NONE, MAP_SHARED, tfd);
	must_map(ALIAS_NEAR, TRACED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, tfd);
	must_map(ALIAS_FAR, TRACED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, tfd);
	must_map(UNTRACED, UNTRACED_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	must_map(RING, rsize, PROT_READ | PROT_WRITE, MAP_SHARED, rfd);
	uint32_t *ident = must_map(IDENT, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	ident[0] = gettid();
	ident[1] = IDENT_MAGIC;
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, IDENT) != 0) {
		perror("arch_prctl");
		return 2;
	}

	static uint8_t altstack[65536];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	struct sigaction sa = {.sa_sigaction = onsignal, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER};
	int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP};
	for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);

	struct hdr h = {CODE, CODE_SIZE, TRACED, TRACED_SIZE, UNTRACED, UNTRACED_SIZE,
			STACK_LO, TRACED, ALIAS_NEAR, ALIAS_FAR, RING, IDENT, (uint64_t)gettid(),
			(uint64_t)exit_case};
	out(&h, sizeof h);
	fflush(stdout);

	for (;;) {
		uint8_t cmd;
		in(&cmd, 1);
		switch (cmd) {
		case 'M': {
			uint64_t a[2];
			in(a, sizeof a);
			void *p = mmap((void *)a[0], a[1], PROT_READ | PROT_WRITE | PROT_EXEC,
				       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
			reply(p == (void *)a[0] ? 0 : p == MAP_FAILED ? 17 : 12);
			break;
		}
		case 'W': {
			uint64_t addr;
			uint32_t len;
			in(&addr, 8);
			in(&len, 4);
			in((void *)addr, len);
			reply(0);
			break;
		}
		case 'R': {
			uint32_t prot;
			in(&entry, 8);
			in(&prot, 4);
			in(&st, sizeof st);
			in((void *)UNTRACED, UNTRACED_SIZE);
			mprotect((void *)TRACED, TRACED_SIZE, prot);
			fault_rip = 0;
			uint64_t status = sigsetjmp(env, 1);
			if (status == 0)
				((void (*)(void))enter_case)();
			mprotect((void *)TRACED, TRACED_SIZE, PROT_NONE);
			out(&status, 8);
			out(&fault_rip, 8);
			out(&st, sizeof st);
			out((void *)UNTRACED, UNTRACED_SIZE);
			fflush(stdout);
			break;
		}
		default:
			fprintf(stderr, "exec: bad command %d\n", cmd);
			return 2;
		}
	}
}
