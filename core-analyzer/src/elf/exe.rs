//! Executables and shared libraries: sections, symbols, segments, build ids.
use crate::input::{self, Mapped};
use crate::memory::{Segment, SegmentSource};
use anyhow::{bail, Context, Result};
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

pub struct Binary {
    pub file: Arc<Mapped>,
    pub entry: u64,
    pub is_pie: bool,
    symbols: OnceLock<HashMap<String, (u64, u64)>>,
    /// Decompressed sections, shared by every reader (layouts, C line info).
    sections: std::sync::Mutex<HashMap<String, Arc<[u8]>>>,
    /// Sections left out because they claim an implausible size.
    refused: std::sync::Mutex<Vec<String>>,
}

/// Most bytes a compressed section may claim to inflate to: a multiple of
/// its compressed size (zlib cannot do better than ~1032:1) and an absolute
/// cap. The decompressor reserves what the header claims before inflating,
/// so an unbounded claim is unbounded memory.
const MAX_INFLATION: u64 = 1100;
const MAX_SECTION: u64 = 2 << 30;

/// A section's bytes, decompressed only when its claimed size is plausible;
/// a refused one is remembered in `bin` (see `Binary::refused`).
pub fn bounded_uncompressed<'d>(
    bin: &Binary,
    s: &object::Section<'d, '_>,
) -> Option<std::borrow::Cow<'d, [u8]>> {
    use object::ObjectSection;
    let r = s.compressed_file_range().ok()?;
    if r.format != object::CompressionFormat::None {
        let cap = r
            .compressed_size
            .saturating_mul(MAX_INFLATION)
            .min(MAX_SECTION);
        if r.uncompressed_size > cap {
            let what = format!(
                "{}: section {} claims {} bytes compressed into {}; left out (corrupt?)",
                bin.path().display(),
                s.name().unwrap_or("?"),
                r.uncompressed_size,
                r.compressed_size
            );
            bin.refused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(what);
            return None;
        }
    }
    s.uncompressed_data().ok()
}

impl Binary {
    pub fn open(path: &Path) -> Result<Binary> {
        let file = input::open(path)?;
        let obj = object::File::parse(&file.map[..]).with_context(|| {
            format!("{} is not an executable this tool can read", path.display())
        })?;
        if obj.kind() == object::ObjectKind::Core {
            bail!("{} is a core file, not an executable", path.display());
        }
        let entry = obj.entry();
        let is_pie = obj.kind() == object::ObjectKind::Dynamic;
        Ok(Binary {
            file: file.clone(),
            entry,
            is_pie,
            symbols: OnceLock::new(),
            sections: Default::default(),
            refused: Default::default(),
        })
    }

    /// Record that part of this binary was left out as implausible.
    pub fn refuse(&self, what: String) {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }

    /// What was left out of this binary as implausible, for the report.
    pub fn refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn object(&self) -> object::File<'_> {
        // Parsed successfully in `open`; the bytes do not change.
        object::File::parse(&self.file.map[..]).expect("binary parsed once already")
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// `.symtab` (else `.dynsym`) names to (address, size), link-time addresses.
    pub fn symbols(&self) -> &HashMap<String, (u64, u64)> {
        self.symbols.get_or_init(|| {
            let obj = self.object();
            let mut m = HashMap::new();
            for s in obj.symbols().chain(obj.dynamic_symbols()) {
                if let Ok(n) = s.name() {
                    if !n.is_empty() {
                        m.entry(n.to_string()).or_insert((s.address(), s.size()));
                    }
                }
            }
            m
        })
    }

    pub fn symbol(&self, name: &str) -> Option<(u64, u64)> {
        self.symbols().get(name).copied()
    }

    pub fn has_symtab(&self) -> bool {
        self.object().symbols().next().is_some()
    }

    /// Section bytes from the file and its link-time address. ELF names
    /// (`.gopclntab`) also find the Mach-O sections Go writes (`__gopclntab`).
    pub fn section(&self, name: &str) -> Option<(u64, &[u8])> {
        // Bytes borrowed from the mmap outlive the temporary object::File.
        let data: &[u8] = &self.file.map;
        let obj = object::File::parse(data).ok()?;
        let s = find_section(&obj, name)?;
        let (off, size) = s.file_range()?;
        Some((s.address(), data.get(off as usize..(off + size) as usize)?))
    }

    /// A section's bytes, decompressed once (DWARF in Go binaries is zlib'd);
    /// empty when the binary lacks it or it cannot be decompressed.
    pub fn section_bytes(&self, name: &str) -> Arc<[u8]> {
        let mut cache = self.sections.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = cache.get(name) {
            return b.clone();
        }
        let obj = self.object();
        let b: Arc<[u8]> = obj
            .section_by_name(name)
            .and_then(|s| bounded_uncompressed(self, &s))
            .map(|d| Arc::from(&*d))
            .unwrap_or_else(|| Arc::from(&[][..]));
        cache.insert(name.to_string(), b.clone());
        b
    }

    pub fn section_range(&self, name: &str) -> Option<(u64, u64)> {
        let obj = self.object();
        let s = find_section(&obj, name)?;
        Some((s.address(), s.address() + s.size()))
    }

    /// GNU build id, if the binary has one.
    pub fn build_id(&self) -> Option<Vec<u8>> {
        self.object().build_id().ok().flatten().map(|b| b.to_vec())
    }

    /// `PT_LOAD` segments as a memory layer, shifted by `bias`.
    pub fn segments(&self, bias: u64) -> Vec<Segment> {
        let src: SegmentSource = self.file.clone();
        self.object()
            .segments()
            .map(|s| {
                let (off, filesz) = s.file_range();
                Segment {
                    vaddr: s.address().wrapping_add(bias),
                    memsz: s.size(),
                    filesz,
                    offset: off,
                    source: src.clone(),
                    from_core: false,
                }
            })
            .collect()
    }

    /// The read-only segments (text, rodata): what the file and the running
    /// process hold alike.
    pub fn readonly_segments(&self, bias: u64) -> Vec<Segment> {
        use object::{ObjectSegment, SegmentFlags};
        let writable: Vec<bool> = self
            .object()
            .segments()
            .map(|s| match s.flags() {
                SegmentFlags::Elf { p_flags } => p_flags & object::elf::PF_W != 0,
                _ => true,
            })
            .collect();
        self.segments(bias)
            .into_iter()
            .zip(writable)
            .filter(|(_, w)| !w)
            .map(|(s, _)| s)
            .collect()
    }

    /// Link-time address and size of the `PT_TLS` segment template, if any.
    pub fn tls_segment(&self) -> Option<(u64, u64, u64)> {
        use object::read::elf::{FileHeader, ProgramHeader};
        use object::LittleEndian as LE;
        let data: &[u8] = &self.file.map;
        let hdr = object::elf::FileHeader64::<LE>::parse(data).ok()?;
        let e = hdr.endian().ok()?;
        hdr.program_headers(e, data)
            .ok()?
            .iter()
            .find(|p| p.p_type(e) == object::elf::PT_TLS)
            .map(|p| (p.p_vaddr(e), p.p_memsz(e), p.p_align(e)))
    }

    /// The ELF file header and program headers, as they appear in memory at load.
    pub fn header_bytes(&self) -> &[u8] {
        let data: &[u8] = &self.file.map;
        let n = data.len().min(64);
        &data[..n]
    }
}

/// A section by its ELF name, or the Mach-O name Go's linker gives it
/// (`.go.buildinfo` -> `__go_buildinfo`, `.gopclntab` -> `__gopclntab`).
fn find_section<'d, 'f>(obj: &'f object::File<'d>, name: &str) -> Option<object::Section<'d, 'f>> {
    obj.section_by_name(name).or_else(|| {
        let macho = format!("__{}", name.trim_start_matches('.').replace('.', "_"));
        (obj.format() == object::BinaryFormat::MachO)
            .then(|| obj.section_by_name(&macho))
            .flatten()
    })
}

/// The detached debug file of `binary` (`/usr/lib/debug/.build-id/xx/yyyy.debug`,
/// as Debian's `-dbg`/`-dbgsym` packages install them), under `sysroot`;
/// else, for a binary without DWARF of its own, from a debuginfod server
/// when one is configured (`crate::debuginfod`).
pub fn debug_file(binary: &Binary, sysroot: &Option<std::path::PathBuf>) -> Option<Binary> {
    let id = binary.build_id()?;
    if id.len() < 2 {
        return None;
    }
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    let rel = format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..]);
    let local = crate::input::under_sysroot(sysroot, &rel);
    let path = if local.exists() || binary.section(".debug_info").is_some() {
        local
    } else {
        let name = binary
            .path()
            .file_name()
            .map_or_else(|| hex.clone(), |n| n.to_string_lossy().into_owned());
        crate::debuginfod::fetch_debuginfo(&id, &name)?
    };
    let dbg = Binary::open(&path).ok()?;
    // A debug file for another build would name the wrong functions.
    (dbg.build_id()? == id).then_some(dbg)
}
