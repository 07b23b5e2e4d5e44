//! Which binaries a process ran, and where: one resolution for cores, live
//! processes and debugger targets. From the mappings (path and address of
//! each file's first page), the process's own memory, an executable and an
//! optional sysroot, it finds the binary holding the Go runtime (the
//! executable, or a Go library a C program loaded) with its load bias, and
//! the shared libraries whose file segments fill in what a core leaves out.
//! Every binary is checked against the bytes the process mapped.
use super::Library;
use crate::elf::exe::Binary;
use crate::error::Error;
use crate::input::under_sysroot;
use crate::memory::{Memory, ReadExt};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A file mapped at its offset 0 (where its ELF header is).
#[derive(Debug, Clone)]
pub struct Mapping {
    /// The path as the process saw it.
    pub path: String,
    pub start: u64,
    pub end: u64,
}

/// What the resolution starts from.
pub struct Inputs<'a> {
    /// Files mapped at offset 0, in address order.
    pub mappings: &'a [Mapping],
    /// The process's memory as saved or read (no file segments spliced in).
    pub mem: &'a dyn Memory,
    /// The executable on this host: given by the user, or found for them.
    pub exe: PathBuf,
    /// The user named the executable (`--exe`): a mismatch is theirs to fix.
    pub exe_given: bool,
    pub sysroot: &'a Option<PathBuf>,
    /// `AT_ENTRY` and `AT_PHDR` from the auxiliary vector, where known.
    pub at_entry: Option<u64>,
    pub at_phdr: Option<u64>,
    /// How errors name the target: `the core core.123`, `process 42`.
    pub target: String,
}

/// The binaries of the process.
pub struct Resolved {
    /// The binary holding the Go runtime, and its load bias.
    pub go: Binary,
    pub bias: u64,
    pub libraries: Vec<Library>,
    /// What was left out, and why (C frames there stay unnamed).
    pub notes: Vec<String>,
    /// What makes the answer incomplete (no library at all).
    pub warnings: Vec<String>,
}

pub fn resolve(inp: &Inputs) -> Result<Resolved> {
    let (go, bias) = go_module(inp)?;
    let segs = go.segments(bias);
    let range = (
        segs.iter().map(|s| s.vaddr).min().unwrap_or(0),
        segs.iter()
            .map(|s| s.vaddr.saturating_add(s.memsz))
            .max()
            .unwrap_or(0),
    );
    let mut notes = vec![];
    let mut libs = libraries(inp, inp.mappings, range, &mut notes);
    // A core without a mapped-file list (qemu-user writes no NT_FILE) still
    // holds the dynamic linker's own list: read it as gdb does.
    let mut missing = vec![];
    if libs.is_empty() && go.section(".interp").is_some() {
        let from_ld = linkmap_mappings(inp, &go, bias, &mut missing);
        libs = libraries(inp, &from_ld, range, &mut notes);
    }
    // Without the C library every call blocked in it is a bare `busy`: the
    // answer is incomplete, and the fix is the user's to make.
    let libc_found = libs.iter().any(|l| is_c_library(&l.path));
    let named = inp
        .mappings
        .iter()
        .map(|m| m.path.as_str())
        .chain(missing.iter().map(String::as_str));
    let mut warnings = vec![];
    if go.section(".interp").is_some() && !libc_found {
        let which: Vec<&str> = named.filter(|p| is_c_library(p)).collect();
        warnings.push(format!(
            "the C library this dynamically linked program ran with was not found ({}): C frames in it are unnamed and calls blocked there unclassified; pass --sysroot DIR holding the target's libraries (a core from another host or architecture)",
            if which.is_empty() {
                "the core lists no mapped files and the dynamic linker's list could not be read".to_string()
            } else {
                format!("not readable here: {}", which.join(", "))
            }
        ));
    }
    Ok(Resolved {
        go,
        bias,
        libraries: libs,
        notes,
        warnings,
    })
}

/// The executable a core names: the mapping holding `AT_PHDR`, else the
/// string at `AT_EXECFN`.
pub fn named_exe(
    mappings: &[Mapping],
    mem: &dyn Memory,
    at_phdr: Option<u64>,
    at_execfn: Option<u64>,
    sysroot: &Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(m) = at_phdr.and_then(|a| mappings.iter().find(|m| m.start <= a && a < m.end)) {
        return Some(under_sysroot(sysroot, &m.path));
    }
    let s = mem.c_string(at_execfn?, 4096).ok()?;
    Some(under_sysroot(sysroot, &s))
}

/// The binary that holds the Go runtime, and its load bias: the executable,
/// or, when the executable is not Go (a C or Python program that loaded a Go
/// library built with `-buildmode=c-shared`), the mapped library with a
/// `.go.buildinfo`. The executable given may name either.
fn go_module(inp: &Inputs) -> Result<(Binary, u64)> {
    let exe = Binary::open(&inp.exe).map_err(|e| Error::Io {
        path: inp.exe.clone(),
        what: if inp.exe_given {
            format!("cannot read the executable: {e:#}")
        } else {
            format!(
                "cannot read the executable the process ran ({e:#}); pass --exe, or --sysroot for a core from another host"
            )
        },
    })?;
    if !is_go(&exe) {
        if let Some(found) = mapped_go_library(inp, &exe) {
            return Ok(found);
        }
    }
    if !exe.is_pie {
        verify_match(&exe, 0, inp)?;
        return Ok((exe, 0));
    }
    // A position-independent executable is where AT_ENTRY says; a shared
    // library (or an executable a debugger lists) where a mapping of the same
    // file is, by name, else by its ELF header's bytes (a core made elsewhere
    // names another path).
    let name = inp.exe.file_name();
    let mut biases: Vec<u64> = inp
        .at_entry
        .map(|entry| entry.wrapping_sub(exe.entry))
        .into_iter()
        .collect();
    let by_name = inp
        .mappings
        .iter()
        .filter(|m| Path::new(&m.path).file_name() == name);
    let by_header = inp
        .mappings
        .iter()
        .filter(|m| Path::new(&m.path).file_name() != name && header_at(inp.mem, &exe, m.start));
    biases.extend(
        by_name
            .chain(by_header)
            .filter_map(|m| bias_at(&exe, m.start)),
    );
    let Some(&first) = biases.first() else {
        return Err(Error::WrongBinary {
            binary: exe.path().to_path_buf(),
            target: inp.target.clone(),
            detail: "it is position-independent, but nothing says where it is loaded (no NT_AUXV, no mapping of it)".into(),
        }
        .into());
    };
    match biases.iter().find(|&&b| verify_match(&exe, b, inp).is_ok()) {
        Some(&b) => Ok((exe, b)),
        None => verify_match(&exe, first, inp).map(|()| (exe, first)),
    }
}

/// A mapped library that is Go. Never the executable itself (the mapping of
/// `AT_PHDR`, or of the executable's path): a non-Go executable given for a
/// Go executable's core is the wrong binary, and is refused as such.
fn mapped_go_library(inp: &Inputs, exe: &Binary) -> Option<(Binary, u64)> {
    let is_exe = |m: &Mapping| {
        inp.at_phdr.is_some_and(|a| m.start <= a && a < m.end)
            || header_at(inp.mem, exe, m.start) && exe.is_pie
    };
    inp.mappings
        .iter()
        .filter(|m| m.path.starts_with('/') && !crate::input::is_device_path(&m.path) && !is_exe(m))
        .find_map(|m| {
            let bin = go_binary_at(&under_sysroot(inp.sysroot, &m.path))?;
            let bias = bias_at(&bin, m.start)?;
            verify_match(&bin, bias, inp).ok()?;
            Some((bin, bias))
        })
}

/// Shared libraries the process mapped: their file segments fill in what a
/// core leaves out (text, rodata). A library that is missing or differs from
/// the one the process mapped (its ELF header in memory) is left out with a
/// note.
fn libraries(
    inp: &Inputs,
    mappings: &[Mapping],
    go_range: (u64, u64),
    notes: &mut Vec<String>,
) -> Vec<Library> {
    let mut seen = std::collections::HashSet::new();
    let mut out = vec![];
    for m in mappings {
        // The Go binary is already placed, whatever path the user gave.
        let is_go = go_range.0 <= m.start && m.start < go_range.1;
        if is_go
            || !m.path.starts_with('/')
            || crate::input::is_device_path(&m.path)
            || !seen.insert(&m.path)
        {
            continue;
        }
        let path = under_sysroot(inp.sysroot, &m.path);
        // Data files are mapped too (locale archives, databases): only ELF
        // files are libraries, and nothing they name is ever decompressed.
        if !is_elf_file(&path) {
            if m.path.contains(".so") {
                notes.push(format!("library {} not readable (use --sysroot for a core from another host); its C frames are unnamed", path.display()));
            }
            continue;
        }
        let Ok(bin) = Binary::open(&path) else {
            continue;
        };
        let Some(bias) = bias_at(&bin, m.start) else {
            continue;
        };
        let hdr = bin.header_bytes();
        let mut in_mem = vec![0u8; hdr.len()];
        if inp.mem.read(m.start, &mut in_mem).is_ok() && in_mem != hdr {
            notes.push(format!(
                "library {} differs from the one the process mapped; left out",
                path.display()
            ));
            continue;
        }
        out.push(Library {
            path: m.path.clone(),
            binary: bin,
            bias,
        });
    }
    out
}

/// The libraries the dynamic linker's `link_map` list names, as mappings of
/// their ELF headers. Each is kept only where the file agrees with the list:
/// its `.dynamic` must be where the list says (`l_addr` + its address), as
/// the ELF header is checked later where the core saved that page.
fn linkmap_mappings(
    inp: &Inputs,
    go: &Binary,
    bias: u64,
    missing: &mut Vec<String>,
) -> Vec<Mapping> {
    let mut out = vec![];
    for obj in super::linkmap::loaded(inp.mem, go, bias) {
        if !obj.name.starts_with('/') {
            continue; // the executable (""), or the vdso by its soname
        }
        let path = under_sysroot(inp.sysroot, &obj.name);
        let Some(bin) = is_elf_file(&path)
            .then(|| Binary::open(&path).ok())
            .flatten()
        else {
            missing.push(obj.name);
            continue;
        };
        let agrees = bin
            .section(".dynamic")
            .is_some_and(|(addr, _)| addr.wrapping_add(obj.bias) == obj.dynamic);
        let first = {
            use object::{Object, ObjectSegment};
            bin.object().segments().map(|s| s.address()).min()
        };
        if let (true, Some(first)) = (agrees, first) {
            let start = obj.bias.wrapping_add(first & !0xfff);
            out.push(Mapping {
                path: obj.name,
                start,
                end: start.saturating_add(1),
            });
        }
    }
    out.sort_by_key(|m| m.start);
    out
}

/// glibc's or musl's C library (musl's is also its dynamic linker; Alpine
/// names it `libc.musl-x86_64.so.1` too).
pub fn is_c_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.starts_with("libc.") || name.starts_with("libc-") || name.starts_with("ld-musl-")
}

/// Runtime minus link-time address for a binary whose first page is mapped at `hdr`.
pub fn bias_at(bin: &Binary, hdr: u64) -> Option<u64> {
    use object::{Object, ObjectSegment};
    let first = bin.object().segments().map(|s| s.address()).min()?;
    Some(hdr.wrapping_sub(first & !0xfff))
}

/// The bytes at `addr` are this binary's ELF header.
fn header_at(mem: &dyn Memory, bin: &Binary, addr: u64) -> bool {
    let want = bin.header_bytes();
    let mut got = vec![0u8; want.len()];
    mem.read(addr, &mut got).is_ok() && got == want
}

pub fn is_go(bin: &Binary) -> bool {
    bin.section(".go.buildinfo").is_some()
}

/// The ELF file at `path` if it is a Go binary (data files are not parsed).
pub fn go_binary_at(path: &Path) -> Option<Binary> {
    is_elf_file(path)
        .then(|| Binary::open(path).ok())
        .flatten()
        .filter(is_go)
}

fn is_elf_file(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    crate::input::open_file(path).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
        && &magic == b"\x7fELF"
}

/// Refuse a binary that is not the one the process ran: compare its note
/// sections (Go and GNU build ids) with the bytes at the same addresses in
/// the process's memory.
fn verify_match(exe: &Binary, bias: u64, inp: &Inputs) -> Result<()> {
    for sec in [".note.go.buildid", ".note.gnu.build-id", ".go.buildinfo"] {
        let Some((addr, bytes)) = exe.section(sec) else {
            continue;
        };
        let n = bytes.len().min(256);
        let mut in_mem = vec![0u8; n];
        if inp.mem.read(addr.wrapping_add(bias), &mut in_mem).is_err() {
            continue;
        }
        if in_mem != bytes[..n] {
            return Err(Error::WrongBinary {
                binary: exe.path().to_path_buf(),
                target: inp.target.clone(),
                detail: format!(
                    "its {sec} differs from the bytes the process mapped at that address. Pass the exact binary that produced it with --exe"
                ),
            }
            .into());
        }
        return Ok(());
    }
    Err(Error::WrongBinary {
        binary: exe.path().to_path_buf(),
        target: inp.target.clone(),
        detail: "none of its build-id notes or .go.buildinfo is in the process's memory at the expected address (wrong binary, or a wrong load address)".into(),
    }
    .into())
}
