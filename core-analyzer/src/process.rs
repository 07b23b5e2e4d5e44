//! A process image to analyze: memory, threads with registers, the executable
//! and its load bias. Built from a core file here; debugger bridges build one
//! from a live target.
use crate::elf::core::{CoreFile, AT_ENTRY, AT_EXECFN, AT_PHDR};
use crate::elf::exe::Binary;
use crate::elf::regs::{Arch, Registers};
use crate::input::under_sysroot;
use crate::memory::{Memory, ReadExt, SplicedMemory};
use anyhow::{bail, Context, Result};
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
}

pub struct Library {
    pub path: String,
    pub binary: Binary,
    pub bias: u64,
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

/// Runtime minus link-time address for a binary whose first page is mapped at `hdr`.
fn bias_at(bin: &Binary, hdr: u64) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let first = bin.object().segments().map(|s| s.address()).min()?;
    Some(hdr.wrapping_sub(first & !0xfff))
}

impl Process {
    /// A process image from a debugger's view of its target.
    pub fn from_target(mut t: TargetDesc, mem: Box<dyn Memory + Send + Sync>) -> Result<Process> {
        let mut exe = Binary::open(&t.exe)
            .with_context(|| format!("cannot read the executable {}", t.exe.display()))?;
        // A C program running a Go library: the library is the Go binary, the
        // program one more module.
        if !is_go(&exe) {
            let go = t.modules.iter().find_map(|(p, _)| {
                let real = under_sysroot(&t.sysroot, p);
                go_binary_at(&real).map(|bin| (real, bin))
            });
            if let Some((path, bin)) = go {
                t.exe = path;
                exe = bin;
            }
        }
        let same = |p: &str| {
            Path::new(p) == t.exe
                || Path::new(p).file_name() == t.exe.file_name()
                    && std::fs::canonicalize(p).ok() == std::fs::canonicalize(&t.exe).ok()
        };
        // The executable by path, else (a core made elsewhere names another
        // path) the mapping whose bytes are this executable's ELF header.
        let header_at = |hdr: u64| {
            let want = exe.header_bytes();
            let mut got = vec![0u8; want.len()];
            mem.read(hdr, &mut got).is_ok() && got == want
        };
        let exe_hdr = t
            .modules
            .iter()
            .find(|(p, _)| same(p))
            .or_else(|| t.modules.iter().find(|(_, hdr)| header_at(*hdr)))
            .map(|(p, hdr)| (p.clone(), *hdr));
        let bias = if exe.is_pie {
            exe_hdr
                .as_ref()
                .and_then(|(_, hdr)| bias_at(&exe, *hdr))
                .context("the debugger does not say where the executable is loaded")?
        } else {
            0
        };
        let mut notes = vec![];
        let mut libraries = vec![];
        for (path, hdr) in &t.modules {
            let is_exe = exe_hdr.as_ref().is_some_and(|(p, _)| p == path);
            if same(path) || is_exe || !path.starts_with('/') {
                continue;
            }
            let real = under_sysroot(&t.sysroot, path);
            match Binary::open(&real) {
                Ok(bin) => {
                    if let Some(bias) = bias_at(&bin, *hdr) {
                        libraries.push(Library {
                            path: path.clone(),
                            binary: bin,
                            bias,
                        });
                    }
                }
                Err(_) => notes.push(format!(
                    "library {} not readable; its C frames are unnamed",
                    real.display()
                )),
            }
        }
        let mut files = SplicedMemory::default();
        files.push_layer(exe.segments(bias));
        for lib in &libraries {
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
            exe,
            bias,
            pid: t.pid,
            signal: None,
            command: None,
            core_writer: None,
            warnings: vec![],
            notes,
            libraries,
            sysroot: t.sysroot,
        })
    }

    pub fn from_core(core_path: &Path, opts: &OpenOptions) -> Result<Process> {
        let mapped = crate::input::open(core_path)?;
        crate::input::prefetch_data(&mapped);
        let core = CoreFile::parse(mapped)?;
        let mut core_only = SplicedMemory::default();
        core_only.push_layer(core.segments.clone());

        let (exe, bias) = go_module(&core, &core_only, opts, core_path)?;

        let mut notes = vec![];
        let exe_segs = exe.segments(bias);
        let exe_range = (
            exe_segs.iter().map(|s| s.vaddr).min().unwrap_or(0),
            exe_segs
                .iter()
                .map(|s| s.vaddr.saturating_add(s.memsz))
                .max()
                .unwrap_or(0),
        );
        let libraries = load_libraries(&core, &core_only, exe_range, &opts.sysroot, &mut notes);
        let mut mem = core_only;
        mem.releasable.push(core.file.clone());
        mem.push_layer(exe_segs);
        for lib in &libraries {
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
            exe,
            bias,
            pid: core.pid,
            signal: core.siginfo.as_ref().map(|s| s.signo),
            command: core.command.clone(),
            core_writer: core.writer,
            warnings: core.warnings.clone(),
            notes,
            libraries,
            sysroot: opts.sysroot.clone(),
        })
    }

    /// Link-time address to runtime address.
    pub fn rt(&self, link_addr: u64) -> u64 {
        link_addr.wrapping_add(self.bias)
    }
}

/// The binary that holds the Go runtime, and its load bias: the executable,
/// or, when the executable is not Go (a C or Python program that loaded a Go
/// library built with `-buildmode=c-shared`), the mapped library with a
/// `.go.buildinfo`. `--exe` may name either: the host program leads to its Go
/// library as the core names it.
fn go_module(
    core: &CoreFile,
    mem: &SplicedMemory,
    opts: &OpenOptions,
    core_path: &Path,
) -> Result<(Binary, u64)> {
    let exe_path = match &opts.exe {
        Some(p) => p.clone(),
        None => find_exe(core, mem, &opts.sysroot)
            .context("the core does not name its executable; pass --exe BINARY")?,
    };
    let exe = Binary::open(&exe_path).with_context(|| {
        format!(
            "cannot read the executable {} (pass --exe, or --sysroot for a core from another host)",
            exe_path.display()
        )
    })?;
    if !is_go(&exe) {
        if let Some(found) = mapped_go_library(core, mem, &opts.sysroot) {
            return Ok(found);
        }
    }
    if !exe.is_pie {
        verify_match(&exe, 0, mem, core_path)?;
        return Ok((exe, 0));
    }
    // A position-independent executable is where AT_ENTRY says; a shared
    // library where the core maps a file of its name.
    let name = exe_path.file_name();
    let mut biases: Vec<u64> = core
        .auxv_get(AT_ENTRY)
        .map(|entry| entry.wrapping_sub(exe.entry))
        .into_iter()
        .collect();
    biases.extend(
        core.files
            .iter()
            .filter(|f| f.offset == 0 && Path::new(&f.path).file_name() == name)
            .filter_map(|f| bias_at(&exe, f.start)),
    );
    let Some(&first) = biases.first() else {
        bail!(
            "{} is position-independent but the core has neither NT_AUXV nor a mapping of it to find its load address",
            exe_path.display()
        );
    };
    match biases
        .iter()
        .find(|&&b| verify_match(&exe, b, mem, core_path).is_ok())
    {
        Some(&b) => Ok((exe, b)),
        None => verify_match(&exe, first, mem, core_path).map(|()| (exe, first)),
    }
}

/// A mapped library (offset 0 of an ELF file in `NT_FILE`) that is Go. Never
/// the executable itself: a non-Go `--exe` for a Go executable's core is the
/// wrong binary, and is refused as such.
fn mapped_go_library(
    core: &CoreFile,
    mem: &SplicedMemory,
    sysroot: &Option<PathBuf>,
) -> Option<(Binary, u64)> {
    let phdr = core.auxv_get(AT_PHDR);
    core.files
        .iter()
        .filter(|f| f.offset == 0 && f.path.starts_with('/') && !f.path.starts_with("/dev/"))
        .filter(|f| !phdr.is_some_and(|a| f.start <= a && a < f.end))
        .find_map(|f| {
            let bin = go_binary_at(&under_sysroot(sysroot, &f.path))?;
            let bias = bias_at(&bin, f.start)?;
            verify_match(&bin, bias, mem, Path::new("")).ok()?;
            Some((bin, bias))
        })
}

fn is_go(bin: &Binary) -> bool {
    bin.section(".go.buildinfo").is_some()
}

/// The ELF file at `path` if it is a Go binary (data files are not parsed).
fn go_binary_at(path: &Path) -> Option<Binary> {
    is_elf_file(path)
        .then(|| Binary::open(path).ok())
        .flatten()
        .filter(is_go)
}

/// The executable, per `NT_FILE` (the mapping holding `AT_PHDR`) or `AT_EXECFN`.
fn find_exe(core: &CoreFile, mem: &SplicedMemory, sysroot: &Option<PathBuf>) -> Option<PathBuf> {
    if let Some(f) = core.auxv_get(AT_PHDR).and_then(|a| core.file_at(a)) {
        return Some(under_sysroot(sysroot, &f.path));
    }
    let execfn = core.auxv_get(AT_EXECFN)?;
    let s = mem.c_string(execfn, 4096).ok()?;
    Some(under_sysroot(sysroot, &s))
}

/// Shared libraries named in `NT_FILE`: the kernel leaves their text and
/// rodata out of the core, so their file segments are spliced in under it. A
/// library that is missing or differs from the one the process mapped (its ELF
/// header in the core's memory) is left out with a note.
fn load_libraries(
    core: &CoreFile,
    core_mem: &SplicedMemory,
    exe_range: (u64, u64),
    sysroot: &Option<PathBuf>,
    notes: &mut Vec<String>,
) -> Vec<Library> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for f in &core.files {
        // The mapping at file offset 0 holds the ELF header; its address gives the
        // bias. The executable is already spliced, whatever path the user gave.
        let is_exe = exe_range.0 <= f.start && f.start < exe_range.1;
        if f.offset != 0
            || is_exe
            || !f.path.starts_with('/')
            || f.path.starts_with("/dev/")
            || !seen.insert(f.path.clone())
        {
            continue;
        }
        let path = under_sysroot(sysroot, &f.path);
        // Data files are mapped too (locale archives, databases): only ELF files
        // are libraries, and nothing from NT_FILE is ever decompressed.
        if !is_elf_file(&path) {
            if f.path.contains(".so") {
                notes.push(format!("library {} not readable (use --sysroot for a core from another host); its C frames are unnamed", path.display()));
            }
            continue;
        }
        let Ok(bin) = Binary::open(&path) else {
            continue;
        };
        use object::{Object, ObjectSegment};
        let Some(first) = bin.object().segments().map(|s| s.address()).min() else {
            continue;
        };
        let bias = f.start.wrapping_sub(first & !0xfff);
        let hdr = bin.header_bytes();
        let mut in_core = vec![0u8; hdr.len()];
        if core_mem.read(f.start, &mut in_core).is_ok() && in_core != hdr {
            notes.push(format!(
                "library {} differs from the one the process mapped; left out",
                path.display()
            ));
            continue;
        }
        out.push(Library {
            path: f.path.clone(),
            binary: bin,
            bias,
        });
    }
    out
}

fn is_elf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && &magic == b"\x7fELF"
}

/// Refuse a binary that is not the one the core ran: compare its note sections
/// (Go and GNU build ids) with the bytes the core saved at the same addresses.
fn verify_match(exe: &Binary, bias: u64, core_mem: &SplicedMemory, core_path: &Path) -> Result<()> {
    for sec in [".note.go.buildid", ".note.gnu.build-id", ".go.buildinfo"] {
        let Some((addr, bytes)) = exe.section(sec) else {
            continue;
        };
        let n = bytes.len().min(256);
        let mut in_core = vec![0u8; n];
        if core_mem
            .read(addr.wrapping_add(bias), &mut in_core)
            .is_err()
        {
            continue;
        }
        if in_core != bytes[..n] {
            bail!(
                "{} does not match the core {}: its {sec} differs from the one in the core's memory. \
                 Pass the exact binary that produced the core with --exe",
                exe.path().display(),
                core_path.display()
            );
        }
        return Ok(());
    }
    bail!(
        "cannot confirm that {} belongs to the core {}: none of its build-id notes or .go.buildinfo is present in the core's memory at the expected address \
         (wrong binary, or a wrong load address)",
        exe.path().display(),
        core_path.display()
    )
}
