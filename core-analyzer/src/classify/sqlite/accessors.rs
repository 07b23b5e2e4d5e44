//! Without SQLite's DWARF, what SQLite itself reveals: the field offsets its
//! exported one-line accessors load, read from their machine code
//! (`sqlite3_db_mutex`: `return db->mutex;`, `sqlite3_get_autocommit`:
//! `return db->autoCommit;`). A build with `SQLITE_ENABLE_API_ARMOR` checks
//! its argument first: no one-line body, no offsets, nothing claimed.
use crate::elf::regs::Arch;
use crate::memory::Memory;

/// Where a connection (`sqlite3 *`) keeps its mutex and its autocommit flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offsets {
    pub mutex: u64,
    pub auto_commit: u64,
}

/// Fields a connection keeps within its first page: larger offsets are
/// not these accessors.
const MAX_OFFSET: u64 = 4096;

impl Offsets {
    /// From the accessors at their runtime addresses (the core's own copy of
    /// the code); `None` unless both are one load and a return.
    pub fn read(
        mem: &dyn Memory,
        arch: Arch,
        db_mutex: u64,
        get_autocommit: u64,
    ) -> Option<Offsets> {
        let code = |at: u64| {
            let mut b = [0u8; 16];
            mem.read(at, &mut b).ok().map(|_| b)
        };
        let mutex = load_offset(arch, Width::Word, &code(db_mutex)?)?;
        let auto_commit = load_offset(arch, Width::Byte, &code(get_autocommit)?)?;
        (mutex % 8 == 0 && mutex != auto_commit).then_some(Offsets { mutex, auto_commit })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// A pointer: `mov off(%rdi),%rax` / `ldr x0, [x0, #off]`.
    Word,
    /// A byte, zero-extended: `movzbl off(%rdi),%eax` / `ldrb w0, [x0, #off]`.
    Byte,
}

/// The offset a function that loads one field of its first argument and
/// returns it reads, from its code; `None` for any other body.
pub fn load_offset(arch: Arch, width: Width, code: &[u8]) -> Option<u64> {
    let off = match arch {
        Arch::X86_64 => x86_64(width, code)?,
        Arch::Aarch64 => aarch64(width, code)?,
    };
    (off < MAX_OFFSET).then_some(off)
}

fn x86_64(width: Width, code: &[u8]) -> Option<u64> {
    // An endbr64 first (CET builds).
    let code = code.strip_prefix(&[0xf3, 0x0f, 0x1e, 0xfa]).unwrap_or(code);
    let opcode: &[u8] = match width {
        Width::Word => &[0x48, 0x8b],
        Width::Byte => &[0x0f, 0xb6],
    };
    let rest = code.strip_prefix(opcode)?;
    // ModRM: rax/eax from [rdi + disp8] (0x47) or [rdi + disp32] (0x87).
    let (off, after) = match *rest.first()? {
        0x47 => (u64::from(*rest.get(1)?), rest.get(2..)?),
        0x87 => {
            let d = i32::from_le_bytes(rest.get(1..5)?.try_into().ok()?);
            (u64::try_from(d).ok()?, rest.get(5..)?)
        }
        _ => return None,
    };
    (after.first() == Some(&0xc3)).then_some(off)
}

fn aarch64(width: Width, code: &[u8]) -> Option<u64> {
    let insns: Vec<u32> = code
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    // A `bti c` first (branch-protected builds).
    let insns = insns.strip_prefix(&[0xd503_245f]).unwrap_or(&insns);
    const RET: u32 = 0xd65f_03c0;
    let (&load, rest) = insns.split_first()?;
    if rest.first() != Some(&RET) {
        return None;
    }
    // Unsigned-offset loads into x0/w0 from x0: the immediate is scaled by
    // the access size.
    let (base, scale) = match width {
        Width::Word => (0xf940_0000, 8),
        Width::Byte => (0x3940_0000, 1),
    };
    (load & 0xffc0_03ff == base).then(|| u64::from((load >> 10) & 0xfff) * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_64_one_line_accessors() {
        // Debian's libsqlite3 3.40 and the amalgamation built by cgo.
        let db_mutex = [0x48, 0x8b, 0x47, 0x18, 0xc3];
        let autocommit = [0x0f, 0xb6, 0x47, 0x65, 0xc3];
        assert_eq!(
            load_offset(Arch::X86_64, Width::Word, &db_mutex),
            Some(0x18)
        );
        assert_eq!(
            load_offset(Arch::X86_64, Width::Byte, &autocommit),
            Some(0x65)
        );
        // endbr64 first; a 32-bit displacement.
        let cet = [
            0xf3, 0x0f, 0x1e, 0xfa, 0x0f, 0xb6, 0x87, 0x10, 0x01, 0, 0, 0xc3,
        ];
        assert_eq!(load_offset(Arch::X86_64, Width::Byte, &cet), Some(0x110));
        // API armor: a test before the load is not a one-line body.
        let armored = [0x48, 0x85, 0xff, 0x74, 0x05, 0x48, 0x8b, 0x47, 0x18, 0xc3];
        assert_eq!(load_offset(Arch::X86_64, Width::Word, &armored), None);
        // The load, but no return after it; the wrong width.
        assert_eq!(
            load_offset(Arch::X86_64, Width::Word, &[0x48, 0x8b, 0x47, 0x18, 0x90]),
            None
        );
        assert_eq!(load_offset(Arch::X86_64, Width::Byte, &db_mutex), None);
    }

    #[test]
    fn aarch64_one_line_accessors() {
        let le = |w: &[u32]| w.iter().flat_map(|i| i.to_le_bytes()).collect::<Vec<u8>>();
        // ldr x0, [x0, #24]; ret — ldrb w0, [x0, #101]; ret
        let db_mutex = le(&[0xf940_0c00, 0xd65f_03c0]);
        let autocommit = le(&[0x3941_9400, 0xd65f_03c0]);
        assert_eq!(load_offset(Arch::Aarch64, Width::Word, &db_mutex), Some(24));
        assert_eq!(
            load_offset(Arch::Aarch64, Width::Byte, &autocommit),
            Some(101)
        );
        // bti c first.
        let bti = le(&[0xd503_245f, 0xf940_0c00, 0xd65f_03c0]);
        assert_eq!(load_offset(Arch::Aarch64, Width::Word, &bti), Some(24));
        // A load from another register, or into another one: not the accessor.
        assert_eq!(
            load_offset(Arch::Aarch64, Width::Word, &le(&[0xf940_0c20, 0xd65f_03c0])),
            None
        );
        assert_eq!(
            load_offset(Arch::Aarch64, Width::Word, &le(&[0xf940_0c01, 0xd65f_03c0])),
            None
        );
    }
}
