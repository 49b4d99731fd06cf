package sysmem

import "golang.org/x/sys/unix"

// entry describes one system call.
type entry struct {
	name  string
	class Class
	dec   func(d *decoder)
}

// Sizes of kernel structures on x86-64.
const (
	sizeStat      = 144 // struct stat
	sizeStatx     = 256
	sizeStatfs    = 120
	sizeTimespec  = 16
	sizeTimeval   = 16
	sizeItimerval = 32
	sizeRlimit    = 16
	sizeRusage    = 144
	sizeSysinfo   = 112
	sizeTms       = 32
	sizeUtsname   = 390
	sizeSiginfo   = 128
	sizeStack     = 24 // stack_t
	sizeEpollEv   = 12 // struct epoll_event (packed)
	sizePollfd    = 8
	sizeFlock     = 32
	sizeSembuf    = 6
	sizeCapHeader = 8
	sizeCapData   = 24 // two struct __user_cap_data_struct
	sizeUtimbuf   = 16
	sizeItimerspc = 32
	sizeTimex     = 208
	sizeSchedPar  = 4
	sizeMsqid     = 120
	sizeShmid     = 112
	sizeTermios   = 36
	sizeWinsize   = 8
	sizeKSigact   = 24 // struct sigaction without its sigset (sigsetsize follows)
)

// Bounce-able readers and writers of plain buffers.
func bufOut(ptr, n int) func(*decoder) {
	return func(d *decoder) { d.arg(ptr, d.args[n], Write, OutRet) }
}

func bufIn(ptr, n int) func(*decoder) {
	return func(d *decoder) { d.in(ptr, d.args[n]) }
}

func paths(args ...int) func(*decoder) {
	return func(d *decoder) {
		for _, a := range args {
			d.str(a)
		}
	}
}

func statCall(path, buf int, size uint64) func(*decoder) {
	return func(d *decoder) {
		if path >= 0 {
			d.str(path)
		}
		d.out(buf, size)
	}
}

func outs(size uint64, args ...int) func(*decoder) {
	return func(d *decoder) {
		for _, a := range args {
			d.out(a, size)
		}
	}
}

func ins(size uint64, args ...int) func(*decoder) {
	return func(d *decoder) {
		for _, a := range args {
			d.in(a, size)
		}
	}
}

func none(name string) entry { return entry{name: name, class: None} }

// fdSet is the size of a select fd_set for nfds descriptors, as the kernel
// copies it (whole longs).
func fdSet(nfds uint64) uint64 { return (min(nfds, 1<<20) + 63) / 64 * 8 }

var table = map[uint64]entry{
	unix.SYS_READ:     {"read", Bounce, bufOut(1, 2)},
	unix.SYS_WRITE:    {"write", Bounce, bufIn(1, 2)},
	unix.SYS_OPEN:     {"open", Bounce, paths(0)},
	unix.SYS_CLOSE:    none("close"),
	unix.SYS_STAT:     {"stat", Bounce, statCall(0, 1, sizeStat)},
	unix.SYS_FSTAT:    {"fstat", Bounce, statCall(-1, 1, sizeStat)},
	unix.SYS_LSTAT:    {"lstat", Bounce, statCall(0, 1, sizeStat)},
	unix.SYS_POLL:     {"poll", Stop, func(d *decoder) { d.inout(0, d.args[1]*sizePollfd) }},
	unix.SYS_LSEEK:    none("lseek"),
	unix.SYS_MMAP:     none("mmap"),
	unix.SYS_MPROTECT: none("mprotect"),
	unix.SYS_MUNMAP:   none("munmap"),
	unix.SYS_BRK:      none("brk"),
	unix.SYS_RT_SIGACTION: {"rt_sigaction", Bounce, func(d *decoder) {
		d.in(1, sizeKSigact+min(d.args[3], 128))
		d.out(2, sizeKSigact+min(d.args[3], 128))
	}},
	unix.SYS_RT_SIGPROCMASK: {"rt_sigprocmask", Bounce, func(d *decoder) {
		d.in(1, min(d.args[3], 128))
		d.out(2, min(d.args[3], 128))
	}},
	// rt_sigreturn reads the signal frame on the stack: see the limits
	// in docs/RECORD.md.
	unix.SYS_RT_SIGRETURN: none("rt_sigreturn"),
	unix.SYS_IOCTL:        {"ioctl", Bounce, ioctl},
	unix.SYS_PREAD64:      {"pread64", Bounce, bufOut(1, 2)},
	unix.SYS_PWRITE64:     {"pwrite64", Bounce, bufIn(1, 2)},
	unix.SYS_READV:        {"readv", Bounce, func(d *decoder) { d.iov(1, 2, Write) }},
	unix.SYS_WRITEV:       {"writev", Bounce, func(d *decoder) { d.iov(1, 2, Read) }},
	unix.SYS_ACCESS:       {"access", Bounce, paths(0)},
	unix.SYS_PIPE:         {"pipe", Bounce, outs(8, 0)},
	unix.SYS_SELECT: {"select", Bounce, func(d *decoder) {
		for a := 1; a <= 3; a++ {
			d.inout(a, fdSet(d.args[0]))
		}
		d.inout(4, sizeTimeval)
	}},
	unix.SYS_SCHED_YIELD: none("sched_yield"),
	unix.SYS_MREMAP:      none("mremap"),
	unix.SYS_MSYNC:       none("msync"),
	unix.SYS_MINCORE:     {"mincore", Bounce, func(d *decoder) { d.out(2, (d.args[1]+4095)/4096) }},
	unix.SYS_MADVISE:     none("madvise"),
	unix.SYS_SHMGET:      none("shmget"),
	unix.SYS_SHMAT:       none("shmat"),
	unix.SYS_SHMCTL:      {"shmctl", Bounce, func(d *decoder) { d.inout(2, sizeShmid) }},
	unix.SYS_DUP:         none("dup"),
	unix.SYS_DUP2:        none("dup2"),
	unix.SYS_PAUSE:       none("pause"),
	// The sleeps restart through restart_syscall with the remainder's
	// address saved in the kernel: they run where they are.
	unix.SYS_NANOSLEEP: {"nanosleep", Stop, func(d *decoder) {
		d.in(0, sizeTimespec)
		d.arg(1, sizeTimespec, Write, OutEINTR)
	}},
	unix.SYS_GETITIMER: {"getitimer", Bounce, outs(sizeItimerval, 1)},
	unix.SYS_ALARM:     none("alarm"),
	unix.SYS_SETITIMER: {"setitimer", Bounce, func(d *decoder) { d.in(1, sizeItimerval); d.out(2, sizeItimerval) }},
	unix.SYS_GETPID:    none("getpid"),
	unix.SYS_SENDFILE:  {"sendfile", Bounce, func(d *decoder) { d.inout(2, 8) }},
	unix.SYS_SOCKET:    none("socket"),
	unix.SYS_CONNECT:   {"connect", Bounce, bufIn(1, 2)},
	unix.SYS_ACCEPT:    {"accept", Bounce, func(d *decoder) { d.lenPtr(1, 2, Write, sockaddrMax) }},
	unix.SYS_SENDTO: {"sendto", Bounce, func(d *decoder) {
		d.in(1, d.args[2])
		d.in(4, d.args[5])
	}},
	unix.SYS_RECVFROM: {"recvfrom", Bounce, func(d *decoder) {
		d.arg(1, d.args[2], Write, OutRet)
		d.lenPtr(4, 5, Write, sockaddrMax)
	}},
	unix.SYS_SENDMSG: {"sendmsg", Bounce, func(d *decoder) { d.msghdr(d.in(1, msghdrSize), 0, false, 0) }},
	unix.SYS_RECVMSG: {"recvmsg", Bounce, func(d *decoder) {
		h := d.arg(1, msghdrSize, Read|Write, OutFields)
		if h >= 0 {
			d.c.Pieces[h].Out.Fields = []Field{{msgNamelen, 4}, {msgControllen, 8}, {msgFlags, 4}}
		}
		d.msghdr(h, 0, true, 0)
	}},
	unix.SYS_SHUTDOWN:    none("shutdown"),
	unix.SYS_BIND:        {"bind", Bounce, bufIn(1, 2)},
	unix.SYS_LISTEN:      none("listen"),
	unix.SYS_GETSOCKNAME: {"getsockname", Bounce, func(d *decoder) { d.lenPtr(1, 2, Write, sockaddrMax) }},
	unix.SYS_GETPEERNAME: {"getpeername", Bounce, func(d *decoder) { d.lenPtr(1, 2, Write, sockaddrMax) }},
	unix.SYS_SOCKETPAIR:  {"socketpair", Bounce, outs(8, 3)},
	unix.SYS_SETSOCKOPT:  {"setsockopt", Bounce, bufIn(3, 4)},
	unix.SYS_GETSOCKOPT:  {"getsockopt", Bounce, func(d *decoder) { d.lenPtr(3, 4, Write, 1<<20) }},
	// clone stores thread ids for the kernel to clear at exit, and exec
	// replaces the memory: neither is served (docs/RECORD.md).
	unix.SYS_CLONE:  none("clone"),
	unix.SYS_FORK:   none("fork"),
	unix.SYS_VFORK:  none("vfork"),
	unix.SYS_EXECVE: none("execve"),
	unix.SYS_EXIT:   none("exit"),
	unix.SYS_WAIT4: {"wait4", Bounce, func(d *decoder) {
		d.arg(1, 4, Write, OutPositive)
		d.arg(3, sizeRusage, Write, OutPositive)
	}},
	unix.SYS_KILL:   none("kill"),
	unix.SYS_UNAME:  {"uname", Bounce, outs(sizeUtsname, 0)},
	unix.SYS_SEMGET: none("semget"),
	unix.SYS_SEMOP:  {"semop", Bounce, func(d *decoder) { d.in(1, d.args[2]*sizeSembuf) }},
	unix.SYS_SHMDT:  none("shmdt"),
	unix.SYS_MSGGET: none("msgget"),
	unix.SYS_MSGSND: {"msgsnd", Bounce, func(d *decoder) { d.in(1, 8+d.args[2]) }},
	unix.SYS_MSGRCV: {"msgrcv", Bounce, func(d *decoder) {
		// mtype and the ret bytes of text
		d.arg(1, 8+d.args[2], Write, OutAll)
	}},
	unix.SYS_MSGCTL:    {"msgctl", Bounce, func(d *decoder) { d.inout(2, sizeMsqid) }},
	unix.SYS_FCNTL:     {"fcntl", Bounce, fcntl},
	unix.SYS_FLOCK:     none("flock"),
	unix.SYS_FSYNC:     none("fsync"),
	unix.SYS_FDATASYNC: none("fdatasync"),
	unix.SYS_TRUNCATE:  {"truncate", Bounce, paths(0)},
	unix.SYS_FTRUNCATE: none("ftruncate"),
	unix.SYS_GETDENTS:  {"getdents", Bounce, bufOut(1, 2)},
	unix.SYS_GETCWD:    {"getcwd", Bounce, bufOut(0, 1)},
	unix.SYS_CHDIR:     {"chdir", Bounce, paths(0)},
	unix.SYS_FCHDIR:    none("fchdir"),
	unix.SYS_RENAME:    {"rename", Bounce, paths(0, 1)},
	unix.SYS_MKDIR:     {"mkdir", Bounce, paths(0)},
	unix.SYS_RMDIR:     {"rmdir", Bounce, paths(0)},
	unix.SYS_CREAT:     {"creat", Bounce, paths(0)},
	unix.SYS_LINK:      {"link", Bounce, paths(0, 1)},
	unix.SYS_UNLINK:    {"unlink", Bounce, paths(0)},
	unix.SYS_SYMLINK:   {"symlink", Bounce, paths(0, 1)},
	unix.SYS_READLINK: {"readlink", Bounce, func(d *decoder) {
		d.str(0)
		d.arg(1, d.args[2], Write, OutRet)
	}},
	unix.SYS_CHMOD:        {"chmod", Bounce, paths(0)},
	unix.SYS_FCHMOD:       none("fchmod"),
	unix.SYS_CHOWN:        {"chown", Bounce, paths(0)},
	unix.SYS_FCHOWN:       none("fchown"),
	unix.SYS_LCHOWN:       {"lchown", Bounce, paths(0)},
	unix.SYS_UMASK:        none("umask"),
	unix.SYS_GETTIMEOFDAY: {"gettimeofday", Bounce, func(d *decoder) { d.out(0, sizeTimeval); d.out(1, 8) }},
	unix.SYS_GETRLIMIT:    {"getrlimit", Bounce, outs(sizeRlimit, 1)},
	unix.SYS_GETRUSAGE:    {"getrusage", Bounce, outs(sizeRusage, 1)},
	unix.SYS_SYSINFO:      {"sysinfo", Bounce, outs(sizeSysinfo, 0)},
	unix.SYS_TIMES:        {"times", Bounce, outs(sizeTms, 0)},
	unix.SYS_GETUID:       none("getuid"),
	unix.SYS_GETGID:       none("getgid"),
	unix.SYS_SETUID:       none("setuid"),
	unix.SYS_SETGID:       none("setgid"),
	unix.SYS_GETEUID:      none("geteuid"),
	unix.SYS_GETEGID:      none("getegid"),
	unix.SYS_SETPGID:      none("setpgid"),
	unix.SYS_GETPPID:      none("getppid"),
	unix.SYS_GETPGRP:      none("getpgrp"),
	unix.SYS_SETSID:       none("setsid"),
	unix.SYS_SETREUID:     none("setreuid"),
	unix.SYS_SETREGID:     none("setregid"),
	unix.SYS_GETGROUPS: {"getgroups", Bounce, func(d *decoder) {
		d.add(Piece{Addr: d.args[1], Len: d.args[0] * 4, Dir: Write, Parent: -1, Arg: 1, Out: Out{Kind: OutElems, Elem: 4}})
	}},
	unix.SYS_SETGROUPS:     {"setgroups", Bounce, func(d *decoder) { d.in(1, d.args[0]*4) }},
	unix.SYS_SETRESUID:     none("setresuid"),
	unix.SYS_GETRESUID:     {"getresuid", Bounce, outs(4, 0, 1, 2)},
	unix.SYS_SETRESGID:     none("setresgid"),
	unix.SYS_GETRESGID:     {"getresgid", Bounce, outs(4, 0, 1, 2)},
	unix.SYS_GETPGID:       none("getpgid"),
	unix.SYS_SETFSUID:      none("setfsuid"),
	unix.SYS_SETFSGID:      none("setfsgid"),
	unix.SYS_GETSID:        none("getsid"),
	unix.SYS_CAPGET:        {"capget", Bounce, func(d *decoder) { d.inout(0, sizeCapHeader); d.out(1, sizeCapData) }},
	unix.SYS_CAPSET:        {"capset", Bounce, func(d *decoder) { d.in(0, sizeCapHeader); d.in(1, sizeCapData) }},
	unix.SYS_RT_SIGPENDING: {"rt_sigpending", Bounce, func(d *decoder) { d.out(0, min(d.args[1], 128)) }},
	unix.SYS_RT_SIGTIMEDWAIT: {"rt_sigtimedwait", Bounce, func(d *decoder) {
		d.in(0, min(d.args[3], 128))
		d.arg(1, sizeSiginfo, Write, OutPositive)
		d.in(2, sizeTimespec)
	}},
	unix.SYS_RT_SIGQUEUEINFO: {"rt_sigqueueinfo", Bounce, ins(sizeSiginfo, 2)},
	unix.SYS_RT_SIGSUSPEND:   {"rt_sigsuspend", Bounce, func(d *decoder) { d.in(0, min(d.args[1], 128)) }},
	// The kernel keeps the alternate stack's address for later signals.
	unix.SYS_SIGALTSTACK:            {"sigaltstack", Bounce, func(d *decoder) { d.in(0, sizeStack); d.out(1, sizeStack) }},
	unix.SYS_UTIME:                  {"utime", Bounce, func(d *decoder) { d.str(0); d.in(1, sizeUtimbuf) }},
	unix.SYS_MKNOD:                  {"mknod", Bounce, paths(0)},
	unix.SYS_PERSONALITY:            none("personality"),
	unix.SYS_STATFS:                 {"statfs", Bounce, statCall(0, 1, sizeStatfs)},
	unix.SYS_FSTATFS:                {"fstatfs", Bounce, statCall(-1, 1, sizeStatfs)},
	unix.SYS_GETPRIORITY:            none("getpriority"),
	unix.SYS_SETPRIORITY:            none("setpriority"),
	unix.SYS_SCHED_SETPARAM:         {"sched_setparam", Bounce, ins(sizeSchedPar, 1)},
	unix.SYS_SCHED_GETPARAM:         {"sched_getparam", Bounce, outs(sizeSchedPar, 1)},
	unix.SYS_SCHED_SETSCHEDULER:     {"sched_setscheduler", Bounce, ins(sizeSchedPar, 2)},
	unix.SYS_SCHED_GETSCHEDULER:     none("sched_getscheduler"),
	unix.SYS_SCHED_GET_PRIORITY_MAX: none("sched_get_priority_max"),
	unix.SYS_SCHED_GET_PRIORITY_MIN: none("sched_get_priority_min"),
	unix.SYS_SCHED_RR_GET_INTERVAL:  {"sched_rr_get_interval", Bounce, outs(sizeTimespec, 1)},
	unix.SYS_MLOCK:                  none("mlock"),
	unix.SYS_MUNLOCK:                none("munlock"),
	unix.SYS_MLOCKALL:               none("mlockall"),
	unix.SYS_MUNLOCKALL:             none("munlockall"),
	unix.SYS_PRCTL:                  {"prctl", Bounce, prctl},
	unix.SYS_ARCH_PRCTL: {"arch_prctl", Bounce, func(d *decoder) {
		switch d.args[0] {
		case 0x1003, 0x1004: // ARCH_GET_FS, ARCH_GET_GS
			d.out(1, 8)
		}
	}},
	unix.SYS_ADJTIMEX:          {"adjtimex", Bounce, func(d *decoder) { d.inout(0, sizeTimex) }},
	unix.SYS_SETRLIMIT:         {"setrlimit", Bounce, ins(sizeRlimit, 1)},
	unix.SYS_CHROOT:            {"chroot", Bounce, paths(0)},
	unix.SYS_SYNC:              none("sync"),
	unix.SYS_SETTIMEOFDAY:      {"settimeofday", Bounce, func(d *decoder) { d.in(0, sizeTimeval); d.in(1, 8) }},
	unix.SYS_GETTID:            none("gettid"),
	unix.SYS_READAHEAD:         none("readahead"),
	unix.SYS_SETXATTR:          {"setxattr", Bounce, func(d *decoder) { d.str(0); d.str(1); d.in(2, d.args[3]) }},
	unix.SYS_LSETXATTR:         {"lsetxattr", Bounce, func(d *decoder) { d.str(0); d.str(1); d.in(2, d.args[3]) }},
	unix.SYS_FSETXATTR:         {"fsetxattr", Bounce, func(d *decoder) { d.str(1); d.in(2, d.args[3]) }},
	unix.SYS_GETXATTR:          {"getxattr", Bounce, func(d *decoder) { d.str(0); d.str(1); d.arg(2, d.args[3], Write, OutRet) }},
	unix.SYS_LGETXATTR:         {"lgetxattr", Bounce, func(d *decoder) { d.str(0); d.str(1); d.arg(2, d.args[3], Write, OutRet) }},
	unix.SYS_FGETXATTR:         {"fgetxattr", Bounce, func(d *decoder) { d.str(1); d.arg(2, d.args[3], Write, OutRet) }},
	unix.SYS_LISTXATTR:         {"listxattr", Bounce, func(d *decoder) { d.str(0); d.arg(1, d.args[2], Write, OutRet) }},
	unix.SYS_LLISTXATTR:        {"llistxattr", Bounce, func(d *decoder) { d.str(0); d.arg(1, d.args[2], Write, OutRet) }},
	unix.SYS_FLISTXATTR:        {"flistxattr", Bounce, bufOut(1, 2)},
	unix.SYS_REMOVEXATTR:       {"removexattr", Bounce, paths(0, 1)},
	unix.SYS_LREMOVEXATTR:      {"lremovexattr", Bounce, paths(0, 1)},
	unix.SYS_FREMOVEXATTR:      {"fremovexattr", Bounce, paths(1)},
	unix.SYS_TKILL:             none("tkill"),
	unix.SYS_TIME:              {"time", Bounce, outs(8, 0)},
	unix.SYS_FUTEX:             {"futex", Stop, futex},
	unix.SYS_SCHED_SETAFFINITY: {"sched_setaffinity", Bounce, bufIn(2, 1)},
	unix.SYS_SCHED_GETAFFINITY: {"sched_getaffinity", Bounce, bufOut(2, 1)},
	unix.SYS_EPOLL_CREATE:      none("epoll_create"),
	unix.SYS_GETDENTS64:        {"getdents64", Bounce, bufOut(1, 2)},
	// The kernel keeps the address to clear it when the thread exits.
	unix.SYS_SET_TID_ADDRESS:  none("set_tid_address"),
	unix.SYS_RESTART_SYSCALL:  {"restart_syscall", Restart, nil},
	unix.SYS_FADVISE64:        none("fadvise64"),
	unix.SYS_TIMER_CREATE:     {"timer_create", Bounce, func(d *decoder) { d.in(1, 64); d.out(2, 4) }},
	unix.SYS_TIMER_SETTIME:    {"timer_settime", Bounce, func(d *decoder) { d.in(2, sizeItimerspc); d.out(3, sizeItimerspc) }},
	unix.SYS_TIMER_GETTIME:    {"timer_gettime", Bounce, outs(sizeItimerspc, 1)},
	unix.SYS_TIMER_GETOVERRUN: none("timer_getoverrun"),
	unix.SYS_TIMER_DELETE:     none("timer_delete"),
	unix.SYS_CLOCK_SETTIME:    {"clock_settime", Bounce, ins(sizeTimespec, 1)},
	unix.SYS_CLOCK_GETTIME:    {"clock_gettime", Bounce, outs(sizeTimespec, 1)},
	unix.SYS_CLOCK_GETRES:     {"clock_getres", Bounce, outs(sizeTimespec, 1)},
	unix.SYS_CLOCK_NANOSLEEP: {"clock_nanosleep", Stop, func(d *decoder) {
		d.in(2, sizeTimespec)
		d.arg(3, sizeTimespec, Write, OutEINTR)
	}},
	unix.SYS_EXIT_GROUP: none("exit_group"),
	unix.SYS_EPOLL_WAIT: {"epoll_wait", Bounce, func(d *decoder) {
		d.add(Piece{Addr: d.args[1], Len: d.args[2] * sizeEpollEv, Dir: Write, Parent: -1, Arg: 1, Out: Out{Kind: OutElems, Elem: sizeEpollEv}})
	}},
	unix.SYS_EPOLL_CTL: {"epoll_ctl", Bounce, ins(sizeEpollEv, 3)},
	unix.SYS_TGKILL:    none("tgkill"),
	unix.SYS_UTIMES:    {"utimes", Bounce, func(d *decoder) { d.str(0); d.in(1, 2*sizeTimeval) }},
	unix.SYS_WAITID: {"waitid", Bounce, func(d *decoder) {
		d.out(2, sizeSiginfo)
		d.out(4, sizeRusage)
	}},
	unix.SYS_IOPRIO_SET:        none("ioprio_set"),
	unix.SYS_IOPRIO_GET:        none("ioprio_get"),
	unix.SYS_INOTIFY_INIT:      none("inotify_init"),
	unix.SYS_INOTIFY_ADD_WATCH: {"inotify_add_watch", Bounce, paths(1)},
	unix.SYS_INOTIFY_RM_WATCH:  none("inotify_rm_watch"),
	unix.SYS_OPENAT:            {"openat", Bounce, paths(1)},
	unix.SYS_MKDIRAT:           {"mkdirat", Bounce, paths(1)},
	unix.SYS_MKNODAT:           {"mknodat", Bounce, paths(1)},
	unix.SYS_FCHOWNAT:          {"fchownat", Bounce, paths(1)},
	unix.SYS_FUTIMESAT:         {"futimesat", Bounce, func(d *decoder) { d.str(1); d.in(2, 2*sizeTimeval) }},
	unix.SYS_NEWFSTATAT:        {"newfstatat", Bounce, statCall(1, 2, sizeStat)},
	unix.SYS_UNLINKAT:          {"unlinkat", Bounce, paths(1)},
	unix.SYS_RENAMEAT:          {"renameat", Bounce, paths(1, 3)},
	unix.SYS_LINKAT:            {"linkat", Bounce, paths(1, 3)},
	unix.SYS_SYMLINKAT:         {"symlinkat", Bounce, paths(0, 2)},
	unix.SYS_READLINKAT: {"readlinkat", Bounce, func(d *decoder) {
		d.str(1)
		d.arg(2, d.args[3], Write, OutRet)
	}},
	unix.SYS_FCHMODAT:  {"fchmodat", Bounce, paths(1)},
	unix.SYS_FACCESSAT: {"faccessat", Bounce, paths(1)},
	unix.SYS_PSELECT6: {"pselect6", Bounce, func(d *decoder) {
		for a := 1; a <= 3; a++ {
			d.inout(a, fdSet(d.args[0]))
		}
		d.inout(4, sizeTimespec)
		// { const sigset_t *ss; size_t ss_len; }
		if s := d.in(5, 16); s >= 0 {
			ss, _ := d.u64(d.args[5])
			n, _ := d.u64(d.args[5] + 8)
			d.add(Piece{Addr: ss, Len: min(n, 128), Dir: Read, Parent: s, Off: 0})
		}
	}},
	unix.SYS_PPOLL: {"ppoll", Bounce, func(d *decoder) {
		d.inout(0, d.args[1]*sizePollfd)
		d.inout(2, sizeTimespec)
		d.in(3, min(d.args[4], 128))
	}},
	unix.SYS_UNSHARE:         none("unshare"),
	unix.SYS_SET_ROBUST_LIST: none("set_robust_list"),
	unix.SYS_SPLICE:          {"splice", Bounce, func(d *decoder) { d.inout(1, 8); d.inout(3, 8) }},
	unix.SYS_TEE:             none("tee"),
	unix.SYS_SYNC_FILE_RANGE: none("sync_file_range"),
	// vmsplice gives the pipe references to the pages themselves.
	unix.SYS_VMSPLICE:  {"vmsplice", Stop, func(d *decoder) { d.iov(1, 2, Read|Write) }},
	unix.SYS_UTIMENSAT: {"utimensat", Bounce, func(d *decoder) { d.str(1); d.in(2, 2*sizeTimespec) }},
	unix.SYS_EPOLL_PWAIT: {"epoll_pwait", Bounce, func(d *decoder) {
		d.add(Piece{Addr: d.args[1], Len: d.args[2] * sizeEpollEv, Dir: Write, Parent: -1, Arg: 1, Out: Out{Kind: OutElems, Elem: sizeEpollEv}})
		d.in(4, min(d.args[5], 128))
	}},
	unix.SYS_SIGNALFD:       {"signalfd", Bounce, func(d *decoder) { d.in(1, min(d.args[2], 128)) }},
	unix.SYS_TIMERFD_CREATE: none("timerfd_create"),
	unix.SYS_EVENTFD:        none("eventfd"),
	unix.SYS_FALLOCATE:      none("fallocate"),
	unix.SYS_TIMERFD_SETTIME: {"timerfd_settime", Bounce, func(d *decoder) {
		d.in(2, sizeItimerspc)
		d.out(3, sizeItimerspc)
	}},
	unix.SYS_TIMERFD_GETTIME:   {"timerfd_gettime", Bounce, outs(sizeItimerspc, 1)},
	unix.SYS_ACCEPT4:           {"accept4", Bounce, func(d *decoder) { d.lenPtr(1, 2, Write, sockaddrMax) }},
	unix.SYS_SIGNALFD4:         {"signalfd4", Bounce, func(d *decoder) { d.in(1, min(d.args[2], 128)) }},
	unix.SYS_EVENTFD2:          none("eventfd2"),
	unix.SYS_EPOLL_CREATE1:     none("epoll_create1"),
	unix.SYS_DUP3:              none("dup3"),
	unix.SYS_PIPE2:             {"pipe2", Bounce, outs(8, 0)},
	unix.SYS_INOTIFY_INIT1:     none("inotify_init1"),
	unix.SYS_PREADV:            {"preadv", Bounce, func(d *decoder) { d.iov(1, 2, Write) }},
	unix.SYS_PWRITEV:           {"pwritev", Bounce, func(d *decoder) { d.iov(1, 2, Read) }},
	unix.SYS_RT_TGSIGQUEUEINFO: {"rt_tgsigqueueinfo", Bounce, ins(sizeSiginfo, 3)},
	// recvmmsg and sendmmsg: arrays of message headers, served where they
	// are (see docs/RECORD.md).
	unix.SYS_RECVMMSG:  {"recvmmsg", Stop, func(d *decoder) { mmsg(d, true) }},
	unix.SYS_SENDMMSG:  {"sendmmsg", Stop, func(d *decoder) { mmsg(d, false) }},
	unix.SYS_PRLIMIT64: {"prlimit64", Bounce, func(d *decoder) { d.in(2, sizeRlimit); d.out(3, sizeRlimit) }},
	unix.SYS_SYNCFS:    none("syncfs"),
	unix.SYS_SETNS:     none("setns"),
	unix.SYS_GETCPU:    {"getcpu", Bounce, outs(4, 0, 1)},
	unix.SYS_PROCESS_VM_READV: {"process_vm_readv", Bounce, func(d *decoder) {
		d.iov(1, 2, Write)
		d.in(3, 16*min(d.args[4], maxIOV)) // the other process's iovecs
	}},
	unix.SYS_PROCESS_VM_WRITEV: {"process_vm_writev", Bounce, func(d *decoder) {
		d.iov(1, 2, Read)
		d.in(3, 16*min(d.args[4], maxIOV))
	}},
	unix.SYS_RENAMEAT2:       {"renameat2", Bounce, paths(1, 3)},
	unix.SYS_GETRANDOM:       {"getrandom", Bounce, bufOut(0, 1)},
	unix.SYS_MEMFD_CREATE:    {"memfd_create", Bounce, paths(0)},
	unix.SYS_EXECVEAT:        none("execveat"),
	unix.SYS_MEMBARRIER:      none("membarrier"),
	unix.SYS_MLOCK2:          none("mlock2"),
	unix.SYS_COPY_FILE_RANGE: {"copy_file_range", Bounce, func(d *decoder) { d.inout(1, 8); d.inout(3, 8) }},
	unix.SYS_PREADV2:         {"preadv2", Bounce, func(d *decoder) { d.iov(1, 2, Write) }},
	unix.SYS_PWRITEV2:        {"pwritev2", Bounce, func(d *decoder) { d.iov(1, 2, Read) }},
	unix.SYS_PKEY_MPROTECT:   none("pkey_mprotect"),
	unix.SYS_PKEY_ALLOC:      none("pkey_alloc"),
	unix.SYS_PKEY_FREE:       none("pkey_free"),
	unix.SYS_STATX:           {"statx", Bounce, func(d *decoder) { d.str(1); d.out(4, sizeStatx) }},
	// The kernel keeps the rseq area's address and writes it at every
	// return to user space after a preemption (docs/RECORD.md).
	unix.SYS_RSEQ:              none("rseq"),
	unix.SYS_PIDFD_SEND_SIGNAL: {"pidfd_send_signal", Bounce, ins(sizeSiginfo, 2)},
	unix.SYS_PIDFD_OPEN:        none("pidfd_open"),
	unix.SYS_CLONE3:            none("clone3"),
	unix.SYS_CLOSE_RANGE:       none("close_range"),
	unix.SYS_PIDFD_GETFD:       none("pidfd_getfd"),
	unix.SYS_FACCESSAT2:        {"faccessat2", Bounce, paths(1)},
	unix.SYS_EPOLL_PWAIT2: {"epoll_pwait2", Bounce, func(d *decoder) {
		d.add(Piece{Addr: d.args[1], Len: d.args[2] * sizeEpollEv, Dir: Write, Parent: -1, Arg: 1, Out: Out{Kind: OutElems, Elem: sizeEpollEv}})
		d.in(3, sizeTimespec)
		d.in(4, min(d.args[5], 128))
	}},
}

// fcntl commands with a struct argument.
func fcntl(d *decoder) {
	switch d.args[1] {
	case unix.F_GETLK, unix.F_SETLK, unix.F_SETLKW, unix.F_OFD_GETLK, unix.F_OFD_SETLK, unix.F_OFD_SETLKW:
		d.inout(2, sizeFlock)
	case unix.F_GETOWN_EX:
		d.out(2, 8)
	case unix.F_SETOWN_EX:
		d.in(2, 8)
	}
}

// prctl options with a buffer.
func prctl(d *decoder) {
	switch d.args[0] {
	case unix.PR_SET_NAME:
		d.in(1, 16)
	case unix.PR_GET_NAME:
		d.out(1, 16)
	case unix.PR_GET_PDEATHSIG, unix.PR_GET_TSC, unix.PR_GET_ENDIAN, unix.PR_GET_FPEXC, unix.PR_GET_UNALIGN, unix.PR_GET_FPEMU:
		d.out(1, 4)
	case unix.PR_GET_TID_ADDRESS:
		d.out(1, 8)
	}
}

// Legacy ioctl requests (no size in the number) with a pointer argument.
var legacyIoctl = map[uint64]struct {
	dir Dir
	n   uint64
}{
	unix.TCGETS: {Write, sizeTermios}, unix.TCSETS: {Read, sizeTermios}, unix.TCSETSW: {Read, sizeTermios},
	unix.TCSETSF: {Read, sizeTermios}, unix.TIOCGWINSZ: {Write, sizeWinsize}, unix.TIOCSWINSZ: {Read, sizeWinsize},
	unix.TIOCINQ: {Write, 4}, 0x5421: {Read, 4}, 0x5452: {Read, 4}, unix.TIOCGPGRP: {Write, 4}, // FIONREAD, FIONBIO, FIOASYNC
	unix.TIOCSPGRP: {Read, 4}, unix.TIOCOUTQ: {Write, 4}, unix.TIOCGSID: {Write, 4},
	unix.TIOCMGET: {Write, 4}, unix.TIOCMSET: {Read, 4}, unix.TIOCMBIS: {Read, 4}, unix.TIOCMBIC: {Read, 4},
}

// ioctl decodes the argument from the request's _IOC direction and size;
// legacy terminal requests from a table. Pointers inside the argument are
// not followed. Other requests with an argument are Unknown.
func ioctl(d *decoder) {
	req := d.args[1] & 0xffffffff
	dir, size := req>>30, (req>>16)&0x3fff
	if l, ok := legacyIoctl[req]; ok {
		d.arg(2, l.n, l.dir, outFor(l.dir))
		return
	}
	if dir == 0 || size == 0 {
		if d.args[2] != 0 && !noArgIoctl(req) {
			d.c.Class = Unknown
			d.add(Piece{Addr: d.args[2], Len: UnknownLen, Dir: Read | Write, Parent: -1, Arg: 2, Out: Out{Kind: OutAll}})
		}
		return
	}
	var dd Dir
	if dir&1 != 0 { // _IOC_WRITE: user to kernel
		dd |= Read
	}
	if dir&2 != 0 { // _IOC_READ: kernel to user
		dd |= Write
	}
	d.arg(2, size, dd, outFor(dd))
}

func outFor(d Dir) OutKind {
	if d&Write != 0 {
		return OutAll
	}
	return OutNone
}

// noArgIoctl reports requests whose argument is a value, not a pointer.
func noArgIoctl(req uint64) bool {
	switch req {
	case 0x5451, 0x5450, unix.TIOCSCTTY, // FIOCLEX, FIONCLEX
		unix.TIOCNOTTY, unix.TCSBRK, unix.TCXONC, unix.TCFLSH, unix.TIOCEXCL, unix.TIOCNXCL:
		return true
	}
	return false
}

// Futex commands and flags (linux/futex.h).
const (
	futexWait          = 0
	futexWake          = 1
	futexFD            = 2
	futexRequeue       = 3
	futexCmpRequeue    = 4
	futexWakeOp        = 5
	futexWaitBitset    = 9
	futexWakeBitset    = 10
	futexPrivate       = 128
	futexClockRealtime = 256
)

// futex: the waits read the word and sleep (FutexWait); private wakes
// touch no memory (None); shared wakes need the word's page for its key;
// the rest read and write words where they are (Stop).
func futex(d *decoder) {
	op := d.args[1]
	cmd := op &^ (futexPrivate | futexClockRealtime)
	private := op&futexPrivate != 0
	switch cmd {
	case futexWait, futexWaitBitset:
		d.c.Class = FutexWait
		d.in(0, 4)
		d.in(3, sizeTimespec)
	case futexWake, futexWakeBitset:
		if private {
			d.c.Class = None
			return
		}
		d.arg(0, 4, 0, OutNone)
	case futexFD:
		d.c.Class = None
	case futexRequeue:
		if private {
			d.c.Class = None
			return
		}
		d.arg(0, 4, 0, OutNone)
		d.arg(4, 4, 0, OutNone)
	case futexCmpRequeue:
		d.in(0, 4)
		d.arg(4, 4, 0, OutNone)
	case futexWakeOp:
		d.arg(0, 4, 0, OutNone)
		d.arg(4, 4, Read|Write, OutAll)
	default: // the PI operations read and write the word
		d.inout(0, 4)
		d.inout(4, 4)
		d.in(3, sizeTimespec)
	}
}

// mmsg decodes recvmmsg and sendmmsg: vlen message headers.
func mmsg(d *decoder, recv bool) {
	vlen := min(d.args[2], maxIOV)
	dir := Read
	if recv {
		dir |= Write
	}
	h := d.arg(1, 64*vlen, dir, OutAll)
	for i := uint64(0); i < vlen && !d.c.Overflow; i++ {
		d.msghdr(h, 64*i, recv, int(i))
	}
	if recv {
		d.inout(4, sizeTimespec)
	}
}
