//! A core against Go's own dump and the scenario program's record of which
//! thread runs what: threads, Ms, goroutines (states, locks, frames), waits.
use crate::common::*;
use cgocore::report::{Report, ThreadKind};
use std::collections::{HashMap, HashSet};

pub fn minfo(r: &Report, id: Option<i64>) -> Option<&cgocore::report::MInfo> {
    r.ms.iter().find(|m| Some(m.id) == id)
}

/// Every mismatch between the report and the truth, as readable lines.
pub fn check(case: &CoreCase, a: &cgocore::Analysis) -> Vec<String> {
    let r = &a.report;
    let t = &case.truth;
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));

    if r.go_version != t.go_version {
        e(format!("go_version {} != {}", r.go_version, t.go_version));
    }
    // Each NT_PRSTATUS thread exactly once.
    let core_tids: Vec<u32> = a.process.threads.iter().map(|t| t.tid).collect();
    let tids: Vec<u32> = r.threads.iter().map(|t| t.tid).collect();
    if core_tids != tids || tids.iter().collect::<HashSet<_>>().len() != tids.len() {
        e(format!("threads {tids:?} != core threads {core_tids:?}"));
    }
    // Goroutines: same ids, states, lock and M as Go's dump.
    let ours: HashMap<u64, &cgocore::report::GoroutineInfo> =
        r.goroutines.iter().map(|g| (g.goid, g)).collect();
    let theirs: HashSet<u64> = t.goroutines.iter().map(|g| g.goid).collect();
    let extra: Vec<_> = ours.keys().filter(|k| !theirs.contains(k)).collect();
    if !extra.is_empty() {
        e(format!("goroutines not in Go's dump: {extra:?}"));
    }
    for tg in &t.goroutines {
        let Some(g) = ours.get(&tg.goid) else {
            e(format!("goroutine {} ({}) missing", tg.goid, tg.state));
            continue;
        };
        if g.state() != tg.state {
            e(format!(
                "goroutine {} state {:?} != Go's {:?}",
                tg.goid,
                g.state(),
                tg.state
            ));
        }
        if g.locked != tg.locked {
            e(format!(
                "goroutine {} locked {} != Go's {}",
                tg.goid, g.locked, tg.locked
            ));
        }
        // Go's dump shows the Go frames; ours carry the C frames between them.
        let frames: Vec<(String, Option<String>, Option<i64>)> = g
            .frames
            .iter()
            .filter(|f| f.lang == cgocore::report::frame::Lang::Go)
            .map(|f| {
                (
                    f.function.as_deref().unwrap_or_default().to_string(),
                    f.file.as_deref().map(str::to_string),
                    f.line.map(i64::from),
                )
            })
            .collect();
        let want: Vec<(String, Option<String>, Option<i64>)> = tg
            .frames
            .iter()
            .map(|f| (f.function.clone(), f.file.clone(), f.line))
            .collect();
        if frames != want && !tg.frames.is_empty() {
            e(format!("goroutine {} frames differ from Go's dump:\n  ours   {frames:?}\n  theirs {want:?}", tg.goid));
        }
        if tg.m_known && g.m != tg.m {
            e(format!(
                "goroutine {} m {:?} != Go's {:?}",
                tg.goid, g.m, tg.m
            ));
        }
    }
    // Scenarios: the thread the program recorded has the expected M facts.
    let thread = |name: &str| {
        let s = &t.scenarios[name];
        (s, r.threads.iter().find(|th| th.tid == s.tid))
    };
    for name in [
        "read_pipe",
        "cond_wait",
        "mutex_holder",
        "mutex_waiter",
        "sleep",
        "accept",
        "locked_in_c",
    ] {
        let (s, th) = thread(name);
        let Some(th) = th else {
            e(format!("{name}: thread {} not in report", s.tid));
            continue;
        };
        let m = minfo(r, th.m);
        if th.kind != ThreadKind::Go
            || !th.in_cgo
            || th.curg != Some(s.goid)
            || m.is_none_or(|m| m.ncgo < 1)
        {
            e(format!(
                "{name}: thread {} = {th:?}, want go thread in cgo for goroutine {}",
                s.tid, s.goid
            ));
        }
        let want_ext = u32::from(name == "locked_in_c");
        if m.is_none_or(|m| m.locked_ext != want_ext)
            || (name == "locked_in_c") != (th.lockedg == Some(s.goid))
        {
            e(format!("{name}: lockedExt/lockedg wrong: {m:?}"));
        }
    }
    {
        let (s, th) = thread("locked_twice_go");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Go || th.lockedg != Some(s.goid) || th.in_cgo)
            || m.is_none_or(|m| m.locked_ext != 2)
        {
            e(format!(
                "locked_twice_go: thread {th:?} M {m:?}; want lockedg {} lockedExt 2",
                s.goid
            ));
        }
    }
    {
        let (s, th) = thread("callback");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Go || th.lockedg != Some(s.goid) || th.in_cgo)
            || m.is_none_or(|m| m.locked_int < 1 || m.ncgo < 1 || m.locked_ext != 0)
        {
            e(format!(
                "callback: thread {th:?} M {m:?}; want lockedg {} lockedInt>=1 ncgo>=1",
                s.goid
            ));
        }
    }
    {
        let (s, th) = thread("extra_m_parked");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| {
            th.kind != ThreadKind::Extra || th.lockedg != Some(s.goid) || th.in_cgo
        }) || m.is_none_or(|m| !m.isextra || m.is_extra_in_c || m.locked_int != 2)
        {
            e(format!("extra_m_parked: thread {th:?} M {m:?}; want extra M inside a callback (lockedInt 2)"));
        }
    }
    {
        let (s, th) = thread("extra_m_in_c");
        let m = th.and_then(|th| minfo(r, th.m));
        if th.is_none_or(|th| th.kind != ThreadKind::Extra || th.curg != Some(s.goid) || !th.in_cgo)
            || m.is_none_or(|m| !m.isextra || !m.is_extra_in_c || m.ncgo != 0 || m.locked_int != 1)
        {
            e(format!(
                "extra_m_in_c: thread {th:?} M {m:?}; want extra M back in C"
            ));
        }
    }
    {
        let (s, th) = thread("foreign_thread");
        if th.is_none_or(|th| th.kind != ThreadKind::Foreign || th.m.is_some()) {
            e(format!(
                "foreign_thread: thread {} = {th:?}, want foreign",
                s.tid
            ));
        }
    }
    // The spare extra M (no thread) is listed among Ms but its goroutine is not.
    // ... unless a thread borrowed it to run the crash signal's handler.
    if !r
        .ms
        .iter()
        .any(|m| m.isextra && (m.tid.is_none() || m.signal_borrowed))
    {
        e("no spare extra M without a thread".into());
    }
    // Text the core left out (libc, the executable) is spliced in from the
    // files (a static program has no libc of its own to splice; musl's
    // libc is also its dynamic linker, which a program may name instead).
    if !case.truth.is_static()
        && !a
            .process
            .libraries
            .iter()
            .any(|l| l.path.contains("libc.so") || l.path.contains("/ld-musl-"))
    {
        e("libc not spliced from NT_FILE".into());
    }
    // The executable is spliced once, as the executable, never again as a library.
    if let Some(l) = a
        .process
        .libraries
        .iter()
        .find(|l| l.path.ends_with("/cgostuck"))
    {
        e(format!("executable {} loaded as a library too", l.path));
    }
    for th in &a.process.threads {
        let mut b = [0u8; 16];
        if let Err(err) = a.process.mem.read(th.regs.pc(), &mut b) {
            e(format!("thread {} pc unreadable: {err}", th.tid));
        }
    }
    // runtime.sched agrees with the M list (allm holds every live M).
    if let Some(s) = &r.sched {
        let bound =
            r.ms.iter()
                .filter(|m| m.isextra && (m.tid.is_some() || m.signal_borrowed))
                .count() as u32;
        // A goroutine that exits locked to the main thread wedges m0 in
        // mexit: counted as freed, still on allm.
        let wedged = r
            .threads
            .iter()
            .filter(|t| t.has_frame("runtime.mexit"))
            .count() as i64;
        if s.mcount + wedged != r.ms.len() as i64 || s.extra_ms_in_use != Some(bound) {
            e(format!(
                "sched {s:?} disagrees with {} Ms, {bound} bound extra Ms",
                r.ms.len()
            ));
        }
    } else if r.roots_from == "symbols" {
        e("runtime.sched not decoded".into());
    }
    if r.incomplete {
        e(format!("report incomplete: {:?}", r.warnings));
    }
    for s in waits_mismatches(r, t) {
        e(s);
    }
    errs
}

/// Every goroutine Go's dump shows parked on a sync value or a channel has
/// `waits_on` of that kind (from the runtime's sudogs, on every release,
/// architecture and libc, stripped too), and the goroutines the scenario
/// parks on one object (`parked()`: one mutex, one RWMutex, ...) agree on
/// its address.
pub fn waits_mismatches(r: &Report, t: &Truth) -> Vec<String> {
    let mut errs = vec![];
    let mut addrs: HashMap<(String, Option<String>), HashSet<u64>> = HashMap::new();
    for tg in &t.goroutines {
        let want: &[&str] = match tg.state.as_str() {
            "sync.Mutex.Lock" => &["mutex", "rwmutex"],
            "sync.RWMutex.RLock" | "sync.RWMutex.Lock" => &["rwmutex"],
            "sync.WaitGroup.Wait" => &["waitgroup"],
            "semacquire" => &["waitgroup", "sema"],
            "sync.Cond.Wait" => &["cond"],
            "chan send" | "chan receive" => &["chan"],
            "select" => &["select"],
            _ => continue,
        };
        let Some(g) = r.goroutines.iter().find(|g| g.goid == tg.goid) else {
            continue;
        };
        match g.waits_on.as_deref() {
            Some(w) if want.contains(&&*w.kind) && w.addr != 0 => {
                // The function that waits: one object per call site in parked().
                let site = tg
                    .frames
                    .iter()
                    .find(|f| f.function.starts_with("main."))
                    .map(|f| format!("{}:{:?}", f.function, f.line));
                addrs
                    .entry((tg.state.clone(), site))
                    .or_default()
                    .insert(w.addr);
            }
            other => errs.push(format!(
                "goroutine {} ({}): waits_on {:?}, want one of {want:?}",
                tg.goid,
                tg.state,
                other.map(|w| (&w.kind, w.addr))
            )),
        }
    }
    for ((state, site), a) in addrs {
        if a.len() > 1
            && site
                .as_deref()
                .is_some_and(|s| s.starts_with("main.parked"))
        {
            errs.push(format!(
                "{state} at {site:?}: {} objects {a:x?}, the scenario parks them on one",
                a.len()
            ));
        }
    }
    errs
}
