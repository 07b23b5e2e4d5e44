//! x86_64 machine code the unwinder reads: the call before a return address,
//! the thread-exit tail of a `clone` wrapper, and the stack search for a
//! return address where code has no unwind information.
use super::regs::{Regs, Scan};
use crate::memory::{Memory, ReadExt};

/// Whether the instruction before `ret` is a call: `call rel32`, or
/// `call r/m64` (`ff /2`, optionally REX-prefixed) of the length its ModRM
/// gives.
pub fn follows_call(mem: &dyn Memory, ret: u64) -> bool {
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

/// Where the `call rel32` just before `ret` went.
pub fn direct_call_target(mem: &dyn Memory, ret: u64) -> Option<u64> {
    let op = mem.u8(ret.checked_sub(5)?).ok()?;
    let rel = mem.u32(ret.checked_sub(4)?).ok()? as i32;
    (op == 0xe8).then(|| ret.wrapping_add_signed(rel as i64))
}

/// The 16 bytes at a return address make the `exit` syscall: `mov $60,%al`
/// or `mov $60,%eax`, then `syscall`.
pub fn exits_thread(b: &[u8; 16]) -> bool {
    let exit_nr = b.windows(2).position(|w| w == [0xb0, 0x3c]).or_else(|| {
        b.windows(5)
            .position(|w| w == [0xb8, 0x3c, 0x00, 0x00, 0x00])
    });
    exit_nr.is_some_and(|i| b[i..].windows(2).any(|w| w == [0x0f, 0x05]))
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

/// A word above the stack pointer that is a return address
/// (`call` pushes it; the caller's stack pointer is just above it). A
/// direct call to the callee's own start is preferred: stale return
/// addresses of earlier calls linger in frames that do not initialize all
/// they reserve. The frame pointer is left as it was (callee-saved: the
/// caller's CFI restores it).
pub fn scan(
    mem: &dyn Memory,
    regs: &Regs,
    callee: Option<u64>,
    is_ret: &dyn Fn(u64) -> bool,
    scan_bytes: u64,
) -> Scan {
    let mut top = false;
    let candidates: Vec<(u64, u64)> = (0..scan_bytes / 8)
        .map_while(|i| {
            let slot = regs.sp.checked_add(8 * i)?;
            let v = mem.u64(slot).ok();
            top |= v.is_none();
            Some((slot, v?))
        })
        .filter(|&(_, v)| is_ret(v))
        .collect();
    let found = callee
        .and_then(|c| {
            candidates
                .iter()
                .find(|(_, v)| direct_call_target(mem, *v) == Some(c))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    /// `code` placed so that it ends at the return address 0x1010.
    fn before_ret(code: &[u8]) -> MockMemory {
        let mut m = MockMemory::default();
        m.put(0x1008, &[0x90; 8]);
        m.put(0x1010 - code.len() as u64, code);
        m
    }

    #[test]
    fn calls_before_a_return_address() {
        let ret = 0x1010;
        // call rel32 (to 0x2000), call *%rax, call *%r12, call *0x10(%rip), call *0x8(%rax)
        let rel = (0x2000i64 - ret as i64) as i32;
        let mut direct = vec![0xe8];
        direct.extend(rel.to_le_bytes());
        for code in [
            &direct[..],
            &[0xff, 0xd0],
            &[0x41, 0xff, 0xd4],
            &[0xff, 0x15, 0x10, 0, 0, 0],
            &[0xff, 0x50, 0x08],
        ] {
            assert!(follows_call(&before_ret(code), ret), "{code:x?}");
        }
        assert_eq!(direct_call_target(&before_ret(&direct), ret), Some(0x2000));
        assert_eq!(direct_call_target(&before_ret(&[0xff, 0xd0]), ret), None);
        // jmp *%rax (ff /4) and plain bytes are not calls.
        assert!(!follows_call(&before_ret(&[0xff, 0xe0]), ret));
        assert!(!follows_call(&before_ret(&[0x90, 0x90]), ret));
    }

    #[test]
    fn the_clone_wrappers_exit() {
        let mut b = [0x90u8; 16];
        b[2..9].copy_from_slice(&[0xb8, 0x3c, 0, 0, 0, 0x0f, 0x05]);
        assert!(exits_thread(&b), "mov $60,%eax; syscall");
        b[2..9].copy_from_slice(&[0xb8, 0x3d, 0, 0, 0, 0x0f, 0x05]);
        assert!(!exits_thread(&b), "another syscall");
    }

    #[test]
    fn the_search_prefers_a_call_to_the_callee() {
        // Stack from 0x8000: a stale return address (called elsewhere), then
        // one whose call went to the callee's start.
        let mut m = MockMemory::default();
        let (stale, good, callee) = (0x5005u64, 0x6005u64, 0x7000u64);
        m.put_u64(0x8000, 0x1);
        m.put_u64(0x8008, stale);
        m.put_u64(0x8010, good);
        m.put(stale - 5, &[0xe8, 0, 0, 0, 0]);
        let rel = (callee as i64 - good as i64) as i32;
        m.put(good - 5, &[0xe8]);
        m.put(good - 4, &rel.to_le_bytes());
        let regs = Regs {
            pc: 0x7010,
            sp: 0x8000,
            fp: 0x42,
            lr: 0,
        };
        let is_ret = |v: u64| v == stale || v == good;
        match scan(&m, &regs, Some(callee), &is_ret, 0x18) {
            Scan::Found(r) => assert_eq!((r.pc, r.sp, r.fp), (good, 0x8018, 0x42)),
            _ => panic!("no caller"),
        }
        match scan(&m, &regs, None, &is_ret, 0x18) {
            Scan::Found(r) => assert_eq!(r.pc, stale, "without the callee: the first"),
            _ => panic!("no caller"),
        }
        // The stack's memory ends with no return address: the outermost frame.
        assert!(matches!(
            scan(&m, &regs, None, &|_| false, 0x100),
            Scan::StackTop
        ));
    }
}
