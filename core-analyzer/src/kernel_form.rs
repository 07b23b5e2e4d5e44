//! A developer tool for tests: turn a qemu-user aarch64 core into the form an
//! arm64 kernel writes. qemu leaves a thread blocked in a syscall with its pc
//! just past the `svc`; the kernel, on its way to the fatal signal (before it
//! dumps), rewinds a restartable syscall to the `svc` with x0 back to the
//! first argument (`do_signal` in arch/arm64/kernel/signal.c) — qemu's x0
//! still holds it. Syscalls that return -EINTR instead stay past the `svc`
//! with x0 = -EINTR. Registers in signal frames are already in the kernel's
//! form (qemu rewinds before it delivers a signal).
use crate::memory::Memory;
use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;

/// `elf_prstatus.pr_reg` on aarch64: x0..x30, sp, pc, pstate.
const PR_REG: usize = 112;
const EINTR: u64 = 4;
/// arm64 syscalls a fatal signal ends with -EINTR, not a restart
/// (`epoll_pwait`: `ep_poll`).
const EINTR_ON_SIGNAL: &[u64] = &[22];

/// (file offset of a thread's pc, new pc, new x0) for each thread to rewrite.
pub fn patches(core: &[u8], mem: &dyn Memory) -> Result<Vec<(usize, u64, u64)>> {
    let hdr = elf::FileHeader64::<LE>::parse(core).context("not an ELF file")?;
    let e = hdr.endian()?;
    if hdr.e_machine(e) != elf::EM_AARCH64 || hdr.e_type(e) != elf::ET_CORE {
        bail!("not an aarch64 core");
    }
    let mut out = vec![];
    for ph in hdr.program_headers(e, core)? {
        let Ok(Some(mut notes)) = ph.notes(e, core) else {
            continue;
        };
        while let Ok(Some(n)) = notes.next() {
            if n.name() != b"CORE" || n.n_type(e) != elf::NT_PRSTATUS {
                continue;
            }
            let desc = n.desc();
            let at = desc.as_ptr() as usize - core.as_ptr() as usize;
            let reg = |i: usize| {
                desc.get(PR_REG + 8 * i..PR_REG + 8 * i + 8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            };
            let (Some(x0), Some(x8), Some(pc)) = (reg(0), reg(8), reg(32)) else {
                continue;
            };
            let arch = crate::elf::regs::Arch::Aarch64;
            if !crate::unwind::signal::after_syscall_insn(mem, arch, pc) {
                continue;
            }
            let patch = if EINTR_ON_SIGNAL.contains(&x8) {
                (pc, EINTR.wrapping_neg())
            } else {
                (pc.wrapping_sub(4), x0)
            };
            out.push((at + PR_REG, patch.0, patch.1));
        }
    }
    Ok(out)
}

/// Rewrite the (uncompressed) core at `path` in place; returns how many
/// threads changed. The core is mapped, not read: qemu's are hundreds of MB.
pub fn rewrite(path: &std::path::Path, mem: &dyn Memory) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    if !f.metadata()?.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    // SAFETY: the file is the caller's scratch copy, not changed by anyone
    // else while mapped; writes below go through the file after the map is
    // dropped.
    let map =
        unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
    let list = patches(&map, mem)?;
    drop(map);
    for (regs, pc, x0) in &list {
        f.write_all_at(&x0.to_le_bytes(), *regs as u64)?;
        f.write_all_at(&pc.to_le_bytes(), (*regs + 32 * 8) as u64)?;
    }
    Ok(list.len())
}
