//! A blocked system call's arguments in words: the fd and what it is, the
//! futex word and its symbol, where a connect goes, the fds a poll or select
//! waits on, how long a sleep is. Read from the registers and, through them,
//! the process's memory.
use super::syscalls::{self, Args};
use super::Context;
use crate::memory::ReadExt;

/// Most `pollfd` entries named; more are counted.
const MAX_POLLFDS: u64 = 8;

/// A `poll` set from memory: each `struct pollfd {int fd; short events;
/// short revents;}` as `fd 5 POLLIN`, named where a live capture knows the fd.
fn poll_fds(cx: &Context, at: u64, n: u64) -> String {
    let one = |i: u64| -> Option<String> {
        let p = at.checked_add(i.checked_mul(8)?)?;
        let fd = cx.mem.u32(p).ok()? as i32;
        let events = cx.mem.u16(p.checked_add(4)?).ok()?;
        let mut names: Vec<&str> = [
            (0x001, "POLLIN"),
            (0x002, "POLLPRI"),
            (0x004, "POLLOUT"),
            (0x2000, "POLLRDHUP"),
        ]
        .iter()
        .filter(|(bit, _)| events & bit != 0)
        .map(|(_, n)| *n)
        .collect();
        if names.is_empty() {
            names.push("no events");
        }
        let what = cx
            .fds
            .get(&fd)
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        Some(format!("fd {fd}{what} {}", names.join("|")))
    };
    let shown: Option<Vec<String>> = (0..n.min(MAX_POLLFDS)).map(one).collect();
    match shown {
        Some(v) if !v.is_empty() => {
            let more = n.saturating_sub(MAX_POLLFDS);
            let tail = if more > 0 {
                format!(", {more} more")
            } else {
                String::new()
            };
            format!("{}{tail}", v.join(", "))
        }
        _ => format!("{n} fds"),
    }
}

/// The descriptors set in an `fd_set` of `nfds` bits: `{3, 7}`.
fn fd_set(cx: &Context, at: u64, nfds: u64) -> String {
    const MAX_FDS: u64 = 1024;
    let mut fds = vec![];
    for word in 0..nfds.min(MAX_FDS).div_ceil(64) {
        let Some(bits) = at.checked_add(word * 8).and_then(|p| cx.mem.u64(p).ok()) else {
            return "{?}".into();
        };
        fds.extend(
            (0..64)
                .filter(|b| bits >> b & 1 == 1)
                .map(|b| word * 64 + b),
        );
    }
    fds.retain(|&fd| fd < nfds);
    let shown: Vec<String> = fds
        .iter()
        .take(MAX_POLLFDS as usize)
        .map(|f| f.to_string())
        .collect();
    let more = fds.len().saturating_sub(MAX_POLLFDS as usize);
    let tail = if more > 0 {
        format!(", {more} more")
    } else {
        String::new()
    };
    format!("{{{}{tail}}}", shown.join(", "))
}

/// A socket address from memory: `127.0.0.1:8443`, `[::1]:443`,
/// `unix:/run/x.sock`, `unix:@abstract`.
fn sockaddr(cx: &Context, at: u64, len: u64) -> Option<String> {
    let len = usize::try_from(len.min(128)).ok()?;
    if len < 2 || at == 0 {
        return None;
    }
    let mut b = vec![0u8; len];
    cx.mem.read(at, &mut b).ok()?;
    let family = u16::from_le_bytes([b[0], b[1]]);
    let port = |b: &[u8]| u16::from_be_bytes([b[2], b[3]]);
    match family {
        // AF_UNIX: a path, or (a NUL first) an abstract name.
        1 => {
            let path = &b[2..];
            let (abstract_, name) = match path.first() {
                Some(0) => (true, &path[1..]),
                _ => (false, path),
            };
            let end = if abstract_ {
                name.len()
            } else {
                name.iter().position(|&c| c == 0).unwrap_or(name.len())
            };
            let s = String::from_utf8_lossy(&name[..end]);
            Some(format!("unix:{}{s}", if abstract_ { "@" } else { "" }))
        }
        2 if len >= 8 => Some(format!(
            "{}:{}",
            std::net::Ipv4Addr::new(b[4], b[5], b[6], b[7]),
            port(&b)
        )),
        10 if len >= 24 => {
            let a: [u8; 16] = b[8..24].try_into().ok()?;
            Some(format!("[{}]:{}", std::net::Ipv6Addr::from(a), port(&b)))
        }
        _ => None,
    }
}

/// `read(fd 5)`, `futex(0x5b8700 <shared_mu>, FUTEX_WAIT_PRIVATE)`, ...
pub fn describe(cx: &Context, name: &str, args: Args, a: &[u64; 6]) -> String {
    match args {
        Args::Fd => format!("{name}(fd {}{})", a[0] as i32, fd_what(cx, a[0])),
        Args::Futex => futex(cx, a),
        Args::Connect => {
            let fd = a[0] as i32;
            let what = fd_what(cx, a[0]);
            match sockaddr(cx, a[1], a[2]) {
                Some(to) => format!("{name}(fd {fd}{what}, to {to})"),
                None => format!("{name}(fd {fd}{what})"),
            }
        }
        Args::Epoll => epoll(cx, name, a),
        Args::Waitid => format!("{name}({} {})", syscalls::idtype_name(a[0]), a[1] as i32),
        Args::Poll => poll(cx, name, a),
        Args::Select => select(cx, name, a),
        Args::Sleep => format!("{name}({})", timespec(cx, a[0])),
        // An absolute deadline (glibc's sleep passes a relative one; Python's
        // time.sleep an absolute one) is a clock reading, not a duration.
        Args::ClockSleep if a[1] & syscalls::TIMER_ABSTIME != 0 => format!(
            "{name}(until {} {})",
            syscalls::clock_name(a[0]),
            timespec(cx, a[2])
        ),
        Args::ClockSleep => format!("{name}({})", timespec(cx, a[2])),
        Args::Wait => format!("{name}(pid {})", a[0] as i32),
        Args::None => format!("{name}()"),
    }
}

/// `: pipe:[83444]` where a live capture knows what fd `fd` is.
fn fd_what(cx: &Context, fd: u64) -> String {
    cx.fds
        .get(&(fd as i32))
        .map(|w| format!(": {w}"))
        .unwrap_or_default()
}

/// A `struct timespec` at `p` as seconds.
fn timespec(cx: &Context, p: u64) -> String {
    match (cx.mem.u64(p), cx.mem.u64(p.wrapping_add(8))) {
        (Ok(s), Ok(ns)) if p != 0 => format!("{:.3} s", s as f64 + ns as f64 / 1e9),
        _ => "?".into(),
    }
}

fn futex(cx: &Context, a: &[u64; 6]) -> String {
    let sym = (cx.data_symbol)(a[0])
        .map(|s| format!(" <{s}>"))
        .unwrap_or_default();
    // A bitset other than "any" says which wakers count (glibc's rwlocks
    // and condvars use all bits).
    let bitset = match a[5] as u32 {
        _ if !syscalls::futex_has_bitset(a[1]) => String::new(),
        u32::MAX => String::new(),
        b => format!(", bitset {b:#x}"),
    };
    format!(
        "futex({:#x}{sym}, {}{bitset})",
        a[0],
        syscalls::futex_op(a[1])
    )
}

/// A timeout in milliseconds, negative for none.
fn timeout_ms(t: i32) -> String {
    if t < 0 {
        "no timeout".to_string()
    } else {
        format!("timeout {t} ms")
    }
}

fn epoll(cx: &Context, name: &str, a: &[u64; 6]) -> String {
    let timeout = match (name, a[3]) {
        ("epoll_pwait2", 0) => "no timeout".to_string(),
        ("epoll_pwait2", p) => format!("timeout {}", timespec(cx, p)),
        (_, t) => timeout_ms(t as i32),
    };
    format!(
        "{name}(epoll fd {}{}, {timeout})",
        a[0] as i32,
        fd_what(cx, a[0])
    )
}

fn poll(cx: &Context, name: &str, a: &[u64; 6]) -> String {
    let timeout = match (name, a[2]) {
        ("poll", t) => timeout_ms(t as i32),
        (_, 0) => "no timeout".into(),
        (_, p) => format!("timeout {}", timespec(cx, p)),
    };
    format!("{name}({}, {timeout})", poll_fds(cx, a[0], a[1]))
}

fn select(cx: &Context, name: &str, a: &[u64; 6]) -> String {
    let timeout = match (name, a[4]) {
        (_, 0) => "no timeout".to_string(),
        // select's is a `struct timeval`: microseconds.
        ("select", p) => match (cx.mem.u64(p), cx.mem.u64(p.wrapping_add(8))) {
            (Ok(s), Ok(us)) => format!("timeout {:.3} s", s as f64 + us as f64 / 1e6),
            _ => "timeout ?".into(),
        },
        (_, p) => format!("timeout {}", timespec(cx, p)),
    };
    let sets: Vec<String> = [("read", a[1]), ("write", a[2]), ("except", a[3])]
        .iter()
        .filter(|(_, p)| *p != 0)
        .map(|(what, p)| format!("{what} {}", fd_set(cx, *p, a[0])))
        .collect();
    format!(
        "{name}({}{}{timeout})",
        sets.join(", "),
        if sets.is_empty() { "" } else { ", " }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::rules::Rules;
    use crate::elf::regs::Arch;
    use crate::memory::mock::MockMemory;

    fn describe_with(mem: &MockMemory, name: &str, args: Args, a: [u64; 6]) -> String {
        let rules = Rules::builtin();
        let fds = Default::default();
        let no_symbol = |_: u64| None;
        let cx = Context {
            arch: Arch::X86_64,
            mem,
            rules: &rules,
            threads: &[],
            data_symbol: &no_symbol,
            fds: &fds,
            defines: &|_, _| false,
            function_at: &|_| None,
        };
        describe(&cx, name, args, &a)
    }

    #[test]
    fn socket_addresses() {
        let mut m = MockMemory::default();
        // AF_INET 127.0.0.1:8443
        m.put(
            0x1000,
            &[2, 0, 0x20, 0xfb, 127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        assert_eq!(
            describe_with(&m, "connect", Args::Connect, [5, 0x1000, 16, 0, 0, 0]),
            "connect(fd 5, to 127.0.0.1:8443)"
        );
        // AF_INET6 [::1]:443
        let mut v6 = vec![10, 0, 0x01, 0xbb, 0, 0, 0, 0];
        v6.extend([0u8; 15]);
        v6.extend([1u8, 0, 0, 0, 0]);
        m.put(0x2000, &v6);
        assert_eq!(
            describe_with(&m, "connect", Args::Connect, [6, 0x2000, 28, 0, 0, 0]),
            "connect(fd 6, to [::1]:443)"
        );
        // AF_UNIX, a path and an abstract name (length-bounded, no NUL).
        let mut un = vec![1, 0];
        un.extend(b"/run/x.sock\0garbage");
        un.resize(110, 0);
        m.put(0x3000, &un);
        assert_eq!(
            describe_with(&m, "connect", Args::Connect, [7, 0x3000, 110, 0, 0, 0]),
            "connect(fd 7, to unix:/run/x.sock)"
        );
        m.put(0x4000, b"\x01\x00\x00abc");
        assert_eq!(
            describe_with(&m, "connect", Args::Connect, [8, 0x4000, 6, 0, 0, 0]),
            "connect(fd 8, to unix:@abc)"
        );
        // Unreadable or unknown: the descriptor alone.
        assert_eq!(
            describe_with(&m, "connect", Args::Connect, [9, 0x9000, 16, 0, 0, 0]),
            "connect(fd 9)"
        );
    }

    #[test]
    fn select_sets_epoll_and_waitid() {
        let mut m = MockMemory::default();
        m.put_u64(0x1000, (1 << 3) | (1 << 7)); // readfds {3, 7}
        m.put_u64(0x2000, 1 << 4); // writefds {4}
        m.put_u64(0x3000, 2); // timeval 2 s
        m.put_u64(0x3008, 500_000);
        assert_eq!(
            describe_with(
                &m,
                "select",
                Args::Select,
                [8, 0x1000, 0x2000, 0, 0x3000, 0]
            ),
            "select(read {3, 7}, write {4}, timeout 2.500 s)"
        );
        assert_eq!(
            describe_with(&m, "pselect6", Args::Select, [8, 0x1000, 0, 0, 0, 0]),
            "pselect6(read {3, 7}, no timeout)"
        );
        // Bits past nfds are not descriptors of the call.
        assert_eq!(
            describe_with(&m, "select", Args::Select, [5, 0x1000, 0, 0, 0, 0]),
            "select(read {3}, no timeout)"
        );
        assert_eq!(
            describe_with(&m, "epoll_wait", Args::Epoll, [4, 0, 64, u64::MAX, 0, 0]),
            "epoll_wait(epoll fd 4, no timeout)"
        );
        assert_eq!(
            describe_with(&m, "epoll_pwait", Args::Epoll, [4, 0, 64, 1000, 0, 0]),
            "epoll_pwait(epoll fd 4, timeout 1000 ms)"
        );
        assert_eq!(
            describe_with(&m, "waitid", Args::Waitid, [1, 4242, 0, 4, 0, 0]),
            "waitid(P_PID 4242)"
        );
        // FUTEX_WAIT_BITSET with a narrowed bitset says it; "any" does not.
        assert_eq!(
            describe_with(&m, "futex", Args::Futex, [0x5000, 9 | 128, 0, 0, 0, 0x2]),
            "futex(0x5000, FUTEX_WAIT_BITSET_PRIVATE, bitset 0x2)"
        );
        assert_eq!(
            describe_with(
                &m,
                "futex",
                Args::Futex,
                [0x5000, 9 | 128, 0, 0, 0, u32::MAX as u64]
            ),
            "futex(0x5000, FUTEX_WAIT_BITSET_PRIVATE)"
        );
    }
}
