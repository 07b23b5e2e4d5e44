//! The dynamic linker's own list of loaded objects, read from the process's
//! memory the way gdb finds shared libraries: the executable's `DT_DEBUG`
//! entry points at `struct r_debug`, whose `r_map` heads the `link_map`
//! chain (`l_addr`, `l_name`, `l_ld`, `l_next`). glibc and musl keep the same
//! public layout.
use crate::elf::exe::Binary;
use crate::memory::{Memory, ReadExt};

const DT_NULL: u64 = 0;
const DT_DEBUG: u64 = 21;
/// Dynamic entries and objects read at most: a corrupt chain ends here.
const MAX_DYNAMIC: u64 = 512;
const MAX_OBJECTS: usize = 4096;

/// One loaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkMap {
    /// Its path as the dynamic linker opened it (empty for the executable).
    pub name: String,
    /// Load bias (`l_addr`).
    pub bias: u64,
    /// Its `.dynamic` (`l_ld`).
    pub dynamic: u64,
}

/// The objects the dynamic linker loaded, in its order; empty for a static
/// binary or when the list cannot be read.
pub fn loaded(mem: &dyn Memory, exe: &Binary, exe_bias: u64) -> Vec<LinkMap> {
    let Some((dynamic, _)) = exe.section(".dynamic") else {
        return vec![];
    };
    let dynamic = dynamic.wrapping_add(exe_bias);
    let r_debug = (0..MAX_DYNAMIC)
        .map_while(|i| {
            let at = dynamic.checked_add(16 * i)?;
            Some((mem.u64(at).ok()?, mem.u64(at.checked_add(8)?).ok()?))
        })
        .take_while(|&(tag, _)| tag != DT_NULL)
        .find(|&(tag, _)| tag == DT_DEBUG)
        .map(|(_, v)| v);
    // r_debug: int r_version; struct link_map *r_map; ...
    let Some(mut node) = r_debug.and_then(|r| mem.u64(r.checked_add(8)?).ok()) else {
        return vec![];
    };
    let mut out = vec![];
    let mut seen = std::collections::HashSet::new();
    while node != 0 && out.len() < MAX_OBJECTS && seen.insert(node) {
        let field = |off: u64| node.checked_add(off).and_then(|a| mem.u64(a).ok());
        let (Some(bias), Some(name_at), Some(ld), Some(next)) =
            (field(0), field(8), field(16), field(24))
        else {
            break;
        };
        let name = if name_at == 0 {
            String::new()
        } else {
            mem.c_string(name_at, 4096)
                .ok()
                .or_else(|| file_c_string(exe, name_at.wrapping_sub(exe_bias)))
                .unwrap_or_default()
        };
        out.push(LinkMap {
            name,
            bias,
            dynamic: ld,
        });
        node = next;
    }
    out
}

/// A string in the executable's file at link-time address `vaddr`. musl names
/// its own entry (the C library, also the dynamic linker) by the executable's
/// `PT_INTERP` string, which a core leaves out with the rest of the text.
fn file_c_string(exe: &Binary, vaddr: u64) -> Option<String> {
    use object::{Object, ObjectSection};
    let obj = exe.object();
    let sec = obj
        .sections()
        .find(|s| s.address() <= vaddr && vaddr - s.address() < s.size())?;
    let data = sec.data().ok()?;
    let rest = data.get(usize::try_from(vaddr - sec.address()).ok()?..)?;
    let end = rest.iter().take(4096).position(|&b| b == 0)?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lists_its_libc() {
        // The test binary is dynamically linked: its own r_debug lists libc.
        let me = std::env::current_exe().unwrap();
        let exe = Binary::open(&me).unwrap();
        let mem = crate::live::memory::RecordingMemory::new(std::process::id(), 1 << 24);
        let maps = crate::live::procfs::maps(std::process::id()).unwrap();
        let first = maps
            .iter()
            .find(|m| m.offset == 0 && std::path::Path::new(&m.path) == me)
            .expect("the test binary's first mapping");
        let bias = crate::process::resolve::bias_at(&exe, first.start).unwrap();
        let objs = loaded(&mem, &exe, bias);
        assert!(objs.iter().any(|o| o.name.contains("libc.so")), "{objs:?}");
    }
}
