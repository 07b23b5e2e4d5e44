//! arm64 `crosscall2`: the entry from C into Go keeps a C-style frame that
//! Go's pclntab does not describe. It is `NOFRAME`: it lowers SP by a
//! constant (`SUB $(8*24), RSP`) and stores its C caller's frame pointer and
//! link register at an offset in that frame (`STP (R29, R30), (8*22)(RSP)`),
//! not at 0(RSP) where Go keeps a return address. Both numbers are read from
//! the binary's own instructions, so each Go release's assembly speaks for
//! itself (x86_64's `crosscall2` pushes a return address as Go frames do).
use crate::memory::{Memory, ReadExt};

/// Instructions of the prologue examined, at most.
const PROLOGUE: u64 = 16;

/// How `crosscall2`'s frame is laid out, from its prologue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes `SUB sp, sp, #n` takes.
    pub size: u64,
    /// Offset from the lowered SP of the saved x29 (x30 follows it).
    pub fp_lr: u64,
    /// Address of the first instruction after that store: only from there on
    /// is the frame complete.
    pub ready_at: u64,
}

/// Decode the prologue at `entry`.
pub fn frame(mem: &dyn Memory, entry: u64) -> Option<Frame> {
    let mut size = None;
    for i in 0..PROLOGUE {
        let at = entry.checked_add(4 * i)?;
        let insn = mem.u32(at).ok()?;
        // SUB sp, sp, #imm12{, lsl #12}: 1 1 0 100010 sh imm12 11111 11111
        if insn & 0xff80_03ff == 0xd100_03ff && size.is_none() {
            let imm = ((insn >> 10) & 0xfff) as u64;
            size = Some(if insn & (1 << 22) != 0 {
                imm << 12
            } else {
                imm
            });
            continue;
        }
        // STP x29, x30, [sp, #imm7*8] (signed offset, 64-bit): 1010100100 imm7 11110 11111 11101
        if insn & 0xffc0_7fff == 0xa900_7bfd {
            let imm7 = ((insn >> 15) & 0x7f) as i64;
            let off = ((imm7 << 57) >> 57) * 8;
            return Some(Frame {
                size: size?,
                fp_lr: u64::try_from(off).ok()?,
                ready_at: at.saturating_add(4),
            });
        }
    }
    None
}

/// The C caller of a `crosscall2` frame whose SP is `sp`: (pc, sp, fp).
pub fn caller(mem: &dyn Memory, f: &Frame, sp: u64) -> Option<(u64, u64, u64)> {
    let slot = sp.checked_add(f.fp_lr)?;
    let fp = mem.u64(slot).ok()?;
    let lr = mem.u64(slot.checked_add(8)?).ok()?;
    Some((lr, sp.checked_add(f.size)?, fp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    #[test]
    fn go_127_prologue() {
        // Go 1.27.3's crosscall2, as assembled:
        //   sub sp, sp, #0xc0; stp x0, x1, [sp,#8]; str x3, [sp,#24];
        //   stp x19, x20, [sp,#32] ...; stp x29, x30, [sp,#176]
        let code: [u32; 5] = [0xd10303ff, 0xa90087e0, 0xf9000fe3, 0xa90253f3, 0xa90b7bfd];
        let mut m = MockMemory::default();
        let entry = 0x1000;
        for (i, c) in code.iter().enumerate() {
            m.put_u32(entry + 4 * i as u64, *c);
        }
        let f = frame(&m, entry).unwrap();
        assert_eq!(
            f,
            Frame {
                size: 192,
                fp_lr: 176,
                ready_at: entry + 20
            }
        );
        let sp = 0x8000;
        m.put(sp + 176, &0x7000u64.to_le_bytes());
        m.put(sp + 184, &0x4242u64.to_le_bytes());
        assert_eq!(caller(&m, &f, sp), Some((0x4242, sp + 192, 0x7000)));
    }

    #[test]
    fn not_a_prologue() {
        let mut m = MockMemory::default();
        m.put(0x1000, &[0u8; 64]);
        assert_eq!(frame(&m, 0x1000), None);
    }
}
