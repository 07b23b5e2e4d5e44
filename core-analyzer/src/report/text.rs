//! Text rendering of a report, for people.
use super::model::*;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;
use std::fmt::Write;

use super::escape;

/// `f`'s text of `r`, with every string from the target printable on one
/// line and nothing in it that drives a terminal.
/// `f`'s text of the report, its strings from the target made printable.
/// The check runs beside the rendering (a tenth of a 10,000-thread table
/// each): nearly every report needs no change, and its text is the answer.
fn printable(r: &Report, f: impl Fn(&Report) -> String) -> String {
    let (clean, raw) = std::thread::scope(|s| {
        let check = std::thread::Builder::new().spawn_scoped(s, || escape::needs_escaping(r));
        let raw = f(r);
        let needs = match check {
            Ok(h) => h.join().unwrap_or(true),
            // No thread to be had: the check runs here, after.
            Err(_) => escape::needs_escaping(r),
        };
        (!needs, raw)
    });
    let text = if clean { raw } else { f(&escape::for_text(r)) };
    match escape::escape_terminal(&text) {
        std::borrow::Cow::Owned(escaped) => escaped,
        std::borrow::Cow::Borrowed(_) => text,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoroutineFilter {
    None,
    All,
    Cgo,
    Locked,
    /// The goroutine with this id.
    One(u64),
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn table(rows: &[Vec<String>]) -> String {
    let ncol = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..ncol)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = width[i]))
            .collect();
        let _ = writeln!(out, "  {}", line.join("  ").trim_end());
    }
    out
}

/// `mutex shared_mu (held by 14164)`, `read`, `-`.
fn blocked_short(t: &ThreadInfo) -> String {
    let Some(b) = &t.blocked else {
        return "-".into();
    };
    let mut s = b.class.clone();
    if let Some(l) = &b.library {
        s = format!("{s} [{l}]");
    }
    if let Some(sym) = &b.lock_symbol {
        s.push_str(&format!(" {sym}"));
    }
    if let Some(o) = b.owner_tid {
        let likely = if b.owner_likely { "likely " } else { "" };
        s.push_str(&format!(" ({likely}held by {o})"));
    }
    s
}

/// Frames shown per thread without `--stacks`.
const COMPACT_FRAMES: usize = 8;

fn frame_line(i: usize, f: &super::frame::Frame) -> String {
    let lang = match f.lang {
        super::frame::Lang::C => "C ",
        super::frame::Lang::Go => "Go",
    };
    let inl = if f.inlined { " (inlined)" } else { "" };
    let loc = match (&f.file, f.line) {
        (Some(file), Some(l)) => format!("  {file}:{l}"),
        (Some(file), None) => format!("  {file}"),
        _ => String::new(),
    };
    let module = f
        .module
        .as_deref()
        .map(|m| format!("  [{m}]"))
        .unwrap_or_default();
    format!(
        "    #{i:<2} {lang} {}{inl}{loc}{module}  pc={:#x}",
        f.function.as_deref().unwrap_or("??"),
        f.pc
    )
}

/// Each thread's stitched stack; compact unless `full`: what the thread was
/// doing (below any signal handler), its first frames.
fn thread_stacks(o: &mut String, r: &Report, full: bool) {
    let _ = writeln!(
        o,
        "\nThread stacks{}:",
        if full {
            ""
        } else {
            " (--stacks for every frame)"
        }
    );
    for t in &r.threads {
        let mut head = format!("  thread {} ({}", t.tid, t.kind.as_str());
        if let Some(m) = t.m {
            let _ = write!(head, ", M{m}");
        }
        if let Some(g) = t.stack_goroutine {
            let _ = write!(head, ", goroutine {g}");
        }
        head.push(')');
        if let Some(c) = &t.cgo_call {
            let _ = write!(head, " in {c}");
        }
        if let Some(i) = &t.interrupted {
            let _ = write!(head, "; {} handler running on top", i.name);
        }
        let _ = writeln!(o, "{head}:");
        if let Some(b) = &t.blocked {
            let _ = writeln!(o, "    waits: {}: {}; {}", b.class, b.detail, b.explain);
        }
        let start = match (&t.interrupted, full) {
            (Some(i), false) => i.frame,
            _ => 0,
        };
        let mut shown: Vec<(usize, &super::frame::Frame)> =
            t.frames.iter().enumerate().skip(start).collect();
        let mut hidden = 0;
        // Compact: where the thread is, then the goroutine it waits for.
        if let (Some(gf), false) = (t.goroutine_frame, full) {
            if gf > start + 2 {
                hidden = gf - start - 2;
                shown.drain(2..gf - start);
            }
        }
        let limit = if full { usize::MAX } else { COMPACT_FRAMES };
        for (n, (i, f)) in shown.iter().take(limit).enumerate() {
            // Every signal frame shown: Go's handler (full view) and C handlers.
            if let Some(s) = t.signals.iter().find(|s| s.frame == *i && *i > start) {
                let by = if s.handler == "go" { "Go's" } else { "a C" };
                let _ = writeln!(
                    o,
                    "    --- {} delivered, {by} handler above; interrupted here ---",
                    s.name
                );
            }
            if hidden > 0 && n == 2 {
                let _ = writeln!(
                    o,
                    "    ... {hidden} scheduler frames; the goroutine's stack:"
                );
            }
            let _ = writeln!(o, "{}", frame_line(*i, f));
        }
        if shown.len() > limit {
            let n = shown.len() - limit;
            let _ = writeln!(o, "    ... {n} more frame{}", if n == 1 { "" } else { "s" });
        }
        if let Some(why) = &t.stack_truncated {
            let _ = writeln!(o, "    (stack ends early: {why})");
        }
    }
}

pub fn render(r: &Report, filter: GoroutineFilter) -> String {
    render_with(r, filter, false)
}

/// `full_stacks`: every frame of every thread (`--stacks`).
pub fn render_with(r: &Report, filter: GoroutineFilter, full_stacks: bool) -> String {
    printable(r, |r| render_with_raw(r, filter, full_stacks))
}

fn render_with_raw(r: &Report, filter: GoroutineFilter, full_stacks: bool) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} · {} · GOMAXPROCS {} · {} threads · {} Ms · {} goroutines · {} threads in cgo",
        r.go_version,
        r.binary,
        opt(r.gomaxprocs),
        r.counts.threads,
        r.counts.ms,
        r.counts.goroutines,
        r.counts.threads_in_cgo
    );
    if let Some(core) = &r.core {
        let sig = r
            .signal
            .map(|s| format!(", signal {s} {}", super::signal_name(s)))
            .unwrap_or_default();
        let by = match r.core_writer.as_deref() {
            Some(crate::elf::core::GDB) => ", gdb gcore of the live process".to_string(),
            Some(crate::elf::core::SNAPSHOT) => format!(
                ", cgocore snapshot of the live process, stopped {:.1} ms",
                r.stopped_ms.unwrap_or(0.0)
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "core {core} (pid {}{sig}{by}); roots from {}, layout from {}",
            opt(r.pid),
            r.roots_from,
            r.layout_from
        );
    } else if let Some(ms) = r.stopped_ms {
        let _ = writeln!(
            o,
            "live process {} (stopped {ms:.1} ms, then let go); roots from {}, layout from {}",
            opt(r.pid),
            r.roots_from,
            r.layout_from
        );
    }
    if let Some(s) = &r.sched {
        let extra = match (s.extra_ms_free, s.extra_ms_in_use) {
            (Some(f), Some(u)) => format!(" · extra Ms: {u} bound to C threads, {f} free"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "sched: threads={} idlethreads={} spinningthreads={} idleprocs={} runqueue={} (maxmcount {}){extra}",
            s.mcount, s.idle_ms, s.spinning_ms, s.idle_ps, s.runqueue, s.maxmcount
        );
    }
    for w in &r.warnings {
        let _ = writeln!(o, "warning: {w}");
    }
    if !r.incidents.is_empty() {
        o.push_str(&incidents_raw(r));
    }
    let _ = writeln!(o, "\nThreads:");
    o.push_str(&threads_table_raw(r, &|_| None));
    let idle: Vec<&MInfo> = r.ms.iter().filter(|m| m.tid.is_none()).collect();
    if !idle.is_empty() {
        let _ = writeln!(o, "\nMs without a thread in the core:");
        for m in idle {
            let what = if m.isextra {
                "spare extra M (no C thread bound)"
            } else {
                "no thread"
            };
            let _ = writeln!(
                o,
                "  M{} {what}; lockedInt={} curg={}",
                m.id,
                m.locked_int,
                opt(m.curg)
            );
        }
    }
    thread_stacks(&mut o, r, full_stacks);
    let mut by_state: BTreeMap<String, usize> = BTreeMap::new();
    for g in &r.goroutines {
        *by_state.entry(g.state().to_string()).or_default() += 1;
    }
    let _ = writeln!(o, "\nGoroutines by state:");
    let mut states: Vec<_> = by_state.into_iter().collect();
    states.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (s, n) in states {
        let _ = writeln!(o, "  {n:>7}  {s}");
    }
    if filter != GoroutineFilter::None {
        let _ = writeln!(o);
        o.push_str(&goroutines(r, filter));
    }
    o
}

/// The problems, most harm first: one short paragraph each.
pub fn incidents(r: &Report) -> String {
    printable(r, incidents_raw)
}

fn incidents_raw(r: &Report) -> String {
    let mut o = String::new();
    let n = r.incidents.len();
    let _ = writeln!(
        o,
        "\n{n} problem{} (most harm first; the {} findings under them: --json, cgo-diagnose):",
        if n == 1 { "" } else { "s" },
        r.findings.len()
    );
    for (i, inc) in r.incidents.iter().enumerate() {
        let sev = format!("{:?}", inc.severity).to_uppercase();
        let _ = writeln!(o, "  {}. [{sev}] {}: {}", i + 1, inc.kind, inc.summary);
        if inc.chain.len() > 1 {
            let arrow = if inc.kind == "deadlock" {
                " ⇄ "
            } else {
                " → "
            };
            let chain: Vec<String> = inc.chain.iter().map(|t| t.to_string()).collect();
            let _ = writeln!(o, "     chain: {}", chain.join(arrow));
        }
        let _ = writeln!(o, "     what to do: {}", inc.advice);
    }
    o
}

/// The findings, one block each.
pub fn findings(r: &Report) -> String {
    printable(r, findings_raw)
}

fn findings_raw(r: &Report) -> String {
    let mut o = String::new();
    for f in &r.findings {
        let sev = format!("{:?}", f.severity).to_uppercase();
        let _ = writeln!(o, "  [{sev}] {}", f.summary);
        let _ = writeln!(o, "      what to do: {}", f.advice);
    }
    o
}

/// One row per thread; `label` adds a first column (a debugger's thread number).
pub fn threads_table(r: &Report, label: &dyn Fn(u32) -> Option<String>) -> String {
    printable(r, |r| threads_table_raw(r, label))
}

fn threads_table_raw(r: &Report, label: &dyn Fn(u32) -> Option<String>) -> String {
    let g_by_id: BTreeMap<u64, &GoroutineInfo> = r.goroutines.iter().map(|g| (g.goid, g)).collect();
    let with_label = r.threads.iter().any(|t| label(t.tid).is_some());
    let mut head: Vec<String> = [
        "TID", "KIND", "M", "LOCKEXT", "LOCKINT", "LOCKEDG", "CURG", "STATE", "IN-CGO", "BLOCKED",
    ]
    .map(String::from)
    .to_vec();
    if with_label {
        head.insert(0, "#".into());
    }
    let mut rows = vec![head];
    for t in &r.threads {
        let m = t.m.and_then(|id| r.ms.iter().find(|m| m.id == id));
        let state = t
            .curg
            .and_then(|g| g_by_id.get(&g))
            .map(|g| g.state().to_string())
            .unwrap_or_else(|| "-".into());
        let mut row = vec![
            t.tid.to_string(),
            t.kind.as_str().into(),
            t.m.map(|m| format!("M{m}")).unwrap_or_else(|| "-".into()),
            opt(m.map(|m| m.locked_ext)),
            opt(m.map(|m| m.locked_int)),
            opt(t.lockedg),
            opt(t.curg),
            state,
            if t.in_cgo { "yes" } else { "no" }.into(),
            blocked_short(t),
        ];
        if with_label {
            row.insert(0, label(t.tid).unwrap_or_else(|| "-".into()));
        }
        rows.push(row);
    }
    table(&rows)
}

/// Goroutines in the shape of Go's own dump (C frames marked `[C]`).
pub fn goroutines(r: &Report, filter: GoroutineFilter) -> String {
    let mut buf = vec![];
    let _ = write_goroutines(r, filter, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

type FrameLines = HashMap<super::frame::FrameKey, String>;

/// A frame as Go's dump prints it: `name(...)`, then its file, line and pc.
fn goroutine_frame_lines(f: &super::frame::Frame) -> String {
    let args = if f.inlined { "..." } else { "" };
    let c = if f.lang == super::frame::Lang::C {
        "[C] "
    } else {
        ""
    };
    format!(
        "{c}{}({args})\n\t{}:{} pc={:#x}\n",
        escape::escape_line(f.function.as_deref().unwrap_or("??")),
        escape::escape_line(f.file.as_deref().unwrap_or("?")),
        opt(f.line),
        f.pc
    )
}

/// The same, streamed one goroutine at a time (100k goroutines are not built
/// up as one string).
pub fn write_goroutines(
    r: &Report,
    filter: GoroutineFilter,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let mut lines: FrameLines = HashMap::default();
    let m_addr: HashMap<i64, u64> = r.ms.iter().map(|m| (m.id, m.addr)).collect();
    for g in r.goroutines.iter().filter(|g| match filter {
        GoroutineFilter::Cgo => g.in_cgo,
        GoroutineFilter::Locked => g.locked,
        GoroutineFilter::One(id) => g.goid == id,
        _ => true,
    }) {
        let mut o = String::new();
        let lock = if g.locked { ", locked to thread" } else { "" };
        // The header of Go's own crash dump (Go 1.23+), so the tools that
        // read Go tracebacks read this too.
        let m = match g.m {
            Some(m) => format!("m={m} mp={:#x}", m_addr.get(&m).copied().unwrap_or(0)),
            None => "m=nil".into(),
        };
        let _ = writeln!(
            o,
            "goroutine {} gp={:#x} {m} [{}{lock}]:",
            g.goid,
            g.addr,
            g.state()
        );
        for f in &g.frames {
            // 100k goroutines park at a few places: each distinct frame is
            // formatted once (the shared names make the key cheap).
            o.push_str(
                lines
                    .entry(f.key())
                    .or_insert_with(|| goroutine_frame_lines(f)),
            );
        }
        if let Some(why) = &g.stack_truncated {
            let _ = writeln!(o, "\t... stack ends early: {}", escape::escape_line(why));
        }
        if let Some(c) = &g.created_by {
            let parent = g
                .parent_goid
                .map(|p| format!(" in goroutine {p}"))
                .unwrap_or_default();
            let _ = writeln!(o, "created by {}{parent}", escape::escape_line(c));
        }
        let _ = writeln!(o);
        out.write_all(o.as_bytes())?;
    }
    Ok(())
}

/// Goroutines grouped by what they are doing, as people read dumps of
/// 100k goroutines: those with the same state (or wait reason), the same
/// lock and C call, and the same frames (function, file, line) are one
/// group, largest first, with their count and first ids.
pub fn write_goroutine_groups(r: &Report, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    /// Ids listed per group.
    const IDS: usize = 12;
    type Key = (
        String,
        Option<String>,
        Vec<(Option<String>, Option<String>, Option<u32>)>,
    );
    let mut groups: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
    let lock_of: HashMap<u64, String> = r
        .threads
        .iter()
        .filter_map(|t| {
            let b = t.blocked.as_ref()?;
            let g = t.curg.or(t.stack_goroutine)?;
            Some((g, b.lock_symbol.clone().unwrap_or_else(|| b.class.clone())))
        })
        .chain(r.goroutines.iter().filter_map(|g| {
            let w = g.waits_on.as_ref()?;
            Some((g.goid, format!("{}, {}", w.describe(), w.holders_line())))
        }))
        .collect();
    for g in &r.goroutines {
        let frames = g
            .frames
            .iter()
            .map(|f| {
                (
                    f.function.as_deref().map(str::to_string),
                    f.file.as_deref().map(str::to_string),
                    f.line,
                )
            })
            .collect();
        let key = (g.state().to_string(), lock_of.get(&g.goid).cloned(), frames);
        groups.entry(key).or_default().push(g.goid);
    }
    let mut groups: Vec<(Key, Vec<u64>)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.1.cmp(&b.1)));
    let n = groups.len();
    writeln!(
        out,
        "{} goroutines in {n} group{} (the same state, wait and frames; largest first):",
        r.goroutines.len(),
        if n == 1 { "" } else { "s" }
    )?;
    for ((state, lock, frames), ids) in &groups {
        let mut shown: Vec<String> = ids.iter().take(IDS).map(u64::to_string).collect();
        if ids.len() > IDS {
            shown.push("…".into());
        }
        let on = lock
            .as_deref()
            .map(|l| format!(", on {}", escape::escape_line(l)))
            .unwrap_or_default();
        writeln!(
            out,
            "\n{} goroutine{} [{}{on}]: {}",
            ids.len(),
            if ids.len() == 1 { "" } else { "s" },
            escape::escape_line(state),
            shown.join(", ")
        )?;
        for (function, file, line) in frames {
            writeln!(
                out,
                "    {}\n\t{}:{}",
                escape::escape_line(function.as_deref().unwrap_or("??")),
                escape::escape_line(file.as_deref().unwrap_or("?")),
                opt(*line)
            )?;
        }
    }
    Ok(())
}

/// One goroutine as Go's dump shows it, or `None` when there is no such one.
pub fn goroutine(r: &Report, goid: u64) -> Option<String> {
    r.goroutines
        .iter()
        .any(|g| g.goid == goid)
        .then(|| goroutines(r, GoroutineFilter::One(goid)))
}

/// The stack of one thread, every frame.
pub fn thread_stack(r: &Report, tid: u32) -> Option<String> {
    let r = escape::for_text(r);
    thread_stack_raw(&r, tid).map(|o| escape::escape_terminal(&o).into_owned())
}

fn thread_stack_raw(r: &Report, tid: u32) -> Option<String> {
    let t = r.threads.iter().find(|t| t.tid == tid)?;
    let one = Report {
        threads: vec![t.clone()],
        ..r.clone()
    };
    let mut o = String::new();
    thread_stacks(&mut o, &one, true);
    Some(o.lines().skip(2).map(|l| format!("{l}\n")).collect())
}

/// A `GODEBUG=schedtrace=1,scheddetail=1`-style summary computed from the core.
pub fn render_sched(r: &Report) -> String {
    printable(r, render_sched_raw)
}

fn render_sched_raw(r: &Report) -> String {
    let mut o = String::new();
    let idle = r.ps.iter().filter(|p| p.status == "idle").count();
    let runq: Vec<String> = r.ps.iter().map(|p| p.runqsize.to_string()).collect();
    match &r.sched {
        Some(s) => {
            let _ = writeln!(
                o,
                "SCHED: gomaxprocs={} idleprocs={} threads={} spinningthreads={} idlethreads={} runqueue={} [{}]",
                opt(r.gomaxprocs),
                s.idle_ps,
                s.mcount,
                s.spinning_ms,
                s.idle_ms,
                s.runqueue,
                runq.join(" ")
            );
        }
        None => {
            let _ = writeln!(
                o,
                "SCHED: gomaxprocs={} idleprocs={idle} threads={} [{}]  (runtime.sched not found: counts from allp/allm)",
                opt(r.gomaxprocs),
                r.ms.len(),
                runq.join(" ")
            );
        }
    }
    for p in &r.ps {
        let _ = writeln!(
            o,
            "  P{}: status={} schedtick={} syscalltick={} m={} runqsize={}",
            p.id,
            p.status,
            p.schedtick,
            p.syscalltick,
            p.m.map_or("-1".into(), |m| m.to_string()),
            p.runqsize
        );
    }
    let gid = |g: Option<u64>| g.map_or("-1".to_string(), |g| g.to_string());
    for m in &r.ms {
        let _ = writeln!(
            o,
            "  M{}: p={} curg={} spinning={} blocked={} lockedg={} lockedExt={} lockedInt={} incgo={} ncgo={} tid={}",
            m.id,
            m.p.map_or("-1".into(), |p| p.to_string()),
            gid(m.curg),
            m.spinning,
            m.blocked,
            gid(m.lockedg),
            m.locked_ext,
            m.locked_int,
            m.incgo,
            m.ncgo,
            m.tid.map_or("-".into(), |t| t.to_string())
        );
    }
    for g in &r.goroutines {
        let _ = writeln!(
            o,
            "  G{}: status={} m={} lockedm={}",
            g.goid,
            g.state(),
            g.m.map_or("-1".into(), |m| m.to_string()),
            g.lockedm.map_or("-1".into(), |m| m.to_string())
        );
    }
    o
}
