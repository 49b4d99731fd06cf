package sysmem

import (
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Reach is what a seccomp filter can check of a call's memory from its
// registers alone: argument Ptr points to at most Len bytes, Len being the
// value of argument LenArg times Scale plus Add, or (LenArg < 0) Add. It
// is an upper bound of the pieces Decode finds there.
type Reach struct {
	Ptr, LenArg int
	Scale, Add  uint64
}

// Reaches returns what the arguments of call nr can reach. all: the call
// reaches memory through pointers in memory (iovecs, message headers), so a
// filter must stop it whenever memory is traced. known is false for a call
// the table does not describe: any argument may then point to UnknownLen
// bytes.
func Reaches(nr uint64) (r []Reach, all, known bool) {
	e, ok := table[nr]
	if !ok {
		return nil, false, false
	}
	if e.class == None || e.class == Restart {
		return nil, false, true
	}
	spec, ok := reachSpecs[nr]
	if !ok {
		return nil, true, true // undescribed: always
	}
	r, all, err := parseReach(spec)
	if err != nil {
		return nil, true, true
	}
	return r, all, true
}

// pathLen is the reach of a path argument.
const pathLen = pathMax

// reachSpecs describe, for each call with memory, what its arguments
// reach: "P=N" is N bytes at argument P; "P:L" as many as argument L,
// "P:LxS" L times S, "P:L+A" L plus A; "*" means through pointers in memory.
var reachSpecs = map[uint64]string{
	unix.SYS_READ: "1:2", unix.SYS_WRITE: "1:2", unix.SYS_OPEN: "0=4096",
	unix.SYS_STAT: "0=4096 1=144", unix.SYS_FSTAT: "1=144", unix.SYS_LSTAT: "0=4096 1=144",
	unix.SYS_POLL:           "0:1x8",
	unix.SYS_RT_SIGACTION:   "1=152 2=152",
	unix.SYS_RT_SIGPROCMASK: "1=128 2=128",
	// the largest _IOC size; legacy requests reach less
	unix.SYS_IOCTL:   "2=16384",
	unix.SYS_PREAD64: "1:2", unix.SYS_PWRITE64: "1:2",
	unix.SYS_READV: "*", unix.SYS_WRITEV: "*",
	unix.SYS_ACCESS: "0=4096", unix.SYS_PIPE: "0=8",
	// fd sets: (n+63)/64*8 bytes, at most n/8+8
	unix.SYS_SELECT:    "1:0+8 2:0+8 3:0+8 4=16",
	unix.SYS_MINCORE:   "2:1",
	unix.SYS_SHMCTL:    "2=112",
	unix.SYS_NANOSLEEP: "0=16 1=16",
	unix.SYS_GETITIMER: "1=32", unix.SYS_SETITIMER: "1=32 2=32",
	unix.SYS_SENDFILE: "2=8",
	unix.SYS_CONNECT:  "1:2",
	// socket addresses are at most 128 bytes (sockaddr_storage)
	unix.SYS_ACCEPT:   "1=128 2=4",
	unix.SYS_SENDTO:   "1:2 4:5",
	unix.SYS_RECVFROM: "1:2 4=128 5=4",
	unix.SYS_SENDMSG:  "*", unix.SYS_RECVMSG: "*",
	unix.SYS_BIND:        "1:2",
	unix.SYS_GETSOCKNAME: "1=128 2=4", unix.SYS_GETPEERNAME: "1=128 2=4",
	unix.SYS_SOCKETPAIR: "3=8",
	unix.SYS_SETSOCKOPT: "3:4",
	unix.SYS_GETSOCKOPT: "*", // the value's length is in memory, unbounded
	unix.SYS_WAIT4:      "1=4 3=144",
	unix.SYS_UNAME:      "0=390",
	unix.SYS_SEMOP:      "1:2x6",
	unix.SYS_MSGSND:     "1:2+8", unix.SYS_MSGRCV: "1:2+8",
	unix.SYS_MSGCTL:   "2=120",
	unix.SYS_FCNTL:    "2=32",
	unix.SYS_TRUNCATE: "0=4096",
	unix.SYS_GETDENTS: "1:2", unix.SYS_GETCWD: "0:1",
	unix.SYS_CHDIR: "0=4096", unix.SYS_RENAME: "0=4096 1=4096", unix.SYS_MKDIR: "0=4096",
	unix.SYS_RMDIR: "0=4096", unix.SYS_CREAT: "0=4096", unix.SYS_LINK: "0=4096 1=4096",
	unix.SYS_UNLINK: "0=4096", unix.SYS_SYMLINK: "0=4096 1=4096", unix.SYS_READLINK: "0=4096 1:2",
	unix.SYS_CHMOD: "0=4096", unix.SYS_CHOWN: "0=4096", unix.SYS_LCHOWN: "0=4096",
	unix.SYS_GETTIMEOFDAY: "0=16 1=8", unix.SYS_GETRLIMIT: "1=16", unix.SYS_GETRUSAGE: "1=144",
	unix.SYS_SYSINFO: "0=112", unix.SYS_TIMES: "0=32",
	unix.SYS_GETGROUPS: "1:0x4", unix.SYS_SETGROUPS: "1:0x4",
	unix.SYS_GETRESUID: "0=4 1=4 2=4", unix.SYS_GETRESGID: "0=4 1=4 2=4",
	unix.SYS_CAPGET: "0=8 1=24", unix.SYS_CAPSET: "0=8 1=24",
	unix.SYS_RT_SIGPENDING: "0=128", unix.SYS_RT_SIGTIMEDWAIT: "0=128 1=128 2=16",
	unix.SYS_RT_SIGQUEUEINFO: "2=128", unix.SYS_RT_SIGSUSPEND: "0=128",
	unix.SYS_SIGALTSTACK: "0=24 1=24",
	unix.SYS_UTIME:       "0=4096 1=16", unix.SYS_MKNOD: "0=4096",
	unix.SYS_STATFS: "0=4096 1=120", unix.SYS_FSTATFS: "1=120",
	unix.SYS_SCHED_SETPARAM: "1=4", unix.SYS_SCHED_GETPARAM: "1=4", unix.SYS_SCHED_SETSCHEDULER: "2=4",
	unix.SYS_SCHED_RR_GET_INTERVAL: "1=16",
	unix.SYS_PRCTL:                 "1=16",
	unix.SYS_ARCH_PRCTL:            "1=8",
	unix.SYS_ADJTIMEX:              "0=208",
	unix.SYS_SETRLIMIT:             "1=16", unix.SYS_CHROOT: "0=4096", unix.SYS_SETTIMEOFDAY: "0=16 1=8",
	unix.SYS_SETXATTR: "0=4096 1=4096 2:3", unix.SYS_LSETXATTR: "0=4096 1=4096 2:3", unix.SYS_FSETXATTR: "1=4096 2:3",
	unix.SYS_GETXATTR: "0=4096 1=4096 2:3", unix.SYS_LGETXATTR: "0=4096 1=4096 2:3", unix.SYS_FGETXATTR: "1=4096 2:3",
	unix.SYS_LISTXATTR: "0=4096 1:2", unix.SYS_LLISTXATTR: "0=4096 1:2", unix.SYS_FLISTXATTR: "1:2",
	unix.SYS_REMOVEXATTR: "0=4096 1=4096", unix.SYS_LREMOVEXATTR: "0=4096 1=4096", unix.SYS_FREMOVEXATTR: "1=4096",
	unix.SYS_TIME:              "0=8",
	unix.SYS_FUTEX:             "0=4 4=4 3=16",
	unix.SYS_SCHED_SETAFFINITY: "2:1", unix.SYS_SCHED_GETAFFINITY: "2:1",
	unix.SYS_GETDENTS64:   "1:2",
	unix.SYS_TIMER_CREATE: "1=64 2=4", unix.SYS_TIMER_SETTIME: "2=32 3=32", unix.SYS_TIMER_GETTIME: "1=32",
	unix.SYS_CLOCK_SETTIME: "1=16", unix.SYS_CLOCK_GETTIME: "1=16", unix.SYS_CLOCK_GETRES: "1=16",
	unix.SYS_CLOCK_NANOSLEEP: "2=16 3=16",
	unix.SYS_EPOLL_WAIT:      "1:2x12", unix.SYS_EPOLL_CTL: "3=12",
	unix.SYS_UTIMES:            "0=4096 1=32",
	unix.SYS_WAITID:            "2=128 4=144",
	unix.SYS_INOTIFY_ADD_WATCH: "1=4096",
	unix.SYS_OPENAT:            "1=4096", unix.SYS_MKDIRAT: "1=4096", unix.SYS_MKNODAT: "1=4096",
	unix.SYS_FCHOWNAT: "1=4096", unix.SYS_FUTIMESAT: "1=4096 2=32", unix.SYS_NEWFSTATAT: "1=4096 2=144",
	unix.SYS_UNLINKAT: "1=4096", unix.SYS_RENAMEAT: "1=4096 3=4096", unix.SYS_LINKAT: "1=4096 3=4096",
	unix.SYS_SYMLINKAT: "0=4096 2=4096", unix.SYS_READLINKAT: "1=4096 2:3",
	unix.SYS_FCHMODAT: "1=4096", unix.SYS_FACCESSAT: "1=4096",
	unix.SYS_PSELECT6:    "*", // the sigset's address is in memory
	unix.SYS_PPOLL:       "0:1x8 2=16 3=128",
	unix.SYS_SPLICE:      "1=8 3=8",
	unix.SYS_VMSPLICE:    "*",
	unix.SYS_UTIMENSAT:   "1=4096 2=32",
	unix.SYS_EPOLL_PWAIT: "1:2x12 4=128",
	unix.SYS_SIGNALFD:    "1=128", unix.SYS_SIGNALFD4: "1=128",
	unix.SYS_TIMERFD_SETTIME: "2=32 3=32", unix.SYS_TIMERFD_GETTIME: "1=32",
	unix.SYS_ACCEPT4: "1=128 2=4",
	unix.SYS_PIPE2:   "0=8",
	unix.SYS_PREADV:  "*", unix.SYS_PWRITEV: "*",
	unix.SYS_RT_TGSIGQUEUEINFO: "3=128",
	unix.SYS_RECVMMSG:          "*", unix.SYS_SENDMMSG: "*",
	unix.SYS_PRLIMIT64:        "2=16 3=16",
	unix.SYS_GETCPU:           "0=4 1=4",
	unix.SYS_PROCESS_VM_READV: "*", unix.SYS_PROCESS_VM_WRITEV: "*",
	unix.SYS_RENAMEAT2:       "1=4096 3=4096",
	unix.SYS_GETRANDOM:       "0:1",
	unix.SYS_MEMFD_CREATE:    "0=4096",
	unix.SYS_COPY_FILE_RANGE: "1=8 3=8",
	unix.SYS_PREADV2:         "*", unix.SYS_PWRITEV2: "*",
	unix.SYS_STATX:             "1=4096 4=256",
	unix.SYS_PIDFD_SEND_SIGNAL: "2=128",
	unix.SYS_FACCESSAT2:        "1=4096",
	unix.SYS_EPOLL_PWAIT2:      "1:2x12 3=16 4=128",
}

// parseReach reads a reachSpecs entry.
func parseReach(spec string) (r []Reach, all bool, err error) {
	for _, item := range strings.Fields(spec) {
		if item == "*" {
			all = true
			continue
		}
		var rc Reach
		ptr, rest, ok := strings.Cut(item, "=")
		if ok {
			rc.LenArg = -1
			if rc.Add, err = strconv.ParseUint(rest, 10, 64); err != nil {
				return nil, false, fmt.Errorf("reach %q: %w", item, err)
			}
		} else {
			ptr, rest, ok = strings.Cut(item, ":")
			if !ok {
				return nil, false, fmt.Errorf("reach %q: no length", item)
			}
			rest, add, hasAdd := strings.Cut(rest, "+")
			rest, scale, hasScale := strings.Cut(rest, "x")
			rc.Scale = 1
			if rc.LenArg, err = strconv.Atoi(rest); err != nil {
				return nil, false, fmt.Errorf("reach %q: %w", item, err)
			}
			if hasScale {
				if rc.Scale, err = strconv.ParseUint(scale, 10, 64); err != nil {
					return nil, false, fmt.Errorf("reach %q: %w", item, err)
				}
			}
			if hasAdd {
				if rc.Add, err = strconv.ParseUint(add, 10, 64); err != nil {
					return nil, false, fmt.Errorf("reach %q: %w", item, err)
				}
			}
		}
		if rc.Ptr, err = strconv.Atoi(ptr); err != nil {
			return nil, false, fmt.Errorf("reach %q: %w", item, err)
		}
		r = append(r, rc)
	}
	return r, all, nil
}
