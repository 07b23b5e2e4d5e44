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

/// Whether the instruction before `ret` is a call: x86_64 `call rel32`, or
/// `call r/m64` (`ff /2`, optionally REX-prefixed) of the length its ModRM
/// gives; arm64 `bl` or `blr`.
fn follows_call(mem: &dyn Memory, arch: Arch, ret: u64) -> bool {
    match arch {
        Arch::X86_64 => {
            let mut b = [0u8; 8];
            let Some(start) = ret.checked_sub(8) else {
                return false;
            };
            if mem.read(start, &mut b).is_err() {
                return false;
            }
            if b[3] == 0xe8 {
                return true;
            }
            // ff /2, optionally after a REX prefix, k bytes long, ending at ret.
            (2..=8).any(|k| {
                let at = 8 - k;
                let (op, operand) = if b[at] & 0xf0 == 0x40 {
                    (at + 1, k - 2)
                } else {
                    (at, k - 1)
                };
                op + 1 < 8
                    && b[op] == 0xff
                    && b[op + 1] & 0x38 == 0x10
                    && modrm_len(&b[op + 1..]) == Some(operand)
            })
        }
        Arch::Aarch64 => mem
            .u32(ret.wrapping_sub(4))
            .is_ok_and(|i| i & 0xfc00_0000 == 0x9400_0000 || i & 0xffff_fc1f == 0xd63f_0000),
    }
}

/// Where the direct call just before return address `ret` went: x86_64
/// `call rel32`, arm64 `bl`. `None` for an indirect call.
pub fn direct_call_target(mem: &dyn Memory, arch: Arch, ret: u64) -> Option<u64> {
    match arch {
        Arch::X86_64 => {
            let op = mem.u8(ret.checked_sub(5)?).ok()?;
            let rel = mem.u32(ret.checked_sub(4)?).ok()? as i32;
            (op == 0xe8).then(|| ret.wrapping_add_signed(rel as i64))
        }
        Arch::Aarch64 => {
            let at = ret.checked_sub(4)?;
            let insn = mem.u32(at).ok()?;
            (insn & 0xfc00_0000 == 0x9400_0000).then(|| {
                let imm = ((insn & 0x03ff_ffff) << 6) as i32 >> 6;
                at.wrapping_add_signed(imm as i64 * 4)
            })
        }
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
        // mov $60,%al | mov $60,%eax, then syscall.
        Arch::X86_64 => {
            let exit_nr = b.windows(2).position(|w| w == [0xb0, 0x3c]).or_else(|| {
                b.windows(5)
                    .position(|w| w == [0xb8, 0x3c, 0x00, 0x00, 0x00])
            });
            exit_nr.is_some_and(|i| b[i..].windows(2).any(|w| w == [0x0f, 0x05]))
        }
        // mov x8, #93 (exit), then svc #0.
        Arch::Aarch64 => {
            let insns: Vec<u32> = b
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            let mov = insns.iter().position(|&i| i == 0xd280_0ba8);
            mov.is_some_and(|i| insns[i..].contains(&0xd400_0001))
        }
    }
}

/// Bytes of a ModRM operand (ModRM, SIB, displacement).
fn modrm_len(b: &[u8]) -> Option<usize> {
    let modrm = *b.first()?;
    let (md, rm) = (modrm >> 6, modrm & 7);
    let mut n = 1;
    let mut base5 = false;
    if md != 3 && rm == 4 {
        base5 = b.get(1)? & 7 == 5;
        n += 1;
    }
    n += match md {
        0 if rm == 5 || base5 => 4,
        1 => 1,
        2 => 4,
        _ => 0,
    };
    Some(n)
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

/// What a search of the stack for a return address found.
pub enum Scan {
    Found(Regs),
    /// The stack's memory ends with no return address: the outermost frame.
    StackTop,
    /// None within the searched window (or not searched: arm64).
    Exhausted,
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
        match self.arch {
            Arch::X86_64 => self.scan_x86_64(mem, regs, callee, accept),
            Arch::Aarch64 => self.scan_arm64(mem, regs, first, callee, accept),
        }
    }

    /// x86_64: a word above the stack pointer that is a return address
    /// (`call` pushes it; the caller's stack pointer is just above it). A
    /// direct call to the callee's own start is preferred: stale return
    /// addresses of earlier calls linger in frames that do not initialize all
    /// they reserve. The frame pointer is left as it was (callee-saved: the
    /// caller's CFI restores it).
    fn scan_x86_64(
        &self,
        mem: &dyn Memory,
        regs: &Regs,
        callee: Option<u64>,
        accept: &dyn Fn(u64) -> bool,
    ) -> Scan {
        let mut top = false;
        let candidates: Vec<(u64, u64)> = (0..SCAN_BYTES / 8)
            .map_while(|i| {
                let slot = regs.sp.checked_add(8 * i)?;
                let v = mem.u64(slot).ok();
                top |= v.is_none();
                Some((slot, v?))
            })
            .filter(|&(_, v)| accept(v) && self.is_return_address(mem, v))
            .collect();
        let found = callee
            .and_then(|c| {
                candidates
                    .iter()
                    .find(|(_, v)| direct_call_target(mem, self.arch, *v) == Some(c))
            })
            .or(candidates.first())
            .copied();
        match found {
            Some((slot, pc)) => Scan::Found(Regs {
                pc,
                sp: slot + 8,
                fp: regs.fp,
                lr: 0,
            }),
            // Nothing up to the end of the stack's memory: the outermost frame.
            None if top => Scan::StackTop,
            None => Scan::Exhausted,
        }
    }

    /// arm64: from the prologue of the function holding `regs.pc`, whose
    /// entry is known three ways: its symbol (`callee`); for the innermost frame of a leaf, the direct `bl`
    /// before x30; else the direct `bl` before a return address on the stack
    /// that this function's prologue stored exactly there. A function entry
    /// must lie at most `MAX_FUNCTION` below the pc, and a return address
    /// cannot lie between the entry it called and the pc (it would be inside
    /// its own callee). Last, the frame record x29 points at (frame-pointer
    /// code whose call was indirect), with fp + 16 for the caller's SP.
    fn scan_arm64(
        &self,
        mem: &dyn Memory,
        regs: &Regs,
        first: bool,
        callee: Option<u64>,
        accept: &dyn Fn(u64) -> bool,
    ) -> Scan {
        use super::prologue::decode;
        let is_ret = |v: u64| accept(v) && self.is_return_address(mem, v);
        let pc = regs.pc;
        let entry_of = |ret: u64| {
            direct_call_target(mem, self.arch, ret)
                .map(|t| super::prologue::through_tail_calls(mem, t))
                .filter(|&t| t <= pc && pc - t < MAX_FUNCTION && !(t..=pc).contains(&ret))
        };
        let found = |(pc, sp, fp): (u64, u64, u64)| Scan::Found(Regs { pc, sp, fp, lr: 0 });
        let lr = if first { regs.lr } else { 0 };
        let from_entry = |entry: u64| {
            let p = decode(mem, entry, pc)?;
            let caller = p.caller(mem, regs.sp, lr, regs.fp)?;
            is_ret(caller.0).then_some(caller)
        };
        if let Some(c) = callee.and_then(from_entry) {
            return found(c);
        }
        if first && is_ret(regs.lr) {
            if let Some(c) = entry_of(regs.lr).and_then(from_entry) {
                return found(c);
            }
        }
        let mut top = false;
        for i in 0..SCAN_BYTES / 8 {
            let Some(slot) = regs.sp.checked_add(8 * i) else {
                break;
            };
            let Ok(v) = mem.u64(slot) else {
                top = true;
                break;
            };
            if !is_ret(v) {
                continue;
            }
            let Some(p) = entry_of(v).and_then(|t| decode(mem, t, pc)) else {
                continue;
            };
            let at = regs
                .sp
                .checked_add(p.drop)
                .and_then(|e| e.checked_sub(p.lr_below?));
            if at == Some(slot) {
                if let Some(c) = p.caller(mem, regs.sp, lr, regs.fp) {
                    return found(c);
                }
            }
        }
        let record = (regs.fp >= regs.sp && regs.fp - regs.sp < SCAN_BYTES)
            .then(|| {
                Some((
                    mem.u64(regs.fp.checked_add(8)?).ok()?,
                    mem.u64(regs.fp).ok()?,
                ))
            })
            .flatten();
        match record {
            Some((ret, fp)) if is_ret(ret) => found((ret, regs.fp.saturating_add(16), fp)),
            _ if top => Scan::StackTop,
            _ => Scan::Exhausted,
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
