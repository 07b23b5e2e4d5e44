//! arm64 machine code the unwinder reads: the call before a return address,
//! the thread-exit tail of a `clone` wrapper, and, where code has no unwind
//! information, the caller from the function's prologue.
use super::regs::{Regs, Scan};
use crate::memory::{Memory, ReadExt};

/// Whether the instruction before `ret` is a call: `bl` or `blr`.
pub fn follows_call(mem: &dyn Memory, ret: u64) -> bool {
    mem.u32(ret.wrapping_sub(4))
        .is_ok_and(|i| i & 0xfc00_0000 == 0x9400_0000 || i & 0xffff_fc1f == 0xd63f_0000)
}

/// Where the `bl` just before `ret` went.
pub fn direct_call_target(mem: &dyn Memory, ret: u64) -> Option<u64> {
    let at = ret.checked_sub(4)?;
    let insn = mem.u32(at).ok()?;
    (insn & 0xfc00_0000 == 0x9400_0000).then(|| {
        let imm = ((insn & 0x03ff_ffff) << 6) as i32 >> 6;
        at.wrapping_add_signed(imm as i64 * 4)
    })
}

/// The 16 bytes at a return address make the `exit` syscall: `mov x8, #93`,
/// then `svc #0`.
pub fn exits_thread(b: &[u8; 16]) -> bool {
    let insns: Vec<u32> = b
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let mov = insns.iter().position(|&i| i == 0xd280_0ba8);
    mov.is_some_and(|i| insns[i..].contains(&0xd400_0001))
}

/// From the prologue of the function holding `regs.pc`, whose
/// entry is known three ways: its symbol (`callee`); for the innermost frame of a leaf, the direct `bl`
/// before x30; else the direct `bl` before a return address on the stack
/// that this function's prologue stored exactly there. A function entry
/// must lie at most `max_function` below the pc, and a return address
/// cannot lie between the entry it called and the pc (it would be inside
/// its own callee). Last, the frame record x29 points at (frame-pointer
/// code whose call was indirect), with fp + 16 for the caller's SP.
pub fn scan(
    mem: &dyn Memory,
    regs: &Regs,
    first: bool,
    callee: Option<u64>,
    is_ret: &dyn Fn(u64) -> bool,
    (scan_bytes, max_function): (u64, u64),
) -> Scan {
    use super::prologue::decode;
    let pc = regs.pc;
    let entry_of = |ret: u64| {
        direct_call_target(mem, ret)
            .map(|t| super::prologue::through_tail_calls(mem, t))
            .filter(|&t| t <= pc && pc - t < max_function && !(t..=pc).contains(&ret))
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
    for i in 0..scan_bytes / 8 {
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
    let record = (regs.fp >= regs.sp && regs.fp - regs.sp < scan_bytes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    #[test]
    fn bl_and_blr_before_a_return_address() {
        let mut m = MockMemory::default();
        // bl -0x100 at 0x2000 (return address 0x2004); blr x1 at 0x3000.
        m.put_u32(
            0x2000,
            0x9400_0000 | (((-0x100i32 / 4) as u32) & 0x03ff_ffff),
        );
        m.put_u32(0x3000, 0xd63f_0020);
        m.put_u32(0x4000, 0xd503_201f); // nop
        assert!(follows_call(&m, 0x2004) && follows_call(&m, 0x3004));
        assert!(!follows_call(&m, 0x4004));
        assert_eq!(direct_call_target(&m, 0x2004), Some(0x1f00));
        assert_eq!(direct_call_target(&m, 0x3004), None, "blr is indirect");
    }

    #[test]
    fn the_clone_wrappers_exit() {
        let mut b = [0u8; 16];
        b[4..8].copy_from_slice(&0xd280_0ba8u32.to_le_bytes()); // mov x8, #93
        b[8..12].copy_from_slice(&0xd400_0001u32.to_le_bytes()); // svc #0
        assert!(exits_thread(&b));
        b[4..8].copy_from_slice(&0xd280_0bc8u32.to_le_bytes()); // mov x8, #94
        assert!(!exits_thread(&b));
    }
}
