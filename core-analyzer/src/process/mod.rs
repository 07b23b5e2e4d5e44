//! A process image to analyze: memory, threads with registers, the Go binary
//! and its load bias, the libraries. Built from a core file here, or from a
//! target a debugger describes; `resolve` finds the binaries for both.
pub mod linkmap;
pub mod resolve;

use crate::elf::core::{CoreFile, AT_ENTRY, AT_EXECFN, AT_PHDR};
use crate::elf::exe::Binary;
use crate::elf::regs::{Arch, Registers};
use crate::error::Error;
use crate::memory::{Memory, SplicedMemory};
use anyhow::Result;
use resolve::{Inputs, Mapping};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Thread {
    pub tid: u32,
    pub regs: Registers,
    /// Signal the thread was stopped with, if any (`pr_cursig`).
    pub signal: Option<u16>,
    /// Signals the thread blocked (`pr_sighold`; kernel and gcore cores both
    /// record it), 0 where unknown (a live target read through a debugger).
    pub sighold: u64,
}

pub struct Process {
    pub mem: Box<dyn Memory + Send + Sync>,
    pub threads: Vec<Thread>,
    pub arch: Arch,
    pub exe: Binary,
    /// Runtime address minus link-time address (non-zero for PIE).
    pub bias: u64,
    pub pid: Option<u32>,
    /// Core-level facts (signal, command) for the report header.
    pub signal: Option<i32>,
    pub command: Option<String>,
    /// `"kernel"` or `"gdb gcore"` for a core whose writer is known.
    pub core_writer: Option<&'static str>,
    /// Problems that make the answer incomplete (a truncated core).
    pub warnings: Vec<String>,
    /// Problems that do not (a library missing for C frames).
    pub notes: Vec<String>,
    /// Shared libraries mapped in the process (from `NT_FILE`), with their bias.
    pub libraries: Vec<Library>,
    /// Where this host finds the target's files (`--sysroot`), for debug files too.
    pub sysroot: Option<PathBuf>,
    /// What a live capture knew beyond memory (fds, thread names, stopped
    /// time): from `cgocore analyze --pid`, or a snapshot's note.
    pub live: Option<crate::elf::core::SnapshotNote>,
}

pub struct Library {
    pub path: String,
    pub binary: Binary,
    pub bias: u64,
}

/// What a live capture hands over to become a process image.
pub struct LiveParts {
    pub pid: u32,
    pub arch: Arch,
    /// The executable on this host (under the process's root in a container).
    pub exe: PathBuf,
    pub threads: Vec<Thread>,
    /// `(path, start, end, file offset)` of every mapping.
    pub maps: Vec<(String, u64, u64, u64)>,
    pub auxv: Vec<(u64, u64)>,
    pub mem: Box<dyn Memory + Send + Sync>,
    pub sysroot: Option<PathBuf>,
    pub command: Option<String>,
    pub facts: crate::elf::core::SnapshotNote,
}

#[derive(Debug, Default, Clone)]
pub struct OpenOptions {
    pub exe: Option<PathBuf>,
    pub sysroot: Option<PathBuf>,
}

/// A live process or a core as a debugger sees it: the faces for gdb and lldb
/// describe it with this and hand over a memory reader.
#[derive(Debug, Clone)]
pub struct TargetDesc {
    pub arch: Arch,
    /// The executable's path on this host.
    pub exe: PathBuf,
    /// Thread id and its registers by name (`rip`, `rsp`, `fs_base`, ... or
    /// `pc`, `sp`, `x0`.. on arm64), for every thread.
    pub threads: Vec<(u32, Vec<(String, u64)>)>,
    /// TLS base per thread where the registers lack it (arm64 `TPIDR_EL0`).
    pub tls: Vec<Option<u64>>,
    /// Loaded modules: path and the address where its ELF header is mapped.
    pub modules: Vec<(String, u64)>,
    pub pid: Option<u32>,
    pub sysroot: Option<PathBuf>,
}

/// The core file mapped: an I/O error is `Error::Io`, anything else
/// (not ELF, a bad .zst) `Error::NotACore`.
fn open_core_file(
    core_path: &Path,
) -> std::result::Result<std::sync::Arc<crate::input::Mapped>, Error> {
    crate::input::open(core_path).map_err(|e| {
        let io = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some());
        if io {
            Error::Io {
                path: core_path.to_path_buf(),
                what: format!("{e:#}"),
            }
        } else {
            Error::NotACore(format!("{e:#}"))
        }
    })
}

/// The executable a core names: the mapping holding `AT_PHDR` (the
/// executable's own mapping is at offset 0 too, but `AT_PHDR` may point past
/// its first page), else the string at `AT_EXECFN`.
fn exe_named_by(
    core: &CoreFile,
    mem: &dyn Memory,
    sysroot: &Option<PathBuf>,
) -> std::result::Result<PathBuf, Error> {
    let all: Vec<Mapping> = core
        .files
        .iter()
        .map(|f| Mapping {
            path: f.path.clone(),
            start: f.start,
            end: f.end,
        })
        .collect();
    resolve::named_exe(
        &all,
        mem,
        core.auxv_get(AT_PHDR),
        core.auxv_get(AT_EXECFN),
        sysroot,
    )
    .ok_or_else(|| Error::Other("the core does not name its executable; pass --exe BINARY".into()))
}

impl Process {
    /// A process image from a debugger's view of its target. The binaries
    /// are resolved and checked as for a core.
    pub fn from_target(t: TargetDesc, mem: Box<dyn Memory + Send + Sync>) -> Result<Process> {
        let mut mappings: Vec<Mapping> = t
            .modules
            .iter()
            .map(|(path, hdr)| Mapping {
                path: path.clone(),
                start: *hdr,
                end: hdr.saturating_add(1),
            })
            .collect();
        mappings.sort_by_key(|m| m.start);
        let r = resolve::resolve(&Inputs {
            mappings: &mappings,
            mem: &*mem,
            exe: t.exe.clone(),
            exe_given: true,
            sysroot: &t.sysroot,
            at_entry: None,
            at_phdr: None,
            target: match t.pid {
                Some(pid) => format!("process {pid}"),
                None => "the debugger's target".into(),
            },
        })?;
        // A debugger reads what the core saved or the process has; the
        // binaries' file segments stand in where it cannot.
        let mut files = SplicedMemory::default();
        files.push_layer(r.go.segments(r.bias));
        for lib in &r.libraries {
            files.push_layer(lib.binary.segments(lib.bias));
        }
        let mem: Box<dyn Memory + Send + Sync> =
            Box::new(crate::memory::FallbackMemory { first: mem, files });
        let threads = t
            .threads
            .iter()
            .enumerate()
            .map(|(i, (tid, regs))| Thread {
                tid: *tid,
                regs: Registers::from_named(t.arch, regs, t.tls.get(i).copied().flatten()),
                signal: None,
                sighold: 0,
            })
            .collect();
        Ok(Process {
            mem,
            threads,
            arch: t.arch,
            exe: r.go,
            bias: r.bias,
            pid: t.pid,
            signal: None,
            command: None,
            core_writer: None,
            warnings: r.warnings,
            notes: r.notes,
            libraries: r.libraries,
            sysroot: t.sysroot,
            live: None,
        })
    }

    /// A stopped live process: its threads, its mappings (`/proc/PID/maps`
    /// as `(path, start, end, offset)`), its memory. Binaries are resolved and
    /// checked as for a core.
    pub fn from_live(live: LiveParts) -> Result<Process> {
        let mappings: Vec<Mapping> = live
            .maps
            .iter()
            .filter(|(path, _, _, offset)| *offset == 0 && path.starts_with('/'))
            .map(|(path, start, end, _)| Mapping {
                path: path.clone(),
                start: *start,
                end: *end,
            })
            .collect();
        let auxv = |k: u64| live.auxv.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let r = resolve::resolve(&Inputs {
            mappings: &mappings,
            mem: &*live.mem,
            exe: live.exe,
            exe_given: false,
            sysroot: &live.sysroot,
            at_entry: auxv(AT_ENTRY),
            at_phdr: auxv(AT_PHDR),
            target: format!("process {}", live.pid),
        })?;
        Ok(Process {
            mem: live.mem,
            threads: live.threads,
            arch: live.arch,
            exe: r.go,
            bias: r.bias,
            pid: Some(live.pid),
            signal: None,
            command: live.command,
            core_writer: Some("live"),
            warnings: r.warnings,
            notes: r.notes,
            libraries: r.libraries,
            sysroot: live.sysroot,
            live: Some(live.facts),
        })
    }

    pub fn from_core(core_path: &Path, opts: &OpenOptions) -> Result<Process> {
        let mapped = open_core_file(core_path)?;
        crate::input::prefetch_data(&mapped);
        let core = CoreFile::parse(mapped).map_err(|e| Error::NotACore(format!("{e:#}")))?;
        // Its headers and notes are read: memory is read through a cache from
        // here on (memory/file.rs), and nothing of the mapping need stay.
        core.file.release();
        let mut core_only = SplicedMemory::default();
        core_only.push_layer(core.segments.clone());

        // NT_FILE: each file's first mapping holds its ELF header.
        let mappings: Vec<Mapping> = core
            .files
            .iter()
            .filter(|f| f.offset == 0)
            .map(|f| Mapping {
                path: f.path.clone(),
                start: f.start,
                end: f.end,
            })
            .collect();
        let (at_phdr, at_entry) = (core.auxv_get(AT_PHDR), core.auxv_get(AT_ENTRY));
        let exe = match &opts.exe {
            Some(p) => p.clone(),
            None => exe_named_by(&core, &core_only, &opts.sysroot)?,
        };
        let r = resolve::resolve(&Inputs {
            mappings: &mappings,
            mem: &core_only,
            exe,
            exe_given: opts.exe.is_some(),
            sysroot: &opts.sysroot,
            at_entry,
            at_phdr,
            target: format!("the core {}", core_path.display()),
        })?;

        let mut mem = core_only;
        mem.push_layer(r.go.segments(r.bias));
        for lib in &r.libraries {
            mem.push_layer(lib.binary.segments(lib.bias));
        }
        let threads = core
            .threads
            .iter()
            .map(|t| Thread {
                tid: t.tid,
                regs: t.regs.clone(),
                signal: (t.signal != 0).then_some(t.signal),
                sighold: t.sighold,
            })
            .collect();
        Ok(Process {
            mem: Box::new(mem),
            threads,
            arch: core.arch,
            exe: r.go,
            bias: r.bias,
            pid: core.pid,
            signal: core.siginfo.as_ref().map(|s| s.signo),
            command: core.command.clone(),
            core_writer: core.writer,
            warnings: core.warnings.iter().chain(&r.warnings).cloned().collect(),
            notes: r.notes,
            libraries: r.libraries,
            sysroot: opts.sysroot.clone(),
            live: core.snapshot.clone(),
        })
    }

    /// Link-time address to runtime address.
    pub fn rt(&self, link_addr: u64) -> u64 {
        link_addr.wrapping_add(self.bias)
    }

    /// The C library the process runs on: its module's file name, or in a
    /// static executable a function only that libc has (musl's
    /// `__init_libc`, glibc's `__libc_setup_tls`); `None` when nothing says.
    pub fn libc(&self) -> Option<Libc> {
        for l in &self.libraries {
            let name = l.path.rsplit('/').next().unwrap_or(&l.path);
            if name.starts_with("ld-musl-") || name.starts_with("libc.musl-") {
                return Some(Libc::Musl);
            }
            if resolve::is_c_library(name) {
                return Some(Libc::Glibc);
            }
        }
        if self.exe.symbol("__init_libc").is_some() {
            Some(Libc::Musl)
        } else if self.exe.symbol("__libc_setup_tls").is_some() {
            Some(Libc::Glibc)
        } else {
            None
        }
    }
}

/// Which C library: where its locks keep their owner differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Libc {
    Glibc,
    Musl,
}
