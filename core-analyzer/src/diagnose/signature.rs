//! A signature per incident: a stable string of its root cause's shape —
//! the kind, what the root thread waits as, the C function it blocks in,
//! the Go function that made the cgo call, the lock's name — with no
//! address, thread or goroutine id, or count, so that a fleet's cores group
//! by cause: two cores of the same hang give the same signatures.
use crate::report::frame::Lang;
use crate::report::{Incident, Report, ThreadInfo};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// `lock-holder: sleep in __GI___clock_nanosleep from main.main.func3, holding shared_mu`.
pub fn of(inc: &Incident, r: &Report) -> String {
    let by_tid: HashMap<u32, &ThreadInfo> = r.threads.iter().map(|t| (t.tid, t)).collect();
    let shape = |tid: &u32| by_tid.get(tid).map(|t| thread_shape(t));
    let what: Vec<String> = match (&inc.root, inc.kind.as_str()) {
        // A Go-side queue with no holder: what its waiters wait on, and where.
        (None, "goroutine-queue") => queue_shape(inc, r).into_iter().collect(),
        // A cycle: each member's shape, in an order no tid decides.
        (_, "deadlock") => {
            let all: BTreeSet<String> = inc.chain.iter().filter_map(shape).collect();
            all.into_iter().collect()
        }
        (Some(root), _) => root.tid.as_ref().and_then(shape).into_iter().collect(),
        // A pile-up: what most of its threads wait as.
        (None, _) => {
            let mut n: BTreeMap<String, usize> = BTreeMap::new();
            for s in inc.victims.tids.iter().filter_map(shape) {
                *n.entry(s).or_default() += 1;
            }
            n.into_iter()
                .max_by_key(|(s, c)| (*c, std::cmp::Reverse(s.clone())))
                .map(|(s, _)| s)
                .into_iter()
                .collect()
        }
    };
    if what.is_empty() {
        inc.kind.clone()
    } else {
        format!("{}: {}", inc.kind, what.join(" ⇄ "))
    }
}

/// `mutex main.configMu in main.handle`: the object's kind, its name when it
/// is a package variable, the function the waiters wait in.
fn queue_shape(inc: &Incident, r: &Report) -> Option<String> {
    let g = r
        .goroutines
        .iter()
        .find(|g| Some(g.goid) == inc.victims.goids.first().copied())?;
    let w = g.waits_on.as_ref()?;
    let mut s = w.kind.to_string();
    if let Some(name) = &w.object {
        s.push_str(&format!(" {name}"));
    }
    let site = g
        .frames
        .iter()
        .filter(|f| f.lang == Lang::Go)
        .filter_map(|f| f.function.as_deref())
        .find(|n| {
            !(n.starts_with("runtime.") || n.starts_with("sync.") || n.starts_with("internal/"))
        });
    if let Some(f) = site {
        s.push_str(&format!(" in {f}"));
    }
    Some(s)
}

/// What one thread waits as, without ids or addresses.
fn thread_shape(t: &ThreadInfo) -> String {
    let mut s = match &t.blocked {
        Some(b) => b.class.clone(),
        None => "parked in Go".to_string(),
    };
    // The C function the goroutine called (`C.name`), else the outermost C
    // function below the thread's start: not the innermost, whose name
    // depends on whether the host has libc's debug info.
    let c = t.cgo_call.clone().or_else(|| {
        t.frames
            .iter()
            .filter(|f| f.lang == Lang::C && !f.inlined)
            .filter_map(|f| f.known_function())
            .map(crate::classify::rules::normalize)
            .rev()
            .find(|n| !is_thread_start(n))
    });
    if let Some(c) = c {
        s.push_str(&format!(" in {c}"));
    }
    if let Some(g) = caller(t) {
        s.push_str(&format!(" from {g}"));
    }
    if let Some(lock) = t.blocked.as_ref().and_then(|b| b.lock_symbol.as_deref()) {
        s.push_str(&format!(", on {}", without_addresses(lock)));
    }
    s
}

/// Where a C library starts a thread: the same under every thread.
fn is_thread_start(n: &str) -> bool {
    [
        "start_thread",
        "clone",
        "clone3",
        "thread_start",
        "start_c11",
        "start",
    ]
    .contains(&n)
        || n.starts_with("__clone")
}

/// The Go function that made the call: the first Go frame that is not the
/// runtime's or cgo's own plumbing.
fn caller(t: &ThreadInfo) -> Option<&str> {
    t.frames
        .iter()
        .filter(|f| f.lang == Lang::Go)
        .filter_map(|f| f.function.as_deref())
        .find(|n| {
            !(n.starts_with("runtime.")
                || n.starts_with("runtime/")
                || n.contains("._Cfunc_")
                || n.contains("._cgo_")
                || n.starts_with("_cgo"))
        })
}

/// A name with its hex addresses and offsets left out (`0x7f3a…` → `…`).
fn without_addresses(s: &str) -> String {
    s.split_whitespace()
        .map(|w| {
            let hex = w.trim_start_matches(['(', '<']);
            if hex.starts_with("0x") {
                "…"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::sample::{frame, waiting};
    use crate::report::{Subject, Victims};

    fn incident(kind: &str, root: Option<u32>, chain: Vec<u32>, victims: Vec<u32>) -> Incident {
        Incident {
            kind: kind.into(),
            severity: crate::report::Severity::Critical,
            root: root.map(|tid| Subject {
                tid: Some(tid),
                m: None,
                goid: None,
            }),
            chain,
            victims: Victims {
                tids: victims,
                goids: vec![],
            },
            summary: String::new(),
            advice: String::new(),
            findings: vec![],
            signature: String::new(),
        }
    }

    fn blocked(tid: u32, lock: &str) -> ThreadInfo {
        let mut t = waiting(tid, "mutex", 0x5000 + tid as u64, None);
        t.frames = vec![
            frame("__GI___lll_lock_wait", Lang::C),
            frame("runtime.asmcgocall", Lang::Go),
            frame("main._Cfunc_block_mutex", Lang::Go),
            frame("main.main.func5", Lang::Go),
        ];
        t.blocked.as_mut().unwrap().lock_symbol = Some(lock.into());
        t.cgo_call = Some("block_mutex".into());
        t
    }

    #[test]
    fn the_same_cause_gives_the_same_string_whatever_the_ids() {
        let r1 = crate::diagnose::findings::sample::report(vec![
            blocked(10, "shared_mu"),
            blocked(11, "other_mu"),
        ]);
        let r2 = crate::diagnose::findings::sample::report(vec![blocked(77, "shared_mu")]);
        let a = of(&incident("lock-holder", Some(10), vec![], vec![11]), &r1);
        let b = of(&incident("lock-holder", Some(77), vec![], vec![]), &r2);
        assert_eq!(
            a,
            "lock-holder: mutex in block_mutex from main.main.func5, on shared_mu"
        );
        assert_eq!(a, b, "ids and counts are not part of it");
        let c = of(&incident("lock-holder", Some(11), vec![], vec![]), &r1);
        assert_ne!(a, c, "another lock, another cause");
        // A deadlock: its members' shapes, in no tid's order.
        let d1 = of(&incident("deadlock", Some(10), vec![10, 11], vec![]), &r1);
        let d2 = of(&incident("deadlock", Some(11), vec![11, 10], vec![]), &r1);
        assert_eq!(d1, d2);
        assert_eq!(
            without_addresses("SQLite lock (0x7f3a38000b78) <0x55>"),
            "SQLite lock … …"
        );
    }
}
