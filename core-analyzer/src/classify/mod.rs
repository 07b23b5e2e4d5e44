//! What each thread in C waits for: the syscall in flight (its number and
//! arguments) and the frames of the blocked C call, matched against rules
//! (`rules.json`); lock owners read from the lock itself. Per thread only:
//! the chains, findings and incidents built on these facts are `diagnose`'s.
pub mod owner;
pub mod rules;
pub mod sqlite;
pub mod syscalls;

use crate::elf::regs::{Arch, SyscallState};
use crate::memory::{Memory, ReadExt};
use crate::report::{Blocked, ThreadInfo};
use crate::unwind::{Frame, Lang};
use rules::{normalize, normalized, Rules, Subject};
use std::collections::{HashMap, HashSet};
use syscalls::Args;

/// Everything classification needs besides the thread itself.
pub struct Context<'a> {
    pub arch: Arch,
    pub mem: &'a dyn Memory,
    pub rules: &'a Rules,
    /// (tid, thread pointer) of every thread in the core, to name lock owners.
    pub threads: &'a [(u32, u64)],
    /// `name+off` for a data address, if a module has a symbol for it.
    pub data_symbol: &'a dyn Fn(u64) -> Option<String>,
    /// What each file descriptor is (live captures; empty for cores).
    pub fds: &'a std::collections::BTreeMap<i32, String>,
    /// Whether a module (by file name) defines a symbol: a library linked in.
    pub defines: &'a dyn Fn(&str, &str) -> bool,
    /// The function that starts exactly at an address (`SSL_connect@plt`).
    pub function_at: &'a dyn Fn(u64) -> Option<String>,
}

/// Where a thread's blocked C call is on its stack.
pub struct Call<'a> {
    pub tid: u32,
    pub frames: &'a [Frame],
    /// The first frame of the call: below Go's own signal handler, if one runs.
    pub start: usize,
    /// The first frame a C signal handler interrupted, when one runs on top of
    /// the call: the handler is what waits, the code below it what it stopped.
    pub handler_end: Option<usize>,
    pub sys: &'a SyscallState,
    /// Go's signal that interrupted the call, if any (`SIGQUIT`).
    pub interrupted_by: Option<&'a str>,
    /// A system call Go itself makes for the goroutine (`syscall.Read`, no
    /// cgo): its frames are Go's, and only the syscall says what it waits for.
    pub go_side: bool,
}

/// Go's own wrappers around the syscall instruction: the call is named after
/// the first frame that is not one of them (`syscall.read`).
fn is_go_syscall_plumbing(name: &str) -> bool {
    name.contains("Syscall")
        || name.starts_with("internal/runtime/syscall")
        || name.starts_with("runtime/internal/syscall")
}

/// The blocked C call of a thread: its frames from `start` up to the first Go
/// frame (or to the frames a C handler interrupted). `None` when the thread is
/// not in C there.
pub fn classify(cx: &Context, c: &Call) -> Option<Blocked> {
    let (frames, start, sys, interrupted_by) = (c.frames, c.start, c.sys, c.interrupted_by);
    let pc = frames.get(start).map_or(0, |f| f.pc);
    let end = c.handler_end.unwrap_or(frames.len()).min(frames.len());
    let lang = if c.go_side { Lang::Go } else { Lang::C };
    let call: Vec<&Frame> = frames
        .get(start..end)?
        .iter()
        .take_while(|f| f.lang == lang)
        .collect();
    if call.is_empty() {
        return None;
    }
    // A Go-side call is matched by its syscall, and by the Go wrappers some
    // rules name (`syscall.Nanosleep`, for a number lost to EINTR); library
    // rules are C's.
    let known: Vec<Option<String>> = call
        .iter()
        .map(|f| f.known_function().map(normalize))
        .collect();
    let names: Vec<String> = known.iter().flatten().cloned().collect();
    let mut modules: Vec<String> = call
        .iter()
        .filter(|_| !c.go_side)
        .filter_map(|f| f.module.as_deref().map(str::to_string))
        .collect();
    modules.dedup();
    let insn_end = crate::unwind::signal::syscall_insn_end(cx.mem, cx.arch, pc);
    let in_syscall = match cx.arch {
        Arch::X86_64 => sys.nr.is_some(),
        Arch::Aarch64 => false,
    } || insn_end.is_some();
    // Where the registers lost the number (an EINTR return, a debugger that
    // hides orig_rax), the wrapper's code still says it.
    let nr = sys.nr.or_else(|| {
        insn_end.and_then(|end| crate::unwind::signal::syscall_nr_from_code(cx.mem, cx.arch, end))
    });
    let sc = nr
        .filter(|_| in_syscall)
        .map(|nr| match syscalls::lookup(cx.arch, nr) {
            Some((name, args)) => (name.to_string(), args),
            None => (format!("syscall {nr}"), Args::None),
        });
    let call_frames: Vec<rules::CallFrame> = call
        .iter()
        .zip(&known)
        .map(|(f, n)| rules::CallFrame {
            name: n.as_deref(),
            module: f.module.as_deref(),
        })
        .collect();
    let subject = Subject {
        frames: &names,
        modules: &modules,
        syscall: sc.as_ref().map(|(n, _)| n.as_str()),
        in_syscall,
        call: &call_frames,
        defines: cx.defines,
    };
    let rule = cx.rules.classes.iter().find(|r| r.matches(&subject));
    let (mut class, mut explain, mut advice) = match rule {
        Some(r) => (r.class.clone(), r.explain.clone(), r.advice.clone()),
        None => (
            "unclassified".to_string(),
            "in C; no rule recognizes this call".to_string(),
            "see the frames; a --rules file can teach cgocore this pattern".to_string(),
        ),
    };
    let lib = cx
        .rules
        .libraries
        .iter()
        .filter(|_| !c.go_side)
        .find(|l| l.matches(&subject, &class));
    if c.go_side {
        explain = format!(
            "a system call Go makes itself, not cgo; {}",
            explain.replace(" in C", "")
        );
    }
    let mut waits_as_lock = None;
    if let Some(l) = lib {
        // The operation: an exported frame says it, else the function the
        // application called into the library (a tail call may have left no
        // frame of it: SSL_connect).
        let entry = library_entry(cx, l, &subject, &call);
        let op = l
            .operation(&subject)
            .map(str::to_string)
            .or_else(|| {
                let e = entry.as_deref()?;
                l.operations
                    .iter()
                    .find(|[p, _]| rules::glob(p, e))
                    .map(|[_, op]| format!("{op}, {e}"))
            })
            .map(|op| format!(" ({op})"))
            .unwrap_or_default();
        explain = format!("{}{op}; {explain}", l.explain);
        advice = format!("{}; {advice}", l.advice);
        if let Some(w) = &l.waits_as {
            class = w.class.clone();
            waits_as_lock = Some(w.lock.clone());
        }
    }
    let top = call
        .iter()
        .filter(|f| !c.go_side || !f.function.as_deref().is_some_and(is_go_syscall_plumbing))
        .find(|f| !f.inlined || c.go_side)
        .and_then(|f| f.function.as_deref().map(str::to_string))
        .unwrap_or_else(|| "??".into());
    let mut detail = match &sc {
        Some((name, args)) => describe(cx, name, *args, &sys.args),
        // The kernel makes an interrupted sleep, pause or poll return EINTR
        // to run the handler: its number is gone, the C frames still name it.
        None if in_syscall => match interrupted_by {
            Some(sig) => format!("in a syscall in {top}, interrupted by {sig} (EINTR)"),
            None => format!("in a syscall in {top}"),
        },
        None => format!("running {top}"),
    };
    if sc.is_some() {
        detail.push_str(&format!(" in {top}"));
    }
    // The lock: the futex word the thread sleeps on, when it waits for a lock.
    let futex_wait = sc.as_ref().is_some_and(|(n, _)| n == "futex");
    let lock = (futex_wait && cx.rules.is_lock(&class)).then_some(sys.args[0]);
    let mut owner_tid = lock.and_then(|a| owner::owner(cx, &class, a));
    // A handler that waits for a lock of the very code it interrupted (malloc
    // inside malloc, setenv inside setenv) waits for its own thread.
    if let (Some(r), Some(hend), None, Some(_)) = (rule, c.handler_end, owner_tid, lock) {
        let below: Vec<String> = frames
            .get(hend..)
            .unwrap_or_default()
            .iter()
            .take_while(|f| f.lang == Lang::C)
            .filter_map(|f| f.known_function())
            .map(normalize)
            .collect();
        if r.holds_in(&below) {
            owner_tid = Some(c.tid);
            explain = format!(
                "self-deadlock: a signal handler waits for a lock its own thread held when the signal came; {explain}"
            );
        }
    }
    let lock_symbol = lock
        .and_then(|a| (cx.data_symbol)(a))
        .map(|sym| owner::object_symbol(&class, sym))
        .or(waits_as_lock);
    Some(Blocked {
        class,
        syscall: sc.map(|(n, _)| n),
        detail,
        owner_tid,
        library: lib.map(|l| l.library.clone()),
        explain,
        advice,
        lock,
        lock_symbol,
        owner_likely: false,
    })
}

/// Waiters of one lock share its owner: where the lock itself names nobody (a
/// bare futex word), an owner found another way (a self-deadlocked handler,
/// or the code on a stack that holds it) holds it for every waiter.
pub fn share_owners(threads: &mut [ThreadInfo]) {
    owners_from_stacks(threads);
    let mut known: HashMap<u64, u32> = HashMap::new();
    for b in threads.iter().filter_map(|t| t.blocked.as_ref()) {
        if let (Some(lock), Some(o)) = (b.lock, b.owner_tid) {
            known.entry(lock).or_insert(o);
        }
    }
    for b in threads.iter_mut().filter_map(|t| t.blocked.as_mut()) {
        if b.owner_tid.is_none() {
            b.owner_tid = b.lock.and_then(|l| known.get(&l).copied());
        }
    }
}

/// The library function the application called, read from the call
/// instruction before the return address of the first frame outside the
/// library (a PLT stub names it: `SSL_connect@plt`).
fn library_entry(
    cx: &Context,
    l: &rules::LibraryRule,
    s: &Subject,
    call: &[&Frame],
) -> Option<String> {
    let last = s.call.iter().rposition(|f| l.belongs(s, f))?;
    let caller = call.get(last + 1)?;
    let target = crate::unwind::native::direct_call_target(cx.mem, cx.arch, caller.pc)?;
    let name = (cx.function_at)(target)?;
    Some(name.trim_end_matches("@plt").to_string())
}

/// Locks a library keeps where cgocore cannot read an owner (SQLite's
/// database lock, without SQLite's DWARF): a thread that waits for one is
/// linked to the other threads inside that library — its likely holders. One
/// such thread becomes the owner, marked likely; several are named.
pub fn likely_holders(threads: &mut [ThreadInfo], rules: &Rules, settled: &HashSet<u32>) {
    for rule in rules.libraries.iter().filter(|l| l.waits_as.is_some()) {
        let others: Vec<&ThreadInfo> = threads
            .iter()
            .filter(|t| !rule.is_waiter(t) && rule.has_thread(t))
            .collect();
        // Those with code on their stack that holds the lock come first.
        let held_in = rule.waits_as.as_ref().map_or(&[][..], |w| &w.held_in[..]);
        let holding = |t: &&&ThreadInfo| {
            t.frames.iter().any(|f| {
                f.known_function()
                    .is_some_and(|n| held_in.iter().any(|g| rules::glob(g, normalized(n))))
            })
        };
        let doing: Vec<u32> = others.iter().filter(holding).map(|t| t.tid).collect();
        let what = match (
            &doing[..],
            rule.waits_as.as_ref().and_then(|w| w.held_doing.as_deref()),
        ) {
            ([_, ..], Some(d)) => format!(" with {d}"),
            _ => String::new(),
        };
        let holders: Vec<u32> = if doing.is_empty() {
            others.iter().map(|t| t.tid).collect()
        } else {
            doing
        };
        for t in threads
            .iter_mut()
            .filter(|t| rule.is_waiter(t) && !settled.contains(&t.tid))
        {
            let b = t.blocked.as_mut().expect("a waiter is blocked");
            match holders.as_slice() {
                [] => {}
                [one] => {
                    b.owner_tid = Some(*one);
                    b.owner_likely = true;
                    b.explain = format!(
                        "{}; likely held by thread {one}, the only other thread inside {}{what}",
                        b.explain, rule.library
                    );
                }
                many => {
                    let list: Vec<String> = many.iter().map(u32::to_string).collect();
                    b.explain = format!(
                        "{}; held by one of the other threads inside {}{what}: {}",
                        b.explain,
                        rule.library,
                        list.join(", ")
                    );
                }
            }
        }
    }
}

/// Owners of bare locks that a code path is known to hold (`owner::HELD_BY_CODE`):
/// the thread with that code on its stack, unless it waits for the lock itself.
fn owners_from_stacks(threads: &mut [ThreadInfo]) {
    // (function, its thread, the lock that thread waits for): one pass over
    // the frames, each name compared once, nothing allocated.
    let mut in_code: Vec<(&str, u32, Option<u64>)> = vec![];
    for t in threads.iter() {
        let waits = t.blocked.as_ref().and_then(|b| b.lock);
        let codes = t
            .frames
            .iter()
            .filter(|f| f.lang == Lang::C)
            .filter_map(|f| owner::holding_code(normalized(f.known_function()?)));
        for code in codes {
            if !in_code.contains(&(code, t.tid, waits)) {
                in_code.push((code, t.tid, waits));
            }
        }
    }
    if in_code.is_empty() {
        return;
    }
    for t in threads.iter_mut() {
        let tid = t.tid;
        let Some(b) = t.blocked.as_mut().filter(|b| b.owner_tid.is_none()) else {
            continue;
        };
        let (Some(lock), Some(code)) = (
            b.lock,
            b.lock_symbol.as_deref().and_then(owner::held_by_code),
        ) else {
            continue;
        };
        b.owner_tid = in_code
            .iter()
            .find(|(c, holder, waits)| *c == code && *holder != tid && *waits != Some(lock))
            .map(|(_, holder, _)| *holder);
    }
}

/// `read(fd 5)`, `futex(0x5b8700 <shared_mu>, FUTEX_WAIT_PRIVATE)`, ...
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

fn describe(cx: &Context, name: &str, args: Args, a: &[u64; 6]) -> String {
    let timespec = |p: u64| -> String {
        match (cx.mem.u64(p), cx.mem.u64(p.wrapping_add(8))) {
            (Ok(s), Ok(ns)) if p != 0 => format!("{:.3} s", s as f64 + ns as f64 / 1e9),
            _ => "?".into(),
        }
    };
    match args {
        Args::Fd => {
            let fd = a[0] as i32;
            match cx.fds.get(&fd) {
                Some(what) => format!("{name}(fd {fd}: {what})"),
                None => format!("{name}(fd {fd})"),
            }
        }
        Args::Futex => {
            let sym = (cx.data_symbol)(a[0])
                .map(|s| format!(" <{s}>"))
                .unwrap_or_default();
            // A bitset other than "any" says which wakers count (glibc's
            // rwlocks and condvars use all bits).
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
        Args::Connect => {
            let fd = a[0] as i32;
            let what = cx
                .fds
                .get(&fd)
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            match sockaddr(cx, a[1], a[2]) {
                Some(to) => format!("{name}(fd {fd}{what}, to {to})"),
                None => format!("{name}(fd {fd}{what})"),
            }
        }
        Args::Epoll => {
            let timeout = if name == "epoll_pwait2" {
                if a[3] == 0 {
                    "no timeout".to_string()
                } else {
                    format!("timeout {}", timespec(a[3]))
                }
            } else {
                match a[3] as i32 {
                    t if t < 0 => "no timeout".to_string(),
                    t => format!("timeout {t} ms"),
                }
            };
            let what = cx
                .fds
                .get(&(a[0] as i32))
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            format!("{name}(epoll fd {}{what}, {timeout})", a[0] as i32)
        }
        Args::Waitid => format!("{name}({} {})", syscalls::idtype_name(a[0]), a[1] as i32),
        Args::Poll => {
            let timeout = if name == "poll" {
                match a[2] as i32 {
                    t if t < 0 => "no timeout".to_string(),
                    t => format!("timeout {t} ms"),
                }
            } else if a[2] == 0 {
                "no timeout".into()
            } else {
                format!("timeout {}", timespec(a[2]))
            };
            format!("{name}({}, {timeout})", poll_fds(cx, a[0], a[1]))
        }
        Args::Select => {
            let timeout = match (name, a[4]) {
                (_, 0) => "no timeout".to_string(),
                ("select", p) => match (cx.mem.u64(p), cx.mem.u64(p.wrapping_add(8))) {
                    (Ok(s), Ok(us)) => format!("timeout {:.3} s", s as f64 + us as f64 / 1e6),
                    _ => "timeout ?".into(),
                },
                (_, p) => format!("timeout {}", timespec(p)),
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
        Args::Sleep => format!("{name}({})", timespec(a[0])),
        // An absolute deadline (glibc's sleep passes a relative one; Python's
        // time.sleep an absolute one) is a clock reading, not a duration.
        Args::ClockSleep if a[1] & syscalls::TIMER_ABSTIME != 0 => format!(
            "{name}(until {} {})",
            syscalls::clock_name(a[0]),
            timespec(a[2])
        ),
        Args::ClockSleep => format!("{name}({})", timespec(a[2])),
        Args::Wait => format!("{name}(pid {})", a[0] as i32),
        Args::None => format!("{name}()"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
