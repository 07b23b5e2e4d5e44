//! cgocore: explain Go programs stuck in cgo, from core files or live targets.
//!
//! For every OS thread of a Go process: which Go M it is, how it is locked
//! (`m.lockedExt`, `m.lockedInt`, `m.lockedg`), which goroutine it carries,
//! its C frames stitched to that goroutine's Go frames, what its C call waits
//! for (a mutex and its holder, a read on an fd, a sleep, ...), and findings:
//! deadlocks, lock holders, pinned threads, pile-ups.
//!
//! The way in:
//! 1. open a process image: [`open_core`] (a kernel core, a `gcore`, a
//!    `.zst`), or [`open_target`] (a debugger's or live target: memory
//!    reader, threads with registers, modules);
//! 2. [`analyze`] it (or [`analyze_with`] [`AnalyzeOptions`]: rules, whether
//!    to unwind every goroutine);
//! 3. read the [`Report`] (the `cgocore analyze --json` schema), or render it
//!    with [`render`].
//!
//! Errors are an [`Error`], one variant per kind a caller may act on.
//!
//! ```no_run
//! use cgocore::{analyze, open_core, OpenOptions};
//! use std::path::Path;
//!
//! let opts = OpenOptions { exe: Some("./server".into()), ..Default::default() };
//! let process = open_core(Path::new("core.1234"), &opts)?;
//! let analysis = analyze(process, Some("core.1234".into()))?;
//! for t in &analysis.report.threads {
//!     let waits = t.blocked.as_ref().map(|b| b.class.as_str());
//!     println!("thread {} M{:?} goroutine {:?}: {:?}", t.tid, t.m, t.curg, waits);
//! }
//! print!("{}", cgocore::render::findings(&analysis.report));
//! # Ok::<(), cgocore::Error>(())
//! ```
//!
//! Data flows up once: bytes (`memory`, `elf`) → runtime objects (`runtime`,
//! via `layout`) → stacks (`unwind`) → classes and findings (`classify`) →
//! the report. The modules below the facade are crate-private; the project's own
//! tests reach the few internals they need through `testing`, not a stable API.
pub(crate) mod analysis;
mod error;
mod process;

pub mod report;

pub(crate) mod classify;
#[doc(hidden)]
pub mod cli;
pub mod debuginfod;
pub(crate) mod diagnose;
pub(crate) mod elf;
pub(crate) mod input;
pub(crate) mod kernel_form;
mod layering;
pub(crate) mod layout;
pub(crate) mod live;
pub(crate) mod memory;
pub(crate) mod output;
pub(crate) mod parallel;
pub mod progress;
pub(crate) mod runtime;
pub(crate) mod symbolize;
pub mod top;
pub(crate) mod unwind;
pub(crate) mod varint;
pub(crate) mod waits;

pub use analysis::{Analysis, AnalyzeOptions};
pub use classify::rules::Rules;
pub use elf::regs::Arch;
pub use error::{Error, Fault};
pub use live::{Capture, LiveOptions};
pub use memory::{Memory, PagedMemory};
pub use process::{OpenOptions, Process, TargetDesc};
pub use report::FindingKind;
pub use report::Report;

/// Text renderings of a report (what the CLI and the debugger commands print).
pub mod render {
    pub use crate::report::dot::to_dot;
    pub use crate::report::escape::{escape_line, escape_terminal};
    pub use crate::report::pprof::write as write_pprof;
    pub use crate::report::text::{
        findings, goroutine, goroutines, render_sched, render_with, thread_stack, threads_table,
        write_goroutine_groups, write_goroutines, GoroutineFilter,
    };
}

/// Hooks for the project's own tests and benchmarks; not an API.
#[doc(hidden)]
pub mod testing {
    // The internals the tests, the fuzzer and the bench reach, named once
    // here: everything else below the facade is crate-private.
    pub use crate::classify::syscalls::lookup as syscall_lookup;
    pub use crate::elf::buildinfo::parse as parse_buildinfo;
    pub use crate::elf::core::{CoreFile, AT_PHDR};
    pub use crate::elf::exe::{debug_file, Binary};
    pub use crate::input::{open as open_input, write_sparse};
    pub use crate::layout::dwarf::layout_from_dwarf;
    pub use crate::layout::table::{facts as version_facts, for_version as layout_table};
    pub use crate::memory::{ReadExt, SplicedMemory};
    pub use crate::parallel::with_parts;
    pub use crate::symbolize::pclntab::Pclntab;

    /// How many times an analysis has read a process, in this process.
    pub fn analysis_reads() -> usize {
        crate::analysis::READS.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A runtime struct's field offset as the analysis read it (DWARF or
    /// the tables): for tests that patch a core.
    pub fn runtime_field(a: &crate::Analysis, ty: &str, field: &str) -> Option<u64> {
        a.runtime.layout.field(ty, field)
    }

    /// `runtime.allm`'s address, as the analysis found it.
    pub fn allm_root(a: &crate::Analysis) -> u64 {
        a.runtime.roots.allm
    }
}

use std::path::Path;

/// Open a core file (kernel core, `gcore`, or zstd-compressed `.zst`) and the
/// binaries it names (`opts.exe` to give the executable, `opts.sysroot` for
/// a core from another host).
pub fn open_core(path: &Path, opts: &OpenOptions) -> Result<Process, Error> {
    Process::from_core(path, opts).map_err(|e| Error::from_internal(e, Error::Other))
}

/// Open a target a debugger (or a live reader) describes: its memory, its
/// threads with registers, its modules. The binaries are checked against its
/// memory as a core's are.
pub fn open_target(desc: TargetDesc, mem: Box<dyn Memory + Send + Sync>) -> Result<Process, Error> {
    Process::from_target(desc, mem).map_err(|e| Error::from_internal(e, Error::Other))
}

/// Stop a live process (every thread, ptrace), analyze it while reading its
/// memory, and let it go: the report (`stopped_ms` says for how long) and
/// the snapshot core of what was read (`Capture::snapshot.write`).
pub fn capture_pid(pid: u32, opts: &LiveOptions, aopts: &AnalyzeOptions) -> Result<Capture, Error> {
    live::capture(pid, opts, aopts).map_err(|e| Error::from_internal(e, Error::Other))
}

/// Analyze with the default options (built-in rules, every goroutine's
/// stack). `core` names the input in the report header.
pub fn analyze(process: Process, core: Option<String>) -> Result<Analysis, Error> {
    analyze_with(process, core, &AnalyzeOptions::default())
}

/// Analyze a process image.
pub fn analyze_with(
    process: Process,
    core: Option<String>,
    opts: &AnalyzeOptions,
) -> Result<Analysis, Error> {
    analysis::analyze_with(process, core, opts)
        .map_err(|e| Error::from_internal(e, Error::CorruptRuntime))
}

/// Runs `f` with the analyses it makes reading memory on the calling thread
/// alone (threads, goroutines and waits are otherwise split between the
/// machine's cores): for a debugger whose API may be called from its own
/// thread only (gdb), over whose memory bridge a split gains nothing.
pub fn on_this_thread<T>(f: impl FnOnce() -> T) -> T {
    parallel::with_parts(1, f)
}
