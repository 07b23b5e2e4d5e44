//! The one entry point every face uses: process image -> report.
use crate::classify;
use crate::process::Process;
use crate::report::*;
use crate::runtime::{self, g, GoRuntime, G, M};
use crate::symbolize::modules::Modules;
use crate::unwind::native::NativeUnwinder;
use crate::unwind::thread::{arch_key, Stitcher, ThreadStack};
use crate::unwind::{go::GoUnwinder, signal, Frame, Lang, Stack};
use anyhow::Result;
use rustc_hash::FxHashMap as HashMap;

/// How often long walks let the core's pages go (see `Memory::release`).
const RELEASE_EVERY_THREADS: usize = 64;
const RELEASE_EVERY_GOROUTINES: usize = 2048;

pub struct Analysis {
    pub process: Process,
    pub runtime: GoRuntime,
    pub ms: Vec<M>,
    pub gs: Vec<G>,
    pub report: Report,
}

/// Ms that are really free extra Ms (no thread), even if 1.21 left a stale procid.
fn is_free_extra(m: &M, gs: &HashMap<u64, &G>, dead: &[u32]) -> bool {
    m.isextra && m.is_extra_in_c && gs.get(&m.curg).is_some_and(|g| dead.contains(&g.state()))
}

/// Choices a face can make about an analysis.
pub struct AnalyzeOptions {
    /// Classification rules (the built-in ones, or with a user file in front).
    pub rules: crate::classify::rules::Rules,
    /// Unwind every goroutine's stack (thread stacks are always unwound). A
    /// debugger's thread table does without, over a slow memory bridge.
    pub goroutine_frames: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            rules: crate::classify::rules::Rules::builtin(),
            goroutine_frames: true,
        }
    }
}

pub fn analyze(process: Process, core: Option<String>) -> Result<Analysis> {
    analyze_with(process, core, &AnalyzeOptions::default())
}

pub fn analyze_with(
    process: Process,
    core: Option<String>,
    opts: &AnalyzeOptions,
) -> Result<Analysis> {
    let modules = Modules::new(&process);
    let preloads = preload_library_symbols(&process, &modules);
    let rt = GoRuntime::load(&process)?;
    let mem = &*process.mem;
    let mut warnings: Vec<String> = process.warnings.clone();
    warnings.extend(rt.warnings.iter().cloned());
    let before = warnings.len();
    let ms = runtime::m::all_ms(&rt, mem, &mut warnings)?;
    let gs = runtime::g::all_gs(&rt, mem, &mut warnings).unwrap_or_else(|e| {
        warnings.push(format!("goroutines unreadable: {e:#}"));
        vec![]
    });
    let ps = runtime::p::all_ps(&rt, mem).unwrap_or_else(|e| {
        warnings.push(format!("Ps unreadable: {e:#}"));
        vec![]
    });
    let sched = runtime::sched::read(&rt, &process).unwrap_or_else(|e| {
        warnings.push(format!("runtime.sched unreadable: {e:#}"));
        None
    });
    let incomplete = warnings.len() > before || !process.warnings.is_empty();
    warnings.extend(process.notes.iter().cloned());
    let dead = &rt.facts.dead_status;

    let g_by_addr: HashMap<u64, &G> = gs.iter().map(|g| (g.addr, g)).collect();
    let m_by_addr: HashMap<u64, &M> = ms.iter().map(|m| (m.addr, m)).collect();
    let p_id: HashMap<u64, i32> = ps.iter().map(|p| (p.addr, p.id)).collect();
    let goid = |a: u64| {
        (a != 0)
            .then(|| g_by_addr.get(&a).map(|g| g.goid))
            .flatten()
    };
    let mid = |a: u64| (a != 0).then(|| m_by_addr.get(&a).map(|m| m.id)).flatten();

    // tid -> M. A free extra M's stale procid (Go 1.21) claims nothing. When a
    // thread whose extra M is back in C takes a signal, Go's handler borrows a
    // second extra M (needm(signal)): the thread's own M is the one that is not
    // borrowed for the signal, else the one in C, else the oldest.
    let mut claims: HashMap<u64, Vec<&M>> = HashMap::default();
    for m in &ms {
        if m.procid != 0 && !is_free_extra(m, &g_by_addr, dead) {
            claims.entry(m.procid).or_default().push(m);
        }
    }
    let mut m_of_tid: HashMap<u64, &M> = HashMap::default();
    let mut borrowed: HashMap<u64, &M> = HashMap::default();
    for (tid, mut list) in claims {
        list.sort_by_key(|m| (m.is_extra_in_sig, !m.is_extra_in_c, m.id));
        m_of_tid.insert(tid, list[0]);
        for m in &list[1..] {
            borrowed.insert(m.addr, m);
        }
    }
    // A thread Go is still starting has no procid yet (minit sets it after
    // the signal setup): its stack pointer is on its M's g0 or gsignal stack.
    let glayout = runtime::g::GLayout::new(&rt)?;
    let unclaimed: Vec<&M> = ms
        .iter()
        .filter(|m| m.procid == 0 && !is_free_extra(m, &g_by_addr, dead) && !m.isextra)
        .collect();
    if !unclaimed.is_empty() {
        for t in &process.threads {
            if m_of_tid.contains_key(&(t.tid as u64)) {
                continue;
            }
            let sp = t.regs.sp();
            let on = |g: u64| {
                glayout
                    .read(mem, g)
                    .is_ok_and(|g| g.stack_lo <= sp && sp < g.stack_hi)
            };
            if let Some(m) = unclaimed.iter().find(|m| on(m.g0) || on(m.gsignal)) {
                m_of_tid.insert(t.tid as u64, m);
            }
        }
    }
    let borrowed_for = |tid: u32| {
        borrowed
            .values()
            .find(|m| m.procid == tid as u64)
            .map(|m| m.id)
    };
    let thread_ids: std::collections::HashSet<u64> =
        process.threads.iter().map(|t| t.tid as u64).collect();

    for (start, syms) in preloads {
        if let (Some(m), Ok(syms)) = (modules.find(start), syms.join()) {
            m.preload(syms);
        }
    }
    let native = NativeUnwinder::new(process.arch, &modules);
    let cgo_frames = rt
        .facts
        .cgo_frames
        .get(arch_key(process.arch))
        .cloned()
        .unwrap_or_default();
    let stitcher = Stitcher {
        go: GoUnwinder {
            pcln: &rt.pcln,
            mem,
            arch: process.arch,
            cache: Default::default(),
        },
        native: &native,
        modules: &modules,
        glayout: &glayout,
        gs: &g_by_addr,
        cgo: &cgo_frames,
    };
    mem.release();
    let stacks: Vec<ThreadStack> = process
        .threads
        .iter()
        .enumerate()
        .map(|(i, t)| {
            // Keep what a thousand thread stacks touch from staying resident.
            if i % RELEASE_EVERY_THREADS == RELEASE_EVERY_THREADS - 1 {
                mem.release();
            }
            let mut st = stitcher.thread(m_of_tid.get(&(t.tid as u64)).copied(), &t.regs);
            signal::infer_numbers(&mut st.signals, t.sighold);
            st
        })
        .collect();
    mem.release();
    // A goroutine's own frames come from the thread that serves it.
    let mut stack_of_g: HashMap<u64, &ThreadStack> = HashMap::default();
    for st in &stacks {
        if let Some(g) = st.goroutine {
            stack_of_g.entry(g).or_insert(st);
        }
    }

    // A C thread's only M, taken by Go's handler for a signal that reached
    // it (needm(signal)): Go 1.22+ flags it, Go 1.21 shows it on the stack.
    let signal_only: std::collections::HashSet<u64> = process
        .threads
        .iter()
        .zip(&stacks)
        .filter_map(|(t, st)| {
            let m = m_of_tid.get(&(t.tid as u64))?;
            let in_badsignal = || {
                st.frames
                    .iter()
                    .any(|f| f.function.as_deref() == Some("runtime.badsignal"))
            };
            (m.is_extra_in_sig || (m.isextra && !m.is_extra_in_c && in_badsignal()))
                .then_some(m.addr)
        })
        .collect();
    let borrowed_m = |addr: u64| borrowed.contains_key(&addr) || signal_only.contains(&addr);

    let tids_tp: Vec<(u32, u64)> = process
        .threads
        .iter()
        .map(|t| (t.tid, t.regs.thread_pointer().unwrap_or(0)))
        .collect();
    let data_symbol = |a: u64| modules.data_symbol(a);
    let ccx = classify::Context {
        arch: process.arch,
        mem,
        rules: &opts.rules,
        threads: &tids_tp,
        data_symbol: &data_symbol,
    };
    let mut threads: Vec<ThreadInfo> = process
        .threads
        .iter()
        .zip(&stacks)
        .map(|(t, st)| {
            let own = m_of_tid.get(&(t.tid as u64));
            let m = own.filter(|m| !signal_only.contains(&m.addr));
            // The blocked call starts below Go's own signal handler, if it runs.
            let go_sig = st.signals.iter().find(|s| s.go_handler);
            let (start, sys) = match go_sig {
                Some(s) => (s.frame, s.syscall),
                None => (0, t.regs.syscall_state()),
            };
            let sig_name = go_sig.map(|s| signal::signal_name(s.signo));
            // A C handler on top of the call is what waits.
            let handler_end = st
                .signals
                .iter()
                .find(|s| !s.go_handler && s.frame > start)
                .map(|s| s.frame);
            let blocked = classify::classify(
                &ccx,
                &classify::Call {
                    tid: t.tid,
                    frames: &st.frames,
                    start,
                    handler_end,
                    sys: &sys,
                    interrupted_by: sig_name.as_deref(),
                },
            );
            ThreadInfo {
                tid: t.tid,
                kind: match m {
                    None => ThreadKind::Foreign,
                    // A C thread that borrowed an M just to run Go's signal handler
                    // (e.g. the crash signal) is still a thread Go does not own.
                    Some(m) if m.isextra => ThreadKind::Extra,
                    Some(_) => ThreadKind::Go,
                },
                m: m.map(|m| m.id),
                curg: m.and_then(|m| goid(m.curg)),
                lockedg: m.and_then(|m| goid(m.lockedg)),
                in_cgo: m.is_some_and(|m| m.incgo),
                signal: t.signal,
                signal_m: borrowed_for(t.tid)
                    .or(own.filter(|m| signal_only.contains(&m.addr)).map(|m| m.id)),
                pc: t.regs.pc(),
                sp: t.regs.sp(),
                syscall: t.regs.syscall_nr(),
                frames: st.frames.clone(),
                stack_truncated: st.truncated.clone(),
                stack_goroutine: st.goroutine.and_then(goid),
                interrupted: st.signals.iter().find(|s| s.go_handler).map(interrupted),
                signals: st.signals.iter().map(interrupted).collect(),
                cgo_call: cgo_call(&st.frames),
                goroutine_frame: st.goroutine_frame,
                blocked,
            }
        })
        .collect();

    classify::share_owners(&mut threads);

    let minfos: Vec<MInfo> = ms
        .iter()
        .map(|m| MInfo {
            id: m.id,
            tid: (m.procid != 0
                && thread_ids.contains(&m.procid)
                && !is_free_extra(m, &g_by_addr, dead))
            .then_some(m.procid as u32)
            .or_else(|| {
                // A thread still starting, found by its stack.
                m_of_tid
                    .iter()
                    .find(|(_, x)| x.addr == m.addr && m.procid == 0)
                    .map(|(t, _)| *t as u32)
            }),
            signal_borrowed: borrowed_m(m.addr),
            procid: m.procid,
            locked_ext: m.locked_ext,
            locked_int: m.locked_int,
            lockedg: goid(m.lockedg),
            curg: goid(m.curg),
            incgo: m.incgo,
            ncgo: m.ncgo,
            ncgocall: m.ncgocall,
            isextra: m.isextra,
            is_extra_in_c: m.is_extra_in_c,
            is_extra_in_sig: m.is_extra_in_sig,
            spinning: m.spinning,
            blocked: m.blocked,
            p: (m.p != 0).then(|| p_id.get(&m.p).copied()).flatten(),
            start_fn: runtime::m::mstartfn_name(&rt, mem, m),
            addr: m.addr,
        })
        .collect();

    // Dead Gs are not goroutines of the program; nor is the goroutine of an
    // extra M borrowed only to run a signal handler.
    let live: Vec<&G> = gs
        .iter()
        .filter(|g| !(dead.contains(&g.state()) || (g.lockedm != 0 && borrowed_m(g.lockedm))))
        .collect();
    let mut stacks_of_live: Vec<Stack> = if opts.goroutine_frames {
        let (found, notes) = unwind_goroutines(&process, &rt, &live, &stack_of_g);
        warnings.extend(notes);
        found
    } else {
        live.iter()
            .map(|_| Stack {
                frames: vec![],
                truncated: Some("not unwound (goroutine stacks were not asked for)".into()),
            })
            .collect()
    };
    let goroutines: Vec<GoroutineInfo> = live
        .iter()
        .zip(stacks_of_live.iter_mut())
        .map(|(g, stack)| {
            let stack = std::mem::take(stack);
            let st = g.state();
            let m = m_by_addr.get(&g.m);
            let start = rt.func_name(g.startpc).map(str::to_string);
            GoroutineInfo {
                goid: g.goid,
                status: rt.status_name(g.status),
                wait_reason: if st == g::GWAITING || st == g::GLEAKED {
                    rt.wait_reason(g.waitreason)
                } else {
                    None
                },
                locked: g.lockedm != 0,
                m: mid(g.m),
                lockedm: mid(g.lockedm),
                in_cgo: st == g::GSYSCALL && m.is_some_and(|m| m.incgo && m.curg == g.addr),
                system: start.as_deref().is_some_and(is_system_function),
                start_function: start,
                // gopc is a return address: look up the call instruction.
                created_by: (g.gopc != 0)
                    .then(|| rt.func_name(g.gopc - 1).map(str::to_string))
                    .flatten(),
                parent_goid: (g.parent_goid != 0).then_some(g.parent_goid),
                addr: g.addr,
                cgo_call: cgo_call(&stack.frames),
                frames: stack.frames,
                stack_truncated: stack.truncated,
            }
        })
        .collect();

    let counts = Counts {
        threads: threads.len(),
        ms: minfos.len(),
        goroutines: goroutines.len(),
        threads_in_cgo: threads.iter().filter(|t| t.in_cgo).count(),
        foreign_threads: threads
            .iter()
            .filter(|t| t.kind == ThreadKind::Foreign)
            .count(),
        extra_ms: minfos.iter().filter(|m| m.isextra).count(),
        locked_goroutines: goroutines.iter().filter(|g| g.locked).count(),
    };
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        go_version: rt.go_version().to_string(),
        binary: process.exe.path().display().to_string(),
        core,
        pid: process.pid,
        signal: process.signal,
        core_writer: process.core_writer.map(str::to_string),
        arch: format!("{:?}", process.arch).to_lowercase(),
        gomaxprocs: rt.roots.gomaxprocs,
        roots_from: rt.roots.source.to_string(),
        layout_from: if rt.layout.source == "DWARF" {
            "DWARF".into()
        } else {
            "table".into()
        },
        counts,
        sched,
        threads,
        ms: minfos,
        ps: ps
            .iter()
            .map(|p| PInfo {
                id: p.id,
                status: runtime::p::status_name(p.status).to_string(),
                m: mid(p.m),
                schedtick: p.schedtick,
                syscalltick: p.syscalltick,
                runqsize: p.runq_len,
            })
            .collect(),
        goroutines,
        findings: vec![],
        warnings,
        incomplete,
    };
    report.findings = classify::findings::findings(&report);
    Ok(Analysis {
        process,
        runtime: rt,
        ms,
        gs,
        report,
    })
}

/// Go frames of a goroutine, from where Go's own traceback starts: the syscall
/// entry for goroutines in a syscall or cgo call, else the saved scheduler state.
fn goroutine_stack(u: &GoUnwinder, g: &G) -> Stack {
    if g.state() == g::GSYSCALL && g.syscallsp != 0 {
        return u.unwind(g.syscallpc, g.syscallsp, 0);
    }
    if g.state() == g::GRUNNING {
        return Stack {
            frames: vec![],
            truncated: Some("goroutine running on a thread; see the thread's stack".into()),
        };
    }
    u.unwind(g.sched_pc, g.sched_sp, g.sched_lr)
}

fn interrupted(s: &crate::unwind::thread::SignalFrame) -> Interrupted {
    Interrupted {
        signal: s.signo,
        name: signal::signal_name(s.signo),
        frame: s.frame,
        handler: if s.go_handler { "go" } else { "c" }.into(),
    }
}

/// Debug info of the libraries threads are in (libc above all): decompressing
/// and indexing it is the slowest part of naming C frames, so it starts on
/// other cores before anything else and is joined when frames are named.
#[allow(clippy::type_complexity)]
fn preload_library_symbols(
    process: &Process,
    modules: &Modules,
) -> Vec<(
    u64,
    std::thread::JoinHandle<crate::symbolize::native::NativeSymbols>,
)> {
    let mut hit: Vec<(u64, std::path::PathBuf)> = process
        .threads
        .iter()
        .filter_map(|t| modules.find(t.regs.pc()))
        .filter(|m| !std::ptr::eq(m.binary, &process.exe))
        .map(|m| (m.text.start, m.binary.path().to_path_buf()))
        .collect();
    hit.sort();
    hit.dedup();
    hit.into_iter()
        .map(|(start, path)| {
            let sysroot = process.sysroot.clone();
            let h = std::thread::spawn(move || {
                // Its own open of the file: nothing is shared with the caller.
                match crate::elf::exe::Binary::open(&path) {
                    Ok(b) => {
                        let dbg = crate::elf::exe::debug_file(&b, &sysroot);
                        crate::symbolize::native::NativeSymbols::load(&b, dbg.as_ref())
                    }
                    Err(_) => crate::symbolize::native::NativeSymbols::empty(),
                }
            });
            (start, h)
        })
        .collect()
}

/// Every live goroutine's stack, on all cores: goroutines are independent,
/// and on a 100k-goroutine core this is most of the work. Returns the stacks
/// in order, and warnings.
fn unwind_goroutines(
    process: &Process,
    rt: &GoRuntime,
    live: &[&G],
    stack_of_g: &HashMap<u64, &ThreadStack>,
) -> (Vec<Stack>, Vec<String>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8);
    let chunk = live.len().div_ceil(workers).max(1024);
    let mem = &*process.mem;
    let parts: Vec<(Vec<Stack>, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = live
            .chunks(chunk)
            .map(|part| {
                let n = part.len();
                let h = s.spawn(move || {
                    let u = GoUnwinder {
                        pcln: &rt.pcln,
                        mem,
                        arch: process.arch,
                        cache: Default::default(),
                    };
                    let mut notes = vec![];
                    let stacks = part
                        .iter()
                        .enumerate()
                        .map(|(i, g)| {
                            if i % RELEASE_EVERY_GOROUTINES == RELEASE_EVERY_GOROUTINES - 1 {
                                mem.release();
                            }
                            goroutine_frames(&u, g, stack_of_g.get(&g.addr).copied(), &mut notes)
                        })
                        .collect();
                    (stacks, notes)
                });
                (h, n)
            })
            .collect();
        handles
            .into_iter()
            .map(|(h, n)| {
                h.join().unwrap_or_else(|_| {
                    let lost = Stack {
                        frames: vec![],
                        truncated: Some("internal error while unwinding".into()),
                    };
                    (
                        vec![lost; n],
                        vec!["internal error while unwinding goroutines".into()],
                    )
                })
            })
            .collect()
    });
    let mut stacks = Vec::with_capacity(live.len());
    let mut notes = vec![];
    for (s, n) in parts {
        stacks.extend(s);
        notes.extend(n);
    }
    (stacks, notes)
}

/// A goroutine's frames: stitched from its thread's stack (C frames included)
/// when that agrees with its own Go stack, else the Go frames alone.
fn goroutine_frames(
    u: &GoUnwinder,
    g: &G,
    thread: Option<&ThreadStack>,
    warnings: &mut Vec<String>,
) -> Stack {
    let go_only = goroutine_stack(u, g);
    let Some(st) = thread else {
        return go_only;
    };
    let mut own = st.own_frames();
    let running = g.state() == g::GRUNNING;
    let go_part: Vec<&Frame> = own.iter().filter(|f| f.lang == Lang::Go).collect();
    let same = |a: &Frame, b: &Frame| a.function == b.function && a.line == b.line;
    let prefix = go_part.len() <= go_only.frames.len()
        && go_part.iter().zip(&go_only.frames).all(|(a, b)| same(a, b));
    let rest = &go_only.frames[go_part.len().min(go_only.frames.len())..];
    // A callback on a C-created thread: the thread's stack ends in C
    // (`start_thread`), the goroutine at its fake `goexit` base.
    let only_base = rest
        .iter()
        .all(|f| f.function.as_deref() == Some("runtime.goexit"));
    if running || (prefix && only_base) {
        own.extend(rest.iter().cloned());
        return Stack {
            frames: own,
            truncated: st.truncated.clone(),
        };
    }
    warnings.push(format!(
        "goroutine {}: its thread's stack disagrees with its saved Go state; showing the Go frames",
        g.goid
    ));
    go_only
}

/// `C.name` for the innermost `_Cfunc_name` frame: the C function called,
/// even when the compiler's tail call left no C frame of that name.
fn cgo_call(frames: &[Frame]) -> Option<String> {
    // Only goroutines inside a cgo call have a _Cfunc_ frame below cgocall.
    if !frames
        .iter()
        .any(|f| f.function.as_deref() == Some("runtime.cgocall"))
    {
        return None;
    }
    frames.iter().find_map(|f| {
        let name = f.function.as_deref()?;
        let (_, c) = name.split_once("._Cfunc_")?;
        (f.lang == Lang::Go).then(|| format!("C.{c}"))
    })
}

/// Go's `isSystemGoroutine` by function: runtime internals, not user code.
fn is_system_function(name: &str) -> bool {
    name.starts_with("runtime.") && name != "runtime.main"
}
