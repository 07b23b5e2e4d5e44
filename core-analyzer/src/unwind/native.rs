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

/// The registers C unwinding needs; `lr` only on arm64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub pc: u64,
    pub sp: u64,
    pub fp: u64,
    pub lr: u64,
}

enum Inner {
    X86(UnwinderX86_64<Bytes>, std::cell::RefCell<CacheX86_64>),
    Arm(UnwinderAarch64<Bytes>, std::cell::RefCell<CacheAarch64>),
}

pub struct NativeUnwinder {
    inner: Inner,
}

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
        NativeUnwinder { inner }
    }

    /// One C frame: the caller's registers, `Ok(None)` at the outermost frame.
    /// `first` is true when `regs.pc` is not a return address.
    pub fn step(&self, mem: &dyn Memory, regs: &Regs, first: bool) -> Result<Option<Regs>, String> {
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
