//! What each thread in C waits for: the syscall in flight (its number and
//! arguments) and the frames of the blocked C call, matched against rules
//! (`rules.json`); lock owners read from the lock itself. Per thread only:
//! the chains, findings and incidents built on these facts are `diagnose`'s.
pub mod args;
pub mod owner;
pub mod rules;
pub mod sqlite;
pub mod syscalls;

use crate::elf::regs::{Arch, SyscallState};
use crate::memory::Memory;
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
    let call = blocked_call(c)?;
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
    let pc = c.frames.get(c.start).map_or(0, |f| f.pc);
    let (in_syscall, sc) = syscall_in_flight(cx, c.sys, pc);
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
    let mut w = Wait::of_rule(rule);
    if c.go_side {
        w.explain = format!(
            "a system call Go makes itself, not cgo; {}",
            w.explain.replace(" in C", "")
        );
    }
    let lib = cx
        .rules
        .libraries
        .iter()
        .filter(|_| !c.go_side)
        .find(|l| l.matches(&subject, &w.class));
    if let Some(l) = lib {
        w.in_library(cx, l, &subject, &call);
    }
    let detail = detail(cx, c, &call, &sc, in_syscall);
    // The lock: the futex word the thread sleeps on, when it waits for a lock.
    let futex_wait = sc.as_ref().is_some_and(|(n, _)| n == "futex");
    let lock = (futex_wait && cx.rules.is_lock(&w.class)).then_some(c.sys.args[0]);
    let mut owner_tid = lock.and_then(|a| owner::owner(cx, &w.class, a));
    if let (Some(r), None, Some(_)) = (rule, owner_tid, lock) {
        if waits_for_itself(c, r) {
            owner_tid = Some(c.tid);
            w.explain = format!(
                "self-deadlock: a signal handler waits for a lock its own thread held when the signal came; {}",
                w.explain
            );
        }
    }
    let lock_symbol = lock
        .and_then(|a| (cx.data_symbol)(a))
        .map(|sym| owner::object_symbol(&w.class, sym))
        .or(w.lock);
    Some(Blocked {
        class: w.class,
        syscall: sc.map(|(n, _)| n),
        detail,
        owner_tid,
        library: lib.map(|l| l.library.clone()),
        explain: w.explain,
        advice: w.advice,
        lock,
        lock_symbol,
        owner_likely: false,
    })
}

/// The frames of the blocked call: from `start`, of the call's language,
/// up to the frames a C handler interrupted.
fn blocked_call<'f>(c: &Call<'f>) -> Option<Vec<&'f Frame>> {
    let end = c.handler_end.unwrap_or(c.frames.len()).min(c.frames.len());
    let lang = if c.go_side { Lang::Go } else { Lang::C };
    let call: Vec<&Frame> = c
        .frames
        .get(c.start..end)?
        .iter()
        .take_while(|f| f.lang == lang)
        .collect();
    (!call.is_empty()).then_some(call)
}

/// Whether the thread is in a system call at `pc`, and which one (its
/// name and argument kinds) when the number is known.
fn syscall_in_flight(cx: &Context, sys: &SyscallState, pc: u64) -> (bool, Option<(String, Args)>) {
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
    (in_syscall, sc)
}

/// What the wait is, in words: from the matching rule, then the library.
struct Wait {
    class: String,
    explain: String,
    advice: String,
    /// The lock a library's rule says the wait is for.
    lock: Option<String>,
}

impl Wait {
    fn of_rule(rule: Option<&rules::ClassRule>) -> Wait {
        match rule {
            Some(r) => Wait {
                class: r.class.clone(),
                explain: r.explain.clone(),
                advice: r.advice.clone(),
                lock: None,
            },
            None => Wait {
                class: "unclassified".to_string(),
                explain: "in C; no rule recognizes this call".to_string(),
                advice: "see the frames; a --rules file can teach cgocore this pattern".to_string(),
                lock: None,
            },
        }
    }

    /// The call is inside library `l`: its words first, the operation it is
    /// in, and the class it waits as.
    fn in_library(
        &mut self,
        cx: &Context,
        l: &rules::LibraryRule,
        subject: &Subject,
        call: &[&Frame],
    ) {
        // The operation: an exported frame says it, else the function the
        // application called into the library (a tail call may have left no
        // frame of it: SSL_connect).
        let entry = library_entry(cx, l, subject, call);
        let op = l
            .operation(subject)
            .map(str::to_string)
            .or_else(|| {
                let e = entry.as_deref()?;
                l.operations
                    .iter()
                    .find(|(p, _)| p.matches(e))
                    .map(|(_, op)| format!("{op}, {e}"))
            })
            .map(|op| format!(" ({op})"))
            .unwrap_or_default();
        self.explain = format!("{}{op}; {}", l.explain, self.explain);
        self.advice = format!("{}; {}", l.advice, self.advice);
        if let Some(w) = &l.waits_as {
            self.class = w.class.clone();
            self.lock = Some(w.lock.clone());
        }
    }
}

/// The syscall and its arguments in words, in the call's top function.
fn detail(
    cx: &Context,
    c: &Call,
    call: &[&Frame],
    sc: &Option<(String, Args)>,
    in_syscall: bool,
) -> String {
    let top = call
        .iter()
        .filter(|f| !c.go_side || !f.function.as_deref().is_some_and(is_go_syscall_plumbing))
        .find(|f| !f.inlined || c.go_side)
        .and_then(|f| f.function.as_deref().map(str::to_string))
        .unwrap_or_else(|| "??".into());
    match sc {
        Some((name, args)) => format!("{} in {top}", args::describe(cx, name, *args, &c.sys.args)),
        // The kernel makes an interrupted sleep, pause or poll return EINTR
        // to run the handler: its number is gone, the C frames still name it.
        None if in_syscall => match c.interrupted_by {
            Some(sig) => format!("in a syscall in {top}, interrupted by {sig} (EINTR)"),
            None => format!("in a syscall in {top}"),
        },
        None => format!("running {top}"),
    }
}

/// A handler that waits for a lock of the very code it interrupted (malloc
/// inside malloc, setenv inside setenv) waits for its own thread.
fn waits_for_itself(c: &Call, rule: &rules::ClassRule) -> bool {
    let Some(hend) = c.handler_end else {
        return false;
    };
    let below: Vec<String> = c
        .frames
        .get(hend..)
        .unwrap_or_default()
        .iter()
        .take_while(|f| f.lang == Lang::C)
        .filter_map(|f| f.known_function())
        .map(normalize)
        .collect();
    rule.holds_in(&below)
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

/// Candidates a library's own state narrows (SQLite: the threads whose
/// connection is inside a transaction), and the evidence, in words.
pub struct Narrowed {
    pub tids: Vec<u32>,
    pub why: String,
}

/// Locks a library keeps where cgocore cannot read an owner (SQLite's
/// database lock, without SQLite's DWARF): a thread that waits for one is
/// linked to the other threads inside that library — its likely holders,
/// narrowed to those running code that holds the lock or (`narrow`) whose
/// state says they may. One such thread becomes the owner, marked likely;
/// several are named.
pub fn likely_holders(
    threads: &mut [ThreadInfo],
    rules: &Rules,
    settled: &HashSet<u32>,
    defines: &dyn Fn(&str, &str) -> bool,
    narrow: &dyn Fn(&rules::LibraryRule, &[u32]) -> Option<Narrowed>,
) {
    for rule in rules.libraries.iter().filter(|l| l.waits_as.is_some()) {
        // Nothing to guess (and no library state to read) without a
        // waiter its structures did not settle.
        if !threads
            .iter()
            .any(|t| rule.is_waiter(t) && !settled.contains(&t.tid))
        {
            continue;
        }
        // A thread inside the library that waits for a lock itself (to
        // enter a connection another thread uses) is not the one using it.
        let waits_for_a_lock = |t: &ThreadInfo| {
            t.blocked
                .as_ref()
                .is_some_and(|b| b.lock.is_some() && rules.is_lock(&b.class))
        };
        let others: Vec<&ThreadInfo> = threads
            .iter()
            .filter(|t| !rule.is_waiter(t) && rule.has_thread(t, defines) && !waits_for_a_lock(t))
            .collect();
        // Those with code on their stack that holds the lock come first.
        let held_in = rule.waits_as.as_ref().map_or(&[][..], |w| &w.held_in[..]);
        let holding = |t: &&&ThreadInfo| {
            t.frames.iter().any(|f| {
                f.known_function()
                    .is_some_and(|n| held_in.iter().any(|g| g.matches(normalized(n))))
            })
        };
        let doing: Vec<u32> = others.iter().filter(holding).map(|t| t.tid).collect();
        let all: Vec<u32> = others.iter().map(|t| t.tid).collect();
        let state = narrow(rule, &all).filter(|n| !n.tids.is_empty());
        let mut what = match (
            &doing[..],
            rule.waits_as.as_ref().and_then(|w| w.held_doing.as_deref()),
        ) {
            ([_, ..], Some(d)) => format!(" with {d}"),
            _ => String::new(),
        };
        if let Some(n) = &state {
            let or = if what.is_empty() { "" } else { " or" };
            what = format!("{what}{or} {}", n.why);
        }
        // In the threads' order, as the unnarrowed list.
        let keep: HashSet<u32> = doing
            .iter()
            .chain(state.iter().flat_map(|n| &n.tids))
            .copied()
            .collect();
        let holders: Vec<u32> = if keep.is_empty() {
            all
        } else {
            all.into_iter().filter(|t| keep.contains(t)).collect()
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
                        "{}; likely held by one of the other threads inside {} (none waiting for a lock itself){what}: {}",
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::sample::{frame, waiting};

    /// A thread inside libsqlite3 (its frames in the library's file), blocked
    /// in `class` on `lock`.
    fn in_sqlite(tid: u32, class: &str, lock: u64, library: Option<&str>) -> ThreadInfo {
        let mut t = waiting(tid, class, lock, None);
        let mut f = frame("sqlite3_step", Lang::C);
        f.module = Some("libsqlite3.so.0".into());
        t.frames = vec![f];
        t.blocked.as_mut().unwrap().library = library.map(str::to_string);
        t
    }

    /// The likely holders with the built-in rules, no thread settled.
    fn guess(
        threads: &mut [ThreadInfo],
        narrow: &dyn Fn(&rules::LibraryRule, &[u32]) -> Option<Narrowed>,
    ) {
        let rules = Rules::builtin();
        likely_holders(threads, &rules, &HashSet::new(), &|_, _| false, narrow);
    }

    #[test]
    fn a_thread_waiting_to_enter_a_connection_is_not_its_user() {
        let busy = in_sqlite(1, "db-lock", 0, Some("sqlite"));
        let (a, b) = (
            in_sqlite(2, "sleep", 0, None),
            in_sqlite(3, "sleep", 0, None),
        );
        // Thread 4 waits for the mutex of a connection thread 2 uses.
        let c = in_sqlite(4, "mutex", 0x7000, None);
        let mut threads = vec![busy, a, b, c];
        guess(&mut threads, &|_, _| None);
        let e = &threads[0].blocked.as_ref().unwrap().explain;
        assert!(
            e.ends_with("likely held by one of the other threads inside sqlite (none waiting for a lock itself): 2, 3"),
            "{e}"
        );
        // With thread 3 gone, the one candidate left is named, likely.
        threads.remove(2);
        threads[0].blocked.as_mut().unwrap().explain.clear();
        guess(&mut threads, &|_, _| None);
        let b0 = threads[0].blocked.as_ref().unwrap();
        assert_eq!((b0.owner_tid, b0.owner_likely), (Some(2), true));
    }

    #[test]
    fn the_librarys_state_narrows_the_candidates_and_says_why() {
        let mut threads = vec![
            in_sqlite(1, "db-lock", 0, Some("sqlite")),
            in_sqlite(2, "sleep", 0, None),
            in_sqlite(3, "sleep", 0, None),
        ];
        // Only thread 3's connection is inside a transaction.
        let narrow = |_: &rules::LibraryRule, c: &[u32]| {
            assert_eq!(c, [2, 3], "offered every candidate");
            Some(Narrowed {
                tids: vec![3],
                why: "whose connection is inside a transaction (evidence)".into(),
            })
        };
        guess(&mut threads, &narrow);
        let b0 = threads[0].blocked.as_ref().unwrap();
        assert_eq!((b0.owner_tid, b0.owner_likely), (Some(3), true));
        assert!(
            b0.explain.ends_with("likely held by thread 3, the only other thread inside sqlite whose connection is inside a transaction (evidence)"),
            "{}",
            b0.explain
        );
        // Nothing found in a transaction: every candidate stays.
        threads[0].blocked.as_mut().unwrap().explain.clear();
        threads[0].blocked.as_mut().unwrap().owner_tid = None;
        let none = |_: &rules::LibraryRule, _: &[u32]| {
            Some(Narrowed {
                tids: vec![],
                why: String::new(),
            })
        };
        guess(&mut threads, &none);
        let e = &threads[0].blocked.as_ref().unwrap().explain;
        assert!(e.ends_with("(none waiting for a lock itself): 2, 3"), "{e}");
    }
}
