//! C frames: framehop over each module's `.eh_frame`/`.eh_frame_hdr` (and
//! uncompressed `.debug_frame`), frame pointers where a module has no CFI.
use crate::elf::exe::Binary;
use crate::elf::regs::Arch;
use crate::input::Mapped;
use crate::memory::{Memory, ReadExt};
use crate::symbolize::modules::Modules;
use framehop::aarch64::{CacheAarch64, UnwindRegsAarch64, UnwinderAarch64};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use object::{Object, ObjectSection};
use std::ops::{Deref, Range};
use std::sync::Arc;

pub use super::regs::{Regs, Scan};

/// Section bytes for framehop: a window of the mapped file, or decompressed.
pub enum Bytes {
    Mapped(Arc<Mapped>, Range<usize>),
    Owned(Vec<u8>),
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m, r) => &m.map[r.clone()],
            Bytes::Owned(v) => v,
        }
    }
}

/// Whether the instruction before `ret` is a call.
fn follows_call(mem: &dyn Memory, arch: Arch, ret: u64) -> bool {
    match arch {
        Arch::X86_64 => super::x86_64::follows_call(mem, ret),
        Arch::Aarch64 => super::aarch64::follows_call(mem, ret),
    }
}

/// Where the direct call just before return address `ret` went; `None` for
/// an indirect call.
pub fn direct_call_target(mem: &dyn Memory, arch: Arch, ret: u64) -> Option<u64> {
    match arch {
        Arch::X86_64 => super::x86_64::direct_call_target(mem, ret),
        Arch::Aarch64 => super::aarch64::direct_call_target(mem, ret),
    }
}

/// Whether the code at return address `ret` ends the thread: C libraries
/// start a thread by calling its function from their `clone` wrapper and
/// then make the `exit` syscall (glibc's and musl's `__clone` on both
/// architectures), so that frame is the outermost even without unwind
/// information to say so.
pub fn returns_into_thread_exit(mem: &dyn Memory, arch: Arch, ret: u64) -> bool {
    let mut b = [0u8; 16];
    if mem.read(ret, &mut b).is_err() {
        return false;
    }
    match arch {
        Arch::X86_64 => super::x86_64::exits_thread(&b),
        Arch::Aarch64 => super::aarch64::exits_thread(&b),
    }
}

enum Inner {
    X86(UnwinderX86_64<Bytes>, std::cell::RefCell<CacheX86_64>),
    Arm(UnwinderAarch64<Bytes>, std::cell::RefCell<CacheAarch64>),
}

pub struct NativeUnwinder {
    inner: Inner,
    arch: Arch,
    /// Every module's code (runtime addresses): where a return address may point.
    code: Vec<Range<u64>>,
    /// arm64: each module's CFI, evaluated exactly before framehop's reading.
    cfi: Vec<super::cfi::ModuleCfi>,
    /// arm64: code of modules whose unwind sections only framehop reads
    /// (`.debug_frame`, `.eh_frame` without a search table). Elsewhere code
    /// without CFI is unwound by its prologue, not by framehop's frame-pointer
    /// walk, whose caller SP (fp + 16) is not the caller's.
    framehop_cfi: Vec<Range<u64>>,
}

/// How far above a frame the stack is searched for its return address when
/// the code has no unwind information (musl's libc).
const SCAN_BYTES: u64 = 16 << 10;

/// arm64: how far below a pc its function's entry may be (a direct call's
/// target), for code without symbols or unwind information.
const MAX_FUNCTION: u64 = 64 << 10;

/// Whether every FDE pointer in an `.eh_frame_hdr` search table lands in
/// `.eh_frame`: the unwinder subtracts one from the other, and a corrupt
/// binary must not make that wrap.
fn hdr_table_is_sound(
    hdr: &[u8],
    hdr_svma: &Option<std::ops::Range<u64>>,
    eh_frame: &Option<std::ops::Range<u64>>,
    text: &Option<std::ops::Range<u64>>,
) -> bool {
    use gimli::{BaseAddresses, EhFrameHdr, LittleEndian, Pointer};
    let (Some(hdr_svma), Some(eh_frame)) = (hdr_svma, eh_frame) else {
        return false;
    };
    let mut bases = BaseAddresses::default()
        .set_eh_frame_hdr(hdr_svma.start)
        .set_eh_frame(eh_frame.start);
    if let Some(t) = text {
        bases = bases.set_text(t.start);
    }
    let Ok(parsed) = EhFrameHdr::new(hdr, LittleEndian).parse(&bases, 8) else {
        return false;
    };
    let Some(table) = parsed.table() else {
        return true; // no table: the unwinder does not use one
    };
    let mut it = table.iter(&bases);
    loop {
        match it.next() {
            Ok(Some((_, Pointer::Direct(fde)))) if eh_frame.contains(&fde) => {}
            Ok(None) => return true,
            _ => return false,
        }
    }
}

fn section_info(b: &Binary) -> ExplicitModuleSectionInfo<Bytes> {
    let obj = b.object();
    let svma = |name: &str| {
        obj.section_by_name(name)
            .map(|s| s.address()..s.address() + s.size())
    };
    let data = |name: &str| -> Option<Bytes> {
        let s = obj.section_by_name(name)?;
        match s.compressed_file_range().ok()? {
            r if r.format == object::CompressionFormat::None => {
                let (off, size) = (r.offset as usize, r.uncompressed_size as usize);
                (off.checked_add(size)? <= b.file.map.len())
                    .then(|| Bytes::Mapped(b.file.clone(), off..off + size))
            }
            _ => Some(Bytes::Owned(
                crate::elf::exe::bounded_uncompressed(b, &s)?.into_owned(),
            )),
        }
    };
    let (eh_frame_svma, eh_frame_hdr_svma) = (svma(".eh_frame"), svma(".eh_frame_hdr"));
    let eh_frame_hdr = data(".eh_frame_hdr").filter(|hdr| {
        let ok = hdr_table_is_sound(hdr.as_ref(), &eh_frame_hdr_svma, &eh_frame_svma, &svma(".text"));
        if !ok {
            b.refuse(format!(
                "{}: its .eh_frame_hdr points outside .eh_frame (corrupt?); its C frames unwind by frame pointers",
                b.path().display()
            ));
        }
        ok
    });
    ExplicitModuleSectionInfo {
        base_svma: 0,
        text_svma: svma(".text"),
        text: data(".text"),
        got_svma: svma(".got"),
        eh_frame_svma,
        eh_frame: data(".eh_frame"),
        eh_frame_hdr_svma,
        eh_frame_hdr,
        // Go binaries have only a (compressed) .debug_frame, for Go code, which
        // the pclntab unwinds; C objects bring .eh_frame.
        debug_frame: if obj.section_by_name(".eh_frame").is_some() {
            None
        } else {
            data(".debug_frame")
        },
        stubs_svma: None,
        stub_helper_svma: None,
        unwind_info: None,
        text_segment_svma: None,
        text_segment: None,
    }
}

impl NativeUnwinder {
    pub fn new(arch: Arch, modules: &Modules) -> NativeUnwinder {
        let mods = modules.iter().map(|m| {
            Module::new(
                m.name.to_string(),
                m.text.clone(),
                m.bias,
                section_info(m.binary),
            )
        });
        let inner = match arch {
            Arch::X86_64 => {
                let mut u = UnwinderX86_64::new();
                mods.for_each(|m| u.add_module(m));
                Inner::X86(u, Default::default())
            }
            Arch::Aarch64 => {
                let mut u = UnwinderAarch64::new();
                mods.for_each(|m| u.add_module(m));
                Inner::Arm(u, Default::default())
            }
        };
        let mut code: Vec<Range<u64>> = modules.iter().map(|m| m.text.clone()).collect();
        code.sort_by_key(|r| r.start);
        let cfi = match arch {
            Arch::Aarch64 => modules
                .iter()
                .filter_map(|m| {
                    let (eh_at, _) = m.binary.section_range(".eh_frame")?;
                    let (hdr_at, _) = m.binary.section_range(".eh_frame_hdr")?;
                    super::cfi::ModuleCfi::new(
                        m.text.clone(),
                        m.bias,
                        (eh_at, m.binary.section_bytes(".eh_frame")),
                        (hdr_at, m.binary.section_bytes(".eh_frame_hdr")),
                        m.binary.section(".text").map(|(a, _)| a),
                    )
                })
                .collect(),
            Arch::X86_64 => vec![],
        };
        let framehop_cfi = modules
            .iter()
            .filter(|m| arch == Arch::Aarch64 && !cfi.iter().any(|c| c.text == m.text))
            .filter(|m| {
                m.binary.section(".eh_frame").is_some()
                    || m.binary.section(".debug_frame").is_some()
            })
            .map(|m| m.text.clone())
            .collect();
        NativeUnwinder {
            inner,
            arch,
            code,
            cfi,
            framehop_cfi,
        }
    }

    /// A worker's own unwinder: the same tables (shared), its own caches.
    pub fn fork(&self) -> NativeUnwinder {
        NativeUnwinder {
            inner: match &self.inner {
                Inner::X86(u, _) => Inner::X86(u.clone(), Default::default()),
                Inner::Arm(u, _) => Inner::Arm(u.clone(), Default::default()),
            },
            arch: self.arch,
            code: self.code.clone(),
            cfi: self.cfi.iter().map(|c| c.fork()).collect(),
            framehop_cfi: self.framehop_cfi.clone(),
        }
    }

    /// An unwinder without unwind tables (frame pointers and stack search
    /// only) over code at `code`: for tests on mock memory.
    #[cfg(test)]
    pub fn without_tables(arch: Arch, code: Vec<Range<u64>>) -> NativeUnwinder {
        let inner = match arch {
            Arch::X86_64 => Inner::X86(UnwinderX86_64::new(), Default::default()),
            Arch::Aarch64 => Inner::Arm(UnwinderAarch64::new(), Default::default()),
        };
        NativeUnwinder {
            inner,
            arch,
            code,
            cfi: vec![],
            framehop_cfi: vec![],
        }
    }

    /// A caller the unwinder found is believable: it returns into a module's
    /// code just after a call, and (x86_64) above the callee's stack. On
    /// arm64 the answer comes from CFI (or the prologue) and stands.
    pub fn plausible(&self, mem: &dyn Memory, callee: &Regs, caller: &Regs) -> bool {
        match self.arch {
            Arch::X86_64 => caller.sp > callee.sp && self.is_return_address(mem, caller.pc),
            Arch::Aarch64 => true,
        }
    }

    /// `pc` points into a known module just after a call instruction.
    pub fn is_return_address(&self, mem: &dyn Memory, pc: u64) -> bool {
        let i = self.code.partition_point(|r| r.start <= pc);
        let in_code = i > 0 && self.code[i - 1].contains(&pc.wrapping_sub(1));
        in_code && follows_call(mem, self.arch, pc)
    }

    /// The caller of a frame that has no unwind information, as crash
    /// reporters find it, among return addresses `accept` takes; `callee` is
    /// the start of the function holding `regs.pc`, where a symbol says it.
    pub fn scan(
        &self,
        mem: &dyn Memory,
        regs: &Regs,
        first: bool,
        callee: Option<u64>,
        accept: &dyn Fn(u64) -> bool,
    ) -> Scan {
        let is_ret = |v: u64| accept(v) && self.is_return_address(mem, v);
        match self.arch {
            Arch::X86_64 => super::x86_64::scan(mem, regs, callee, &is_ret, SCAN_BYTES),
            Arch::Aarch64 => super::aarch64::scan(
                mem,
                regs,
                first,
                callee,
                &is_ret,
                (SCAN_BYTES, MAX_FUNCTION),
            ),
        }
    }

    /// One C frame: the caller's registers, `Ok(None)` at the outermost frame.
    /// `first` is true when `regs.pc` is not a return address.
    pub fn step(&self, mem: &dyn Memory, regs: &Regs, first: bool) -> Result<Option<Regs>, String> {
        let at = if first {
            regs.pc
        } else {
            regs.pc.wrapping_sub(1)
        };
        if let Some(found) = self
            .cfi
            .iter()
            .filter(|m| m.text.contains(&at))
            .find_map(|m| m.step(mem, regs, first))
        {
            return Ok(found);
        }
        if self.arch == Arch::Aarch64 && !self.framehop_cfi.iter().any(|t| t.contains(&at)) {
            return Err(format!("no unwind information at {:#x}", regs.pc));
        }
        let addr = if first {
            FrameAddress::from_instruction_pointer(regs.pc)
        } else {
            FrameAddress::from_return_address(regs.pc).ok_or("return address is 0")?
        };
        let mut read = |a: u64| mem.u64(a).map_err(|_| ());
        match &self.inner {
            Inner::X86(u, cache) => {
                let mut r = UnwindRegsX86_64::new(regs.pc, regs.sp, regs.fp);
                let ret = u
                    .unwind_frame(addr, &mut r, &mut cache.borrow_mut(), &mut read)
                    .map_err(|e| e.to_string())?;
                Ok(ret.map(|pc| Regs {
                    pc,
                    sp: r.sp(),
                    fp: r.bp(),
                    lr: 0,
                }))
            }
            Inner::Arm(u, cache) => {
                let mut r = UnwindRegsAarch64::new(regs.lr, regs.sp, regs.fp);
                let ret = u
                    .unwind_frame(addr, &mut r, &mut cache.borrow_mut(), &mut read)
                    .map_err(|e| e.to_string())?;
                Ok(ret.map(|pc| Regs {
                    pc,
                    sp: r.sp(),
                    fp: r.fp(),
                    lr: r.lr(),
                }))
            }
        }
    }
}
