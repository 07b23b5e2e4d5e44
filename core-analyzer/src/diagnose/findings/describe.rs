//! How findings name threads and what they do: one wording for every detector.
use crate::report::{Severity, ThreadInfo, ThreadKind};
use std::fmt::Write;

/// `thread 123 (M4, goroutine 7, extra)`.
pub fn who(t: &ThreadInfo) -> String {
    let mut s = format!("thread {}", t.tid);
    let mut parts = vec![];
    if let Some(m) = t.m {
        parts.push(format!("M{m}"));
    }
    if let Some(g) = t.curg.or(t.stack_goroutine) {
        parts.push(format!("goroutine {g}"));
    }
    if t.kind != ThreadKind::Go {
        parts.push(t.kind.as_str().to_string());
    }
    if !parts.is_empty() {
        let _ = write!(s, " ({})", parts.join(", "));
    }
    s
}

/// What the thread is doing: its blocked call, else where it is.
pub fn doing(t: &ThreadInfo) -> String {
    match &t.blocked {
        Some(b) => format!("{}: {}", b.class, b.detail),
        None if t.stack_goroutine.is_some() && t.curg.is_none() => {
            "parked, waiting for its locked goroutine".into()
        }
        None => "running Go code or idle in the scheduler".into(),
    }
}

/// `tid: what it does` for each thread, `; `-separated.
pub fn each_doing(ts: &[&ThreadInfo]) -> String {
    let each: Vec<String> = ts
        .iter()
        .map(|t| format!("{}: {}", t.tid, doing(t)))
        .collect();
    each.join("; ")
}

/// `{tids, ms, goids}` of the threads a finding is about.
pub fn evidence(ts: &[&ThreadInfo]) -> serde_json::Value {
    let mut goids: Vec<u64> = ts
        .iter()
        .filter_map(|t| t.curg.or(t.stack_goroutine))
        .collect();
    goids.dedup();
    serde_json::json!({
        "tids": ts.iter().map(|t| t.tid).collect::<Vec<_>>(),
        "ms": ts.iter().filter_map(|t| t.m).collect::<Vec<_>>(),
        "goids": goids,
    })
}

/// Others wait on `t`: critical when it is itself blocked (nothing will
/// move), a warning when it still runs C code.
pub fn holder_severity(t: &ThreadInfo) -> Severity {
    if t.blocked.as_ref().is_some_and(|b| b.class != "busy") {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

/// `1 thread` / `3 threads`.
pub fn threads(n: usize) -> String {
    if n == 1 {
        "1 thread".into()
    } else {
        format!("{n} threads")
    }
}

/// A noun's ending: `""` for one, `"s"` for more.
pub fn plural(one: bool) -> &'static str {
    if one {
        ""
    } else {
        "s"
    }
}

/// What locks a goroutine to thread `t`, by its M's counts: the program's
/// `LockOSThread` (lockedExt), or only the runtime's own lock (lockedInt: a
/// Go callback from C, `init`, a template thread), which users never called.
pub fn lock_kind(r: &crate::report::Report, t: &ThreadInfo) -> &'static str {
    let m = t.m.and_then(|id| r.ms.iter().find(|m| m.id == id));
    match m {
        Some(m) if m.locked_ext == 0 && m.locked_int > 0 => {
            "the runtime's own lock, lockedInt: a Go callback from C runs locked to its C thread; not LockOSThread"
        }
        _ => "LockOSThread",
    }
}
