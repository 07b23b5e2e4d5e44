//! Threads as a population: ones Go is still starting, C threads Go does not
//! know or lends extra Ms, and pile-ups of threads blocked in C.
use super::describe::{each_doing, evidence, plural};
use super::{Facts, FindingKind};
use crate::report::frame::{Lang, THREAD_START};
use crate::report::{Finding, Severity, ThreadInfo, ThreadKind};

/// Threads blocked in C beyond this many per P are a pile-up.
const PILEUP_PER_P: usize = 4;

/// A thread Go is starting: runtime/cgo's `threadentry` at its base (it has
/// not reached `minit`, which records its tid in the M), or a thread with
/// nothing but thread-creation frames while an M waits for its thread (the
/// clone has just returned in the new thread).
fn go_thread_starting(t: &ThreadInfo, m_without_thread: bool) -> bool {
    let in_threadentry = t.frames.iter().rev().take(4).any(|f| {
        f.lang == Lang::C
            && (f.function.as_deref() == Some("threadentry")
                || f.file
                    .as_deref()
                    .is_some_and(|p| p.contains("runtime/cgo/gcc_")))
    });
    in_threadentry || (m_without_thread && just_created(t))
}

/// The Ms waiting for their thread: not extra Ms (those wait for a C
/// thread to call into Go), no thread id recorded yet.
fn ms_without_thread(x: &Facts) -> Vec<i64> {
    x.report
        .ms
        .iter()
        .filter(|m| m.tid.is_none() && m.procid == 0 && !m.isextra)
        .map(|m| m.id)
        .collect()
}

fn foreign<'r>(x: &Facts<'r>, starting: bool) -> Vec<&'r ThreadInfo> {
    let waiting = !ms_without_thread(x).is_empty();
    x.report
        .threads
        .iter()
        .filter(|t| t.kind == ThreadKind::Foreign && go_thread_starting(t, waiting) == starting)
        .collect()
}

pub fn threads_starting(x: &Facts) -> Vec<Finding> {
    let starting = foreign(x, true);
    if starting.is_empty() {
        return vec![];
    }
    let stuck = starting
        .iter()
        .any(|t| t.blocked.is_some() && !just_created(t));
    let cloned = starting.iter().filter(|t| just_created(t)).count();
    let ms: Vec<String> = ms_without_thread(x)
        .iter()
        .map(|m| format!("M{m}"))
        .collect();
    let how = match (cloned, starting.len() - cloned) {
        (0, _) => "in runtime/cgo's threadentry, no M yet".to_string(),
        (_, in_threadentry) => format!(
            "{}, no M yet; waiting for a thread: {}",
            if in_threadentry == 0 {
                "just created"
            } else {
                "in runtime/cgo's threadentry or just created"
            },
            ms.join(", ")
        ),
    };
    let mut advice = "Go creates threads through C (pthread_create, malloc): a new thread stuck here means thread creation itself is wedged (a malloc arena or list_lock held for good), so the scheduler cannot add threads; find the lock's holder".to_string();
    if cloned > 0 {
        advice.push_str(
            ". A thread only just created is no problem: the capture caught Go starting it",
        );
    }
    vec![Finding {
        kind: FindingKind::ThreadsStarting,
        severity: if stuck {
            Severity::Warning
        } else {
            Severity::Info
        },
        summary: format!(
            "{} thread{} Go is starting ({how}){}: {}",
            starting.len(),
            plural(starting.len() == 1),
            match (stuck, starting.len()) {
                (false, _) => "",
                (true, 1) => ", blocked before it could run Go",
                (true, _) => ", blocked before they could run Go",
            },
            each_doing(&starting)
        ),
        evidence: evidence(&starting),
        advice,
    }]
}

/// Nothing but thread-creation frames (at least one): whatever it is in
/// is its start.
fn just_created(t: &ThreadInfo) -> bool {
    !t.frames.is_empty()
        && t.frames.iter().all(|f| {
            f.known_function()
                .is_some_and(|n| THREAD_START.contains(&n))
        })
}

pub fn foreign_threads(x: &Facts) -> Vec<Finding> {
    let ts = foreign(x, false);
    if ts.is_empty() {
        return vec![];
    }
    vec![Finding {
        kind: FindingKind::ForeignThreads,
        severity: Severity::Info,
        summary: format!(
            "{} thread{} created by C never entered Go: {}",
            ts.len(),
            plural(ts.len() == 1),
            each_doing(&ts)
        ),
        evidence: evidence(&ts),
        advice: "these threads belong to C libraries; Go cannot see or schedule them".into(),
    }]
}

pub fn extra_ms(x: &Facts) -> Vec<Finding> {
    let ts: Vec<&ThreadInfo> = x
        .report
        .threads
        .iter()
        .filter(|t| t.kind == ThreadKind::Extra)
        .collect();
    if ts.is_empty() {
        return vec![];
    }
    let one = ts.len() == 1;
    vec![Finding {
        kind: FindingKind::ExtraMs,
        severity: Severity::Info,
        summary: format!(
            "{} C-created thread{} called into Go and keep{} an extra M (bound since Go 1.21): {}",
            ts.len(),
            plural(one),
            if one { "s" } else { "" },
            each_doing(&ts)
        ),
        evidence: evidence(&ts),
        advice: "each such thread holds an M and a goroutine (locked to it) until it exits".into(),
    }]
}

/// Many Go threads blocked in C for cgo calls: each holds an OS thread, and
/// the runtime's thread limit ends the process.
pub fn thread_pileup(x: &Facts) -> Vec<Finding> {
    let r = x.report;
    let in_c: Vec<&ThreadInfo> = r
        .threads
        .iter()
        .filter(|t| {
            t.in_cgo
                && t.kind == ThreadKind::Go
                && t.blocked.as_ref().is_some_and(|b| b.class != "busy")
        })
        .collect();
    let procs = usize::try_from(r.gomaxprocs.unwrap_or(1))
        .unwrap_or(1)
        .max(1);
    if in_c.len() < PILEUP_PER_P.saturating_mul(procs) || in_c.len() < 8 {
        return vec![];
    }
    // Go's limit counts Ms (sched.maxmcount against mcount()), not OS
    // threads; counts read from the core must not overflow.
    let limit = r.sched.as_ref().map_or(10_000, |s| s.maxmcount);
    let ms = r
        .sched
        .as_ref()
        .map_or(r.ms.len(), |s| usize::try_from(s.mcount).unwrap_or(0));
    let threads = r.threads.len();
    let near = ms.saturating_mul(10) >= usize::try_from(limit).unwrap_or(0).saturating_mul(8);
    vec![Finding {
        kind: FindingKind::ThreadPileup,
        severity: if near { Severity::Critical } else { Severity::Warning },
        summary: format!(
            "{} threads are blocked in C for cgo calls (GOMAXPROCS {procs}); the process has {threads} OS threads and {ms} Ms, of at most {limit} Ms",
            in_c.len()
        ),
        evidence: evidence(&in_c),
        advice: "every blocked cgo call holds an OS thread; bound concurrency into C (a semaphore around the calls) and add timeouts; at the limit Go aborts with 'thread exhaustion'".into(),
    }]
}

/// Why the runtime could not add a thread, from the frames of the thread
/// that ended the process: (cause, advice).
fn create_failure(t: &ThreadInfo) -> Option<(&'static str, &'static str)> {
    let has = |names: &[&str]| {
        t.frames
            .iter()
            .filter_map(|f| f.function.as_deref())
            .any(|n| names.contains(&n))
    };
    let died = has(&[
        "abort",
        "__GI_abort",
        "fatalf",
        "runtime.throw",
        "runtime.fatal",
        "runtime.fatalthrow",
    ]);
    if !died {
        return None;
    }
    const SYSTEM: &str = "the system refused a new thread: the user's process limit (RLIMIT_NPROC, `ulimit -u`: every thread of every process of the user counts), a cgroup's pids.max, kernel.threads-max or kernel.pid_max, or memory for the thread's stack. Threads pile up because goroutines block in C (each holds its thread): bound concurrency into C and give the calls deadlines; raise the limit only after";
    if has(&["runtime.checkmcount"]) {
        Some((
            "the program exceeds Go's thread limit (sched.maxmcount, debug.SetMaxThreads; 'fatal error: thread exhaustion')",
            "Go's own limit (10000 unless debug.SetMaxThreads changed it): goroutines blocked in C each hold a thread; bound concurrency into C (a semaphore around the calls) and give the calls deadlines",
        ))
    } else if has(&[
        "_cgo_sys_thread_start",
        "_cgo_try_pthread_create",
        "x_cgo_thread_start",
    ]) {
        Some(("runtime/cgo's pthread_create failed ('runtime/cgo: pthread_create failed: Resource temporarily unavailable')", SYSTEM))
    } else if has(&["runtime.newosproc"]) {
        Some((
            "the runtime's clone failed ('runtime: failed to create new OS thread')",
            SYSTEM,
        ))
    } else {
        None
    }
}

pub fn thread_create_failed(x: &Facts) -> Vec<Finding> {
    let r = x.report;
    r.threads
        .iter()
        .filter_map(|t| {
            let (cause, advice) = create_failure(t)?;
            Some(Finding {
                kind: FindingKind::ThreadCreateFailed,
                severity: Severity::Critical,
                summary: format!(
                    "{} could not create a thread for Go and ended the process: {cause}; the process had {} threads and {} Ms",
                    super::describe::who(t),
                    r.threads.len(),
                    r.ms.len()
                ),
                evidence: evidence(&[t]),
                advice: advice.into(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;
    use crate::report::frame::Lang;

    #[test]
    fn the_thread_that_could_not_create_a_thread_is_named_with_its_cause() {
        let mut cgo = thread(20);
        cgo.frames = ["__GI_abort", "fatalf", "_cgo_sys_thread_start"]
            .iter()
            .map(|n| frame(n, Lang::C))
            .chain(
                ["runtime.asmcgocall", "runtime.newm1"]
                    .iter()
                    .map(|n| frame(n, Lang::Go)),
            )
            .collect();
        let mut limit = thread(21);
        limit.frames = [
            "runtime.fatalthrow",
            "runtime.throw",
            "runtime.checkmcount",
            "runtime.startm",
        ]
        .iter()
        .map(|n| frame(n, Lang::Go))
        .collect();
        // A thread that only creates a thread (no abort, no throw) is not it.
        let mut busy = thread(22);
        busy.frames = vec![
            frame("_cgo_sys_thread_start", Lang::C),
            frame("runtime.newm1", Lang::Go),
        ];
        let r = report(vec![cgo, limit, busy]);
        let f = thread_create_failed(&Facts::new(&r));
        assert_eq!(f.len(), 2);
        assert!(
            f[0].summary.contains("pthread_create failed") && f[0].advice.contains("RLIMIT_NPROC")
        );
        assert!(
            f[1].summary.contains("thread exhaustion") && f[1].advice.contains("SetMaxThreads")
        );
        assert!(f.iter().all(|f| f.severity == Severity::Critical));
    }

    #[test]
    fn foreign_threads_and_threads_go_is_starting_are_told_apart() {
        let mut starting = waiting(11, "malloc-lock", 0x10, None);
        starting.kind = ThreadKind::Foreign;
        starting.frames = vec![
            frame("__lll_lock_wait_private", Lang::C),
            frame("threadentry", Lang::C),
        ];
        let mut c_thread = thread(12);
        c_thread.kind = ThreadKind::Foreign;
        let r = report(vec![thread(10), starting, c_thread]);
        let x = Facts::new(&r);
        let s = threads_starting(&x);
        assert_eq!((s.len(), s[0].severity), (1, Severity::Warning));
        assert!(s[0].summary.starts_with("1 thread Go is starting (in runtime/cgo's threadentry, no M yet), blocked before it could run Go: 11: malloc-lock"), "{}", s[0].summary);
        let f = foreign_threads(&x);
        assert_eq!(f.iter().map(tids).collect::<Vec<_>>(), vec![vec![12]]);
        assert!(extra_ms(&x).is_empty());
    }

    #[test]
    fn a_thread_only_just_cloned_is_go_starting_one_while_an_m_waits_for_it() {
        // pthread_create's clone3 has returned in the new thread: its stack
        // is clone3 and start_thread only. An M with no thread yet makes it
        // Go's; without one it is a C library's.
        let mut new = thread(30);
        new.kind = ThreadKind::Foreign;
        new.frames = vec![frame("start_thread", Lang::C), frame("clone3", Lang::C)];
        let mut r = report(vec![thread(10), new]);
        let mut extra = m_info(2, 0, 0, None);
        extra.isextra = true;
        r.ms = vec![m_info(0, 0, 0, None), extra];
        r.ms[0].tid = Some(10);
        r.ms[0].procid = 10;
        let x = Facts::new(&r);
        assert!(
            threads_starting(&x).is_empty(),
            "a spare extra M waits for a C thread, not a new one"
        );
        assert_eq!(foreign_threads(&x).len(), 1);
        r.ms.push(m_info(5, 0, 0, None));
        let x = Facts::new(&r);
        let s = threads_starting(&x);
        assert_eq!((s.len(), s[0].severity), (1, Severity::Info));
        assert!(
            s[0].summary.contains("waiting for a thread: M5"),
            "{}",
            s[0].summary
        );
        assert!(foreign_threads(&x).is_empty());
    }

    #[test]
    fn extra_ms_lists_c_threads_that_called_into_go() {
        let mut a = thread(20);
        a.kind = ThreadKind::Extra;
        let mut b = a.clone();
        b.tid = 21;
        let f = extra_ms(&Facts::new(&report(vec![a, b])));
        assert!(
            f[0].summary
                .starts_with("2 C-created threads called into Go and keep an extra M"),
            "{}",
            f[0].summary
        );
    }

    #[test]
    fn a_pileup_needs_four_per_p_and_eight_threads_and_is_critical_near_the_limit() {
        let blocked = |tid| {
            let mut t = waiting(tid, "read", 0, None);
            t.in_cgo = true;
            t
        };
        let mut r = report((1..=7).map(blocked).collect());
        r.gomaxprocs = Some(1);
        assert!(thread_pileup(&Facts::new(&r)).is_empty(), "7 < 8");
        r.threads.push(blocked(8));
        let f = thread_pileup(&Facts::new(&r));
        assert_eq!((f.len(), f[0].severity), (1, Severity::Warning));
        r.gomaxprocs = Some(4);
        assert!(thread_pileup(&Facts::new(&r)).is_empty(), "8 < 4 per P");
        r.gomaxprocs = Some(2);
        let mut s = sched(0);
        (s.mcount, s.maxmcount) = (9000, 10_000);
        r.sched = Some(s.clone());
        assert_eq!(
            thread_pileup(&Facts::new(&r))[0].severity,
            Severity::Critical
        );
        // Corrupt counts from the core neither overflow nor panic.
        (s.mcount, s.maxmcount) = (i64::MAX, -1);
        r.sched = Some(s);
        r.gomaxprocs = Some(i32::MIN);
        assert_eq!(thread_pileup(&Facts::new(&r)).len(), 1);
    }
}
