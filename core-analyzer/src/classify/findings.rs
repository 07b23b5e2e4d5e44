//! The wait-for graph over threads, goroutines and C locks, and the findings
//! a person on call reads first: each with evidence (tids, M ids, goids) and
//! advice. Computed from the report model only, so every face shows the same.
use crate::report::{Finding, GoroutineInfo, Report, Severity, ThreadInfo, ThreadKind};
use crate::unwind::{Frame, Lang};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

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

/// Threads blocked in C beyond this many per P are a pile-up.
const PILEUP_PER_P: usize = 4;

/// An edge of the wait-for graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Thread(u32),
    Goroutine(u64),
    Lock(u64),
}

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// (from, to, label): `from` waits for `to`.
    pub edges: Vec<(Node, Node, String)>,
    pub lock_names: HashMap<u64, String>,
}

pub fn graph(r: &Report) -> Graph {
    let mut g = Graph::default();
    for t in &r.threads {
        let Some(b) = &t.blocked else { continue };
        if let Some(lock) = b.lock {
            g.edges
                .push((Node::Thread(t.tid), Node::Lock(lock), b.class.clone()));
            let name = b
                .lock_symbol
                .clone()
                .unwrap_or_else(|| format!("{lock:#x}"));
            g.lock_names.insert(lock, format!("{} {name}", b.class));
            if let Some(o) = b.owner_tid {
                g.edges
                    .push((Node::Lock(lock), Node::Thread(o), "held by".into()));
            }
        }
    }
    for t in &r.threads {
        // A goroutine in a cgo call waits for its thread's C call.
        if let (Some(g0), true) = (t.curg, t.in_cgo && t.blocked.is_some()) {
            g.edges
                .push((Node::Goroutine(g0), Node::Thread(t.tid), "in C on".into()));
        }
        // A thread parked for its locked goroutine waits for that goroutine.
        if let (Some(lg), None) = (t.lockedg, t.curg) {
            g.edges
                .push((Node::Thread(t.tid), Node::Goroutine(lg), "locked to".into()));
        }
    }
    g
}

impl Graph {
    pub fn to_dot(&self, r: &Report) -> String {
        let mut o =
            String::from("digraph waitfor {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
        let mut nodes: BTreeMap<Node, ()> = BTreeMap::new();
        for (a, b, _) in &self.edges {
            nodes.insert(a.clone(), ());
            nodes.insert(b.clone(), ());
        }
        for n in nodes.keys() {
            let (id, label, shape) = match n {
                Node::Thread(t) => {
                    let th = r.threads.iter().find(|x| x.tid == *t);
                    let mut l = format!("thread {t}");
                    if let Some(m) = th.and_then(|x| x.m) {
                        let _ = write!(l, "\\nM{m}");
                    }
                    if let Some(b) = th.and_then(|x| x.blocked.as_ref()) {
                        let _ = write!(l, "\\n{}", b.class);
                    }
                    (format!("t{t}"), l, "box")
                }
                Node::Goroutine(g) => (format!("g{g}"), format!("goroutine {g}"), "ellipse"),
                Node::Lock(a) => (
                    format!("l{a:x}"),
                    self.lock_names
                        .get(a)
                        .cloned()
                        .unwrap_or_else(|| format!("{a:#x}")),
                    "diamond",
                ),
            };
            let _ = writeln!(o, "  {id} [label=\"{label}\", shape={shape}];");
        }
        let id = |n: &Node| match n {
            Node::Thread(t) => format!("t{t}"),
            Node::Goroutine(g) => format!("g{g}"),
            Node::Lock(a) => format!("l{a:x}"),
        };
        for (a, b, label) in &self.edges {
            let _ = writeln!(o, "  {} -> {} [label=\"{label}\"];", id(a), id(b));
        }
        o.push_str("}\n");
        o
    }
}

fn who(t: &ThreadInfo) -> String {
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

fn doing(t: &ThreadInfo) -> String {
    match &t.blocked {
        Some(b) => format!("{}: {}", b.class, b.detail),
        None if t.stack_goroutine.is_some() && t.curg.is_none() => {
            "parked, waiting for its locked goroutine".into()
        }
        None => "running Go code or idle in the scheduler".into(),
    }
}

fn evidence(ts: &[&ThreadInfo]) -> serde_json::Value {
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

/// Runtime-internal thread locks (`m.lockedInt`): Go locks a callback from C
/// to its thread, and the main goroutine during package init. A goroutine
/// parked in Go under such a lock keeps the thread, and the C code that called
/// it (and every C lock that code holds) waits until it returns.
fn internal_locks(r: &Report, by_tid: &HashMap<u32, &ThreadInfo>, out: &mut Vec<Finding>) {
    let by_goid: HashMap<u64, &GoroutineInfo> = r.goroutines.iter().map(|g| (g.goid, g)).collect();
    for m in r.ms.iter().filter(|m| m.locked_int > 0) {
        let Some(g) = m.lockedg.and_then(|id| by_goid.get(&id).copied()) else {
            continue;
        };
        if g.status != "waiting" {
            continue;
        }
        let t = m.tid.and_then(|tid| by_tid.get(&tid).copied());
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
            kind: "internal-lock-parked".into(),
            severity: Severity::Warning,
            summary,
            evidence: ev,
            advice: "a Go function exported to C should return promptly: hand long waits to another goroutine and return, and never park in Go while the C caller holds a lock".into(),
        });
    }
}

/// A thread Go created through cgo that has not reached `minit` (which
/// records its tid in the M): runtime/cgo's `threadentry` is at its base.
fn go_thread_starting(t: &ThreadInfo) -> bool {
    t.frames.iter().rev().take(4).any(|f| {
        f.lang == Lang::C
            && (f.function.as_deref() == Some("threadentry")
                || f.file
                    .as_deref()
                    .is_some_and(|p| p.contains("runtime/cgo/gcc_")))
    })
}

/// `tid: what it does` for each thread, `; `-separated.
fn each_doing(ts: &[&ThreadInfo]) -> String {
    let each: Vec<String> = ts
        .iter()
        .map(|t| format!("{}: {}", t.tid, doing(t)))
        .collect();
    each.join("; ")
}

/// Others wait on `t`: critical when it is itself blocked (nothing will
/// move), a warning when it still runs C code.
fn holder_severity(t: &ThreadInfo) -> Severity {
    if t.blocked.as_ref().is_some_and(|b| b.class != "busy") {
        Severity::Critical
    } else {
        Severity::Warning
    }
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

pub fn findings(r: &Report) -> Vec<Finding> {
    let by_tid: HashMap<u32, &ThreadInfo> = r.threads.iter().map(|t| (t.tid, t)).collect();
    let mut out = vec![];
    let wait = super::chains::wait_for(&r.threads);

    for cyc in &wait.cycles {
        let ts: Vec<&ThreadInfo> = cyc.iter().filter_map(|t| by_tid.get(t).copied()).collect();
        let names: Vec<String> = ts.iter().map(|t| who(t)).collect();
        let (summary, advice) = if ts.len() == 1 {
            (
                format!(
                    "self-deadlock: {} waits for a C lock it holds itself ({})",
                    names.join(", "),
                    doing(ts[0])
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
        out.push(Finding {
            kind: "deadlock".into(),
            severity: Severity::Critical,
            summary,
            evidence: evidence(&ts),
            advice: advice.into(),
        });
    }

    // Lock holders that others wait for.
    let mut waiters: BTreeMap<u32, Vec<&ThreadInfo>> = BTreeMap::new();
    for t in &r.threads {
        // A thread waiting for itself is a deadlock, not a holder with waiters.
        if let Some(o) = t.blocked.as_ref().and_then(|b| b.owner_tid) {
            if o != t.tid {
                waiters.entry(o).or_default().push(t);
            }
        }
    }
    for (owner, ws) in &waiters {
        let Some(o) = by_tid.get(owner) else { continue };
        let lock = ws[0]
            .blocked
            .as_ref()
            .map(|b| {
                let name = b
                    .lock_symbol
                    .clone()
                    .unwrap_or_else(|| format!("{:#x}", b.lock.unwrap_or(0)));
                format!("{} {name}", b.class)
            })
            .unwrap_or_default();
        let mut ts = vec![*o];
        ts.extend(ws.iter().copied());
        let waiting: Vec<String> = ws.iter().map(|t| who(t)).collect();
        out.push(Finding {
            kind: "lock-held-while-blocked".into(),
            severity: holder_severity(o),
            summary: format!(
                "{} holds {lock} that {} wait{} for ({}), and is {}",
                who(o),
                if ws.len() == 1 { "1 thread".to_string() } else { format!("{} threads", ws.len()) },
                if ws.len() == 1 { "s" } else { "" },
                waiting.join(", "),
                doing(o)
            ),
            evidence: evidence(&ts),
            advice: "the waiters cannot proceed until the holder releases the lock: find why the holder is blocked (its stack), and do not block while holding a C lock".into(),
        });
    }

    // Chains through more than one holder: the thread at the end is where to look.
    for c in &wait.chains {
        let Some(root) = by_tid.get(&c.root) else {
            continue;
        };
        let mut ts = vec![*root];
        ts.extend(c.waiting.iter().filter_map(|(t, _)| by_tid.get(t).copied()));
        let longest: Vec<String> = c
            .longest
            .iter()
            .filter_map(|t| by_tid.get(t).map(|t| who(t)))
            .collect();
        out.push(Finding {
            kind: "wait-chain".into(),
            severity: holder_severity(root),
            summary: format!(
                "{} thread{} wait on {}, directly or through other lock holders (longest: {}); it is {}",
                c.waiting.len(),
                if c.waiting.len() == 1 { "" } else { "s" },
                who(root),
                longest.join(" → "),
                doing(root)
            ) + if root.blocked.as_ref().and_then(|b| b.owner_tid) == Some(root.tid) {
                " (it waits for itself)"
            } else {
                ""
            },
            evidence: evidence(&ts),
            advice: "start at the end of the chain: nothing behind it moves until that thread does; its stack says why it is stuck".into(),
        });
    }

    for t in &r.threads {
        let locked_goroutine = t.lockedg.is_some() && t.lockedg == t.curg;
        if let (true, Some(b)) = (locked_goroutine && t.in_cgo, &t.blocked) {
            if t.kind == ThreadKind::Go {
                out.push(Finding {
                    kind: "locked-thread-blocked-in-c".into(),
                    severity: Severity::Warning,
                    summary: format!(
                        "goroutine {} is locked to {} (LockOSThread) and blocked in C: {}: {}",
                        t.curg.unwrap_or(0),
                        who(t),
                        b.class,
                        b.detail
                    ),
                    evidence: evidence(&[t]),
                    advice: "the thread is pinned: it cannot run other goroutines, and everything that must run on it (e.g. code that needs its thread-local state) waits too".into(),
                });
            }
        }
        if let Some(b) = &t.blocked {
            if b.library.as_deref() == Some("cuda") && !locked_goroutine {
                out.push(Finding {
                    kind: "cuda-unlocked".into(),
                    severity: Severity::Warning,
                    summary: format!("{} calls the CUDA driver from a goroutine that is not locked to its thread", who(t)),
                    evidence: evidence(&[t]),
                    advice: "CUDA contexts are bound to OS threads: call runtime.LockOSThread in the goroutine that owns the context".into(),
                });
            }
        }
        // A C signal handler running code that is not async-signal-safe.
        let mut from = 0;
        for s in &t.signals {
            if s.handler == "c" {
                let bad: Vec<String> = t.frames[from..s.frame.min(t.frames.len())]
                    .iter()
                    .filter_map(|f| f.function.as_deref())
                    .map(super::rules::normalize)
                    .filter(|n| UNSAFE_IN_HANDLER.contains(&n.as_str()))
                    .collect();
                if !bad.is_empty() {
                    out.push(Finding {
                        kind: "signal-handler-unsafe".into(),
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

    for m in &r.ms {
        if m.locked_ext > 1 {
            let t = m.tid.and_then(|tid| by_tid.get(&tid).copied());
            out.push(Finding {
                kind: "nested-lockosthread".into(),
                severity: Severity::Warning,
                summary: format!(
                    "M{} has LockOSThread nested {} deep (goroutine {}): it stays locked until UnlockOSThread is called as many times",
                    m.id,
                    m.locked_ext,
                    m.lockedg.map_or("-".into(), |g| g.to_string())
                ),
                evidence: t.map(|t| evidence(&[t])).unwrap_or_else(|| serde_json::json!({"ms": [m.id]})),
                advice: "pair every LockOSThread with an UnlockOSThread (defer it); a goroutine that exits while locked takes its thread with it".into(),
            });
        }
    }

    internal_locks(r, &by_tid, &mut out);

    // A goroutine that exits while locked takes its thread with it: the core
    // cannot show the goroutine, but the runtime counts the threads it ended.
    if let Some(s) = r.sched.as_ref().filter(|s| s.nmfreed > 0) {
        // Go cannot end the main thread: it wedges it in mexit instead.
        let wedged: Vec<&ThreadInfo> = r
            .threads
            .iter()
            .filter(|t| {
                t.frames
                    .iter()
                    .any(|f| f.function.as_deref() == Some("runtime.mexit"))
            })
            .collect();
        let ended = s.nmfreed - wedged.len() as i64;
        let mut summary = format!(
            "{} goroutine{} exited while locked to {} thread (LockOSThread without UnlockOSThread): ",
            s.nmfreed,
            if s.nmfreed == 1 { "" } else { "s" },
            if s.nmfreed == 1 { "its" } else { "their" }
        );
        if ended > 0 {
            summary.push_str(&format!(
                "Go ended {ended} thread{} (sched.nmfreed)",
                if ended == 1 { "" } else { "s" }
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
        out.push(Finding {
            kind: "exited-while-locked".into(),
            severity: Severity::Info,
            summary,
            evidence: ev,
            advice: "the goroutines are gone and cannot be shown; if threads keep being created and ended, a goroutine that locks its thread exits without UnlockOSThread (deliberate for threads whose state was changed, else a leak)".into(),
        });
    }

    let (starting, foreign): (Vec<&ThreadInfo>, Vec<&ThreadInfo>) = r
        .threads
        .iter()
        .filter(|t| t.kind == ThreadKind::Foreign)
        .partition(|t| go_thread_starting(t));
    if !starting.is_empty() {
        let what = each_doing(&starting);
        let stuck = starting.iter().any(|t| t.blocked.is_some());
        out.push(Finding {
            kind: "threads-starting".into(),
            severity: if stuck { Severity::Warning } else { Severity::Info },
            summary: format!(
                "{} thread{} Go is starting (in runtime/cgo's threadentry, no M yet){}: {}",
                starting.len(),
                if starting.len() == 1 { "" } else { "s" },
                match (stuck, starting.len()) {
                    (false, _) => "",
                    (true, 1) => ", blocked before it could run Go",
                    (true, _) => ", blocked before they could run Go",
                },
                what
            ),
            evidence: evidence(&starting),
            advice: "Go creates threads through C (pthread_create, malloc): a new thread stuck here means thread creation itself is wedged (a malloc arena or list_lock held for good), so the scheduler cannot add threads; find the lock's holder".into(),
        });
    }
    if !foreign.is_empty() {
        let what = each_doing(&foreign);
        out.push(Finding {
            kind: "foreign-threads".into(),
            severity: Severity::Info,
            summary: format!(
                "{} thread{} created by C never entered Go: {}",
                foreign.len(),
                if foreign.len() == 1 { "" } else { "s" },
                what
            ),
            evidence: evidence(&foreign),
            advice: "these threads belong to C libraries; Go cannot see or schedule them".into(),
        });
    }
    let extra: Vec<&ThreadInfo> = r
        .threads
        .iter()
        .filter(|t| t.kind == ThreadKind::Extra)
        .collect();
    if !extra.is_empty() {
        let what = each_doing(&extra);
        out.push(Finding {
            kind: "extra-ms".into(),
            severity: Severity::Info,
            summary: format!(
                "{} C-created thread{} called into Go and keep{} an extra M (bound since Go 1.21): {}",
                extra.len(),
                if extra.len() == 1 { "" } else { "s" },
                if extra.len() == 1 { "s" } else { "" },
                what
            ),
            evidence: evidence(&extra),
            advice: "each such thread holds an M and a goroutine (locked to it) until it exits".into(),
        });
    }

    let in_c: Vec<&ThreadInfo> = r
        .threads
        .iter()
        .filter(|t| {
            t.in_cgo
                && t.kind == ThreadKind::Go
                && t.blocked.as_ref().is_some_and(|b| b.class != "busy")
        })
        .collect();
    let procs = r.gomaxprocs.unwrap_or(1).max(1) as usize;
    if in_c.len() >= PILEUP_PER_P * procs && in_c.len() >= 8 {
        let limit = r.sched.as_ref().map(|s| s.maxmcount).unwrap_or(10_000);
        let threads = r
            .sched
            .as_ref()
            .map(|s| s.mcount as usize)
            .unwrap_or(r.threads.len());
        let near = threads * 10 >= limit as usize * 8;
        out.push(Finding {
            kind: "thread-pileup".into(),
            severity: if near { Severity::Critical } else { Severity::Warning },
            summary: format!(
                "{} threads are blocked in C for cgo calls (GOMAXPROCS {procs}); the process has {threads} threads of at most {limit}",
                in_c.len()
            ),
            evidence: evidence(&in_c),
            advice: "every blocked cgo call holds an OS thread; bound concurrency into C (a semaphore around the calls) and add timeouts; at the limit Go aborts with 'thread exhaustion'".into(),
        });
    }

    out.sort_by_key(|f| f.severity);
    out
}
