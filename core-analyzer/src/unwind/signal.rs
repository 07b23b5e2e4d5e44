//! Signal frames: a handler returns into a sigreturn trampoline (Go's
//! `runtime.sigreturn__sigaction`, glibc's `__restore_rt`, musl's `__restore_rt`),
//! and the kernel's `rt_sigframe` beside it holds the interrupted registers.
//! The trampolines are recognized by their code, as gdb does, so they are found
//! without symbols. Offsets are the Linux kernel ABI (`struct rt_sigframe`,
//! `ucontext`, `sigcontext`), fixed per architecture.
use super::native::Regs;
use crate::elf::regs::{Arch, SyscallState};
use crate::memory::{Memory, ReadExt};

struct SigFrameAbi {
    /// The trampoline's code.
    code: &'static [u8],
    /// From the stack pointer the trampoline starts with to `siginfo` and to
    /// `uc_mcontext`.
    siginfo: u64,
    mcontext: u64,
    /// `uc_sigmask`: the mask the handler's return restores.
    sigmask: u64,
    /// Register offsets inside `uc_mcontext`.
    pc: u64,
    sp: u64,
    fp: u64,
    lr: Option<u64>,
    /// The syscall number register and the six argument registers.
    nr: u64,
    args: [u64; 6],
    /// The syscall instruction, and its length.
    syscall_insn: &'static [u8],
}

/// x86_64: `rt_sigframe { pretcode; ucontext uc; siginfo info }`, `ret` pops
/// `pretcode`, so the trampoline starts at `&uc`. `mov $15,%rax; syscall`.
const AMD64: SigFrameAbi = SigFrameAbi {
    code: &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
    siginfo: 304,
    mcontext: 40,
    sigmask: 40 + 256,
    pc: 128,
    sp: 120,
    fp: 80,
    lr: None,
    // rax; rdi, rsi, rdx, r10, r8, r9 in `struct sigcontext`.
    nr: 104,
    args: [64, 72, 96, 16, 0, 8],
    syscall_insn: &[0x0f, 0x05],
};

/// arm64: `rt_sigframe { siginfo info; ucontext uc }` at the trampoline's SP;
/// `uc_mcontext` is 16-aligned after the 128-byte sigset. `mov x8,#139; svc #0`.
const ARM64: SigFrameAbi = SigFrameAbi {
    code: &[0x68, 0x11, 0x80, 0xd2, 0x01, 0x00, 0x00, 0xd4],
    siginfo: 0,
    mcontext: 128 + 176,
    sigmask: 128 + 40,
    pc: 8 + 32 * 8,
    sp: 8 + 31 * 8,
    fp: 8 + 29 * 8,
    lr: Some(8 + 30 * 8),
    nr: 8 + 8 * 8,
    args: [8, 16, 24, 32, 40, 48],
    syscall_insn: &[0x01, 0x00, 0x00, 0xd4],
};

fn abi(arch: Arch) -> &'static SigFrameAbi {
    match arch {
        Arch::X86_64 => &AMD64,
        Arch::Aarch64 => &ARM64,
    }
}

/// Is `pc` the first instruction of a sigreturn trampoline?
pub fn is_trampoline(mem: &dyn Memory, arch: Arch, pc: u64) -> bool {
    let a = abi(arch);
    let mut buf = [0u8; 9];
    let code = &mut buf[..a.code.len()];
    mem.read(pc, code).is_ok() && code == a.code
}

/// What a signal frame saved.
pub struct Saved {
    pub regs: Regs,
    /// From `siginfo`; 0 when the handler was installed without SA_SIGINFO.
    pub signo: i32,
    pub syscall: SyscallState,
    /// The signal mask before the handler ran.
    pub mask: Option<u64>,
}

/// An `si_code` the kernel sets: sent by a process (SI_USER, SI_KERNEL,
/// SI_QUEUE, SI_TIMER, SI_MESGQ, SI_ASYNCIO, SI_SIGIO, SI_TKILL) or a
/// signal's own reason (1..=9: ILL_*, FPE_*, SEGV_*, BUS_*, TRAP_*, CLD_*,
/// POLL_*).
fn plausible_si_code(code: i32) -> bool {
    matches!(code, -6..=0 | 0x80 | 1..=9)
}

/// What the frame saved, given the stack pointer the trampoline would run with.
pub fn interrupted(mem: &dyn Memory, arch: Arch, sp: u64) -> Option<Saved> {
    let a = abi(arch);
    let mc = sp.checked_add(a.mcontext)?;
    // A stack pointer from the core may sit anywhere: no slot may wrap.
    let slot = |off: u64| mem.u64(mc.checked_add(off)?).ok();
    let regs = Regs {
        pc: slot(a.pc)?,
        sp: slot(a.sp)?,
        fp: slot(a.fp)?,
        lr: match a.lr {
            Some(off) => slot(off)?,
            None => 0,
        },
    };
    // Without SA_SIGINFO the kernel leaves the slot as the stack had it:
    // stale bytes may look like a signal number. A real siginfo also has
    // si_errno 0 and an si_code the kernel uses; else the number is unknown
    // (the signal masks may still tell it).
    let info = sp.checked_add(a.siginfo)?;
    let signo = mem.u32(info).ok()? as i32;
    let errno = info.checked_add(4).and_then(|p| mem.u32(p).ok());
    let code = info
        .checked_add(8)
        .and_then(|p| mem.u32(p).ok())
        .map(|c| c as i32);
    let real = (1..=64).contains(&signo) && errno == Some(0) && code.is_some_and(plausible_si_code);
    let signo = if real { signo } else { 0 };
    let mut args = [0u64; 6];
    for (v, off) in args.iter_mut().zip(a.args) {
        *v = slot(off).unwrap_or(0);
    }
    // A restartable syscall is rewound to its instruction with the number back
    // in place (x86_64 rax); one that returned (-EINTR) is just past it, its
    // number lost.
    let at = |pc: u64| {
        let mut b = [0u8; 4];
        let code = &mut b[..a.syscall_insn.len()];
        mem.read(pc, code).is_ok() && code == a.syscall_insn
    };
    let n = a.syscall_insn.len() as u64;
    let nr = match arch {
        Arch::X86_64 if at(regs.pc) => slot(a.nr),
        Arch::Aarch64 if at(regs.pc) || at(regs.pc.wrapping_sub(n)) => slot(a.nr),
        _ => None,
    };
    Some(Saved {
        regs,
        signo,
        syscall: SyscallState { nr, args },
        mask: mem.u64(sp.checked_add(a.sigmask)?).ok(),
    })
}

/// Signal numbers from the masks, for C handlers installed without
/// SA_SIGINFO (whose frames hold no siginfo, only stale stack): entering a
/// handler blocks its signal (and its `sa_mask`), so what a handler ran with,
/// less what its frame restores, is that signal when it is a single one. The
/// innermost handler ran with the thread's mask (`pr_sighold`); each outer one
/// with the mask the next inner frame saved. `signals` is innermost first.
/// Go's handler blocks every signal: its number stays the one siginfo gives.
pub fn infer_numbers(signals: &mut [crate::unwind::thread::SignalFrame], sighold: u64) {
    let mut running = (sighold != 0).then_some(sighold);
    for s in signals.iter_mut() {
        if let (Some(now), Some(saved)) = (running, s.saved_mask) {
            let added = now & !saved;
            if added.count_ones() == 1 {
                s.signo = added.trailing_zeros() as i32 + 1;
            }
        }
        running = s.saved_mask;
    }
}

/// Whether the instruction just before `pc` is a syscall (the thread returned
/// from, or is blocked in, one).
pub fn after_syscall_insn(mem: &dyn Memory, arch: Arch, pc: u64) -> bool {
    let n = abi(arch).syscall_insn.len() as u64;
    at_syscall_insn(mem, arch, pc.wrapping_sub(n))
}

fn at_syscall_insn(mem: &dyn Memory, arch: Arch, pc: u64) -> bool {
    let a = abi(arch);
    let mut b = [0u8; 4];
    let code = &mut b[..a.syscall_insn.len()];
    mem.read(pc, code).is_ok() && code == a.syscall_insn
}

/// The address just past the syscall instruction a thread is in: `pc` itself
/// when the instruction is just before it (blocked, or returned), or `pc` +
/// its length when `pc` is on it — an arm64 kernel rewinds a restartable
/// syscall to its `svc` (x0 back to the first argument) before it delivers a
/// signal or writes a core; qemu-user leaves `pc` past it.
pub fn syscall_insn_end(mem: &dyn Memory, arch: Arch, pc: u64) -> Option<u64> {
    let n = abi(arch).syscall_insn.len() as u64;
    if after_syscall_insn(mem, arch, pc) {
        Some(pc)
    } else {
        at_syscall_insn(mem, arch, pc).then(|| pc.wrapping_add(n))
    }
}

pub use crate::report::signal_name;

/// The syscall number a libc wrapper loads just before its syscall
/// instruction (`mov $nr,%eax; syscall` / `mov x8,#nr; svc #0`), for when the
/// registers lost it. `pc` is just past the syscall instruction.
pub fn syscall_nr_from_code(mem: &dyn Memory, arch: Arch, pc: u64) -> Option<u64> {
    match arch {
        Arch::X86_64 => {
            let mut b = [0u8; 7];
            mem.read(pc.checked_sub(7)?, &mut b).ok()?;
            (b[0] == 0xb8 && b[5..] == [0x0f, 0x05])
                .then(|| u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as u64)
        }
        Arch::Aarch64 => {
            let mov = mem.u32(pc.checked_sub(8)?).ok()?;
            let svc = mem.u32(pc.checked_sub(4)?).ok()?;
            // movz x8, #imm16
            (svc == 0xd400_0001 && mov & 0xffe0_001f == 0xd280_0008)
                .then_some(((mov >> 5) & 0xffff) as u64)
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_stale_siginfo_slot_is_no_signal_number() {
        // A handler without SA_SIGINFO: the slot holds whatever the stack had.
        let sp = 0x10_000;
        let a = abi(Arch::X86_64);
        let mut m = crate::memory::mock::MockMemory::default();
        m.put(sp, &[0u8; 0x400]);
        m.put_u32(sp + a.siginfo, 61);
        m.put_u32(sp + a.siginfo + 4, 0x7f12);
        assert_eq!(interrupted(&m, Arch::X86_64, sp).unwrap().signo, 0, "stale");
        // A real one: si_errno 0, si_code SI_TKILL.
        m.put_u32(sp + a.siginfo + 4, 0);
        m.put_u32(sp + a.siginfo + 8, (-6i32) as u32);
        assert_eq!(interrupted(&m, Arch::X86_64, sp).unwrap().signo, 61, "real");
    }

    #[test]
    fn a_signal_frame_at_the_top_of_the_address_space_is_none() {
        let m = crate::memory::mock::MockMemory::default();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for sp in [u64::MAX, u64::MAX - 200, u64::MAX - 4096] {
                assert!(interrupted(&m, arch, sp).is_none());
            }
        }
    }

    use super::*;
    use crate::unwind::thread::SignalFrame;

    fn frame(signo: i32, saved_mask: u64) -> SignalFrame {
        SignalFrame {
            signo,
            saved_mask: Some(saved_mask),
            frame: 0,
            go_handler: false,
            syscall: Default::default(),
            sp: 0,
        }
    }

    #[test]
    fn numbers_from_masks() {
        let bit = |s: i32| 1u64 << (s - 1);
        // Go's handler (all blocked) on top of a C handler for signal 38 that
        // interrupted code running with SIGPIPE blocked.
        let mut s = vec![frame(3, bit(13) | bit(38)), frame(0, bit(13))];
        infer_numbers(&mut s, u64::MAX);
        assert_eq!(s[1].signo, 38);
        assert_eq!(
            s[0].signo, 3,
            "siginfo's number stays where the mask says many"
        );
        // Stale stack where siginfo would be: the mask decides.
        let mut s = vec![frame(518, 0)];
        infer_numbers(&mut s, bit(12));
        assert_eq!(s[0].signo, 12);
        // A handler whose sa_mask blocked more than its signal: ambiguous.
        let mut s = vec![frame(0, 0)];
        infer_numbers(&mut s, bit(10) | bit(12));
        assert_eq!(s[0].signo, 0);
        // No mask in the core (debuggers): nothing to infer from.
        let mut s = vec![frame(0, 0)];
        infer_numbers(&mut s, 0);
        assert_eq!(s[0].signo, 0);
        assert_eq!(signal_name(38), "SIG38");
    }
}
