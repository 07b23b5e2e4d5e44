//! arm64 C frames by their DWARF CFI, evaluated exactly (gimli): the
//! canonical frame address, the return address and x29 from each row's
//! rules. framehop reduces such rows to frame-pointer walks, which end the
//! stack at a zero saved x29 — what Go's `asmcgocall` leaves below a C call
//! built with frame pointers (clang, zig) — and take fp + 16 for the
//! caller's SP, where `asmcgocall`'s saved g is found from the exact CFA.
use super::native::Regs;
use crate::memory::{Memory, ReadExt};
use gimli::{
    BaseAddresses, CfaRule, EhFrame, EhFrameHdr, LittleEndian, ParsedEhFrameHdr, Register,
    RegisterRule, UnwindContext, UnwindSection,
};
use std::ops::Range;
use std::sync::Arc;

/// One module's `.eh_frame` and its search table.
pub struct ModuleCfi {
    /// Runtime addresses of its code.
    pub text: Range<u64>,
    pub bias: u64,
    /// The sections' bytes, shared with the binary (read once per binary).
    eh_frame: Arc<[u8]>,
    eh_frame_hdr: Arc<[u8]>,
    bases: BaseAddresses,
    /// gimli's row evaluator, reused frame after frame (it is kilobytes).
    ctx: std::cell::RefCell<Box<UnwindContext<usize>>>,
}

const SP: u16 = 31;
const FP: u16 = 29;
const LR: u16 = 30;

impl ModuleCfi {
    pub fn new(
        text: Range<u64>,
        bias: u64,
        eh_frame: (u64, Arc<[u8]>),
        eh_frame_hdr: (u64, Arc<[u8]>),
        text_svma: Option<u64>,
    ) -> Option<ModuleCfi> {
        let mut bases = BaseAddresses::default()
            .set_eh_frame(eh_frame.0)
            .set_eh_frame_hdr(eh_frame_hdr.0);
        if let Some(t) = text_svma {
            bases = bases.set_text(t);
        }
        let m = ModuleCfi {
            text,
            bias,
            eh_frame: eh_frame.1,
            eh_frame_hdr: eh_frame_hdr.1,
            bases,
            ctx: Default::default(),
        };
        m.hdr()?.table()?;
        Some(m)
    }

    /// A worker's own copy: the same sections, its own evaluator.
    pub fn fork(&self) -> ModuleCfi {
        ModuleCfi {
            text: self.text.clone(),
            bias: self.bias,
            eh_frame: self.eh_frame.clone(),
            eh_frame_hdr: self.eh_frame_hdr.clone(),
            bases: self.bases.clone(),
            ctx: Default::default(),
        }
    }

    fn hdr(&self) -> Option<ParsedEhFrameHdr<gimli::EndianSlice<'_, LittleEndian>>> {
        EhFrameHdr::new(&self.eh_frame_hdr, LittleEndian)
            .parse(&self.bases, 8)
            .ok()
    }

    /// The caller of the frame at `regs` (`first`: `regs.pc` is the
    /// interrupted instruction, not a return address). `None` when this
    /// module has no row for the pc; `Some(None)` at the outermost frame.
    pub fn step(&self, mem: &dyn Memory, regs: &Regs, first: bool) -> Option<Option<Regs>> {
        let lookup = if first {
            regs.pc
        } else {
            regs.pc.checked_sub(1)?
        };
        let svma = lookup.wrapping_sub(self.bias);
        let hdr = self.hdr()?;
        let table = hdr.table()?;
        let eh = EhFrame::new(&self.eh_frame, LittleEndian);
        let mut ctx = self.ctx.borrow_mut();
        let row = table
            .unwind_info_for_address(&eh, &self.bases, &mut ctx, svma, EhFrame::cie_from_offset)
            .ok()?;
        let reg = |r: u16| match r {
            SP => Some(regs.sp),
            FP => Some(regs.fp),
            LR => Some(regs.lr),
            _ => None,
        };
        let cfa = match row.cfa() {
            CfaRule::RegisterAndOffset { register, offset } => {
                reg(register.0)?.checked_add_signed(*offset)?
            }
            CfaRule::Expression(_) => return None,
        };
        // A register's value in the caller: no rule keeps it (the
        // default); `Some(None)` when the rule says it is undefined.
        let value = |r: u16| -> Option<Option<u64>> {
            Some(match row.register(Register(r)) {
                None | Some(RegisterRule::SameValue) => reg(r),
                Some(RegisterRule::Undefined) => None,
                Some(RegisterRule::Offset(o)) => Some(mem.u64(cfa.checked_add_signed(o)?).ok()?),
                Some(RegisterRule::ValOffset(o)) => Some(cfa.checked_add_signed(o)?),
                Some(RegisterRule::Register(other)) => reg(other.0),
                Some(_) => return None,
            })
        };
        // The return address is where x30 was saved, or x30 itself (a leaf,
        // or before the prologue saved it: only in the first frame).
        let saved_lr = !matches!(
            row.register(Register(LR)),
            None | Some(RegisterRule::SameValue)
        );
        if !saved_lr && !first {
            return None;
        }
        let Some(pc) = value(LR)?.filter(|&pc| pc != 0) else {
            return Some(None);
        };
        let fp = value(FP)?.unwrap_or(regs.fp);
        if cfa < regs.sp {
            return None;
        }
        Some(Some(Regs {
            pc,
            sp: cfa,
            fp,
            lr: pc,
        }))
    }
}
