//! A core's stitched stacks: each blocked scenario's C frames joined to its
//! goroutine's Go frames, as the scenario built them and Go's dump shows.
use crate::common::*;
use cgocore::report::frame::{Frame, Lang};
use cgocore::report::{Report, ThreadInfo};

/// Scenario, the C function its goroutine calls, and names one of the libc
/// frames it blocks in must contain (glibc with or without debug info; musl,
/// whose lock and wait calls are the timed ones).
pub const IN_C: &[(&str, &str, &[&str])] = &[
    ("read_pipe", "block_read", &["read"]),
    (
        "cond_wait",
        "block_cond",
        &["pthread_cond_wait", "pthread_cond_timedwait"],
    ),
    ("mutex_holder", "hold_mutex_then_sleep", &["nanosleep"]),
    (
        "mutex_waiter",
        "block_mutex",
        &[
            "lll_lock_wait",
            "pthread_mutex_lock",
            "pthread_mutex_timedlock",
        ],
    ),
    ("sleep", "block_sleep", &["nanosleep"]),
    ("accept", "block_accept", &["accept"]),
    ("locked_in_c", "block_pause", &["pause"]),
];

pub fn name(f: &Frame) -> &str {
    f.function.as_deref().unwrap_or("??")
}

/// Frames of what the thread was doing (below any signal handler).
pub fn interrupted_frames(t: &ThreadInfo) -> &[Frame] {
    &t.frames[t.interrupted.as_ref().map_or(0, |i| i.frame)..]
}

pub fn libc_loaded(r: &Report) -> bool {
    !r.warnings.iter().any(|w| w.contains("libc"))
}

/// The module holding the C library: a static musl build's own executable.
pub fn is_libc(case: &CoreCase, module: Option<&str>) -> bool {
    match module {
        Some(m) if case.truth.is_static() => m == "cgostuck",
        Some(m) => m.starts_with("libc") || m.starts_with("ld-musl-"),
        None => false,
    }
}

pub fn check(case: &CoreCase, a: &cgocore::Analysis) -> Vec<String> {
    let r = &a.report;
    let t = &case.truth;
    let named_exe = t.variant != "stripped";
    let libc = libc_loaded(r);
    let mut errs = vec![];
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
    let thread = |scn: &str| {
        let s = &t.scenarios[scn];
        (s, r.threads.iter().find(|th| th.tid == s.tid))
    };

    let mut interrupted = 0;
    for (scn, cfn, libc_names) in IN_C {
        let (s, Some(th)) = thread(scn) else {
            e(format!("{scn}: thread missing"));
            continue;
        };
        if th.stack_goroutine != Some(s.goid) {
            e(format!(
                "{scn}: stack continues into goroutine {:?}, want {}",
                th.stack_goroutine, s.goid
            ));
        }
        if th.cgo_call.as_deref() != Some(&format!("C.{cfn}")) {
            e(format!("{scn}: cgo_call {:?}, want C.{cfn}", th.cgo_call));
        }
        if th.stack_truncated.is_some() {
            e(format!("{scn}: stack truncated: {:?}", th.stack_truncated));
        }
        // GOTRACEBACK=crash relays SIGQUIT from thread to thread until enough
        // Ms have it, so some threads in C took Go's handler and some did not.
        if let Some(i) = &th.interrupted {
            interrupted += 1;
            let after_sigtramp = i.frame > 0 && name(&th.frames[i.frame - 1]) == "runtime.sigtramp";
            if !after_sigtramp || !["SIGQUIT", "SIGABRT"].contains(&i.name.as_str()) {
                e(format!("{scn}: bad signal frame {i:?}"));
            }
        }
        let frames = interrupted_frames(th);
        let Some(k) = frames.iter().position(|f| name(f) == "runtime.asmcgocall") else {
            e(format!(
                "{scn}: no asmcgocall in {:?}",
                frames.iter().map(name).collect::<Vec<_>>()
            ));
            continue;
        };
        let c = &frames[..k];
        if c.is_empty() || c.iter().any(|f| f.lang != Lang::C) {
            e(format!(
                "{scn}: frames before asmcgocall are not all C: {:?}",
                c.iter().map(name).collect::<Vec<_>>()
            ));
        }
        if libc
            && !c.iter().any(|f| {
                is_libc(case, f.module.as_deref()) && libc_names.iter().any(|n| name(f).contains(n))
            })
        {
            e(format!(
                "{scn}: no libc frame named like {libc_names:?} in {:?}",
                c.iter().map(name).collect::<Vec<_>>()
            ));
        }
        if named_exe && c.iter().any(|f| f.function.is_none()) {
            e(format!("{scn}: unnamed C frame in an unstripped binary"));
        }
        // After asmcgocall: exactly the goroutine's Go frames from Go's dump.
        let go: Vec<&str> = frames[k + 1..].iter().map(name).collect();
        let want: Vec<&str> = t
            .goroutines
            .iter()
            .find(|g| g.goid == s.goid)
            .map(|g| g.frames.iter().map(|f| f.function.as_str()).collect())
            .unwrap_or_default();
        if go != want {
            e(format!(
                "{scn}: Go frames after asmcgocall\n  ours   {go:?}\n  theirs {want:?}"
            ));
        }
    }

    // The relay may also stop at a C-created thread in C (the kernel gives a
    // process-directed SIGQUIT to any thread that does not block it).
    interrupted += r
        .threads
        .iter()
        .filter(|th| th.kind != cgocore::report::ThreadKind::Go && th.blocked.is_some())
        .filter(|th| {
            th.interrupted.as_ref().is_some_and(|i| {
                i.frame > 0
                    && name(&th.frames[i.frame - 1]) == "runtime.sigtramp"
                    && th.frames.get(i.frame).is_some_and(|f| f.lang == Lang::C)
            })
        })
        .count();
    if t.kind == "kernel" && interrupted == 0 {
        e("no thread in C was crossed through Go's signal handler".into());
    }

    // Go -> C -> Go on a Go thread: callback frames, then the outer C call.
    {
        let (s, th) = thread("callback");
        match th {
            None => e("callback: thread missing".into()),
            Some(th) => {
                let names: Vec<&str> = interrupted_frames(th).iter().map(name).collect();
                let at = |n: &str| names.iter().position(|x| *x == n);
                let order = [
                    "runtime.cgocallback",
                    "crosscall2",
                    "runtime.asmcgocall",
                    "runtime.cgocall",
                    "main._Cfunc_call_back_into_go",
                ]
                .map(at);
                let in_order =
                    order.iter().all(Option::is_some) && order.windows(2).all(|w| w[0] < w[1]);
                if !in_order || th.stack_goroutine.is_none() || th.stack_truncated.is_some() {
                    e(format!(
                        "callback: stack {names:?} ({:?})",
                        th.stack_truncated
                    ));
                }
                if named_exe && !names.contains(&"goCallbackBlock") {
                    e(format!(
                        "callback: the C caller goCallbackBlock is missing: {names:?}"
                    ));
                }
                // The callback goroutine's own frames: its Go frames as Go's dump
                // shows them, with the C caller in between.
                if let Some(g) = r
                    .goroutines
                    .iter()
                    .find(|g| Some(g.goid) == th.stack_goroutine)
                {
                    let c_between = g.frames.iter().any(|f| f.lang == Lang::C);
                    if !c_between {
                        e(format!("callback: goroutine {} lacks its C frames", g.goid));
                    }
                }
                let _ = s;
            }
        }
    }

    // C-created threads: C frames down to the thread's start.
    for scn in ["extra_m_parked", "extra_m_in_c", "foreign_thread"] {
        let (_, Some(th)) = thread(scn) else {
            e(format!("{scn}: thread missing"));
            continue;
        };
        let frames = interrupted_frames(th);
        let names: Vec<&str> = frames.iter().map(name).collect();
        let last = frames.last();
        if th.stack_truncated.is_some() || last.is_none_or(|f| f.lang != Lang::C) {
            e(format!("{scn}: stack {names:?} ({:?})", th.stack_truncated));
        }
        // Without libc's debug info (arm64 here) start_thread has no name:
        // the stack must still end in libc, where the thread started.
        if libc && !t.foreign_platform() && !names.iter().any(|n| n.contains("start_thread")) {
            e(format!("{scn}: no start_thread in {names:?}"));
        }
        let ends_in_libc = is_libc(case, last.and_then(|f| f.module.as_deref()));
        if libc && !ends_in_libc {
            e(format!("{scn}: stack does not end in libc: {names:?}"));
        }
        if scn == "extra_m_parked" {
            let cb = names.iter().position(|n| *n == "runtime.cgocallback");
            let x2 = names.iter().position(|n| *n == "crosscall2");
            if cb.is_none() || x2 != cb.map(|i| i + 1) {
                e(format!(
                    "{scn}: callback not stitched to its C caller: {names:?}"
                ));
            }
        } else if frames.iter().any(|f| f.lang == Lang::Go) {
            e(format!(
                "{scn}: Go frames on a thread that is in C: {names:?}"
            ));
        }
    }
    errs
}
