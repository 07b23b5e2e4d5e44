//! The one entry point every face uses: a process image becomes a report in
//! named phases, each a function below:
//!
//! load → decode → join threads to Ms → unwind → classify → assemble.
//!
//! Each phase reads only what the ones before produced; none knows whether the
//! process came from a core, a live target or a debugger.
use crate::classify::{self, rules::Rules};
use crate::elf::exe::Binary;
use crate::process::{Process, Thread};
use crate::report::*;
use crate::runtime::join::{ThreadJoin, ThreadSp};
use crate::runtime::{self, g, sched::Sched, GoRuntime, G, M, P};
use crate::symbolize::modules::{Modules, Preload, SymbolCache};
use crate::unwind::native::NativeUnwinder;
use crate::unwind::thread::{arch_key, SignalFrame, Stitcher, ThreadStack};
use crate::unwind::{cgo_call, go::GoUnwinder, signal, Stack};
use crate::waits::Waits;
use anyhow::Result;
use rustc_hash::FxHashMap as HashMap;

/// A finished analysis: the report, and the process it was read from (its
/// threads, libraries, architecture: what faces such as the debugger
/// bridges show beside it). The runtime's own objects stay inside.
pub struct Analysis {
    pub process: Process,
    pub(crate) runtime: GoRuntime,
    pub report: Report,
}

/// Choices a face can make about an analysis.
#[derive(Clone)]
pub struct AnalyzeOptions {
    /// Classification rules (the built-in ones, or with a user file in front).
    pub rules: Rules,
    /// Unwind every goroutine's stack (thread stacks are always unwound). A
    /// debugger's thread table does without, over a slow memory bridge.
    pub goroutine_frames: bool,
    /// C symbols already loaded (a live capture loads them before it stops
    /// the process); shared with the caller.
    pub symbols: SymbolCache,
    /// Find who holds what goroutines wait on in Go (it reads every
    /// goroutine's stack; `top`, which shows only what they wait on, does
    /// without).
    pub go_holders: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        AnalyzeOptions {
            rules: Rules::builtin(),
            goroutine_frames: true,
            symbols: SymbolCache::default(),
            go_holders: true,
        }
    }
}

/// Analyze a process image; `core` is the core's name for the report header.
pub fn analyze_with(
    process: Process,
    core: Option<String>,
    opts: &AnalyzeOptions,
) -> Result<Analysis> {
    Ok(read(process, opts)?.finish(core, opts.goroutine_frames))
}

/// What an analysis reads of a process: everything but the goroutines' own
/// stacks, which [`Read::finish`] unwinds. A live capture reads while the
/// process is stopped, copies the stacks ([`Read::goroutine_stacks`]), lets
/// it go, and finishes over the copy: one pass.
pub struct Read {
    pub process: Process,
    runtime: GoRuntime,
    decoded: Decoded,
    join: ThreadJoin,
    stacks: Vec<ThreadStack>,
    threads: Vec<ThreadInfo>,
    ms: Vec<MInfo>,
    ps: Vec<PInfo>,
    sched: Option<Sched>,
    /// What the goroutines parked in Go wait on (read while the process is
    /// stopped: sudogs, sync values and channels are not on stacks).
    waits: Waits,
    /// `AnalyzeOptions::go_holders`.
    go_holders: bool,
    warnings: Vec<String>,
    incomplete: bool,
}

/// Passes of [`read`] so far in this process (a test checks that a live
/// capture reads once: `cgocore::testing::analysis_reads`).
pub(crate) static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// load, decode, join, unwind the threads, classify: every read of the
/// process's memory but the goroutines' stacks.
pub fn read(process: Process, opts: &AnalyzeOptions) -> Result<Read> {
    READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // load: the Go runtime, and (on other cores) the C symbols of the
    // libraries the threads are in.
    let modules = Modules::new(&process, &opts.symbols);
    let preload = Preload::start(
        &process,
        &modules,
        process.threads.iter().map(|t| t.regs.pc()),
    );
    let rt = GoRuntime::load(&process)?;

    let (mut d, mut warnings, incomplete) = decode(&process, &rt)?;
    let sched = d.sched.take();
    let ix = Index::new(&d);
    let glayout = runtime::g::GLayout::new(&rt)?;

    let mut join = join_threads(&process, &rt, &d, &ix, &glayout);

    preload.finish(&modules);
    let stacks = unwind_threads(&process, &rt, &modules, &glayout, &ix, &d.ms, &join);
    join.mark_signal_only(&d.ms, &in_badsignal(&process, &stacks));

    let threads = classify_all(&process, &modules, opts, (&d.ms, &join, &ix), &stacks, &rt);

    // Debug sections left out as implausible (a corrupt or hostile file).
    let mut refused: Vec<String> = process
        .exe
        .refused()
        .into_iter()
        .chain(process.libraries.iter().flat_map(|l| l.binary.refused()))
        .chain(modules.warnings())
        .chain(crate::debuginfod::take_missed())
        .collect();
    refused.sort();
    refused.dedup();
    let incomplete = incomplete || !refused.is_empty();
    warnings.extend(refused);
    let ms = describe_ms(&process, &rt, &d.ms, &join, &ix);
    let ps = describe_ps(&d.ps, &ix);
    let waits = crate::waits::read(&rt, &process, &live_goroutines(&rt, &d, &ix, &join));
    if waits.cut_short {
        warnings.push("some goroutines' wait lists were not followed to their end (a corrupt core?): what they wait on may be missing".into());
    }
    drop(modules); // its symbols go back to the shared cache
    Ok(Read {
        process,
        runtime: rt,
        decoded: d,
        join,
        stacks,
        threads,
        ms,
        ps,
        sched,
        incomplete: incomplete || waits.cut_short,
        go_holders: opts.go_holders,
        waits,
        warnings,
    })
}

/// classify: each thread's facts and wait, the owners they share, SQLite's
/// lock where a waiter needs it, the likely holders.
fn classify_all(
    process: &Process,
    modules: &Modules,
    opts: &AnalyzeOptions,
    found: (&[M], &ThreadJoin, &Index),
    stacks: &[ThreadStack],
    rt: &GoRuntime,
) -> Vec<ThreadInfo> {
    let syscall_status = rt.facts.status("syscall");
    let mut threads = classify_threads(process, modules, opts, found, stacks, syscall_status);
    classify::share_owners(&mut threads);
    // SQLite's lock, read where a waiter needs it and SQLite's DWARF is here.
    let sqlite =
        classify::sqlite::rule(&opts.rules).filter(|r| threads.iter().any(|t| r.is_waiter(t)));
    // Stacks a thread has: its own, and each one a signal interrupted (for
    // SQLite's waiters only: 10,000 threads need no map).
    let sps: HashMap<u32, Vec<u64>> = match sqlite {
        Some(_) => process
            .threads
            .iter()
            .zip(stacks)
            .map(|(t, st)| {
                let sps = std::iter::once(t.regs.sp()).chain(st.signals.iter().map(|s| s.sp));
                (t.tid, sps.collect())
            })
            .collect(),
        None => HashMap::default(),
    };
    let stacks_of = |tid| sps.get(&tid).cloned().unwrap_or_default();
    let settled = sqlite
        .map(|rule| sqlite_from_dwarf(process, rt, found.2, rule, &mut threads, &stacks_of))
        .unwrap_or_default();
    // Without it, SQLite's accessors' offsets narrow the likely holders.
    let offsets = sqlite.and_then(|_| sqlite_offsets(process));
    let narrow = |rule: &classify::rules::LibraryRule, candidates: &[u32]| {
        let off = offsets.filter(|_| sqlite.is_some_and(|s| std::ptr::eq(s, rule)))?;
        let mem = &*process.mem;
        let found =
            classify::sqlite::in_transaction(mem, off, process.libc(), candidates, &stacks_of);
        let conns: Vec<String> = found
            .iter()
            .map(|(t, c)| format!("thread {t}'s {c:#x}"))
            .collect();
        Some(classify::Narrowed {
            tids: found.iter().map(|(t, _)| *t).collect(),
            why: format!(
                "whose connection is inside a transaction ({}: its mutex names the thread and its autocommit flag is off; \
                 the offsets read from SQLite's own sqlite3_db_mutex and sqlite3_get_autocommit code)",
                conns.join(", ")
            ),
        })
    };
    let defines = |module: &str, sym: &str| modules.defines(module, sym);
    classify::likely_holders(&mut threads, &opts.rules, &settled, &defines, &narrow);
    threads
}

/// SQLite's lock read through SQLite's DWARF: the waiters it settled.
fn sqlite_from_dwarf(
    process: &Process,
    rt: &GoRuntime,
    ix: &Index,
    rule: &classify::rules::LibraryRule,
    threads: &mut [ThreadInfo],
    stacks: &dyn Fn(u32) -> Vec<u64>,
) -> std::collections::HashSet<u32> {
    with_sqlite_dwarf(process, |sqlite| {
        let waiting = rt.facts.status("waiting");
        let parked = || {
            ix.g.values()
                .filter(|g| Some(g.state()) == waiting)
                .map(|g| classify::sqlite::Parked {
                    goid: g.goid,
                    start: rt.func_name(g.startpc).map(str::to_string),
                    sp: g.sched_sp,
                    hi: g.stack_hi,
                })
                .collect()
        };
        let go = classify::sqlite::GoSide {
            exe: &process.exe,
            parked: &parked,
        };
        let libc = process.libc();
        sqlite.map(|b| {
            classify::sqlite::link_waiters(&*process.mem, rule, b, threads, stacks, &go, libc)
        })
    })
    .unwrap_or_default()
}

/// The offsets SQLite's one-line accessors read, from its module's code.
fn sqlite_offsets(process: &Process) -> Option<classify::sqlite::Offsets> {
    let (bin, bias) = sqlite_module(process)?;
    let at = |name: &str| bin.symbol(name).map(|(a, _)| a.wrapping_add(bias));
    let (db_mutex, autocommit) = (at("sqlite3_db_mutex")?, at("sqlite3_get_autocommit")?);
    classify::sqlite::Offsets::read(&*process.mem, process.arch, db_mutex, autocommit)
}

impl Read {
    /// Each live goroutine's stack, from its saved stack pointer to the top
    /// (`(address, length)`, at most 1 MiB each): what [`Read::finish`]
    /// reads.
    pub fn goroutine_stacks(&self) -> Vec<(u64, u64)> {
        let dead = &self.runtime.facts.dead_status;
        self.decoded
            .gs
            .iter()
            .filter(|g| !dead.contains(&g.state()))
            .map(|g| {
                let sp = [g.syscallsp, g.sched_sp]
                    .into_iter()
                    .filter(|&sp| g.stack_lo <= sp && sp < g.stack_hi)
                    .min()
                    .unwrap_or(g.stack_lo);
                (sp, g.stack_hi.saturating_sub(sp).min(1 << 20))
            })
            .filter(|&(_, len)| len > 0)
            .collect()
    }

    /// Goroutines wait in Go on objects: their holders are found on every
    /// goroutine's stack, so `finish` unwinds them all (and reads them).
    pub fn has_go_waits(&self) -> bool {
        self.go_holders && !self.waits.objects.is_empty()
    }

    /// unwind the goroutines (when `goroutine_frames`, or when goroutines
    /// wait in Go: holders are found from frames), then assemble the
    /// report and its findings.
    pub fn finish(self, core: Option<String>, goroutine_frames: bool) -> Analysis {
        let Read {
            process,
            runtime: rt,
            decoded: d,
            join,
            stacks,
            threads,
            ms,
            ps,
            sched,
            mut waits,
            go_holders,
            mut warnings,
            incomplete,
        } = self;
        let ix = Index::new(&d);
        let live = live_goroutines(&rt, &d, &ix, &join);
        let holders = go_holders && !waits.objects.is_empty();
        let (goroutine_stacks, refs) = if goroutine_frames || holders {
            let (found, refs, notes) = unwind_and_refer(&process, &rt, &live, &stacks, &waits);
            warnings.extend(notes);
            (found, refs)
        } else {
            let skipped = Stack {
                frames: vec![],
                truncated: Some("not unwound (goroutine stacks were not asked for)".into()),
            };
            (vec![skipped; live.len()], HashMap::default())
        };
        crate::waits::naming::name_objects(
            &process.exe,
            &mut waits.objects,
            refs.values().flatten(),
        );
        let goroutines = describe_goroutines(&rt, &live, goroutine_stacks, &ix, (&waits, refs));
        let report = assemble(
            &process,
            &rt,
            core,
            Parts {
                threads,
                ms,
                goroutines,
                ps,
                sched,
                warnings,
                incomplete,
            },
        );
        drop(ix);
        Analysis {
            process,
            runtime: rt,
            report,
        }
    }
}

/// Every goroutine's stack, and (in the same walk) the references its live
/// frames hold to the objects goroutines wait on, with those to pools' connections read earlier.
fn unwind_and_refer(
    process: &Process,
    rt: &GoRuntime,
    live: &[&G],
    stacks: &[ThreadStack],
    waits: &Waits,
) -> (Vec<Stack>, HashMap<u64, Vec<Reference>>, Vec<String>) {
    use crate::unwind::goroutines::{unwind_goroutines_scanning, FrameScan};
    use crate::unwind::stackmap::StackMaps;
    use crate::waits::references::{self, Looking, Targets};
    let (mem, arch) = (&*process.mem, process.arch);
    let targets = Targets::new(&waits.objects, Looking::IntoObjects);
    let start = || StackMaps::new(&rt.pcln, mem, arch);
    let scan = |maps: &mut StackMaps, _: &G, frames: &[crate::unwind::go::PhysFrame]| match &targets
    {
        Some(t) => references::scan(maps, t, frames),
        None => vec![],
    };
    let stack_of_g = stack_of_goroutine(stacks);
    let (found, refs, notes) = unwind_goroutines_scanning(
        &rt.pcln,
        mem,
        arch,
        live,
        &stack_of_g,
        &FrameScan {
            start: &start,
            scan: &scan,
        },
    );
    let mut by_g: HashMap<u64, Vec<Reference>> = live
        .iter()
        .zip(refs)
        .filter(|(_, r)| !r.is_empty())
        .map(|(g, r)| (g.addr, r))
        .collect();
    for (g, more) in &waits.pool_references {
        by_g.entry(*g).or_default().extend(more.iter().cloned());
    }
    (found, by_g, notes)
}

/// The runtime's objects, decoded once.
struct Decoded {
    ms: Vec<M>,
    gs: Vec<G>,
    ps: Vec<P>,
    sched: Option<Sched>,
}

/// decode: Ms (required), Gs, Ps and `runtime.sched` (each a warning when
/// unreadable). Returns them, the warnings so far, and whether some runtime
/// data could not be read (the lists may be partial).
fn decode(process: &Process, rt: &GoRuntime) -> Result<(Decoded, Vec<String>, bool)> {
    let mem = &*process.mem;
    let mut warnings: Vec<String> = process.warnings.clone();
    warnings.extend(rt.warnings.iter().cloned());
    let before = warnings.len();
    let ms = runtime::m::all_ms(rt, mem, &mut warnings)?;
    let gs = runtime::g::all_gs(rt, mem, &mut warnings).unwrap_or_else(|e| {
        warnings.push(format!("goroutines unreadable: {e:#}"));
        vec![]
    });
    let ps = runtime::p::all_ps(rt, mem).unwrap_or_else(|e| {
        warnings.push(format!("Ps unreadable: {e:#}"));
        vec![]
    });
    let sched = runtime::sched::read(rt, process).unwrap_or_else(|e| {
        warnings.push(format!("runtime.sched unreadable: {e:#}"));
        None
    });
    let incomplete = warnings.len() > before || !process.warnings.is_empty() || rt.carried_over;
    warnings.extend(process.notes.iter().cloned());
    Ok((Decoded { ms, gs, ps, sched }, warnings, incomplete))
}

/// Runtime objects by address.
struct Index<'d> {
    g: HashMap<u64, &'d G>,
    m: HashMap<u64, usize>,
    ms: &'d [M],
    p_id: HashMap<u64, i32>,
}

impl<'d> Index<'d> {
    fn new(d: &'d Decoded) -> Index<'d> {
        Index {
            g: d.gs.iter().map(|g| (g.addr, g)).collect(),
            m: d.ms.iter().enumerate().map(|(i, m)| (m.addr, i)).collect(),
            ms: &d.ms,
            p_id: d.ps.iter().map(|p| (p.addr, p.id)).collect(),
        }
    }

    fn goid(&self, addr: u64) -> Option<u64> {
        (addr != 0).then(|| self.g.get(&addr).map(|g| g.goid))?
    }

    fn m(&self, addr: u64) -> Option<(usize, &'d M)> {
        let &i = self.m.get(&addr).filter(|_| addr != 0)?;
        Some((i, &self.ms[i]))
    }

    fn mid(&self, addr: u64) -> Option<i64> {
        self.m(addr).map(|(_, m)| m.id)
    }
}

/// join: which OS thread is which M (`runtime::join` holds the rules).
fn join_threads(
    process: &Process,
    rt: &GoRuntime,
    d: &Decoded,
    ix: &Index,
    glayout: &runtime::g::GLayout,
) -> ThreadJoin {
    let mem = &*process.mem;
    let dead = &rt.facts.dead_status;
    let threads: Vec<ThreadSp> = process
        .threads
        .iter()
        .map(|t| ThreadSp {
            tid: t.tid,
            sp: t.regs.sp(),
        })
        .collect();
    ThreadJoin::new(
        &d.ms,
        &threads,
        |m| ix.g.get(&m.curg).is_some_and(|g| dead.contains(&g.state())),
        |g| glayout.read(mem, g).ok().map(|g| (g.stack_lo, g.stack_hi)),
    )
}

/// unwind: one stitched stack per thread, in the process's thread order.
fn unwind_threads(
    process: &Process,
    rt: &GoRuntime,
    modules: &Modules,
    glayout: &runtime::g::GLayout,
    ix: &Index,
    ms: &[M],
    join: &ThreadJoin,
) -> Vec<ThreadStack> {
    let mem = &*process.mem;
    let native = NativeUnwinder::new(process.arch, modules);
    let cgo_frames = rt
        .facts
        .cgo_frames
        .get(arch_key(process.arch))
        .cloned()
        .unwrap_or_default();
    // Threads are independent: on a core of thousands (the 10000-thread
    // crash) each worker walks its part with its own caches.
    let parts = crate::parallel::in_parts(
        &process.threads,
        THREADS_PER_WORKER,
        || native.fork(),
        |native, part| {
            let stitcher = Stitcher {
                go: GoUnwinder {
                    pcln: &rt.pcln,
                    mem,
                    arch: process.arch,
                    cache: Default::default(),
                },
                native: &native,
                modules,
                glayout,
                gs: &ix.g,
                cgo: &cgo_frames,
                funcid_asmcgocall: rt.facts.funcid_asmcgocall,
            };
            part.iter()
                .map(|t| {
                    let mut st = stitcher.thread(join.stack_m(ms, t.tid), &t.regs);
                    signal::infer_numbers(&mut st.signals, t.sighold);
                    st
                })
                .collect()
        },
    );
    parts
        .into_iter()
        .flat_map(|(part, stacks)| {
            stacks.unwrap_or_else(|| {
                let lost = ThreadStack {
                    truncated: Some("internal error while unwinding".into()),
                    ..Default::default()
                };
                vec![lost; part.len()]
            })
        })
        .collect()
}

/// Fewer threads than this are not worth a second worker.
const THREADS_PER_WORKER: usize = 256;

/// Each thread, and whether Go's `badsignal` runs on it (Go 1.21's only sign
/// of an M taken for a signal).
fn in_badsignal(process: &Process, stacks: &[ThreadStack]) -> Vec<(u32, bool)> {
    process
        .threads
        .iter()
        .zip(stacks)
        .map(|(t, st)| {
            let hit = st
                .frames
                .iter()
                .any(|f| f.function.as_deref() == Some("runtime.badsignal"));
            (t.tid, hit)
        })
        .collect()
}

/// classify: each thread's facts, and what its C call waits for (on all
/// cores: a thread's class reads only its own stack and the lock it names).
fn classify_threads(
    process: &Process,
    modules: &Modules,
    opts: &AnalyzeOptions,
    found: (&[M], &ThreadJoin, &Index),
    stacks: &[ThreadStack],
    syscall_status: Option<u32>,
) -> Vec<ThreadInfo> {
    let tids_tp: Vec<(u32, u64)> = process
        .threads
        .iter()
        .map(|t| (t.tid, t.regs.thread_pointer().unwrap_or(0)))
        .collect();
    let no_fds = Default::default();
    let live = process.live.as_ref();
    let pairs: Vec<_> = process.threads.iter().zip(stacks).collect();
    let describe = |ccx: Option<&classify::Context>, &(t, st): &(&Thread, &ThreadStack)| {
        describe_thread(ccx, found, syscall_status, live, t, st)
    };
    let parts = crate::parallel::in_parts(
        &pairs,
        THREADS_PER_WORKER,
        || (),
        |(), part| {
            let data_symbol = |a: u64| modules.data_symbol(a);
            let defines = |module: &str, sym: &str| modules.defines(module, sym);
            let function_at = |addr: u64| modules.function_at(addr);
            let ccx = classify::Context {
                arch: process.arch,
                mem: &*process.mem,
                rules: &opts.rules,
                threads: &tids_tp,
                data_symbol: &data_symbol,
                fds: live.map_or(&no_fds, |l| &l.fds),
                defines: &defines,
                function_at: &function_at,
            };
            part.iter()
                .map(|p| describe(Some(&ccx), p))
                .collect::<Vec<_>>()
        },
    );
    // A part whose classification failed keeps its threads' facts, unclassified.
    parts
        .into_iter()
        .flat_map(|(part, r)| r.unwrap_or_else(|| part.iter().map(|p| describe(None, p)).collect()))
        .collect()
}

/// One thread's facts, and with `ccx` what its C call waits for.
fn describe_thread(
    ccx: Option<&classify::Context>,
    (ms, join, ix): (&[M], &ThreadJoin, &Index),
    syscall_status: Option<u32>,
    live: Option<&crate::elf::core::SnapshotNote>,
    t: &Thread,
    st: &ThreadStack,
) -> ThreadInfo {
    let m = join.m_of(ms, t.tid);
    let (start, sys, handler_end, sig_name) = blocked_call_start(t, st);
    let call = |go_side| classify::Call {
        tid: t.tid,
        frames: &st.frames,
        start,
        handler_end,
        sys: &sys,
        interrupted_by: sig_name.as_deref(),
        go_side,
    };
    // A goroutine in a system call Go makes itself (status syscall,
    // not in cgo) holds its thread the same way a cgo call does.
    let go_syscall = m.is_some_and(|m| {
        !m.incgo
            && m.curg != 0
            && st.goroutine == Some(m.curg)
            && ix
                .g
                .get(&m.curg)
                .is_some_and(|g| Some(g.state()) == syscall_status)
    });
    let blocked = ccx.and_then(|ccx| {
        classify::classify(ccx, &call(false)).or_else(|| {
            go_syscall
                .then(|| classify::classify(ccx, &call(true)))
                .flatten()
        })
    });
    ThreadInfo {
        tid: t.tid,
        kind: match m {
            None => ThreadKind::Foreign,
            Some(m) if m.isextra => ThreadKind::Extra,
            Some(_) => ThreadKind::Go,
        },
        m: m.map(|m| m.id),
        curg: m.and_then(|m| ix.goid(m.curg)),
        lockedg: m.and_then(|m| ix.goid(m.lockedg)),
        in_cgo: m.is_some_and(|m| m.incgo),
        signal: t.signal,
        signal_m: join.signal_m(ms, t.tid),
        pc: t.regs.pc(),
        sp: t.regs.sp(),
        syscall: t.regs.syscall_nr(),
        frames: st.frames.clone(),
        stack_truncated: st.truncated.clone(),
        stack_goroutine: st.goroutine.and_then(|g| ix.goid(g)),
        interrupted: st.signals.iter().find(|s| s.go_handler).map(interrupted),
        signals: st.signals.iter().map(interrupted).collect(),
        cgo_call: cgo_call(&st.frames),
        goroutine_frame: st.goroutine_frame,
        blocked,
        name: live.and_then(|l| l.thread_names.get(&t.tid).cloned()),
    }
}

/// Where a thread's blocked call starts: below Go's own signal handler, if
/// one runs (below the last of nested ones: under qemu-user the crash's
/// re-raise is delivered to the handler again), with the syscall state it
/// interrupted; where a C handler on top of the call begins (it is what
/// waits); and Go's signal's name.
fn blocked_call_start(
    t: &Thread,
    st: &ThreadStack,
) -> (
    usize,
    crate::elf::regs::SyscallState,
    Option<usize>,
    Option<String>,
) {
    let go_sig = st
        .signals
        .iter()
        .skip_while(|s| !s.go_handler)
        .take_while(|s| s.go_handler)
        .last();
    let (start, sys) = match go_sig {
        Some(s) => (s.frame, s.syscall),
        None => (0, t.regs.syscall_state()),
    };
    let handler_end = st
        .signals
        .iter()
        .find(|s| !s.go_handler && s.frame > start)
        .map(|s| s.frame);
    (
        start,
        sys,
        handler_end,
        go_sig.map(|s| signal::signal_name(s.signo)),
    )
}

fn interrupted(s: &SignalFrame) -> Interrupted {
    Interrupted {
        signal: s.signo,
        name: signal::signal_name(s.signo),
        frame: s.frame,
        handler: if s.go_handler { "go" } else { "c" }.into(),
    }
}

/// The goroutines of the program: not dead Gs, nor the goroutine of an extra
/// M borrowed only to run a signal handler.
fn live_goroutines<'d>(
    rt: &GoRuntime,
    d: &'d Decoded,
    ix: &Index,
    join: &ThreadJoin,
) -> Vec<&'d G> {
    let dead = &rt.facts.dead_status;
    let borrowed = |addr: u64| ix.m(addr).is_some_and(|(i, _)| join.is_signal_borrowed(i));
    d.gs.iter()
        .filter(|g| !(dead.contains(&g.state()) || (g.lockedm != 0 && borrowed(g.lockedm))))
        .collect()
}

/// A goroutine's own frames come from the thread that serves it.
fn stack_of_goroutine(stacks: &[ThreadStack]) -> HashMap<u64, &ThreadStack> {
    let mut out: HashMap<u64, &ThreadStack> = HashMap::default();
    for st in stacks {
        if let Some(g) = st.goroutine {
            out.entry(g).or_insert(st);
        }
    }
    out
}

fn describe_ms(
    process: &Process,
    rt: &GoRuntime,
    ms: &[M],
    join: &ThreadJoin,
    ix: &Index,
) -> Vec<MInfo> {
    let thread_ids: std::collections::HashSet<u32> =
        process.threads.iter().map(|t| t.tid).collect();
    ms.iter()
        .enumerate()
        .map(|(i, m)| MInfo {
            id: m.id,
            tid: join.tid_of(ms, i, |t| thread_ids.contains(&t)),
            signal_borrowed: join.is_signal_borrowed(i),
            procid: m.procid,
            locked_ext: m.locked_ext,
            locked_int: m.locked_int,
            lockedg: ix.goid(m.lockedg),
            curg: ix.goid(m.curg),
            incgo: m.incgo,
            ncgo: m.ncgo,
            ncgocall: m.ncgocall,
            isextra: m.isextra,
            is_extra_in_c: m.is_extra_in_c,
            is_extra_in_sig: m.is_extra_in_sig,
            spinning: m.spinning,
            blocked: m.blocked,
            p: (m.p != 0).then(|| ix.p_id.get(&m.p).copied()).flatten(),
            start_fn: runtime::m::mstartfn_name(rt, &*process.mem, m),
            addr: m.addr,
        })
        .collect()
}

/// The goroutines as the report shows them, each with its wait in Go and the
/// references its frames hold to objects others wait on.
fn describe_goroutines(
    rt: &GoRuntime,
    live: &[&G],
    stacks: Vec<Stack>,
    ix: &Index,
    (waits, mut refs): (&Waits, HashMap<u64, Vec<Reference>>),
) -> Vec<GoroutineInfo> {
    live.iter()
        .zip(stacks)
        .map(|(g, stack)| {
            let st = g.state();
            let m = ix.m(g.m).map(|(_, m)| m);
            let start = rt.func_name(g.startpc).map(str::to_string);
            GoroutineInfo {
                goid: g.goid,
                status: rt.status_name(g.status),
                wait_reason: if st == g::GWAITING || Some(st) == rt.facts.status("leaked") {
                    rt.wait_reason(g.waitreason)
                } else {
                    None
                },
                locked: g.lockedm != 0,
                m: ix.mid(g.m),
                lockedm: ix.mid(g.lockedm),
                in_cgo: st == g::GSYSCALL && m.is_some_and(|m| m.incgo && m.curg == g.addr),
                system: start.as_deref().is_some_and(g::is_system_function),
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
                waits_on: waits_on(waits, g.addr),
                references: refs.remove(&g.addr).unwrap_or_default(),
                waitsince: (g.waitsince > 0).then_some(g.waitsince),
            }
        })
        .collect()
}

/// A goroutine's wait as the report gives it (holders come from `diagnose`).
fn waits_on(waits: &Waits, g: u64) -> Option<Box<WaitsOn>> {
    let w = waits.of_goroutine.get(&g)?;
    let o = waits.objects.get(&w.addr)?;
    Some(Box::new(WaitsOn {
        kind: w.kind.into(),
        addr: w.addr,
        object: o.name.clone(),
        state: o.state.clone(),
        holders: Default::default(),
        evidence: w.evidence.into(),
        channels: w.channels.clone(),
    }))
}

fn describe_ps(ps: &[P], ix: &Index) -> Vec<PInfo> {
    ps.iter()
        .map(|p| PInfo {
            id: p.id,
            status: runtime::p::status_name(p.status).to_string(),
            m: ix.mid(p.m),
            schedtick: p.schedtick,
            syscalltick: p.syscalltick,
            runqsize: p.runq_len,
        })
        .collect()
}

/// What `assemble` puts together.
struct Parts {
    threads: Vec<ThreadInfo>,
    ms: Vec<MInfo>,
    goroutines: Vec<GoroutineInfo>,
    ps: Vec<PInfo>,
    sched: Option<Sched>,
    warnings: Vec<String>,
    incomplete: bool,
}

/// assemble: the report, its counts, and the findings derived from it.
fn assemble(process: &Process, rt: &GoRuntime, core: Option<String>, p: Parts) -> Report {
    let counts = Counts {
        threads: p.threads.len(),
        ms: p.ms.len(),
        goroutines: p.goroutines.len(),
        threads_in_cgo: p.threads.iter().filter(|t| t.in_cgo).count(),
        foreign_threads: p
            .threads
            .iter()
            .filter(|t| t.kind == ThreadKind::Foreign)
            .count(),
        extra_ms: p.ms.iter().filter(|m| m.isextra).count(),
        locked_goroutines: p.goroutines.iter().filter(|g| g.locked).count(),
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
        sched: p.sched,
        threads: p.threads,
        ms: p.ms,
        ps: p.ps,
        goroutines: p.goroutines,
        incidents: vec![],
        findings: vec![],
        warnings: p.warnings,
        incomplete: p.incomplete,
        stopped_ms: process.live.as_ref().map(|l| l.stopped_ms),
        unstopped_threads: process
            .live
            .as_ref()
            .map(|l| l.unstopped.clone())
            .unwrap_or_default(),
    };
    for u in &report.unstopped_threads {
        report.warnings.push(unstopped_warning(u));
        report.incomplete = true;
    }
    crate::diagnose::diagnose(&mut report);
    report
}

/// What a report says of a thread that did not stop.
fn unstopped_warning(u: &crate::report::UnstoppedThread) -> String {
    let name = u
        .name
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let wchan = u
        .wchan
        .as_deref()
        .map(|w| format!(" in {w}"))
        .unwrap_or_default();
    format!(
        "thread {}{name} did not stop in time: {}{wchan} (uninterruptible sleep: NFS, FUSE, disk I/O or a vfork); its registers and stack were not read, it is not in the threads below, and it was let go with the rest",
        u.tid, u.state
    )
}

/// `f` with the binary holding SQLite's DWARF, if SQLite is in the process
/// with its types: the executable it is compiled into (go-sqlite3), or a
/// shared libsqlite3 with its debug file installed.
/// A symbol only SQLite defines: the module that has SQLite.
const SQLITE_DEFINES: &str = "sqlite3_initialize";

/// The module that has SQLite (a shared libsqlite3, or the executable it
/// is compiled into), and its bias.
fn sqlite_module(process: &Process) -> Option<(&Binary, u64)> {
    std::iter::once((&process.exe, process.bias))
        .chain(process.libraries.iter().map(|l| (&l.binary, l.bias)))
        .find(|(b, _)| b.symbol(SQLITE_DEFINES).is_some_and(|(addr, _)| addr != 0))
}

fn with_sqlite_dwarf<R>(process: &Process, f: impl FnOnce(Option<&Binary>) -> R) -> R {
    match sqlite_module(process) {
        Some((b, _)) if b.section(".debug_info").is_some() => f(Some(b)),
        Some((b, _)) => f(crate::elf::exe::debug_file(b, &process.sysroot).as_ref()),
        None => f(None),
    }
}
