//! arm64 code without unwind information (musl's libc is built without it):
//! what a function's prologue has done by a given pc, read from its
//! instructions as debuggers do when CFI is missing. GCC and clang open a
//! function that calls others by lowering SP and storing the frame record
//! (x29, x30) — `stp x29, x30, [sp, #-n]!`, or `sub sp, sp, #n` then `stp
//! x29, x30, [sp, #off]` — before its first branch; a leaf keeps its return
//! address in x30.
use crate::memory::{Memory, ReadExt};

/// Instructions read from a function's entry, at most.
const MAX_PROLOGUE: u64 = 32;

/// The prologue's effect at the pc it was decoded up to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prologue {
    /// Bytes SP has been lowered since the entry.
    pub drop: u64,
    /// Where x29 and x30 were saved: bytes below the entry SP.
    pub fp_below: Option<u64>,
    pub lr_below: Option<u64>,
}

impl Prologue {
    /// The caller's (pc, sp, fp) for a frame at `sp` whose x30 and x29 still
    /// hold `lr` and `fp` where the prologue has not saved them.
    pub fn caller(&self, mem: &dyn Memory, sp: u64, lr: u64, fp: u64) -> Option<(u64, u64, u64)> {
        let entry_sp = sp.checked_add(self.drop)?;
        let saved = |below: Option<u64>, reg: u64| match below {
            Some(b) => mem.u64(entry_sp.checked_sub(b)?).ok(),
            None => Some(reg),
        };
        Some((
            saved(self.lr_below, lr)?,
            entry_sp,
            saved(self.fp_below, fp)?,
        ))
    }
}

/// Where a call to `entry` really lands: a function whose first instruction
/// is a branch (`b`) is a wrapper that tail-calls another (musl's
/// `__syscall_cp` → `__syscall_cp_c`), whose prologue then builds the frame.
pub fn through_tail_calls(mem: &dyn Memory, entry: u64) -> u64 {
    let mut at = entry;
    for _ in 0..4 {
        match mem.u32(at) {
            Ok(insn) if insn & 0xfc00_0000 == 0x1400_0000 => {
                let imm = ((insn & 0x03ff_ffff) << 6) as i32 >> 6;
                at = at.wrapping_add_signed(i64::from(imm) * 4);
            }
            _ => break,
        }
    }
    at
}

/// Decode the prologue of the function at `entry` as executed before `pc`
/// (exclusive). `None` where SP moves by a register amount (alloca, stack
/// probes): the frame's size is not in the code.
pub fn decode(mem: &dyn Memory, entry: u64, pc: u64) -> Option<Prologue> {
    let mut p = Prologue::default();
    for i in 0..MAX_PROLOGUE {
        let at = entry.checked_add(4 * i)?;
        if at >= pc {
            break;
        }
        let insn = mem.u32(at).ok()?;
        let rt = insn & 0x1f;
        let rn_sp = (insn >> 5) & 0x1f == 31;
        match insn {
            // STP Xt, Xt2, [sp, #imm7*8]! (pre-index) and [sp, #imm7*8] (offset).
            _ if insn & 0xffc0_0000 == 0xa980_0000 && rn_sp => {
                let off = imm7(insn);
                p.drop = p.drop.checked_add_signed(-off)?;
                save(&mut p, rt, 0);
                save(&mut p, (insn >> 10) & 0x1f, 8);
            }
            _ if insn & 0xffc0_0000 == 0xa900_0000 && rn_sp => {
                let off = imm7(insn);
                save(&mut p, rt, off);
                save(&mut p, (insn >> 10) & 0x1f, off + 8);
            }
            // STR Xt, [sp, #imm9]! (pre-index) and [sp, #imm12*8] (offset).
            _ if insn & 0xffe0_0c00 == 0xf800_0c00 && rn_sp => {
                let off = (((insn >> 12) & 0x1ff) as i64) << 55 >> 55;
                p.drop = p.drop.checked_add_signed(-off)?;
                save(&mut p, rt, 0);
            }
            _ if insn & 0xffc0_0000 == 0xf900_0000 && rn_sp => {
                save(&mut p, rt, (((insn >> 10) & 0xfff) * 8) as i64);
            }
            // SUB sp, sp, #imm12{, lsl #12}.
            _ if insn & 0xff80_03ff == 0xd100_03ff => {
                let imm = u64::from((insn >> 10) & 0xfff);
                p.drop = p.drop.checked_add(if insn & (1 << 22) != 0 {
                    imm << 12
                } else {
                    imm
                })?;
            }
            // SUB sp, sp, Xm (extended register): a size only known at run time.
            _ if insn & 0xffe0_001f == 0xcb20_001f => return None,
            // Hints (nop, paciasp, bti) belong to the prologue.
            _ if insn & 0xffff_f01f == 0xd503_201f => {}
            // Branches, returns, svc: the prologue is over.
            _ if insn & 0x1c00_0000 == 0x1400_0000 => break,
            _ => {}
        }
    }
    Some(p)
}

/// A store of `reg` at `off` from the current SP: x29 and x30 are noted by
/// where they land below the entry SP (the first store of each counts).
fn save(p: &mut Prologue, reg: u32, off: i64) {
    let below = p.drop.checked_add_signed(-off);
    match reg {
        29 => p.fp_below = p.fp_below.or(below),
        30 => p.lr_below = p.lr_below.or(below),
        _ => {}
    }
}

fn imm7(insn: u32) -> i64 {
    ((((insn >> 15) & 0x7f) as i64) << 57 >> 57) * 8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    fn code(insns: &[u32]) -> (MockMemory, u64) {
        let mut m = MockMemory::default();
        let entry = 0x1000;
        for (i, c) in insns.iter().enumerate() {
            m.put_u32(entry + 4 * i as u64, *c);
        }
        (m, entry)
    }

    #[test]
    fn frame_record_by_pre_index() {
        // musl's __timedwait: stp x29, x30, [sp, #-80]!; mov x29, sp;
        // stp x19, x20, [sp, #16]; ...; bl
        let (mut m, e) = code(&[0xa9bb7bfd, 0x910003fd, 0xa90153f3, 0x94001007]);
        let p = decode(&m, e, e + 16).unwrap();
        assert_eq!(
            p,
            Prologue {
                drop: 80,
                fp_below: Some(80),
                lr_below: Some(72)
            }
        );
        let sp = 0x8000;
        m.put(sp, &0x7000u64.to_le_bytes());
        m.put(sp + 8, &0x4242u64.to_le_bytes());
        assert_eq!(p.caller(&m, sp, 1, 2), Some((0x4242, sp + 80, 0x7000)));
        // Before the store: nothing saved yet, x30 is the return address.
        assert_eq!(decode(&m, e, e).unwrap(), Prologue::default());
    }

    #[test]
    fn sub_then_store_at_offset() {
        // Go's crosscall2: sub sp, sp, #0xc0; stp x0, x1, [sp,#8]; ...; stp x29, x30, [sp,#176]
        let (m, e) = code(&[0xd10303ff, 0xa90087e0, 0xf9000fe3, 0xa90253f3, 0xa90b7bfd]);
        let p = decode(&m, e, e + 20).unwrap();
        assert_eq!(
            p,
            Prologue {
                drop: 192,
                fp_below: Some(16),
                lr_below: Some(8)
            }
        );
    }

    #[test]
    fn leaf_saves_nothing_and_stops_at_svc() {
        // mov x8, #63; svc #0; stp x29, x30, [sp, #-16]! (never reached)
        let (m, e) = code(&[0xd28007e8, 0xd4000001, 0xa9bf7bfd]);
        assert_eq!(decode(&m, e, e + 12).unwrap(), Prologue::default());
    }

    #[test]
    fn tail_call_wrapper_is_followed() {
        // musl's __syscall_cp at 0x67680: b 0x68710 (__syscall_cp_c)
        let mut m = MockMemory::default();
        m.put_u32(0x67680, 0x14000424);
        m.put_u32(0x68710, 0xa9be7bfd);
        assert_eq!(through_tail_calls(&m, 0x67680), 0x68710);
        assert_eq!(through_tail_calls(&m, 0x68710), 0x68710);
    }

    #[test]
    fn dynamic_frame_is_unknown() {
        // sub sp, sp, x1
        let (m, e) = code(&[0xcb2163ff]);
        assert_eq!(decode(&m, e, e + 4), None);
    }
}
