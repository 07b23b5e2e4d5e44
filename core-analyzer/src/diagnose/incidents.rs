//! Root causes, each named once: what is wrong, grouped from the findings
//! and the wait-for relation. A deadlock cycle, a thread waiting for itself,
//! and a lock holder others wait on (directly or through other holders) are
//! each one incident, rooted where to look, with every thread and goroutine
//! held up behind it as victims; a finding about a thread already in an
//! incident is evidence under it, any other warning is an incident of its
//! own, a pile-up of threads is one. Ordered by harm: victims, then severity.
use super::chains::{self, WaitFor};
use super::findings::describe::{doing, who};
use super::findings::FindingKind;
use crate::report::{Finding, Incident, Report, Severity, Subject, ThreadInfo, Victims};
use std::collections::{BTreeSet, HashMap};

pub fn incidents(r: &Report) -> Vec<Incident> {
    let by_tid: HashMap<u32, &ThreadInfo> = r.threads.iter().map(|t| (t.tid, t)).collect();
    let wf = chains::wait_for(&r.threads);
    let mut out: Vec<Incident> = vec![];
    // Thread -> the incident it is the root or a victim of.
    let mut of_thread: HashMap<u32, usize> = HashMap::new();

    for cyc in &wf.cycles {
        let inc = cycle(&by_tid, &wf, cyc);
        claim(&mut of_thread, &inc, out.len());
        out.push(inc);
    }
    let in_cycle: BTreeSet<u32> = wf.cycles.iter().flatten().copied().collect();
    for (&root, ws) in &wf.waiters {
        if in_cycle.contains(&root) {
            continue;
        }
        let Some(t) = by_tid.get(&root) else {
            continue;
        };
        let inc = lock_holder(r, &by_tid, &wf, t, ws);
        claim(&mut of_thread, &inc, out.len());
        out.push(inc);
    }
    // Goroutines queued in Go, behind the goroutine at the end of each chain.
    let before = out.len();
    super::queues::incidents(r, &mut out, &of_thread);
    for (k, inc) in out.iter().enumerate().skip(before) {
        claim(&mut of_thread, inc, k);
    }
    for (i, f) in r.findings.iter().enumerate() {
        let own = matches!(f.kind, FindingKind::ThreadPileup);
        let subject = f.tids().first().copied();
        match subject.and_then(|t| of_thread.get(&t)).filter(|_| !own) {
            Some(&k) => out[k].findings.push(i),
            // Context, not a problem: foreign threads, extra Ms, ...
            None if f.severity == Severity::Info => {}
            None => {
                let mut inc = from_finding(&by_tid, f, i);
                if own {
                    // A pile-up counts the threads no other cause holds up.
                    let tids: Vec<u32> = inc
                        .victims
                        .tids
                        .iter()
                        .copied()
                        .filter(|t| !of_thread.contains_key(t))
                        .collect();
                    inc.victims = victims(&by_tid, tids);
                } else {
                    claim(&mut of_thread, &inc, out.len());
                }
                out.push(inc);
            }
        }
    }
    merge_thread_limit(&mut out);
    for inc in out.iter_mut() {
        inc.signature = super::signature::of(inc, r);
    }
    // Most harm first: victims, then severity, then where the root is.
    out.sort_by_key(|inc| {
        (
            std::cmp::Reverse(inc.victims.tids.len() + inc.victims.goids.len()),
            inc.severity,
            inc.root.as_ref().and_then(|s| s.tid),
        )
    });
    out
}

/// A crash at a thread limit is the end of a pile-up, not a second cause:
/// its finding goes under the pile-up, which says how the process ended.
fn merge_thread_limit(out: &mut Vec<Incident>) {
    let kind = |k: FindingKind| k.as_str();
    let pile = out
        .iter()
        .position(|i| i.kind == kind(FindingKind::ThreadPileup));
    let crash = out
        .iter()
        .position(|i| i.kind == kind(FindingKind::ThreadCreateFailed));
    let (Some(p), Some(c)) = (pile, crash) else {
        return;
    };
    let crash = out.remove(c);
    let p = if c < p { p - 1 } else { p };
    let pileup = &mut out[p];
    pileup.severity = Severity::Critical;
    // (the counts are the pile-up's already)
    let how = crash
        .summary
        .split("; the process had")
        .next()
        .unwrap_or_default();
    pileup.summary = format!("{}; then {how}", pileup.summary);
    pileup.findings.extend(crash.findings);
    pileup.advice = crash.advice;
}

fn claim(of_thread: &mut HashMap<u32, usize>, inc: &Incident, idx: usize) {
    for t in inc
        .root
        .iter()
        .filter_map(|s| s.tid)
        .chain(inc.victims.tids.iter().copied())
    {
        of_thread.entry(t).or_insert(idx);
    }
}

fn subject(t: &ThreadInfo) -> Subject {
    Subject {
        tid: Some(t.tid),
        m: t.m,
        goid: t.curg.or(t.stack_goroutine),
    }
}

/// The threads and their goroutines held up.
fn victims(by_tid: &HashMap<u32, &ThreadInfo>, tids: Vec<u32>) -> Victims {
    let mut goids: Vec<u64> = vec![];
    // (a set: a pile-up's victims are thousands of threads)
    let mut seen = std::collections::HashSet::new();
    for t in tids.iter().filter_map(|t| by_tid.get(t)) {
        for g in [t.curg, t.stack_goroutine, t.lockedg].into_iter().flatten() {
            if seen.insert(g) {
                goids.push(g);
            }
        }
    }
    Victims { tids, goids }
}

/// "blocks 3 threads (31921, 31899, 31930) and 2 goroutines (12, 5)".
pub(super) fn harm(v: &Victims) -> String {
    fn n<T: ToString>(items: &[T], one: &str) -> String {
        let head: Vec<String> = items.iter().take(6).map(|x| x.to_string()).collect();
        let more = items.len().saturating_sub(6);
        let list = match (items.len(), more) {
            (0, _) => String::new(),
            (_, 0) => format!(" ({})", head.join(", ")),
            _ => format!(" ({}, {more} more)", head.join(", ")),
        };
        let s = if items.len() == 1 { "" } else { "s" };
        format!("{} {one}{s}{list}", items.len())
    }
    format!(
        "blocks {} and {}",
        n(&v.tids, "thread"),
        n(&v.goids, "goroutine")
    )
}

/// Threads waiting on any of `roots`, nearest first, without `roots`.
fn behind(wf: &WaitFor, roots: &[u32]) -> Vec<u32> {
    let mut out: Vec<(usize, u32)> = roots
        .iter()
        .flat_map(|r| wf.waiters.get(r).into_iter().flatten())
        .filter(|(t, _)| !roots.contains(t))
        .map(|&(t, h)| (h, t))
        .collect();
    out.sort();
    out.dedup_by_key(|(_, t)| *t);
    out.into_iter().map(|(_, t)| t).collect()
}

/// The longest wait chain ending at `root`, farthest thread first.
fn longest(wf: &WaitFor, root: u32) -> Vec<u32> {
    let Some(&(far, _)) = wf.waiters.get(&root).and_then(|ws| ws.last()) else {
        return vec![root];
    };
    let mut chain = vec![far];
    let mut cur = far;
    while cur != root && chain.len() <= wf.owner.len() {
        let Some(&n) = wf.owner.get(&cur) else { break };
        chain.push(n);
        cur = n;
    }
    chain
}

fn cycle(by_tid: &HashMap<u32, &ThreadInfo>, wf: &WaitFor, cyc: &[u32]) -> Incident {
    let ts: Vec<&ThreadInfo> = cyc.iter().filter_map(|t| by_tid.get(t).copied()).collect();
    let mut held: Vec<u32> = cyc.iter().skip(1).copied().collect();
    held.extend(behind(wf, cyc));
    let v = victims(by_tid, held);
    let (kind, summary, advice) = if let [one] = ts[..] {
        (
            "self-deadlock",
            format!(
                "{} waits for a C lock it holds itself ({}); {}",
                who(one),
                doing(one),
                harm(&v)
            ),
            "the thread can never proceed, nor can anything that needs the lock: restart the process. A thread waits for itself when a signal handler calls code that takes a lock the interrupted code held (malloc, setenv, stdio): keep handlers async-signal-safe",
        )
    } else {
        let names: Vec<String> = ts.iter().map(|t| who(t)).collect();
        (
            "deadlock",
            format!(
                "{} wait for C locks held by each other; {}",
                names.join(" and "),
                harm(&v)
            ),
            "no thread in the cycle can proceed: restart the process, and take the locks in one order in the C code (or in the Go code that calls it)",
        )
    };
    Incident {
        kind: kind.into(),
        severity: Severity::Critical,
        root: ts.first().map(|t| subject(t)),
        // A deadlock's cycle; who waits longest behind a self-deadlock.
        chain: if cyc.len() == 1 {
            longest(wf, cyc[0])
        } else {
            cyc.to_vec()
        },
        victims: v,
        summary,
        advice: advice.into(),
        findings: vec![],
        signature: String::new(),
    }
}

fn lock_holder(
    r: &Report,
    by_tid: &HashMap<u32, &ThreadInfo>,
    wf: &WaitFor,
    root: &ThreadInfo,
    ws: &[(u32, usize)],
) -> Incident {
    let v = victims(by_tid, ws.iter().map(|&(t, _)| t).collect());
    // The lock the nearest waiter waits for.
    let lock = ws
        .iter()
        .filter_map(|(t, _)| by_tid.get(t)?.blocked.as_ref())
        .find(|b| b.owner_tid == Some(root.tid))
        .map(|b| b.lock_name())
        .unwrap_or_else(|| "a C lock".into());
    let through = if ws.iter().any(|&(_, h)| h > 1) {
        ", directly or through other holders"
    } else {
        ""
    };
    let mut advice = String::from(
        "nothing behind it moves until this thread releases the lock: its stack says why it is stuck; do not block while holding a C lock",
    );
    // A thread parked for its locked goroutine: the goroutine holds the lock
    // and waits in Go (a deadlock across the cgo boundary).
    let parked = root.blocked.is_none() && root.curg.is_none() && root.stack_goroutine.is_some();
    if parked {
        advice = format!(
            "the goroutine locked to this thread ({}) took the C lock and is parked in Go: whatever it waits for in Go cannot come while the lock is held. Release C locks before blocking in Go",
            super::findings::describe::lock_kind(r, root)
        );
    }
    let goroutine_state = root
        .stack_goroutine
        .and_then(|g| r.goroutines.iter().find(|x| x.goid == g))
        .filter(|_| parked)
        .map(|g| format!(" (goroutine {} is parked in Go: {})", g.goid, g.state()))
        .unwrap_or_default();
    Incident {
        kind: "lock-holder".into(),
        severity: super::findings::describe::holder_severity(root),
        root: Some(subject(root)),
        chain: longest(wf, root.tid),
        summary: format!(
            "{} holds {lock} that {} for{through}; it is {}{goroutine_state}; {}",
            who(root),
            if ws.len() == 1 {
                "1 thread waits".to_string()
            } else {
                format!("{} threads wait", ws.len())
            },
            doing(root),
            harm(&v)
        ),
        victims: v,
        advice,
        findings: vec![],
        signature: String::new(),
    }
}

fn from_finding(by_tid: &HashMap<u32, &ThreadInfo>, f: &Finding, i: usize) -> Incident {
    let tids = f.tids();
    let pileup = matches!(f.kind, FindingKind::ThreadPileup);
    let root = if pileup {
        None
    } else {
        tids.first().and_then(|t| by_tid.get(t)).map(|t| subject(t))
    };
    let held: Vec<u32> = if pileup {
        tids
    } else {
        tids.into_iter().skip(1).collect()
    };
    Incident {
        kind: f.kind.as_str().into(),
        severity: f.severity,
        root,
        chain: vec![],
        victims: victims(by_tid, held),
        summary: f.summary.clone(),
        advice: f.advice.clone(),
        findings: vec![i],
        signature: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::findings::sample::*;
    use super::*;

    fn with_findings(mut r: Report) -> Report {
        r.findings = super::super::findings::findings(&r);
        r
    }

    #[test]
    fn one_holder_with_a_chain_is_one_incident_with_every_victim() {
        // 40 -> 41 -> 42 (sleeping), 43 -> 42: one root, three victims.
        let mut end = waiting(42, "sleep", 0, None);
        end.blocked.as_mut().unwrap().lock = None;
        let mut w = waiting(40, "mutex", 0xe0, Some(41));
        (w.curg, w.m) = (Some(7), Some(3));
        let r = with_findings(report(vec![
            w,
            waiting(41, "mutex", 0xf0, Some(42)),
            waiting(43, "mutex", 0xf0, Some(42)),
            end,
        ]));
        let inc = incidents(&r);
        assert_eq!(inc.len(), 1, "{inc:#?}");
        let i = &inc[0];
        assert_eq!(i.kind, "lock-holder");
        assert_eq!(i.root.as_ref().and_then(|s| s.tid), Some(42));
        assert_eq!(i.victims.tids, vec![41, 43, 40]);
        assert_eq!(i.victims.goids, vec![7]);
        assert_eq!(i.chain, vec![40, 41, 42]);
        // Every finding about these threads is evidence under it.
        assert_eq!(i.findings.len(), r.findings.len());
        assert!(
            i.summary
                .contains("blocks 3 threads (41, 43, 40) and 1 goroutine (7)"),
            "{}",
            i.summary
        );
    }

    #[test]
    fn a_deadlock_and_a_self_deadlock_are_one_incident_each_ordered_by_harm() {
        let r = with_findings(report(vec![
            waiting(10, "mutex", 0xa0, Some(11)),
            waiting(11, "mutex", 0xb0, Some(10)),
            waiting(12, "mutex", 0xa0, Some(10)),
            waiting(13, "mutex", 0xa0, Some(10)),
            waiting(20, "malloc-lock", 0xc0, Some(20)),
        ]));
        let inc = incidents(&r);
        let kinds: Vec<&str> = inc.iter().map(|i| i.kind.as_str()).collect();
        assert_eq!(kinds, vec!["deadlock", "self-deadlock"]);
        assert_eq!(inc[0].victims.tids, vec![11, 12, 13]);
        assert_eq!(inc[0].chain, vec![10, 11]);
        assert!(inc[1].victims.tids.is_empty());
    }

    #[test]
    fn a_pinned_thread_alone_is_its_own_incident_and_info_is_context() {
        let mut pinned = waiting(10, "read", 0, None);
        (pinned.m, pinned.curg, pinned.lockedg, pinned.in_cgo) = (Some(3), Some(7), Some(7), true);
        let mut c_thread = thread(12);
        c_thread.kind = crate::report::ThreadKind::Foreign;
        let r = with_findings(report(vec![pinned, c_thread]));
        let inc = incidents(&r);
        assert_eq!(inc.len(), 1, "foreign-threads is context: {inc:#?}");
        assert_eq!(inc[0].kind, "locked-thread-blocked-in-c");
        assert_eq!(inc[0].root.as_ref().and_then(|s| s.goid), Some(7));
    }
}
