//! Linux syscall numbers for both architectures, and what their arguments
//! mean. Only the calls a blocked thread sits in are listed; the rest print as
//! `syscall N`.
use crate::elf::regs::Arch;

/// How to print a syscall's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Args {
    /// First argument is a file descriptor.
    Fd,
    /// `futex(uaddr, op, val, timeout)`.
    Futex,
    /// `poll(fds, nfds, timeout_ms)` / `ppoll(fds, nfds, timespec*)`.
    Poll,
    /// `select`/`pselect6(nfds, readfds, writefds, exceptfds, timeout)`.
    Select,
    /// `connect(fd, addr, addrlen)`.
    Connect,
    /// `epoll_wait`/`epoll_pwait(epfd, events, maxevents, timeout_ms)`;
    /// `epoll_pwait2`'s timeout is a timespec.
    Epoll,
    /// `waitid(idtype, id, …)`.
    Waitid,
    /// `nanosleep(req*)`.
    Sleep,
    /// `clock_nanosleep(clock, flags, req*)`.
    ClockSleep,
    /// `wait4(pid, …)` / `waitid(type, id, …)`.
    Wait,
    None,
}

/// `clock_nanosleep`'s flag for an absolute deadline.
pub const TIMER_ABSTIME: u64 = 1;

/// Linux clock ids (the same on every architecture).
pub fn clock_name(id: u64) -> String {
    const NAMES: &[&str] = &[
        "CLOCK_REALTIME",
        "CLOCK_MONOTONIC",
        "CLOCK_PROCESS_CPUTIME_ID",
        "CLOCK_THREAD_CPUTIME_ID",
        "CLOCK_MONOTONIC_RAW",
        "CLOCK_REALTIME_COARSE",
        "CLOCK_MONOTONIC_COARSE",
        "CLOCK_BOOTTIME",
    ];
    NAMES
        .get(id as usize)
        .map_or_else(|| format!("clock {id}"), |n| n.to_string())
}

/// (name, x86_64 number, arm64 number, arguments).
const TABLE: &[(&str, Option<u64>, Option<u64>, Args)] = &[
    ("read", Some(0), Some(63), Args::Fd),
    ("write", Some(1), Some(64), Args::Fd),
    ("close", Some(3), Some(57), Args::Fd),
    ("poll", Some(7), None, Args::Poll),
    ("ioctl", Some(16), Some(29), Args::Fd),
    ("pread64", Some(17), Some(67), Args::Fd),
    ("pwrite64", Some(18), Some(68), Args::Fd),
    ("readv", Some(19), Some(65), Args::Fd),
    ("writev", Some(20), Some(66), Args::Fd),
    ("select", Some(23), None, Args::Select),
    ("sched_yield", Some(24), Some(124), Args::None),
    ("msync", Some(26), Some(227), Args::None),
    ("pause", Some(34), None, Args::None),
    ("nanosleep", Some(35), Some(101), Args::Sleep),
    ("sendfile", Some(40), Some(71), Args::Fd),
    ("connect", Some(42), Some(203), Args::Connect),
    ("accept", Some(43), Some(202), Args::Fd),
    ("sendto", Some(44), Some(206), Args::Fd),
    ("recvfrom", Some(45), Some(207), Args::Fd),
    ("sendmsg", Some(46), Some(211), Args::Fd),
    ("recvmsg", Some(47), Some(212), Args::Fd),
    ("wait4", Some(61), Some(260), Args::Wait),
    ("semop", Some(65), Some(193), Args::None),
    ("msgsnd", Some(69), Some(189), Args::None),
    ("msgrcv", Some(70), Some(188), Args::None),
    ("fcntl", Some(72), Some(25), Args::Fd),
    ("flock", Some(73), Some(32), Args::Fd),
    ("fsync", Some(74), Some(82), Args::Fd),
    ("fdatasync", Some(75), Some(83), Args::Fd),
    ("rt_sigtimedwait", Some(128), Some(137), Args::None),
    ("rt_sigsuspend", Some(130), Some(133), Args::None),
    ("sync", Some(162), Some(81), Args::None),
    ("futex", Some(202), Some(98), Args::Futex),
    ("io_getevents", Some(208), Some(4), Args::None),
    ("restart_syscall", Some(219), Some(128 + 1000), Args::None),
    ("semtimedop", Some(220), Some(192), Args::None),
    ("clock_nanosleep", Some(230), Some(115), Args::ClockSleep),
    ("epoll_wait", Some(232), None, Args::Epoll),
    ("tgkill", Some(234), Some(131), Args::None),
    ("mq_timedsend", Some(242), Some(182), Args::None),
    ("mq_timedreceive", Some(243), Some(183), Args::None),
    ("waitid", Some(247), Some(95), Args::Waitid),
    ("openat", Some(257), Some(56), Args::None),
    ("pselect6", Some(270), Some(72), Args::Select),
    ("ppoll", Some(271), Some(73), Args::Poll),
    ("splice", Some(275), Some(76), Args::Fd),
    ("epoll_pwait", Some(281), Some(22), Args::Epoll),
    ("accept4", Some(288), Some(242), Args::Fd),
    ("recvmmsg", Some(299), Some(243), Args::Fd),
    ("sendmmsg", Some(307), Some(269), Args::Fd),
    ("getrandom", Some(318), Some(278), Args::None),
    ("epoll_pwait2", Some(441), Some(441), Args::Epoll),
    ("futex_waitv", Some(449), Some(449), Args::None),
];

pub fn lookup(arch: Arch, nr: u64) -> Option<(&'static str, Args)> {
    TABLE
        .iter()
        .find(|(_, x, a, _)| match arch {
            Arch::X86_64 => *x == Some(nr),
            // arm64's restart_syscall is 128, which x86_64 uses for rt_sigtimedwait.
            Arch::Aarch64 => *a == Some(nr) || (nr == 128 && *a == Some(128 + 1000)),
        })
        .map(|(n, _, _, args)| (*n, *args))
}

/// `waitid`'s id type.
pub fn idtype_name(t: u64) -> &'static str {
    match t {
        0 => "P_ALL",
        1 => "P_PID",
        2 => "P_PGID",
        3 => "P_PIDFD",
        _ => "P_?",
    }
}

/// `FUTEX_WAIT_BITSET` and `FUTEX_WAKE_BITSET` take a bitset (`val3`).
pub fn futex_has_bitset(op: u64) -> bool {
    matches!(op & 0x7f, 9 | 10)
}

/// `FUTEX_WAIT_PRIVATE` and friends.
pub fn futex_op(op: u64) -> String {
    const NAMES: [&str; 14] = [
        "FUTEX_WAIT",
        "FUTEX_WAKE",
        "FUTEX_FD",
        "FUTEX_REQUEUE",
        "FUTEX_CMP_REQUEUE",
        "FUTEX_WAKE_OP",
        "FUTEX_LOCK_PI",
        "FUTEX_UNLOCK_PI",
        "FUTEX_TRYLOCK_PI",
        "FUTEX_WAIT_BITSET",
        "FUTEX_WAKE_BITSET",
        "FUTEX_WAIT_REQUEUE_PI",
        "FUTEX_CMP_REQUEUE_PI",
        "FUTEX_LOCK_PI2",
    ];
    let cmd = (op & 0x7f) as usize;
    let mut s = NAMES
        .get(cmd)
        .map_or_else(|| format!("op {cmd}"), |n| n.to_string());
    if op & 128 != 0 {
        s.push_str("_PRIVATE");
    }
    if op & 256 != 0 {
        s.push_str("|CLOCK_REALTIME");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_ops() {
        assert_eq!(lookup(Arch::X86_64, 202).unwrap().0, "futex");
        assert_eq!(lookup(Arch::Aarch64, 98).unwrap().0, "futex");
        assert_eq!(lookup(Arch::Aarch64, 128).unwrap().0, "restart_syscall");
        assert_eq!(lookup(Arch::X86_64, 128).unwrap().0, "rt_sigtimedwait");
        assert!(lookup(Arch::X86_64, 9999).is_none());
        assert_eq!(futex_op(128), "FUTEX_WAIT_PRIVATE");
        assert_eq!(futex_op(393), "FUTEX_WAIT_BITSET_PRIVATE|CLOCK_REALTIME");
    }
}
