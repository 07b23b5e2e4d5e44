//! What C code runs where it must not: unsafe calls inside C signal
//! handlers, and CUDA driver calls from goroutines free to change threads.
use super::describe::{evidence, who};
use super::{Facts, FindingKind};
use crate::report::{Finding, Severity};

/// C library functions that are not async-signal-safe (POSIX's list is the
/// other way round; these are the ones seen blocking inside handlers).
const UNSAFE_IN_HANDLER: &[&str] = &[
    "malloc",
    "free",
    "calloc",
    "setenv",
    "unsetenv",
    "putenv",
    "realloc",
    "printf",
    "fprintf",
    "vfprintf",
    "puts",
    "fputs",
    "fwrite",
    "fflush",
    "pthread_mutex_lock",
    "lll_lock_wait",
    "lll_lock_wait_private",
    "pthread_cond_wait",
    "pthread_rwlock_rdlock",
    "pthread_rwlock_wrlock",
    "dlopen",
    "syslog",
    "localtime",
    "getaddrinfo",
];

/// A C signal handler running code that is not async-signal-safe: one
/// finding per such handler on a thread's stack.
pub fn signal_handler_unsafe(x: &Facts) -> Vec<Finding> {
    let mut out = vec![];
    for t in &x.report.threads {
        let mut from = 0;
        for s in &t.signals {
            if s.handler == "c" {
                let bad: Vec<String> = t.frames
                    [from.min(t.frames.len())..s.frame.min(t.frames.len())]
                    .iter()
                    .filter_map(|f| f.known_function())
                    .map(crate::classify::rules::normalize)
                    .filter(|n| UNSAFE_IN_HANDLER.contains(&n.as_str()))
                    .collect();
                if !bad.is_empty() {
                    out.push(Finding {
                        kind: FindingKind::SignalHandlerUnsafe,
                        severity: Severity::Critical,
                        summary: format!(
                            "{} is inside a C handler for {} that calls {} (not async-signal-safe)",
                            who(t),
                            s.name,
                            bad.join(", ")
                        ),
                        evidence: evidence(&[t]),
                        advice: "a signal handler may interrupt the very code that holds that lock or heap: only async-signal-safe calls belong in a handler (set a flag, write to a pipe)".into(),
                    });
                }
            }
            from = s.frame;
        }
    }
    out
}

/// CUDA contexts are bound to OS threads: a call from a goroutine that may
/// move between threads.
pub fn cuda_unlocked(x: &Facts) -> Vec<Finding> {
    x.report
        .threads
        .iter()
        .filter(|t| {
            let locked_goroutine = t.lockedg.is_some() && t.lockedg == t.curg;
            t.blocked.as_ref().and_then(|b| b.library.as_deref()) == Some("cuda") && !locked_goroutine
        })
        .map(|t| Finding {
            kind: FindingKind::CudaUnlocked,
            severity: Severity::Warning,
            summary: format!(
                "{} calls the CUDA driver from a goroutine that is not locked to its thread",
                who(t)
            ),
            evidence: evidence(&[t]),
            advice: "CUDA contexts are bound to OS threads: call runtime.LockOSThread in the goroutine that owns the context".into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::sample::*;
    use super::*;
    use crate::report::frame::Lang;
    use crate::report::Interrupted;

    fn handler(frame: usize, handler: &str) -> Interrupted {
        Interrupted {
            signal: 10,
            name: "SIGUSR1".into(),
            frame,
            handler: handler.into(),
        }
    }

    #[test]
    fn malloc_inside_a_c_handler_is_unsafe_below_it_is_not() {
        let mut t = thread(10);
        t.frames = vec![
            frame("__GI___lll_lock_wait_private", Lang::C),
            frame("__libc_malloc", Lang::C),
            frame("on_usr1", Lang::C),
            frame("__restore_rt", Lang::C),
            frame("malloc", Lang::C), // the interrupted code: not the handler's
        ];
        t.signals = vec![handler(4, "c")];
        let r = report(vec![t.clone()]);
        let f = signal_handler_unsafe(&Facts::new(&r));
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].summary,
            "thread 10 is inside a C handler for SIGUSR1 that calls lll_lock_wait_private, malloc (not async-signal-safe)"
        );
        // Go's own handler is not judged.
        t.signals = vec![handler(4, "go")];
        assert!(signal_handler_unsafe(&Facts::new(&report(vec![t]))).is_empty());
    }

    #[test]
    fn cuda_from_an_unlocked_goroutine_only() {
        let mut unlocked = waiting(10, "busy", 0, None);
        unlocked.blocked.as_mut().unwrap().library = Some("cuda".into());
        (unlocked.curg, unlocked.lockedg) = (Some(5), None);
        let mut locked = unlocked.clone();
        (locked.tid, locked.curg, locked.lockedg) = (11, Some(6), Some(6));
        let f = cuda_unlocked(&Facts::new(&report(vec![unlocked, locked])));
        assert_eq!(f.iter().map(tids).collect::<Vec<_>>(), vec![vec![10]]);
    }
}
