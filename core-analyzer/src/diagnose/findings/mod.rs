//! Findings a person on call reads first, each with evidence (tids, M ids,
//! goids) and advice. One detector per kind, each a small function over the
//! report model alone, so the CLI, the JSON and the debugger faces agree.
pub(crate) mod describe;
mod handlers;
mod locking;
mod locks;
mod threads;

use crate::report::{Finding, Report, ThreadInfo};
use std::collections::HashMap;

pub use crate::report::model::FindingKind;

/// What every detector may look at: the report, and what is derived from it
/// once (threads by tid, the wait-for chains).
pub struct Facts<'r> {
    pub report: &'r Report,
    pub by_tid: HashMap<u32, &'r ThreadInfo>,
    pub wait: super::chains::WaitFor,
    /// Each thread's place in the report (for ordering).
    position: HashMap<u32, usize>,
}

impl<'r> Facts<'r> {
    pub fn new(report: &'r Report) -> Facts<'r> {
        Facts {
            report,
            by_tid: report.threads.iter().map(|t| (t.tid, t)).collect(),
            wait: super::chains::wait_for(&report.threads),
            position: report
                .threads
                .iter()
                .enumerate()
                .map(|(i, t)| (t.tid, i))
                .collect(),
        }
    }

    /// The position of a thread in the report (for ordering).
    fn position(&self, tid: u32) -> usize {
        self.position.get(&tid).copied().unwrap_or(usize::MAX)
    }
}

/// A detector: one kind of finding, from the facts.
pub struct Detector {
    pub kind: FindingKind,
    /// Its findings are each about one thread (`evidence.tids[0]`): those of
    /// neighbouring per-thread detectors are listed thread by thread.
    pub per_thread: bool,
    pub run: fn(&Facts) -> Vec<Finding>,
}

/// Every detector, in the order their findings are listed within a severity.
pub const DETECTORS: &[Detector] = &[
    Detector {
        kind: FindingKind::Deadlock,
        per_thread: false,
        run: locks::deadlocks,
    },
    Detector {
        kind: FindingKind::LockHeldWhileBlocked,
        per_thread: false,
        run: locks::held_while_blocked,
    },
    Detector {
        kind: FindingKind::WaitChain,
        per_thread: false,
        run: locks::wait_chains,
    },
    Detector {
        kind: FindingKind::LockedThreadBlockedInC,
        per_thread: true,
        run: locking::locked_thread_blocked_in_c,
    },
    Detector {
        kind: FindingKind::CudaUnlocked,
        per_thread: true,
        run: handlers::cuda_unlocked,
    },
    Detector {
        kind: FindingKind::SignalHandlerUnsafe,
        per_thread: true,
        run: handlers::signal_handler_unsafe,
    },
    Detector {
        kind: FindingKind::NestedLockOsThread,
        per_thread: false,
        run: locking::nested_lockosthread,
    },
    Detector {
        kind: FindingKind::InternalLockParked,
        per_thread: false,
        run: locking::internal_lock_parked,
    },
    Detector {
        kind: FindingKind::ExitedWhileLocked,
        per_thread: false,
        run: locking::exited_while_locked,
    },
    Detector {
        kind: FindingKind::ThreadsStarting,
        per_thread: false,
        run: threads::threads_starting,
    },
    Detector {
        kind: FindingKind::ForeignThreads,
        per_thread: false,
        run: threads::foreign_threads,
    },
    Detector {
        kind: FindingKind::ExtraMs,
        per_thread: false,
        run: threads::extra_ms,
    },
    Detector {
        kind: FindingKind::ThreadPileup,
        per_thread: false,
        run: threads::thread_pileup,
    },
    Detector {
        kind: FindingKind::ThreadCreateFailed,
        per_thread: true,
        run: threads::thread_create_failed,
    },
];

/// Every finding, most severe first; within a severity in detector order,
/// with neighbouring per-thread detectors merged thread by thread.
pub fn findings(r: &Report) -> Vec<Finding> {
    let facts = Facts::new(r);
    let mut ranked: Vec<((usize, usize, usize), Finding)> = vec![];
    let mut group = 0;
    for (i, d) in DETECTORS.iter().enumerate() {
        if !(d.per_thread && i > 0 && DETECTORS[i - 1].per_thread) {
            group = i;
        }
        for f in (d.run)(&facts) {
            debug_assert_eq!(f.kind, d.kind);
            let at = if d.per_thread {
                f.tids().first().map_or(usize::MAX, |&t| facts.position(t))
            } else {
                0
            };
            ranked.push(((group, at, i), f));
        }
    }
    // Stable: a detector's own findings keep their order.
    ranked.sort_by_key(|(rank, f)| (f.severity, *rank));
    ranked.into_iter().map(|(_, f)| f).collect()
}

#[cfg(test)]
pub(crate) mod sample;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_detector_and_serializes_as_its_name() {
        let mut seen = std::collections::HashSet::new();
        for d in DETECTORS {
            assert!(seen.insert(d.kind), "{} twice", d.kind);
            let json = serde_json::to_value(d.kind).unwrap();
            assert_eq!(json, d.kind.as_str());
            let back: FindingKind = serde_json::from_value(json).unwrap();
            assert_eq!(back, d.kind);
        }
    }

    #[test]
    fn within_a_severity_per_thread_findings_go_thread_by_thread() {
        use crate::report::frame::Lang;
        use sample::*;
        // Thread 10: CUDA from an unlocked goroutine; thread 11: locked and
        // blocked in C; both warnings. Thread order wins over detector order.
        let mut a = waiting(10, "busy", 0, None);
        a.blocked.as_mut().unwrap().library = Some("cuda".into());
        let mut b = waiting(11, "read", 0, None);
        (b.m, b.curg, b.lockedg, b.in_cgo) = (Some(1), Some(7), Some(7), true);
        b.frames = vec![frame("read", Lang::C)];
        let r = report(vec![a, b]);
        let kinds: Vec<FindingKind> = findings(&r).iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            vec![
                FindingKind::CudaUnlocked,
                FindingKind::LockedThreadBlockedInC
            ]
        );
    }
}
