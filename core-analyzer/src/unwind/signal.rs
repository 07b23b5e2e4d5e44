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

/// The interrupted registers, the signal number and the syscall the thread was
/// in, given the stack pointer the trampoline would run with.
pub fn interrupted(mem: &dyn Memory, arch: Arch, sp: u64) -> Option<(Regs, i32, SyscallState)> {
    let a = abi(arch);
    let mc = sp.checked_add(a.mcontext)?;
    let regs = Regs {
        pc: mem.u64(mc + a.pc).ok()?,
        sp: mem.u64(mc + a.sp).ok()?,
        fp: mem.u64(mc + a.fp).ok()?,
        lr: match a.lr {
            Some(off) => mem.u64(mc + off).ok()?,
            None => 0,
        },
    };
    let signo = mem.u32(sp.checked_add(a.siginfo)?).ok()? as i32;
    let mut args = [0u64; 6];
    for (v, off) in args.iter_mut().zip(a.args) {
        *v = mem.u64(mc + off).unwrap_or(0);
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
        Arch::X86_64 if at(regs.pc) => mem.u64(mc + a.nr).ok(),
        Arch::Aarch64 if at(regs.pc) || at(regs.pc.wrapping_sub(n)) => mem.u64(mc + a.nr).ok(),
        _ => None,
    };
    Some((regs, signo, SyscallState { nr, args }))
}

/// Whether the instruction just before `pc` is a syscall (the thread returned
/// from, or is blocked in, one).
pub fn after_syscall_insn(mem: &dyn Memory, arch: Arch, pc: u64) -> bool {
    let a = abi(arch);
    let n = a.syscall_insn.len();
    let mut b = [0u8; 4];
    let code = &mut b[..n];
    mem.read(pc.wrapping_sub(n as u64), code).is_ok() && code == a.syscall_insn
}

/// `SIGQUIT` for 3, and so on (Linux numbering, same on both architectures).
pub fn signal_name(signo: i32) -> String {
    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    match NAMES.get(signo as usize) {
        Some(n) if signo > 0 => n.to_string(),
        // A C handler installed without SA_SIGINFO gets no siginfo in its frame.
        _ if signo == 0 => "signal (number not saved)".to_string(),
        _ => format!("signal {signo}"),
    }
}

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
