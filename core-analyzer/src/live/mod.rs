//! Live processes (`cgocore analyze --pid`, `cgocore snapshot`): stop every
//! thread, analyze while reading memory through a page record, let the
//! process go, and keep what was read (a snapshot writes it as a core that
//! gives the same report). No debugger process: ptrace, `process_vm_readv`
//! and `/proc` only.
pub mod memory;
pub mod procfs;
pub mod ptrace;
pub mod snapshot;

use crate::analysis::{self, Analysis, AnalyzeOptions};
use crate::elf::core::SnapshotNote;
use crate::elf::regs::{Arch, Registers};
use crate::input::under_sysroot;
use crate::process::{LiveParts, Process, Thread};
use anyhow::Result;
use memory::{RecordingMemory, PAGE};
use snapshot::Snapshot;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `NT_PRSTATUS` words: x86_64's `user_regs_struct`, arm64's `user_pt_regs`.
const NT_PRSTATUS: u32 = 1;
const NT_ARM_TLS: u32 = 0x401;
/// A module's writable data (`.data`, `.got`, `.bss` of an ELF) up to this
/// size is kept whole: a debugger opening the snapshot finds the shared
/// libraries through it (`r_debug`).
const KEEP_DATA_MAX: u64 = 16 << 20;

#[derive(Clone)]
pub struct LiveOptions {
    /// Where this host finds the process's files; default: its root when it
    /// runs in another mount namespace (a container).
    pub sysroot: Option<PathBuf>,
    /// Most bytes of memory one capture may read.
    pub max_bytes: u64,
    /// How long the threads may take to stop: one still running past it (in
    /// uninterruptible sleep) is left out and named (`--stop-timeout`).
    pub stop_timeout: Duration,
    /// How long the whole capture may take; past it the caller gets an
    /// error and the process is let go when the tracer thread ends (the CLI
    /// exits: the kernel then detaches every thread).
    pub deadline: Duration,
    /// For tests of what happens when cgocore dies mid-stop: hold the
    /// process stopped this long after reading it.
    pub hold_stopped: Option<Duration>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            sysroot: None,
            max_bytes: 4 << 30,
            stop_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(120),
            hold_stopped: None,
        }
    }
}

/// A finished capture: the analysis of the process as it was, and the core a
/// snapshot writes.
pub struct Capture {
    pub analysis: Analysis,
    pub snapshot: Snapshot,
    pub stopped: Duration,
}

/// The architecture this build of cgocore runs on: ptrace reads only its own.
fn native_arch() -> Result<Arch> {
    if cfg!(target_arch = "x86_64") {
        Ok(Arch::X86_64)
    } else if cfg!(target_arch = "aarch64") {
        Ok(Arch::Aarch64)
    } else {
        anyhow::bail!("live processes are read on x86_64 and aarch64 Linux only")
    }
}

/// Capture process `pid`. The tracer is a thread of its own that ends with
/// the capture: ptrace lets go of a thread only when it is in its stop, and
/// one in uninterruptible sleep may reach it only later; when the tracer
/// thread ends the kernel detaches whatever it still holds, so nothing stays
/// stopped even in a long-running host (a Python program, a debugger).
pub fn capture(pid: u32, opts: &LiveOptions, aopts: &AnalyzeOptions) -> Result<Capture> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (opts, aopts) = (opts.clone(), aopts.clone());
    let deadline = opts.deadline;
    std::thread::Builder::new()
        .name("cgocore-tracer".into())
        // The analysis runs here: the main thread's stack size, not a
        // spawned thread's 2 MiB default.
        .stack_size(16 << 20)
        .spawn(move || {
            let _ = tx.send(capture_on_this_thread(pid, &opts, &aopts));
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the thread that stops process {pid} ({e}): is this user's process limit reached (ulimit -u; the program under study may hold every thread it allows)? Run cgocore as another user, or raise the limit; nothing was done to the process"
            )
        })?;
    match rx.recv_timeout(deadline) {
        Ok(r) => r,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(ptrace::AttachError::Timeout(format!(
            "the capture of process {pid} did not finish within {} s (a read of its memory or /proc blocked: the process is in trouble); it is let go when cgocore exits",
            deadline.as_secs_f64()
        ))
        .into()),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            anyhow::bail!("the capture of process {pid} failed inside cgocore (a bug: please report it); the process was let go")
        }
    }
}

/// The capture, in order: what /proc says while the process runs; the stop
/// and each thread's registers; the read; the release; the finish over the
/// copy.
fn capture_on_this_thread(pid: u32, opts: &LiveOptions, aopts: &AnalyzeOptions) -> Result<Capture> {
    let arch = native_arch()?;
    let mut pre = Running::look(pid, opts)?;
    // Naming C frames needs each library's symbols and debug info: loaded
    // now, while the process runs, not while it is stopped.
    aopts.symbols.warm(&pre.code(), &pre.root);

    let phase = crate::progress::Phase::new(&format!("reading process {pid} (stopped)"), None);
    // Debug info is fetched before the stop, never during it.
    let no_fetching = crate::debuginfod::HoldOff::new();
    let stopped = ptrace::Stopped::stop(pid, opts.stop_timeout)?;
    for u in stopped.unstopped() {
        pre.note.unstopped.push(crate::elf::core::UnstoppedThread {
            tid: u.tid,
            state: u.state.clone(),
            wchan: u.wchan.clone(),
            name: procfs::comm(pid, u.tid),
        });
    }
    let threads = pre.threads(&stopped, arch)?;
    let mem = Arc::new(RecordingMemory::new(pid, opts.max_bytes));
    let process = Process::from_live(LiveParts {
        pid,
        arch,
        exe: pre.exe.clone(),
        threads: threads.clone(),
        maps: pre
            .maps
            .iter()
            .map(|m| (m.path.clone(), m.start, m.end, m.offset))
            .collect(),
        auxv: pre.auxv.clone(),
        mem: Box::new(mem.clone()),
        sysroot: pre.root.clone(),
        command: Some(pre.command.clone()),
        facts: pre.note.clone(),
    })?;
    // While stopped: the threads, Ms and goroutines, and a copy of each
    // goroutine's stack; the goroutines are unwound after the process goes
    // on, from that copy (at 100k goroutines most of the work).
    let t_proc = stopped.elapsed();
    let r = analysis::read(process, aopts);
    // Killed while stopped: what was read is not a state it was in.
    stopped.check_alive()?;
    let mut r = r?;
    if aopts.goroutine_frames || r.has_go_waits() {
        mem.keep_many(&r.goroutine_stacks());
    }
    if std::env::var_os("CGOCORE_TIMING").is_some() {
        eprintln!(
            "cgocore: stopped: registers and binaries {:.1} ms, analysis and copy {:.1} ms",
            t_proc.as_secs_f64() * 1e3,
            (stopped.elapsed() - t_proc).as_secs_f64() * 1e3
        );
    }
    // What a debugger opening the snapshot reads to find the libraries.
    crate::process::linkmap::loaded(&*mem, &r.process.exe, r.process.bias);
    keep_for_debuggers(&mem, &pre.maps);
    if let Some(hold) = opts.hold_stopped {
        std::thread::sleep(hold.min(Duration::from_secs(60)));
    }
    stopped.check_alive()?;
    let stopped_for = stopped.release();
    drop(no_fetching);
    drop(phase);

    mem.freeze();
    pre.note.stopped_ms = stopped_for.as_secs_f64() * 1e3;
    freeze_image(&mut r.process);
    r.process.live = Some(pre.note.clone());
    Ok(Capture {
        analysis: r.finish(None, aopts.goroutine_frames),
        snapshot: Snapshot {
            arch,
            pid,
            command: pre.command,
            threads,
            maps: pre.maps,
            auxv: pre.auxv,
            pages: mem.saved_pages(),
            note: pre.note,
        },
        stopped: stopped_for,
    })
}

/// What /proc tells of the process while it runs (one read each), before
/// it is stopped.
struct Running {
    pid: u32,
    maps: Vec<procfs::Map>,
    auxv: Vec<(u64, u64)>,
    root: Option<PathBuf>,
    exe: PathBuf,
    command: String,
    note: SnapshotNote,
    /// Signal masks of the threads there are now.
    sighold: std::collections::HashMap<u32, u64>,
}

impl Running {
    /// Look at `pid`: there, traceable, free, and Go (refused without
    /// stopping it otherwise).
    fn look(pid: u32, opts: &LiveOptions) -> Result<Running> {
        if !procfs::dir(pid).exists() {
            return Err(ptrace::AttachError::NoSuchProcess(pid).into());
        }
        // Its maps are as private as its memory: refused means no ptrace
        // rights.
        let maps = procfs::maps(pid).map_err(|e| {
            let denied = e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied);
            if denied {
                ptrace::AttachError::permission_denied(pid).into()
            } else {
                e
            }
        })?;
        ptrace::check_free(pid)?;
        let root = opts.sysroot.clone().or_else(|| procfs::root(pid));
        let exe = under_sysroot(&root, &procfs::exe(pid)?.to_string_lossy());
        // Replaced or removed since it started (a deploy): the kernel still
        // holds the file the process runs.
        let exe = if exe.is_file() {
            exe
        } else {
            procfs::dir(pid).join("exe")
        };
        let is_go = |p: &std::path::Path| crate::process::resolve::go_binary_at(p).is_some();
        if !is_go(&exe)
            && !maps.iter().any(|m| {
                m.offset == 0 && m.path.starts_with('/') && is_go(&under_sysroot(&root, &m.path))
            })
        {
            return Err(crate::error::Error::NotGo(format!(
                "process {pid} ({}) is not a Go program, nor is any library it mapped (a Go -buildmode=c-shared library); cgocore explains Go processes",
                exe.display()
            ))
            .into());
        }
        let mut note = SnapshotNote {
            fds: procfs::fds(pid),
            ..Default::default()
        };
        let mut sighold = std::collections::HashMap::new();
        for tid in procfs::tasks(pid)? {
            sighold.insert(tid, procfs::sigblk(pid, tid));
            if let Some(name) = procfs::comm(pid, tid) {
                note.thread_names.insert(tid, name);
            }
        }
        Ok(Running {
            pid,
            auxv: procfs::auxv(pid),
            command: procfs::comm(pid, pid).unwrap_or_default(),
            maps,
            root,
            exe,
            note,
            sighold,
        })
    }

    /// The files of the process's code, on this host.
    fn code(&self) -> Vec<PathBuf> {
        let mut code: Vec<PathBuf> = self
            .maps
            .iter()
            .filter(|m| m.executable && m.path.starts_with('/'))
            .map(|m| under_sysroot(&self.root, &m.path))
            .collect();
        code.sort();
        code.dedup();
        code
    }

    /// Each stopped thread with its registers (a thread started since the
    /// look is named and its mask read now).
    fn threads(&mut self, stopped: &ptrace::Stopped, arch: Arch) -> Result<Vec<Thread>> {
        let pid = self.pid;
        let mut threads = vec![];
        for tid in stopped.tids() {
            // Only a thread killed with its process fails here.
            let regs = |nt, words| {
                ptrace::regset(tid, nt, words).map_err(|e| match stopped.check_alive() {
                    Err(exited) => exited.into(),
                    Ok(()) => e,
                })
            };
            let words = regs(NT_PRSTATUS, 34)?;
            let tls = match arch {
                Arch::Aarch64 => regs(NT_ARM_TLS, 1)?.first().copied(),
                Arch::X86_64 => None,
            };
            let sighold = *self
                .sighold
                .entry(tid)
                .or_insert_with(|| procfs::sigblk(pid, tid));
            if let std::collections::btree_map::Entry::Vacant(e) = self.note.thread_names.entry(tid)
            {
                if let Some(name) = procfs::comm(pid, tid) {
                    e.insert(name);
                }
            }
            threads.push(Thread {
                tid,
                regs: Registers { arch, words, tls },
                signal: None,
                sighold,
            });
        }
        Ok(threads)
    }
}

/// The process image over the frozen copy, where read-only file segments
/// (text, rodata: inline trees, strings) stand in for pages the stopped pass
/// did not read; writable ones never do (the file holds their first values).
fn freeze_image(p: &mut Process) {
    let mut files = crate::memory::SplicedMemory::default();
    files.push_layer(p.exe.readonly_segments(p.bias));
    for lib in &p.libraries {
        files.push_layer(lib.binary.readonly_segments(lib.bias));
    }
    let first = std::mem::replace(
        &mut p.mem,
        Box::new(crate::memory::SplicedMemory::default()),
    );
    p.mem = Box::new(crate::memory::FallbackMemory { first, files });
}

/// Beyond what the analysis read: each file's first page (ELF header and
/// build-id notes), modules' writable data, the vDSO — what a kernel core
/// holds and a debugger opening the snapshot looks for.
fn keep_for_debuggers(mem: &RecordingMemory, maps: &[procfs::Map]) {
    for m in maps {
        let file = m.path.starts_with('/');
        if file && m.offset == 0 {
            mem.keep(m.start, PAGE);
        }
        let small = m.end - m.start <= KEEP_DATA_MAX;
        if (file && m.writable && small) || m.path == "[vdso]" {
            mem.keep(m.start, m.end - m.start);
        }
    }
}
