//! A core's blocked-call classes, lock owners, findings and incidents: one
//! scenario thread per class, checked against the class the scenario was
//! built to reach, the syscall the kernel recorded and the thread the
//! scenario says holds the lock; findings both ways (they fire on the threads
//! whose condition holds, and on no others).
use crate::common::*;
use cgocore::report::{Finding, Report, ThreadInfo};
use std::collections::BTreeSet;

/// Scenario, the class its thread must get, and the scenario holding its lock.
pub const CLASSES: &[(&str, Option<&str>, Option<&str>)] = &[
    ("read_pipe", Some("read"), None),
    ("cond_wait", Some("condvar"), None),
    ("mutex_holder", Some("sleep"), None),
    ("mutex_waiter", Some("mutex"), Some("mutex_holder")),
    ("sleep", Some("sleep"), None),
    ("accept", Some("accept"), None),
    ("locked_in_c", Some("sleep"), None),
    ("rwlock_holder", Some("sleep"), None),
    ("rwlock_waiter", Some("rwlock"), Some("rwlock_holder")),
    ("sem_wait", Some("semaphore"), None),
    ("write_pipe", Some("write"), None),
    ("connect", Some("connect"), None),
    ("recv", Some("recv"), None),
    ("send", Some("send"), None),
    ("poll", Some("poll"), None),
    ("dns", Some("dns"), None),
    ("wait_child", Some("wait-child"), None),
    ("flock_holder", Some("sleep"), None),
    ("flock_waiter", Some("file-lock"), None),
    ("loader_holder", Some("sleep"), None),
    ("loader_waiter", Some("loader-lock"), Some("loader_holder")),
    ("stdio_holder", Some("sleep"), None),
    ("stdio_waiter", Some("stdio-lock"), Some("stdio_holder")),
    ("busy", Some("busy"), None),
    ("signal_unsafe", Some("mutex"), Some("mutex_holder")),
    ("deadlock_ab", Some("mutex"), Some("deadlock_ba")),
    ("deadlock_ba", Some("mutex"), Some("deadlock_ab")),
    // A handler waiting for the lock its own interrupted code holds.
    ("malloc_self", Some("malloc-lock"), Some("malloc_self")),
    ("setenv_self", Some("env-lock"), Some("setenv_self")),
    ("setenv_waiter", Some("env-lock"), Some("setenv_self")),
    // fork() stopped at the wedged arena, holding malloc's list_lock; a thread
    // making its first allocation waits for that.
    ("fork_wedged", Some("malloc-lock"), Some("malloc_self")),
    ("arena_waiter", Some("malloc-lock"), Some("fork_wedged")),
    ("foreign_thread", Some("sleep"), None),
    ("extra_m_in_c", Some("sleep"), None),
    // In Go, not in C: no class.
    ("callback", None, None),
    ("extra_m_parked", None, None),
    ("locked_twice_go", None, None),
];

/// Scenarios that wedge glibc's own locks: the program leaves them out
/// under musl.
pub const GLIBC_ONLY: &[&str] = &[
    "dns",
    "loader_holder",
    "loader_waiter",
    "malloc_self",
    "setenv_self",
    "setenv_waiter",
    "fork_wedged",
    "arena_waiter",
];

pub fn tid(case: &CoreCase, scn: &str) -> u32 {
    case.truth.scenarios[scn].tid
}

pub fn thread(r: &Report, tid: u32) -> &ThreadInfo {
    r.threads
        .iter()
        .find(|t| t.tid == tid)
        .expect("thread in report")
}

pub fn tids(f: &Finding) -> BTreeSet<u32> {
    f.tids().into_iter().collect()
}

/// The first tid of a finding's evidence: the subject (a lock's holder).
pub fn first_tid(f: &Finding) -> Option<u32> {
    f.evidence["tids"].get(0)?.as_u64().map(|v| v as u32)
}

pub fn of_kind<'a>(r: &'a Report, kind: &str) -> Vec<&'a Finding> {
    r.findings.iter().filter(|f| f.kind == kind).collect()
}

pub fn check_classes(case: &CoreCase, r: &Report, arch: cgocore::Arch) -> Vec<String> {
    check_classes_except(case, r, arch, &[])
}

/// `unnameable`: scenarios whose class needs names only debug info gives.
pub fn check_classes_except(
    case: &CoreCase,
    r: &Report,
    arch: cgocore::Arch,
    unnameable: &[&str],
) -> Vec<String> {
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
    for (scn, class, holder) in CLASSES {
        if case.truth.is_musl() && GLIBC_ONLY.contains(scn) {
            continue;
        }
        if !case.truth.scenarios.contains_key(*scn) {
            e(format!(
                "{scn}: not in this core's scenarios (regenerate the cores)"
            ));
            continue;
        }
        let t = thread(r, tid(case, scn));
        let got = t.blocked.as_ref().map(|b| b.class.as_str());
        if unnameable.contains(scn) {
            if got != Some("unclassified") && got != *class {
                e(format!("{scn}: class {got:?} without debug info"));
            }
            continue;
        }
        if got != *class {
            e(format!(
                "{scn}: class {got:?}, want {class:?} ({:?})",
                t.blocked
            ));
            continue;
        }
        let Some(b) = &t.blocked else { continue };
        // musl records no owner in a default mutex (EBUSY in _m_lock) or
        // an rwlock: the waiter's owner is unknown, as the lock says.
        let no_owner_kept = case.truth.is_musl() && matches!(*class, Some("mutex" | "rwlock"));
        let want_owner = holder.filter(|_| !no_owner_kept).map(|h| tid(case, h));
        if b.owner_tid != want_owner {
            e(format!(
                "{scn}: owner {:?}, want {want_owner:?} ({:?})",
                b.owner_tid, b
            ));
        }
        // Where no signal handler ran on top, the syscall is the one the kernel
        // recorded for the thread (orig_rax).
        if t.interrupted.is_none() {
            let kernel = t
                .syscall
                .and_then(|nr| cgocore::testing::syscall_lookup(arch, nr))
                .map(|(n, _)| n.to_string());
            if b.syscall != kernel {
                e(format!(
                    "{scn}: syscall {:?} but the kernel recorded {kernel:?}",
                    b.syscall
                ));
            }
        }
    }
    errs
}

pub fn check_findings(case: &CoreCase, a: &cgocore::Analysis) -> Vec<String> {
    let r = &a.report;
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
    let set = |names: &[&str]| -> BTreeSet<u32> { names.iter().map(|n| tid(case, n)).collect() };

    // A condvar is named as the object, not as the futex word inside it.
    if case.truth.variant != "stripped" {
        let b = thread(r, tid(case, "cond_wait")).blocked.as_ref();
        if b.and_then(|b| b.lock_symbol.as_deref()) != Some("never_cv") {
            e(format!("cond_wait: lock {b:?}, want never_cv"));
        }
    }
    // Deadlocks: the ABBA pair, and each handler waiting for its own thread.
    let dl: BTreeSet<BTreeSet<u32>> = of_kind(r, "deadlock").iter().map(|f| tids(f)).collect();
    let want: BTreeSet<BTreeSet<u32>> = [
        set(&["deadlock_ab", "deadlock_ba"]),
        set(&["malloc_self"]),
        set(&["setenv_self"]),
    ]
    .into_iter()
    .collect();
    if dl != want {
        e(format!("deadlock findings on {dl:?}, want {want:?}"));
    }
    // Lock holders with waiters: exactly the scenarios that hold a C lock.
    let holders: BTreeSet<u32> = of_kind(r, "lock-held-while-blocked")
        .iter()
        .filter_map(|f| first_tid(f))
        .collect();
    let want = set(&[
        "mutex_holder",
        "rwlock_holder",
        "loader_holder",
        "stdio_holder",
        "deadlock_ab",
        "deadlock_ba",
        "setenv_self",
        "malloc_self",
        "fork_wedged",
    ]);
    if holders != want {
        e(format!("lock holders {holders:?}, want {want:?}"));
    }
    let mutex = of_kind(r, "lock-held-while-blocked")
        .into_iter()
        .find(|f| first_tid(f) == Some(tid(case, "mutex_holder")));
    if mutex.is_none_or(|f| tids(f) != set(&["mutex_holder", "mutex_waiter", "signal_unsafe"])) {
        e(format!("shared_mu holder finding: {mutex:?}"));
    }
    // Locked goroutines blocked in C: the two scenarios that lock, no others.
    let locked: BTreeSet<u32> = of_kind(r, "locked-thread-blocked-in-c")
        .iter()
        .flat_map(|f| tids(f))
        .collect();
    let mut want = set(&["locked_in_c", "signal_unsafe"]);
    if case.truth.scenarios.contains_key("cuda_locked") {
        want.insert(tid(case, "cuda_locked"));
    }
    if locked != want {
        e(format!("locked-thread-blocked-in-c on {locked:?}"));
    }
    let unsafe_: BTreeSet<u32> = of_kind(r, "signal-handler-unsafe")
        .iter()
        .flat_map(|f| tids(f))
        .collect();
    if unsafe_ != set(&["signal_unsafe", "malloc_self", "setenv_self"]) {
        e(format!("signal-handler-unsafe on {unsafe_:?}"));
    }
    // The C handlers are installed without SA_SIGINFO: their numbers come from
    // the masks (the scenario raises SIGUSR2, and glibc's SIGRTMIN+4 and +5,
    // glibc's SIGRTMIN being 34). gdb's gcore records no thread's mask
    // (pr_sighold 0), so there the innermost handler's number is unknown (0).
    let gdb = case.truth.kind == "gcore";
    for (scn, want) in [
        ("signal_unsafe", 12),
        ("malloc_self", 38),
        ("setenv_self", 39),
    ] {
        let want = if gdb { 0 } else { want };
        let got: Vec<i32> = thread(r, tid(case, scn))
            .signals
            .iter()
            .filter(|s| s.handler == "c")
            .map(|s| s.signal)
            .collect();
        if got != [want] {
            e(format!("{scn}: C handler signals {got:?}, want [{want}]"));
        }
    }
    let nested = of_kind(r, "nested-lockosthread");
    if nested.len() != 1 || tids(nested[0]) != set(&["locked_twice_go"]) {
        e(format!("nested-lockosthread {nested:?}"));
    }
    // CUDA driver calls (a stand-in libcuda.so.1: no GPU here) from an
    // unlocked and a locked goroutine; cores without them must stay silent.
    let cuda: BTreeSet<u32> = of_kind(r, "cuda-unlocked")
        .iter()
        .flat_map(|f| tids(f))
        .collect();
    let has_cuda = case.truth.scenarios.contains_key("cuda_unlocked");
    let want = if has_cuda {
        set(&["cuda_unlocked"])
    } else {
        BTreeSet::new()
    };
    if cuda != want {
        e(format!("cuda-unlocked on {cuda:?}, want {want:?}"));
    }
    if has_cuda {
        for scn in ["cuda_unlocked", "cuda_locked"] {
            let b = thread(r, tid(case, scn)).blocked.as_ref();
            if b.map(|b| (b.class.as_str(), b.library.as_deref())) != Some(("poll", Some("cuda"))) {
                e(format!("{scn}: {b:?}, want poll inside cuda"));
            }
        }
    }
    // Runtime-internal locks: the callbacks from C parked in Go, and no
    // other thread (an extra M back in C keeps lockedInt but waits for nothing).
    let internal: BTreeSet<u32> = of_kind(r, "internal-lock-parked")
        .iter()
        .flat_map(|f| tids(f))
        .collect();
    if internal != set(&["callback", "extra_m_parked"]) {
        e(format!("internal-lock-parked on {internal:?}"));
    }
    if let Some(f) = of_kind(r, "internal-lock-parked")
        .into_iter()
        .find(|f| first_tid(f) == Some(tid(case, "callback")))
    {
        let want = case.truth.scenarios["callback"].goid;
        if f.evidence["goids"] != serde_json::json!([want]) {
            e(format!(
                "internal-lock-parked names {}, want goroutine {want}",
                f.evidence["goids"]
            ));
        }
    }
    let foreign = of_kind(r, "foreign-threads");
    let mut want = set(&[
        "foreign_thread",
        "malloc_self",
        "setenv_self",
        "fork_wedged",
        "arena_waiter",
    ]);
    want.extend(
        case.truth
            .scenarios
            .iter()
            .filter(|(n, _)| n.starts_with("arena_spare_"))
            .map(|(_, s)| s.tid),
    );
    // Go may be starting threads when the core is taken: the scenario's last
    // step wedges malloc, so a new thread's first allocation waits for
    // list_lock. runtime/cgo's threadentry names them; a stripped executable
    // has no name for it, and they stay foreign there.
    let starting: BTreeSet<u32> = of_kind(r, "threads-starting")
        .iter()
        .flat_map(|f| tids(f))
        .collect();
    let got = foreign.first().map(|f| tids(f)).unwrap_or_default();
    let unexpected: Vec<u32> = got.difference(&want).copied().collect();
    let stripped = case.truth.variant == "stripped";
    if foreign.len() != 1
        || !want.is_subset(&got)
        || (!stripped && !unexpected.is_empty())
        || !starting.is_disjoint(&want)
    {
        e(format!(
            "foreign-threads {foreign:?}, starting {starting:?}"
        ));
    }
    for t in starting
        .iter()
        .chain(if stripped { &unexpected[..] } else { &[] })
    {
        let b = thread(r, *t).blocked.as_ref();
        let on = b.map(|b| (b.lock_symbol.as_deref(), b.owner_tid));
        if on != Some((Some("list_lock"), Some(tid(case, "fork_wedged")))) {
            e(format!(
                "thread {t} starting: {b:?}, want list_lock held by fork_wedged"
            ));
        }
    }
    // One chain through more than one holder: list_lock waiters -> the fork
    // -> the wedged arena's own thread, which the finding names first.
    let chains = of_kind(r, "wait-chain");
    let fork = tid(case, "fork_wedged");
    let members = chains.first().map(|f| tids(f)).unwrap_or_default();
    let others_wait_for_fork = members
        .iter()
        .filter(|t| ![tid(case, "malloc_self"), fork, tid(case, "arena_waiter")].contains(t))
        .all(|t| thread(r, *t).blocked.as_ref().and_then(|b| b.owner_tid) == Some(fork));
    if chains.len() != 1
        || first_tid(chains[0]) != Some(tid(case, "malloc_self"))
        || !set(&["malloc_self", "fork_wedged", "arena_waiter"]).is_subset(&members)
        || !others_wait_for_fork
    {
        e(format!("wait-chain {chains:?}"));
    }
    let extra = of_kind(r, "extra-ms");
    if extra.len() != 1 || tids(extra[0]) != set(&["extra_m_parked", "extra_m_in_c"]) {
        e(format!("extra-ms {extra:?}"));
    }
    // The scenario ends one goroutine while locked: its thread is gone, and
    // the runtime counted it.
    let exited = of_kind(r, "exited-while-locked");
    if r.sched.is_some()
        && (exited.len() != 1 || exited[0].evidence["nmfreed"].as_i64().unwrap_or(0) < 1)
    {
        e(format!("exited-while-locked {exited:?}"));
    }
    if of_kind(r, "thread-pileup").len() != 1 {
        e("no thread-pileup finding with two dozen threads in C and GOMAXPROCS 2".into());
    }
    // Most severe first.
    if !r
        .findings
        .windows(2)
        .all(|w| w[0].severity <= w[1].severity)
    {
        e("findings not sorted by severity".into());
    }
    errs
}

/// Each root cause once: every waiter of the scenario is a victim of the
/// incident rooted where its chain of holders ends (a cycle: one of its
/// threads), with its goroutine; no thread is a victim twice, every
/// critical finding is evidence under exactly one incident, and incidents
/// come most harm first.
pub fn check_incidents(case: &CoreCase, r: &Report) -> Vec<String> {
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: incidents: {s}", case.name));
    let holder: std::collections::HashMap<&str, &str> = CLASSES
        .iter()
        .filter_map(|(s, _, h)| Some((*s, (*h)?)))
        .collect();
    for (scn, h) in &holder {
        if scn == h || !case.truth.scenarios.contains_key(*scn) {
            continue;
        }
        // Follow the holders to the end of the chain (or around a cycle).
        let mut ends = vec![*h];
        while let Some(next) = holder.get(ends.last().unwrap()) {
            if ends.contains(next) {
                break;
            }
            ends.push(next);
        }
        let roots: BTreeSet<u32> = match ends
            .iter()
            .position(|x| holder.get(x) == Some(x) || !holder.contains_key(x))
        {
            Some(i) => [tid(case, ends[i])].into(),
            None => ends.iter().map(|s| tid(case, s)).collect(), // a cycle
        };
        let me = tid(case, scn);
        let hit: Vec<_> = r
            .incidents
            .iter()
            .filter(|i| i.victims.tids.contains(&me))
            .collect();
        match hit[..] {
            [i] => {
                let root = i.root.as_ref().and_then(|s| s.tid).unwrap_or(0);
                let in_cycle = i.kind == "deadlock" && i.chain.contains(&me);
                if !(roots.contains(&root) || in_cycle) {
                    e(format!(
                        "{scn}: victim of an incident rooted at {root}, not {roots:?}"
                    ));
                }
                let g = case.truth.scenarios[*scn].goid;
                if g != 0 && !i.victims.goids.contains(&g) {
                    e(format!(
                        "{scn}: goroutine {g} not among the victims {:?}",
                        i.victims.goids
                    ));
                }
            }
            _ if roots.contains(&me) => {} // in a cycle, the root itself
            _ => e(format!("{scn}: victim of {} incidents", hit.len())),
        }
    }
    let mut seen = BTreeSet::new();
    for i in &r.incidents {
        for f in &i.findings {
            if !seen.insert(*f) {
                e(format!("finding {f} is under two incidents"));
            }
        }
    }
    for (k, f) in r.findings.iter().enumerate() {
        if f.severity == cgocore::report::Severity::Critical && !seen.contains(&k) {
            e(format!(
                "critical finding {k} ({}) is under no incident",
                f.kind
            ));
        }
    }
    let harm: Vec<usize> = r
        .incidents
        .iter()
        .map(|i| i.victims.tids.len() + i.victims.goids.len())
        .collect();
    if harm.windows(2).any(|w| w[0] < w[1]) {
        e(format!("not ordered by harm: {harm:?}"));
    }
    errs
}
