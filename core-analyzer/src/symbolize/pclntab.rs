//! Go's pclntab (Go 1.20+ format, magic 0xFFFFFFF1): function names, file:line,
//! frame sizes and inlining, with no DWARF or symbols needed. The table is read
//! from the executable file; only its text base comes from memory.
use crate::varint::uvarint;
use anyhow::{bail, Result};

pub const MAGIC_120: u32 = 0xFFFF_FFF1;

/// FuncFlag bits.
pub const FLAG_TOPFRAME: u8 = 1;
pub const FLAG_SPWRITE: u8 = 2;

/// pcdata / funcdata table indices.
pub const PCDATA_STACKMAP: usize = 1;
pub const PCDATA_INLTREE: usize = 2;
pub const FUNCDATA_ARGS_POINTERS: usize = 0;
pub const FUNCDATA_LOCALS_POINTERS: usize = 1;
pub const FUNCDATA_STACK_OBJECTS: usize = 2;
pub const FUNCDATA_INLTREE: usize = 3;

pub struct Pclntab {
    data: Vec<u8>,
    /// Address of the table in the target's memory (bias applied).
    pub addr: u64,
    pub quantum: u8,
    nfunc: usize,
    funcname: usize,
    cutab: usize,
    filetab: usize,
    pctab: usize,
    pcln: usize,
    /// Runtime address of `runtime.text` (pcHeader.textStart or moduledata.text).
    pub text: u64,
    /// moduledata.gofunc, for funcdata (inline trees); 0 when unknown.
    pub gofunc: u64,
    /// moduledata.rodata, the base of stack objects' pointer masks; 0 when
    /// unknown.
    pub rodata: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct Func {
    /// Offset of the `_func` record in the table.
    off: usize,
    pub entry: u64,
    pub end: u64,
}

impl Func {
    /// A function at [entry, end) with no record (unit tests of frame math).
    #[cfg(test)]
    pub fn for_tests(entry: u64, end: u64) -> Func {
        Func { off: 0, entry, end }
    }
}

fn u32le(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
}
fn u64le(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
}

impl Pclntab {
    /// The pclntab of an executable loaded `bias` above its link addresses:
    /// its section (`.gopclntab`, Mach-O `__gopclntab`), else found by magic
    /// in the loadable segments (1.21-1.25 external-link PIE merges it into
    /// `.data.rel.ro`; stripped files may have no sections at all).
    pub fn load(exe: &crate::elf::exe::Binary, bias: u64) -> Result<Pclntab> {
        let mut t = match exe.section(".gopclntab") {
            Some((addr, bytes)) => Pclntab::parse(bytes.to_vec(), addr.wrapping_add(bias))?,
            None => {
                use object::{Object, ObjectSegment};
                let obj = exe.object();
                let found = obj.segments().find_map(|seg| {
                    let data = seg.data().ok()?;
                    let off = Pclntab::scan(data)?;
                    Some((data[off..].to_vec(), seg.address() + off as u64))
                });
                let Some((data, addr)) = found else {
                    bail!(
                        "no Go pclntab in {} (not a Go 1.21+ binary?)",
                        exe.path().display()
                    );
                };
                Pclntab::parse(data, addr.wrapping_add(bias))?
            }
        };
        // Mach-O leaves textStart for dyld to relocate: it is runtime.text,
        // the start of the text section.
        if t.text == 0 {
            if let Some((start, _)) = exe.section_range(".text") {
                t.text = start.wrapping_add(bias);
            }
        }
        Ok(t)
    }

    /// `data` starts at the pcHeader; `addr` is its runtime address.
    pub fn parse(data: Vec<u8>, addr: u64) -> Result<Pclntab> {
        let magic = u32le(&data, 0).unwrap_or(0);
        if magic != MAGIC_120 {
            bail!("pclntab magic {magic:#x} is not Go 1.20+ (0xfffffff1); Go older than 1.21 is not supported");
        }
        // The header: magic, two pads, quantum, pointer size, 8 words.
        if data.len() < 8 + 8 * 8 {
            bail!("pclntab is truncated ({} bytes)", data.len());
        }
        if data[7] != 8 {
            bail!(
                "pclntab pointer size {} is not 8 (only 64-bit targets are supported)",
                data[7]
            );
        }
        let w = |i: usize| u64le(&data, 8 + i * 8).unwrap_or(u64::MAX) as usize;
        let t = Pclntab {
            quantum: data[6],
            nfunc: w(0),
            text: w(2) as u64,
            funcname: w(3),
            cutab: w(4),
            filetab: w(5),
            pctab: w(6),
            pcln: w(7),
            data,
            addr,
            gofunc: 0,
            rodata: 0,
        };
        let len = t.data.len();
        if t.nfunc == 0
            || t.nfunc > len / 8
            || [t.funcname, t.cutab, t.filetab, t.pctab, t.pcln]
                .iter()
                .any(|&o| o >= len)
        {
            bail!(
                "pclntab header is corrupt (nfunc {}, table of {} bytes)",
                t.nfunc,
                len
            );
        }
        Ok(t)
    }

    /// Find a pclntab by magic in `bytes`; returns its offset.
    pub fn scan(bytes: &[u8]) -> Option<usize> {
        let pat = [0xf1, 0xff, 0xff, 0xff, 0, 0];
        let mut i = 0;
        while let Some(p) = bytes[i..].windows(6).position(|w| w == pat) {
            let off = i + p;
            if bytes.get(off + 7) == Some(&8) && matches!(bytes.get(off + 6), Some(1) | Some(4)) {
                let nfunc = u64le(bytes, off + 8).unwrap_or(0);
                if nfunc > 0 && nfunc < 10_000_000 {
                    return Some(off);
                }
            }
            i = off + 1;
        }
        None
    }

    fn ftab(&self, i: usize) -> Option<(u32, u32)> {
        let o = self.pcln + i * 8;
        Some((u32le(&self.data, o)?, u32le(&self.data, o + 4)?))
    }

    pub fn min_pc(&self) -> u64 {
        self.text
            .wrapping_add(self.ftab(0).map(|f| f.0).unwrap_or(0) as u64)
    }
    pub fn max_pc(&self) -> u64 {
        self.text
            .wrapping_add(u32le(&self.data, self.pcln + self.nfunc * 8).unwrap_or(0) as u64)
    }

    /// The function containing `pc`.
    pub fn find(&self, pc: u64) -> Option<Func> {
        if pc < self.min_pc() || pc >= self.max_pc() {
            return None;
        }
        let off = pc.wrapping_sub(self.text) as u32;
        let (mut lo, mut hi) = (0usize, self.nfunc);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if self.ftab(mid)?.0 <= off {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (entry, funcoff) = self.ftab(lo)?;
        let end = self.ftab(lo + 1).map(|f| f.0).unwrap_or(entry);
        let f = Func {
            off: self.pcln + funcoff as usize,
            entry: self.text.wrapping_add(entry as u64),
            end: self.text.wrapping_add(end as u64),
        };
        // The record's own entry must agree, else the table is corrupt.
        (u32le(&self.data, f.off)? == entry).then_some(f)
    }

    fn cstr(&self, off: usize) -> Option<&str> {
        let b = self.data.get(off..)?;
        let end = b.iter().position(|&c| c == 0)?;
        std::str::from_utf8(&b[..end]).ok()
    }

    pub fn name(&self, f: &Func) -> &str {
        let name_off = u32le(&self.data, f.off + 4).unwrap_or(u32::MAX) as usize;
        self.cstr(self.funcname + name_off).unwrap_or("?")
    }

    pub fn func_id(&self, f: &Func) -> u8 {
        self.data.get(f.off + 40).copied().unwrap_or(0)
    }
    pub fn flag(&self, f: &Func) -> u8 {
        self.data.get(f.off + 41).copied().unwrap_or(0)
    }

    fn field(&self, f: &Func, i: usize) -> u32 {
        u32le(&self.data, f.off + 4 * i).unwrap_or(0)
    }

    /// Value of pc-value table `table` (offset into pctab) at `pc`.
    pub fn pcvalue(&self, f: &Func, table: u32, pc: u64) -> Option<i32> {
        if table == 0 {
            return None;
        }
        let mut p = self.data.get(self.pctab + table as usize..)?;
        let mut val: i32 = -1;
        let mut cur = f.entry;
        let mut first = true;
        loop {
            let (uv, n) = uvarint(p)?;
            if uv == 0 && !first {
                return None;
            }
            p = &p[n..];
            let d = ((uv >> 1) as i64) ^ -((uv & 1) as i64);
            val = val.wrapping_add(d as i32);
            let (pcd, n) = uvarint(p)?;
            p = &p[n..];
            cur = cur.checked_add(pcd * self.quantum as u64)?;
            if pc < cur {
                return Some(val);
            }
            if cur >= f.end && f.end > f.entry {
                return None;
            }
            first = false;
        }
    }

    /// Stack frame size at `pc` (pcsp).
    pub fn sp_delta(&self, f: &Func, pc: u64) -> Option<i32> {
        self.pcvalue(f, self.field(f, 4), pc)
    }

    pub fn file_line(&self, f: &Func, pc: u64) -> Option<(&str, i32)> {
        let fileno = usize::try_from(self.pcvalue(f, self.field(f, 5), pc)?).ok()?;
        let line = self.pcvalue(f, self.field(f, 6), pc)?;
        let cu = self.field(f, 8) as usize;
        let foff = u32le(
            &self.data,
            cu.checked_add(fileno)?
                .checked_mul(4)?
                .checked_add(self.cutab)?,
        )?;
        if foff == u32::MAX {
            return None;
        }
        Some((self.cstr(self.filetab + foff as usize)?, line))
    }

    fn pcdata(&self, f: &Func, i: usize) -> u32 {
        let npcdata = self.field(f, 7) as usize;
        if i >= npcdata {
            return 0;
        }
        u32le(&self.data, f.off + 44 + 4 * i).unwrap_or(0)
    }

    /// funcdata `i` as an offset from moduledata.gofunc.
    pub fn funcdata_off(&self, f: &Func, i: usize) -> Option<u32> {
        let npcdata = self.field(f, 7) as usize;
        let nfuncdata = self.data.get(f.off + 43).copied().unwrap_or(0) as usize;
        if i >= nfuncdata {
            return None;
        }
        let v = u32le(&self.data, f.off + 44 + 4 * npcdata + 4 * i)?;
        (v != u32::MAX).then_some(v)
    }

    /// Bytes of arguments the function takes (`_func.args`; negative when
    /// unknown, as for reflect's method wrappers).
    pub fn args_size(&self, f: &Func) -> i32 {
        self.field(f, 2) as i32
    }

    /// The stack map index in effect at `pc` (`PCDATA_StackMapIndex`).
    pub fn stackmap_index(&self, f: &Func, pc: u64) -> Option<i32> {
        self.pcvalue(f, self.pcdata(f, PCDATA_STACKMAP), pc)
    }

    /// Index into the inline tree at `pc` (-1 or None: not inlined).
    pub fn inline_index(&self, f: &Func, pc: u64) -> Option<i32> {
        self.pcvalue(f, self.pcdata(f, PCDATA_INLTREE), pc)
            .filter(|&i| i >= 0)
    }

    pub fn funcname_offset(&self) -> usize {
        self.funcname
    }

    /// Name at offset `off` of funcnametab (inline tree entries use these).
    pub fn name_at(&self, off: u32) -> &str {
        self.cstr(self.funcname + off as usize).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_header_cut_short_is_an_error() {
        let mut blob = MAGIC_120.to_le_bytes().to_vec();
        for len in [4, 7, 8, 40, 71] {
            blob.resize(len, 0);
            if len > 7 {
                blob[7] = 8;
            }
            assert!(Pclntab::parse(blob.clone(), 0).is_err(), "{len} bytes");
        }
    }

    use super::*;

    #[test]
    fn rejects_bad_magic_and_corrupt_header() {
        assert!(Pclntab::parse(vec![0; 128], 0).is_err());
        let mut d = vec![0u8; 128];
        d[..4].copy_from_slice(&MAGIC_120.to_le_bytes());
        d[6] = 1;
        d[7] = 8;
        d[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Pclntab::parse(d, 0).is_err());
    }
}
