//! LockOSThread and the runtime's own thread locks: pinned threads blocked
//! in C, nested locks, callbacks and init parked under `lockedInt`, and
//! goroutines that exited locked.
use super::describe::{evidence, plural, who};
use super::{Facts, FindingKind};
use crate::report::frame::{Frame, Lang};
use crate::report::{Finding, GoroutineInfo, Severity, ThreadInfo, ThreadKind};
use std::collections::HashMap;

pub fn locked_thread_blocked_in_c(x: &Facts) -> Vec<Finding> {
    x.report
        .threads
        .iter()
        .filter(|t| t.kind == ThreadKind::Go && t.lockedg.is_some() && t.lockedg == t.curg)
        .filter_map(|t| {
            // In a cgo call, or in a system call Go makes itself (a blocked
            // call on the goroutine outside cgo): the thread is held alike.
            let b = t.blocked.as_ref()?;
            let in_what = if t.in_cgo { "in C" } else { "in a system call" };
            let how = super::describe::lock_kind(x.report, t);
            Some(Finding {
                kind: FindingKind::LockedThreadBlockedInC,
                severity: Severity::Warning,
                summary: format!(
                    "goroutine {} is locked to {} ({how}) and blocked {in_what}: {}: {}",
                    t.curg.unwrap_or(0),
                    who(t),
                    b.class,
                    b.detail
                ),
                evidence: evidence(&[t]),
                advice: "the thread is pinned: it cannot run other goroutines, and everything that must run on it (e.g. code that needs its thread-local state) waits too".into(),
            })
        })
        .collect()
}

pub fn nested_lockosthread(x: &Facts) -> Vec<Finding> {
    x.report
        .ms
        .iter()
        .filter(|m| m.locked_ext > 1)
        .map(|m| {
            let t = m.tid.and_then(|tid| x.by_tid.get(&tid).copied());
            Finding {
                kind: FindingKind::NestedLockOsThread,
                severity: Severity::Warning,
                summary: format!(
                    "M{} has LockOSThread nested {} deep (goroutine {}): it stays locked until UnlockOSThread is called as many times",
                    m.id,
                    m.locked_ext,
                    m.lockedg.map_or("-".into(), |g| g.to_string())
                ),
                evidence: t
                    .map(|t| evidence(&[t]))
                    .unwrap_or_else(|| serde_json::json!({"ms": [m.id]})),
                advice: "pair every LockOSThread with an UnlockOSThread (defer it); a goroutine that exits while locked takes its thread with it".into(),
            }
        })
        .collect()
}

/// Runtime-internal thread locks (`m.lockedInt`): Go locks a callback from C
/// to its thread, and the main goroutine during package init. A goroutine
/// parked in Go under such a lock keeps the thread, and the C code that called
/// it (and every C lock that code holds) waits until it returns.
pub fn internal_lock_parked(x: &Facts) -> Vec<Finding> {
    let r = x.report;
    let by_goid: HashMap<u64, &GoroutineInfo> = r.goroutines.iter().map(|g| (g.goid, g)).collect();
    let mut out = vec![];
    for m in r.ms.iter().filter(|m| m.locked_int > 0) {
        let Some(g) = m.lockedg.and_then(|id| by_goid.get(&id).copied()) else {
            continue;
        };
        if g.status != "waiting" {
            continue;
        }
        let t = m.tid.and_then(|tid| x.by_tid.get(&tid).copied());
        // The thread's stack runs into the goroutine's; without a thread, the
        // goroutine's own frames.
        let frames: &[Frame] = match t {
            Some(t) if t.frames.iter().any(|f| f.lang == Lang::Go) => &t.frames,
            _ => &g.frames,
        };
        let has = |name: &str| frames.iter().any(|f| f.function.as_deref() == Some(name));
        let on = t.map_or_else(|| format!("M{}", m.id), who);
        let summary = if has("runtime.cgocallback") {
            // A callback on a Go thread was entered by that thread's cgo call.
            let caller = callback_caller(frames).or_else(|| t.and_then(|t| t.cgo_call.clone()));
            format!(
                "goroutine {} is a Go callback from C{} parked in Go ({}): Go locks a callback to its thread (lockedInt {}), so {on} and the C code that called it wait until it returns, with every C lock that code holds",
                g.goid,
                caller.map(|c| format!(" (called by {c})")).unwrap_or_default(),
                g.state(),
                m.locked_int
            )
        } else if has("runtime.doInit") || has("runtime.doInit1") {
            format!(
                "goroutine {} is parked ({}) during package initialization, which Go runs locked to the main thread (lockedInt {}): {on} waits for it, and main has not started",
                g.goid,
                g.state(),
                m.locked_int
            )
        } else {
            format!(
                "the runtime keeps {on} locked to goroutine {} (lockedInt {}), which is parked in Go ({})",
                g.goid,
                m.locked_int,
                g.state()
            )
        };
        let mut ev = t
            .map(|t| evidence(&[t]))
            .unwrap_or_else(|| serde_json::json!({"tids": [], "ms": [m.id], "goids": []}));
        ev["goids"] = serde_json::json!([g.goid]);
        ev["locked_int"] = serde_json::json!(m.locked_int);
        out.push(Finding {
            kind: FindingKind::InternalLockParked,
            severity: Severity::Warning,
            summary,
            evidence: ev,
            advice: "a Go function exported to C should return promptly: hand long waits to another goroutine and return, and never park in Go while the C caller holds a lock".into(),
        });
    }
    out
}

fn frame_name(f: &Frame) -> &str {
    f.function.as_deref().unwrap_or("")
}

/// The C function that called into Go: the first C frame below the callback
/// that is not cgo's glue (`crosscall2`, the exported wrapper named like the
/// Go function).
fn callback_caller(frames: &[Frame]) -> Option<String> {
    let name = frame_name;
    let exp = frames.iter().position(|f| name(f).contains("_cgoexp_"))?;
    let callee = exp.checked_sub(1).map_or("", |i| name(&frames[i]));
    let short = callee.rsplit('.').next().unwrap_or("");
    let back = exp
        + frames[exp..]
            .iter()
            .position(|f| name(f) == "runtime.cgocallback")?;
    frames[back..]
        .iter()
        .filter(|f| f.lang == Lang::C)
        .map(name)
        .find(|n| !n.is_empty() && !n.starts_with("crosscall2") && *n != short)
        .map(str::to_string)
}

/// A goroutine that exits while locked takes its thread with it: the core
/// cannot show the goroutine, but the runtime counts the threads it ended.
pub fn exited_while_locked(x: &Facts) -> Vec<Finding> {
    let Some(s) = x.report.sched.as_ref().filter(|s| s.nmfreed > 0) else {
        return vec![];
    };
    // Go cannot end the main thread: it wedges it in mexit instead.
    let wedged: Vec<&ThreadInfo> = x
        .report
        .threads
        .iter()
        .filter(|t| t.has_frame("runtime.mexit"))
        .collect();
    let ended = s.nmfreed.saturating_sub(wedged.len() as i64);
    let one = s.nmfreed == 1;
    let mut summary = format!(
        "{} goroutine{} exited while locked to {} thread (LockOSThread without UnlockOSThread): ",
        s.nmfreed,
        plural(one),
        if one { "its" } else { "their" }
    );
    if ended > 0 {
        summary.push_str(&format!(
            "Go ended {ended} thread{} (sched.nmfreed)",
            plural(ended == 1)
        ));
    }
    if let Some(t) = wedged.first() {
        if ended > 0 {
            summary.push_str("; ");
        }
        summary.push_str(&format!(
            "the main {} is wedged for good in runtime.mexit",
            who(t)
        ));
    }
    let mut ev = evidence(&wedged);
    ev["nmfreed"] = serde_json::json!(s.nmfreed);
    vec![Finding {
        kind: FindingKind::ExitedWhileLocked,
        severity: Severity::Info,
        summary,
        evidence: ev,
        advice: "the goroutines are gone and cannot be shown; if threads keep being created and ended, a goroutine that locks its thread exits without UnlockOSThread (deliberate for threads whose state was changed, else a leak)".into(),
    }]
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;

    #[test]
    fn only_a_go_thread_whose_locked_goroutine_is_in_c_is_pinned_in_c() {
        let mut pinned = waiting(10, "read", 0, None);
        (pinned.m, pinned.curg, pinned.lockedg, pinned.in_cgo) = (Some(3), Some(7), Some(7), true);
        let mut unlocked = pinned.clone();
        (unlocked.tid, unlocked.lockedg) = (11, None);
        let mut extra = pinned.clone();
        (extra.tid, extra.kind) = (12, ThreadKind::Extra);
        let mut idle = pinned.clone();
        (idle.tid, idle.blocked) = (13, None);
        let r = report(vec![pinned, unlocked, extra, idle]);
        let f = locked_thread_blocked_in_c(&Facts::new(&r));
        assert_eq!(f.iter().map(tids).collect::<Vec<_>>(), vec![vec![10]]);
        assert!(
            f[0].summary
                .starts_with("goroutine 7 is locked to thread 10 (M3, goroutine 7)"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn a_callbacks_runtime_lock_is_not_called_lockosthread() {
        let mut t = waiting(10, "mutex", 0, None);
        (t.m, t.curg, t.lockedg, t.in_cgo) = (Some(3), Some(7), Some(7), true);
        let mut r = report(vec![t]);
        r.ms = vec![m_info(3, 1, 0, Some(7))];
        let user = locked_thread_blocked_in_c(&Facts::new(&r));
        assert!(
            user[0].summary.contains("(LockOSThread)"),
            "{}",
            user[0].summary
        );
        // A Go callback from C that called into C again: locked by the
        // runtime alone (lockedExt 0, lockedInt 1).
        r.ms = vec![m_info(3, 0, 1, Some(7))];
        let cb = locked_thread_blocked_in_c(&Facts::new(&r));
        assert!(
            cb[0].summary.contains("the runtime's own lock, lockedInt")
                && cb[0].summary.contains("not LockOSThread"),
            "{}",
            cb[0].summary
        );
    }

    #[test]
    fn nested_lockosthread_fires_above_one() {
        let mut r = report(vec![]);
        r.ms = vec![
            m_info(1, 1, 0, Some(5)),
            m_info(2, 2, 0, Some(6)),
            m_info(3, 3, 0, None),
        ];
        let f = nested_lockosthread(&Facts::new(&r));
        assert_eq!(f.len(), 2);
        assert!(
            f[0].summary
                .starts_with("M2 has LockOSThread nested 2 deep (goroutine 6)"),
            "{}",
            f[0].summary
        );
        assert_eq!(f[1].evidence["ms"], serde_json::json!([3]));
    }

    #[test]
    fn a_parked_callback_under_locked_int_names_its_c_caller() {
        let mut r = report(vec![]);
        let mut m = m_info(4, 0, 1, Some(22));
        m.tid = None;
        r.ms = vec![m];
        let mut g = goroutine(22, "waiting", Some("chan receive"));
        g.frames = vec![
            frame("runtime.gopark", Lang::Go),
            frame("main.callback", Lang::Go),
            frame("main._cgoexp_abc_callback", Lang::Go),
            frame("runtime.cgocallback", Lang::Go),
            frame("crosscall2", Lang::C),
            frame("callback", Lang::C),
            frame("call_back_into_go", Lang::C),
        ];
        r.goroutines = vec![g.clone()];
        let f = internal_lock_parked(&Facts::new(&r));
        assert_eq!(f.len(), 1);
        assert!(
            f[0].summary.starts_with("goroutine 22 is a Go callback from C (called by call_back_into_go) parked in Go (chan receive)"),
            "{}",
            f[0].summary
        );
        assert_eq!(f[0].evidence["goids"], serde_json::json!([22]));
        // Running, not parked: nothing to say.
        g.status = "running".into();
        r.goroutines = vec![g];
        assert!(internal_lock_parked(&Facts::new(&r)).is_empty());
    }

    #[test]
    fn exited_while_locked_counts_ended_threads_and_the_wedged_main_thread() {
        let mut r = report(vec![]);
        assert!(exited_while_locked(&Facts::new(&r)).is_empty(), "no sched");
        r.sched = Some(sched(3));
        let mut main = thread(100);
        main.frames = vec![frame("runtime.mexit", Lang::Go)];
        r.threads = vec![main];
        let f = exited_while_locked(&Facts::new(&r));
        assert_eq!(
            f[0].summary,
            "3 goroutines exited while locked to their thread (LockOSThread without UnlockOSThread): Go ended 2 threads (sched.nmfreed); the main thread 100 is wedged for good in runtime.mexit"
        );
        r.sched = Some(sched(i64::MIN));
        assert!(
            exited_while_locked(&Facts::new(&r)).is_empty(),
            "corrupt count"
        );
    }
}
