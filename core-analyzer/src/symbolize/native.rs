//! Names for C code: ELF `.symtab`/`.dynsym` (of the module and of its
//! detached debug file), DWARF lines and inlined calls through addr2line.
//! Built once per module, on its first frame.
use super::demangle::demangle;
use crate::elf::exe::Binary;
use object::{Object, ObjectSymbol, SymbolKind};
use rustc_hash::FxHashMap as HashMap;
use std::sync::{Arc, Mutex};

type Reader = gimli::EndianArcSlice<gimli::RunTimeEndian>;

/// One frame of a native pc: inlined calls first, the real function last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeFrame {
    pub function: Option<Arc<str>>,
    pub file: Option<Arc<str>>,
    pub line: Option<u32>,
    pub inlined: bool,
}

/// Bytes an unsized symbol is taken to cover at most (musl's `memset`, its
/// last exported function, is followed by its hidden syscall stubs).
const UNSIZED_MAX: u64 = 64;

struct Sym {
    addr: u64,
    size: u64,
    name: String,
}

/// Addresses whose DWARF frames are kept (a bound on the memo's memory).
const FOUND_MAX: usize = 1 << 16;

pub struct NativeSymbols {
    /// Sorted by address; link-time addresses.
    syms: Vec<Sym>,
    /// Sized data objects (locks, globals), sorted by address.
    data: Vec<Sym>,
    /// Behind a lock: addr2line parses units lazily, and threads are
    /// unwound on all cores.
    dwarf: Option<Mutex<addr2line::Context<Reader>>>,
    /// The frames already found at each address: a core of 10,000 threads
    /// has them all in the same few C functions.
    found: Mutex<HashMap<u64, Vec<NativeFrame>>>,
    /// What could not be used (an implausible section), for the report.
    pub warnings: Vec<String>,
}

impl NativeSymbols {
    /// `debug` is the detached debug file (`/usr/lib/debug/.build-id/…`), if any.
    pub fn load(binary: &Binary, debug: Option<&Binary>) -> NativeSymbols {
        let mut syms = vec![];
        let mut data = vec![];
        for (i, b) in std::iter::once(binary).chain(debug).enumerate() {
            let obj = b.object();
            if i == 0 {
                // The debug file's sections are empty: stubs are the binary's.
                syms.extend(
                    super::plt::stubs(&obj)
                        .into_iter()
                        .map(|(addr, size, name)| Sym { addr, size, name }),
                );
            }
            for s in obj.symbols().chain(obj.dynamic_symbols()) {
                if s.kind() == SymbolKind::Data && s.address() != 0 && s.size() > 0 {
                    if let Ok(n) = s.name() {
                        data.push(Sym {
                            addr: s.address(),
                            size: s.size(),
                            name: n.to_string(),
                        });
                    }
                    continue;
                }
                if s.kind() != SymbolKind::Text || s.address() == 0 {
                    continue;
                }
                if let Ok(n) = s.name() {
                    if !n.is_empty() {
                        syms.push(Sym {
                            addr: s.address(),
                            size: s.size(),
                            name: n.to_string(),
                        });
                    }
                }
            }
        }
        // Prefer sized, then public-looking names at the same address.
        syms.sort_by(|a, b| {
            (a.addr, a.size == 0, a.name.starts_with('_'), a.name.len()).cmp(&(
                b.addr,
                b.size == 0,
                b.name.starts_with('_'),
                b.name.len(),
            ))
        });
        syms.dedup_by_key(|s| s.addr);
        data.sort_by_key(|s| (s.addr, s.name.starts_with('_')));
        data.dedup_by_key(|s| s.addr);
        let dwarf = debug
            .and_then(dwarf_context)
            .or_else(|| dwarf_context(binary))
            .map(Mutex::new);
        let warnings = std::iter::once(binary)
            .chain(debug)
            .flat_map(|b| b.refused())
            .collect();
        NativeSymbols {
            syms,
            data,
            dwarf,
            found: Default::default(),
            warnings,
        }
    }

    /// No names at all (a module that could not be read).
    pub fn empty() -> NativeSymbols {
        NativeSymbols {
            syms: vec![],
            data: vec![],
            dwarf: None,
            found: Default::default(),
            warnings: vec![],
        }
    }

    /// The symbol whose function holds `svma`. One without a size (assembly
    /// without `.size`, as in musl) holds only up to the next symbol, and
    /// not beyond `UNSIZED_MAX` (a library's hidden functions often follow
    /// its last exported one).
    fn symbol(&self, svma: u64) -> Option<&Sym> {
        let i = self.syms.partition_point(|s| s.addr <= svma);
        let s = self.syms.get(i.checked_sub(1)?)?;
        let end = match s.size {
            0 => {
                let next = self.syms.get(i).map_or(u64::MAX, |n| n.addr);
                next.min(s.addr.saturating_add(UNSIZED_MAX))
            }
            n => s.addr.saturating_add(n),
        };
        (svma < end).then_some(s)
    }

    /// The nearest symbol at or before `svma`, whatever its size, and the
    /// offset from it (demangled).
    pub fn nearest(&self, svma: u64) -> Option<(String, u64)> {
        let i = self.syms.partition_point(|s| s.addr <= svma);
        let s = self.syms.get(i.checked_sub(1)?)?;
        Some((demangle(&s.name), svma - s.addr))
    }

    /// Frames for `svma` (a link-time address already adjusted to point into
    /// the call instruction for return addresses).
    pub fn lookup(&self, svma: u64) -> Vec<NativeFrame> {
        let found = || self.found.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = found().get(&svma) {
            return f.clone();
        }
        let frames = self.find(svma);
        let mut found = found();
        if found.len() < FOUND_MAX {
            found.insert(svma, frames.clone());
        }
        frames
    }

    fn find(&self, svma: u64) -> Vec<NativeFrame> {
        let mut out = match &self.dwarf {
            Some(ctx) => dwarf_frames(&ctx.lock().unwrap_or_else(|e| e.into_inner()), svma),
            None => vec![],
        };
        if let Some(last) = out.last_mut() {
            last.inlined = false;
        }
        let sym = self.symbol(svma).map(|s| Arc::from(demangle(&s.name)));
        match out.last_mut() {
            Some(f) if f.function.is_none() => f.function = sym,
            Some(_) => {}
            None => out.push(NativeFrame {
                function: sym,
                file: None,
                line: None,
                inlined: false,
            }),
        }
        out
    }

    /// The data object containing `svma`, and the offset into it.
    pub fn data_symbol(&self, svma: u64) -> Option<(&str, u64)> {
        let i = self.data.partition_point(|s| s.addr <= svma);
        let s = self.data.get(i.checked_sub(1)?)?;
        (svma < s.addr.saturating_add(s.size)).then(|| (s.name.as_str(), svma - s.addr))
    }

    /// Link-time start address of the function containing `svma`.
    pub fn function_start(&self, svma: u64) -> Option<(u64, &str)> {
        self.symbol(svma).map(|s| (s.addr, s.name.as_str()))
    }
}

/// The frames DWARF gives at `svma`, inlined calls first.
fn dwarf_frames(ctx: &addr2line::Context<Reader>, svma: u64) -> Vec<NativeFrame> {
    let mut out = vec![];
    if let Ok(mut it) = ctx.find_frames(svma).skip_all_loads() {
        while let Ok(Some(f)) = it.next() {
            out.push(NativeFrame {
                function: f
                    .function
                    .as_ref()
                    .and_then(|n| n.raw_name().ok())
                    .map(|n| Arc::from(demangle(&n))),
                file: f.location.as_ref().and_then(|l| l.file).map(Arc::from),
                line: f.location.as_ref().and_then(|l| l.line),
                inlined: true,
            });
        }
    }
    out
}

fn dwarf_context(b: &Binary) -> Option<addr2line::Context<Reader>> {
    let obj = b.object();
    obj.section_by_name(".debug_info")?;
    let endian = if obj.is_little_endian() {
        gimli::RunTimeEndian::Little
    } else {
        gimli::RunTimeEndian::Big
    };
    // Names, lines and inlined calls only: locations and frames stay packed.
    let load = |id: gimli::SectionId| -> Result<Reader, gimli::Error> {
        use gimli::SectionId::*;
        let data = match id {
            DebugLoc | DebugLocLists | DebugFrame | DebugPubNames | DebugPubTypes | DebugTypes
            | DebugMacinfo | DebugMacro | DebugCuIndex | DebugTuIndex => Arc::from(&[][..]),
            _ => b.section_bytes(id.name()),
        };
        Ok(gimli::EndianArcSlice::new(data, endian))
    };
    let dwarf = gimli::Dwarf::load(load).ok()?;
    addr2line::Context::from_dwarf(dwarf).ok()
}
