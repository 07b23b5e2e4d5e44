//! Names for PLT stubs, which have no symbols: `strlen@plt`, or
//! `*ABS*+0x9c6a0@plt` for an ifunc slot (gdb's names, from BFD's synthetic
//! symbols). A thread caught mid-call sits in one. Each 16-byte stub jumps
//! through a GOT slot; the dynamic relocation of that slot names the target.
//! x86_64 only (`jmp *disp32(%rip)`); elsewhere no names are made.
use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, RelocationTarget};
use std::collections::HashMap;

/// (link-time address, size, name) of each stub.
pub fn stubs(obj: &object::File) -> Vec<(u64, u64, String)> {
    if obj.architecture() != object::Architecture::X86_64 {
        return vec![];
    }
    let Some(relocs) = obj.dynamic_relocations() else {
        return vec![];
    };
    let dynsyms = obj.dynamic_symbol_table();
    let slots: HashMap<u64, String> = relocs
        .filter_map(|(got, r)| {
            let name = match r.target() {
                RelocationTarget::Symbol(i) => {
                    let sym = dynsyms.as_ref()?.symbol_by_index(i).ok()?;
                    sym.name().ok().filter(|n| !n.is_empty())?.to_string()
                }
                // R_X86_64_IRELATIVE: the resolver's address is the addend.
                RelocationTarget::Absolute => format!("*ABS*+{:#x}", r.addend()),
                _ => return None,
            };
            Some((got, name))
        })
        .collect();
    let mut out = vec![];
    for name in [".plt", ".plt.sec", ".plt.got"] {
        let Some(sec) = obj.section_by_name(name) else {
            continue;
        };
        let Ok(data) = sec.data() else { continue };
        // Stubs are 16 bytes, but 8 in a .plt.got built without IBT (whose
        // stubs then do not open with endbr64); the jump may carry a bnd prefix.
        let ibt = data.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]);
        let size = if name == ".plt.got" && !ibt { 8 } else { 16 };
        for (i, stub) in data.chunks_exact(size).enumerate() {
            let addr = sec.address() + (i * size) as u64;
            let Some(at) = stub.windows(2).position(|w| w == [0xff, 0x25]) else {
                continue;
            };
            let Some(disp) = stub.get(at + 2..at + 6) else {
                continue;
            };
            let disp = i32::from_le_bytes(disp.try_into().unwrap_or_default());
            let got = (addr + at as u64 + 6).wrapping_add_signed(disp as i64);
            if let Some(target) = slots.get(&got) {
                out.push((addr, size as u64, format!("{target}@plt")));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    /// Every stub objdump names, at the same address: in the C library and in
    /// gdb's executable (both with 8-byte `.plt.got` stubs beside `.plt`).
    #[test]
    fn stubs_match_objdump() {
        for path in ["/lib/x86_64-linux-gnu/libc.so.6", "/usr/bin/gdb"] {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            let Ok(out) = std::process::Command::new("objdump")
                .args(["-d", "-j", ".plt", "-j", ".plt.sec", "-j", ".plt.got", path])
                .output()
            else {
                eprintln!("objdump not installed; skipped");
                return;
            };
            let text = String::from_utf8_lossy(&out.stdout);
            let want: std::collections::BTreeSet<(u64, String)> = text
                .lines()
                .filter_map(|l| {
                    let (addr, rest) = l.split_once(" <")?;
                    let name = rest.strip_suffix(">:")?;
                    (name.ends_with("@plt")).then(|| (u64::from_str_radix(addr, 16).ok(), name))
                })
                .filter_map(|(a, n)| Some((a?, n.to_string())))
                .collect();
            let obj = object::File::parse(&bytes[..]).unwrap();
            let got: std::collections::BTreeSet<(u64, String)> = super::stubs(&obj)
                .into_iter()
                .map(|(a, _, n)| (a, n))
                .collect();
            assert!(!want.is_empty(), "{path}: objdump named no stubs");
            let missing: Vec<_> = want.difference(&got).collect();
            assert!(missing.is_empty(), "{path}: stubs not named: {missing:?}");
        }
    }
}
