//! The code modules of a process (the executable and each spliced shared
//! library): where their code is mapped, and their C names, loaded lazily and
//! at most once per module.
use super::native::{NativeFrame, NativeSymbols};
use crate::elf::exe::{debug_file, Binary};
use crate::process::Process;
use object::{Object, ObjectSegment, SegmentFlags};
use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// C symbols loaded ahead, by binary path: a live capture loads them while
/// the process still runs, so they cost nothing while it is stopped. The
/// analysis takes each out when a module first needs it and puts it back
/// when done. A clone shares the same cache.
#[derive(Clone, Default)]
pub struct SymbolCache(Arc<Mutex<HashMap<PathBuf, NativeSymbols>>>);

impl SymbolCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, NativeSymbols>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.lock().contains_key(path)
    }

    fn take(&self, path: &Path) -> Option<NativeSymbols> {
        self.lock().remove(path)
    }

    /// Load the symbols of each binary (and its debug file), on all cores.
    pub fn warm(&self, paths: &[PathBuf], sysroot: &Option<PathBuf>) {
        let load = |path: &PathBuf| {
            if let Ok(b) = Binary::open(path) {
                let syms = NativeSymbols::load(&b, debug_file(&b, sysroot).as_ref());
                self.lock().insert(path.clone(), syms);
            }
        };
        std::thread::scope(|s| {
            for path in paths.iter().filter(|p| !self.contains(p)) {
                // No thread to be had: loaded here, one after another.
                if std::thread::Builder::new()
                    .spawn_scoped(s, || load(path))
                    .is_err()
                {
                    load(path);
                }
            }
        });
    }
}

pub struct CodeModule<'a> {
    /// File name as the report shows it (`libc.so.6`).
    pub name: Arc<str>,
    pub binary: &'a Binary,
    /// Runtime address minus link-time address.
    pub bias: u64,
    /// Runtime addresses of its executable segments (lowest to highest).
    pub text: Range<u64>,
    sysroot: Option<PathBuf>,
    debug: OnceLock<Option<Binary>>,
    syms: OnceLock<NativeSymbols>,
    cache: SymbolCache,
}

impl<'a> CodeModule<'a> {
    fn new(
        binary: &'a Binary,
        bias: u64,
        path: &str,
        sysroot: &Option<PathBuf>,
        cache: &SymbolCache,
    ) -> Option<Self> {
        let obj = binary.object();
        let exec = obj.segments().filter(|s| match s.flags() {
            SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_X != 0,
            _ => false,
        });
        let (lo, hi) = exec.fold((u64::MAX, 0), |(lo, hi), s| {
            (
                lo.min(s.address()),
                hi.max(s.address().saturating_add(s.size())),
            )
        });
        (lo < hi).then(|| CodeModule {
            // `server.zst` given for `server`: name the module as it ran.
            name: Arc::from({
                let base = path.rsplit('/').next().unwrap_or(path);
                base.strip_suffix(".zst").unwrap_or(base)
            }),
            binary,
            bias,
            text: lo.wrapping_add(bias)..hi.wrapping_add(bias),
            sysroot: sysroot.clone(),
            debug: OnceLock::new(),
            syms: OnceLock::new(),
            cache: cache.clone(),
        })
    }

    /// The detached debug file, looked up once.
    pub fn debug(&self) -> Option<&Binary> {
        self.debug
            .get_or_init(|| debug_file(self.binary, &self.sysroot))
            .as_ref()
    }

    /// Symbols loaded elsewhere (on another thread), unless already loaded.
    pub fn preload(&self, syms: NativeSymbols) {
        let _ = self.syms.set(syms);
    }

    pub fn symbols(&self) -> &NativeSymbols {
        self.syms.get_or_init(|| {
            self.cache
                .take(self.binary.path())
                .unwrap_or_else(|| NativeSymbols::load(self.binary, self.debug()))
        })
    }

    /// Frames for a runtime `lookup` address (inside the call for return addresses).
    /// A pc no symbol covers (an internal function of a library with only
    /// `.dynsym`) is named after the nearest preceding symbol, else the
    /// module, with the offset: `pthread_cond_wait+0x1c0`, `libc.so.6+0x8edd8`.
    /// Such names are approximate (see `Frame::known_function`).
    pub fn lookup(&self, lookup: u64) -> Vec<NativeFrame> {
        let svma = lookup.wrapping_sub(self.bias);
        let mut frames = self.symbols().lookup(svma);
        if let Some(f) = frames.last_mut().filter(|f| f.function.is_none()) {
            f.function = Some(Arc::from(match self.symbols().nearest(svma) {
                Some((name, off)) => format!("{name}+{off:#x}"),
                None => format!("{}+{svma:#x}", self.name),
            }));
        }
        frames
    }
}

pub struct Modules<'a> {
    list: Vec<CodeModule<'a>>,
}

/// Symbols loaded for an analysis go back to its cache: the next analysis
/// sharing the cache (a live capture's pass over its copy) does not load
/// them again.
impl Drop for Modules<'_> {
    fn drop(&mut self) {
        for m in &mut self.list {
            if let Some(syms) = m.syms.take() {
                m.cache
                    .lock()
                    .entry(m.binary.path().to_path_buf())
                    .or_insert(syms);
            }
        }
    }
}

impl<'a> Modules<'a> {
    pub fn new(process: &'a Process, cache: &SymbolCache) -> Modules<'a> {
        let exe_path = process.exe.path().display().to_string();
        let sysroot = &process.sysroot;
        let mut list: Vec<CodeModule<'a>> =
            CodeModule::new(&process.exe, process.bias, &exe_path, sysroot, cache)
                .into_iter()
                .chain(
                    process.libraries.iter().filter_map(|l| {
                        CodeModule::new(&l.binary, l.bias, &l.path, sysroot, cache)
                    }),
                )
                .collect();
        list.sort_by_key(|m| m.text.start);
        Modules { list }
    }

    /// No module at all: every pc outside Go's text is unnamed C code.
    #[cfg(test)]
    pub fn none() -> Modules<'static> {
        Modules { list: vec![] }
    }

    pub fn find(&self, pc: u64) -> Option<&CodeModule<'a>> {
        let i = self.list.partition_point(|m| m.text.start <= pc);
        let m = self.list.get(i.checked_sub(1)?)?;
        m.text.contains(&pc).then_some(m)
    }

    /// `name+off` for an address inside a module's data object (a lock).
    pub fn data_symbol(&self, addr: u64) -> Option<String> {
        self.list.iter().find_map(|m| {
            let (name, off) = m.symbols().data_symbol(addr.wrapping_sub(m.bias))?;
            Some(if off == 0 {
                name.to_string()
            } else {
                format!("{name}+{off}")
            })
        })
    }

    /// The function starting exactly at `addr` (a PLT stub's `name@plt` too).
    pub fn function_at(&self, addr: u64) -> Option<String> {
        let m = self.find(addr)?;
        let svma = addr.wrapping_sub(m.bias);
        let (start, name) = m.symbols().function_start(svma)?;
        (start == svma).then(|| name.to_string())
    }

    /// Whether the module named `module` (its file name) defines `symbol`
    /// (an address, not an import).
    pub fn defines(&self, module: &str, symbol: &str) -> bool {
        self.list
            .iter()
            .filter(|m| &*m.name == module)
            .any(|m| m.binary.symbol(symbol).is_some_and(|(addr, _)| addr != 0))
    }

    /// What the loaded symbols of every module could not use.
    pub fn warnings(&self) -> Vec<String> {
        self.list
            .iter()
            .filter_map(|m| m.syms.get())
            .flat_map(|s| s.warnings.iter().cloned())
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &CodeModule<'a>> {
        self.list.iter()
    }
}

/// Debug info of the libraries threads are in (libc above all), loading on
/// other cores: decompressing and indexing it is the slowest part of naming C
/// frames, so it starts before anything else and is joined when frames are
/// named.
pub struct Preload(Vec<(u64, std::thread::JoinHandle<NativeSymbols>)>);

impl Preload {
    /// Start loading the symbols of every library (not the executable) that
    /// holds one of `pcs`.
    pub fn start(process: &Process, modules: &Modules, pcs: impl Iterator<Item = u64>) -> Preload {
        let mut hit: Vec<(u64, PathBuf)> = pcs
            .filter_map(|pc| modules.find(pc))
            .filter(|m| !std::ptr::eq(m.binary, &process.exe))
            .filter(|m| !m.cache.contains(m.binary.path()))
            .map(|m| (m.text.start, m.binary.path().to_path_buf()))
            .collect();
        hit.sort();
        hit.dedup();
        Preload(
            hit.into_iter()
                .filter_map(|(start, path)| {
                    let sysroot = process.sysroot.clone();
                    // Its own open of the file: nothing is shared with the
                    // caller. No thread to be had: the module loads its
                    // symbols itself, on its first frame.
                    let h = std::thread::Builder::new()
                        .spawn(move || match Binary::open(&path) {
                            Ok(b) => NativeSymbols::load(&b, debug_file(&b, &sysroot).as_ref()),
                            Err(_) => NativeSymbols::empty(),
                        })
                        .ok()?;
                    Some((start, h))
                })
                .collect(),
        )
    }

    /// Hand the loaded symbols to their modules.
    pub fn finish(self, modules: &Modules) {
        for (start, h) in self.0 {
            if let (Some(m), Ok(syms)) = (modules.find(start), h.join()) {
                m.preload(syms);
            }
        }
    }
}
