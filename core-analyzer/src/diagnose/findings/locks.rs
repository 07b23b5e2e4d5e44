//! C locks: deadlock cycles, holders others wait for, and the thread at the
//! end of a wait chain (`chains.rs` follows the owners once per thread).
use super::describe::{doing, evidence, holder_severity, plural, threads, who};
use super::{Facts, FindingKind};
use crate::report::{Finding, Severity, ThreadInfo};
use std::collections::BTreeMap;

pub fn deadlocks(x: &Facts) -> Vec<Finding> {
    x.wait
        .cycles
        .iter()
        .map(|cyc| {
            let ts: Vec<&ThreadInfo> = cyc.iter().filter_map(|t| x.by_tid.get(t).copied()).collect();
            let names: Vec<String> = ts.iter().map(|t| who(t)).collect();
            let (summary, advice) = if let [one] = ts[..] {
                (
                    format!(
                        "self-deadlock: {} waits for a C lock it holds itself ({})",
                        names.join(", "),
                        doing(one)
                    ),
                    "the thread can never proceed, nor can anything else that needs the lock; the process must be restarted. A thread waits for itself when a signal handler calls code that takes a lock the interrupted code held (malloc, setenv, stdio): handlers must stay async-signal-safe",
                )
            } else {
                (
                    format!(
                        "deadlock: {} wait for C locks held by each other",
                        names.join(", ")
                    ),
                    "no thread in the cycle can proceed; the process must be restarted. Fix the lock order in the C code (or the Go code that calls it)",
                )
            };
            Finding {
                kind: FindingKind::Deadlock,
                severity: Severity::Critical,
                summary,
                evidence: evidence(&ts),
                advice: advice.into(),
            }
        })
        .collect()
}

/// Lock holders that others wait for (a thread waiting for itself is a
/// deadlock, not a holder with waiters).
pub fn held_while_blocked(x: &Facts) -> Vec<Finding> {
    let mut waiters: BTreeMap<u32, Vec<&ThreadInfo>> = BTreeMap::new();
    for t in &x.report.threads {
        if let Some(o) = t.blocked.as_ref().and_then(|b| b.owner_tid) {
            if o != t.tid {
                waiters.entry(o).or_default().push(t);
            }
        }
    }
    let mut out = vec![];
    for (owner, ws) in &waiters {
        let Some(o) = x.by_tid.get(owner) else {
            continue;
        };
        let lock = ws[0]
            .blocked
            .as_ref()
            .map(|b| b.lock_name())
            .unwrap_or_default();
        let mut ts = vec![*o];
        ts.extend(ws.iter().copied());
        let waiting: Vec<String> = ws.iter().map(|t| who(t)).collect();
        out.push(Finding {
            kind: FindingKind::LockHeldWhileBlocked,
            severity: holder_severity(o),
            summary: format!(
                "{} holds {lock} that {} wait{} for ({}), and is {}",
                who(o),
                threads(ws.len()),
                if ws.len() == 1 { "s" } else { "" },
                waiting.join(", "),
                doing(o)
            ),
            evidence: evidence(&ts),
            advice: "the waiters cannot proceed until the holder releases the lock: find why the holder is blocked (its stack), and do not block while holding a C lock".into(),
        });
    }
    out
}

/// Chains through more than one holder: the thread at the end is where to look.
pub fn wait_chains(x: &Facts) -> Vec<Finding> {
    let mut out = vec![];
    for c in &x.wait.chains {
        let Some(root) = x.by_tid.get(&c.root) else {
            continue;
        };
        let mut ts = vec![*root];
        ts.extend(
            c.waiting
                .iter()
                .filter_map(|(t, _)| x.by_tid.get(t).copied()),
        );
        let longest: Vec<String> = c
            .longest
            .iter()
            .filter_map(|t| x.by_tid.get(t).map(|t| who(t)))
            .collect();
        let itself = root.blocked.as_ref().and_then(|b| b.owner_tid) == Some(root.tid);
        out.push(Finding {
            kind: FindingKind::WaitChain,
            severity: holder_severity(root),
            summary: format!(
                "{} thread{} wait on {}, directly or through other lock holders (longest: {}); it is {}{}",
                c.waiting.len(),
                plural(c.waiting.len() == 1),
                who(root),
                longest.join(" → "),
                doing(root),
                if itself { " (it waits for itself)" } else { "" }
            ),
            evidence: evidence(&ts),
            advice: "start at the end of the chain: nothing behind it moves until that thread does; its stack says why it is stuck".into(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;

    #[test]
    fn an_abba_pair_is_one_deadlock_and_two_holders() {
        let r = report(vec![
            waiting(10, "mutex", 0xa0, Some(11)),
            waiting(11, "mutex", 0xb0, Some(10)),
            thread(12),
        ]);
        let x = Facts::new(&r);
        let d = deadlocks(&x);
        assert_eq!(d.len(), 1);
        assert_eq!(tids(&d[0]), vec![10, 11]);
        assert!(
            d[0].summary.starts_with("deadlock: thread 10"),
            "{}",
            d[0].summary
        );
        let h = held_while_blocked(&x);
        assert_eq!(
            h.iter().map(tids).collect::<Vec<_>>(),
            vec![vec![10, 11], vec![11, 10]]
        );
        assert!(wait_chains(&x).is_empty(), "a cycle has no end");
    }

    #[test]
    fn a_thread_waiting_for_itself_is_a_self_deadlock_not_a_holder() {
        let r = report(vec![waiting(20, "malloc-lock", 0xc0, Some(20))]);
        let x = Facts::new(&r);
        let d = deadlocks(&x);
        assert_eq!(d.len(), 1);
        assert!(
            d[0].summary.starts_with("self-deadlock: thread 20"),
            "{}",
            d[0].summary
        );
        assert!(held_while_blocked(&x).is_empty());
    }

    #[test]
    fn a_blocked_holder_is_critical_a_busy_one_a_warning() {
        let mut holder = waiting(31, "sleep", 0, None);
        holder.blocked.as_mut().unwrap().lock = None;
        let r = report(vec![waiting(30, "mutex", 0xd0, Some(31)), holder.clone()]);
        let h = held_while_blocked(&Facts::new(&r));
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].severity, Severity::Critical);
        assert!(
            h[0].summary
                .contains("holds mutex 0xd0 that 1 thread waits for"),
            "{}",
            h[0].summary
        );
        holder.blocked.as_mut().unwrap().class = "busy".into();
        let r = report(vec![waiting(30, "mutex", 0xd0, Some(31)), holder]);
        assert_eq!(
            held_while_blocked(&Facts::new(&r))[0].severity,
            Severity::Warning
        );
    }

    #[test]
    fn a_chain_through_two_holders_names_its_end() {
        // 40 -> 41 -> 42 (sleeping): 42 is where to look.
        let mut end = waiting(42, "sleep", 0, None);
        end.blocked.as_mut().unwrap().lock = None;
        let r = report(vec![
            waiting(40, "mutex", 0xe0, Some(41)),
            waiting(41, "mutex", 0xf0, Some(42)),
            end,
        ]);
        let c = wait_chains(&Facts::new(&r));
        assert_eq!(c.len(), 1);
        assert_eq!(tids(&c[0])[0], 42);
        assert!(
            c[0].summary.starts_with("2 threads wait on thread 42"),
            "{}",
            c[0].summary
        );
    }
}
