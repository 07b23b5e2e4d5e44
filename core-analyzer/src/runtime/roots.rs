//! Finding the runtime's global roots (`allm`, `allgs`, `allp`, `sched`, ...):
//! by symbol when the binary has `.symtab`, otherwise by what the runtime
//! guarantees about the data itself (stripped `-s -w` builds).
use super::{MAX_GS, MAX_MS};
use crate::layout::{table::VersionFacts, Layout};
use crate::memory::{Memory, ReadExt};
use crate::process::Process;
use crate::symbolize::pclntab::Pclntab;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Value of `runtime.allm` (newest M).
    pub allm: u64,
    /// `runtime.allgs` slice (array pointer, length).
    pub allgs: (u64, u64),
    /// `runtime.allp` slice (array pointer, length).
    pub allp: (u64, u64),
    pub gomaxprocs: Option<i32>,
    /// Address of `runtime.sched`, when known.
    pub sched: Option<u64>,
    /// Address of `runtime.waitReasonStrings`, when known.
    pub wait_reason_strings: Option<u64>,
    /// "symbols" or "heuristics".
    pub source: &'static str,
}

/// Writable data of the executable (where runtime globals live), read once.
struct DataWords {
    chunks: Vec<(u64, Vec<u8>)>,
}

impl DataWords {
    fn read(p: &Process) -> DataWords {
        let mut ranges: Vec<(u64, u64)> =
            [".noptrdata", ".data", ".bss", ".noptrbss", ".go.module"]
                .iter()
                .filter_map(|s| p.exe.section_range(s))
                .map(|(a, b)| (p.rt(a), p.rt(b)))
                .collect();
        if ranges.is_empty() {
            use object::{Object, ObjectSegment, SegmentFlags};
            for s in p.exe.object().segments() {
                if let SegmentFlags::Elf { p_flags } = s.flags() {
                    if p_flags & object::elf::PF_W != 0 {
                        ranges.push((p.rt(s.address()), p.rt(s.address() + s.size())));
                    }
                }
            }
        }
        let mut chunks = vec![];
        for (a, b) in ranges {
            // Page by page: a range may be partly unsaved.
            let mut at = a & !7;
            while at < b {
                let n = (((at | 0xfff) + 1).min(b) - at) as usize;
                if let Ok(v) = p.mem.bytes(at, n) {
                    chunks.push((at, v));
                }
                at += n as u64;
            }
        }
        DataWords { chunks }
    }

    fn words(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().flat_map(|(base, v)| {
            v.chunks_exact(8).enumerate().map(move |(i, c)| {
                (
                    base + 8 * i as u64,
                    u64::from_le_bytes(c.try_into().unwrap()),
                )
            })
        })
    }

    fn word_at(&self, addr: u64) -> Option<u64> {
        self.chunks
            .iter()
            .find(|(b, v)| {
                *b <= addr && addr.checked_add(8).is_some_and(|e| e <= b + v.len() as u64)
            })
            .map(|(b, v)| {
                let o = (addr - b) as usize;
                u64::from_le_bytes(v[o..o + 8].try_into().unwrap())
            })
    }
}

struct Offs {
    m_g0: u64,
    m_alllink: u64,
    g_m: u64,
    g_goid: u64,
    p_id: u64,
    p_status: u64,
}

impl Roots {
    pub fn find(
        p: &Process,
        layout: &Layout,
        pcln: &mut Pclntab,
        warnings: &mut Vec<String>,
    ) -> Result<Roots> {
        let o = Offs {
            m_g0: layout
                .field("runtime.m", "g0")
                .context("layout lacks m.g0")?,
            m_alllink: layout
                .field("runtime.m", "alllink")
                .context("layout lacks m.alllink")?,
            g_m: layout.field("runtime.g", "m").context("layout lacks g.m")?,
            g_goid: layout
                .field("runtime.g", "goid")
                .context("layout lacks g.goid")?,
            p_id: layout.field("runtime.p", "id").unwrap_or(0),
            p_status: layout.field("runtime.p", "status").unwrap_or(4),
        };
        let sym = |n: &str| p.exe.symbol(n).map(|(a, _)| p.rt(a));
        // Read lazily: binaries with symbols never need the data scan.
        let data_cell: std::cell::OnceCell<DataWords> = std::cell::OnceCell::new();
        let data = || data_cell.get_or_init(|| DataWords::read(p));

        let moduledata = sym("runtime.firstmoduledata")
            .or_else(|| p.exe.section_range(".go.module").map(|(a, _)| p.rt(a)))
            .or_else(|| find_moduledata(data(), &*p.mem, pcln));
        place_text(p, layout, pcln, moduledata, warnings)?;

        // By symbol; a symbol table that lacks a root or names one that
        // cannot be read (a corrupt binary) falls back to the heuristics.
        let by_symbols = || -> Result<Option<Roots>> {
            let Some(allm_sym) = sym("runtime.allm") else {
                return Ok(None);
            };
            let allgs = sym("runtime.allgs").context("runtime.allgs symbol missing")?;
            let allp = sym("runtime.allp");
            let mem = &*p.mem;
            Ok(Some(Roots {
                allm: mem.u64(allm_sym).context("reading runtime.allm")?,
                allgs: (mem.u64(allgs)?, mem.u64(allgs.wrapping_add(8))?),
                allp: match allp {
                    Some(a) => (mem.u64(a)?, mem.u64(a.wrapping_add(8))?),
                    None => (0, 0),
                },
                gomaxprocs: sym("runtime.gomaxprocs")
                    .and_then(|a| mem.u32(a).ok())
                    .map(|v| v as i32),
                sched: sym("runtime.sched"),
                wait_reason_strings: sym("runtime.waitReasonStrings"),
                source: "symbols",
            }))
        };
        match by_symbols() {
            Ok(Some(r)) => return Ok(r),
            Ok(None) => {}
            Err(e) => warnings.push(format!(
                "runtime roots by symbol failed ({e:#}); found by what the runtime guarantees instead"
            )),
        }
        let d = data();
        let mem = &*p.mem;
        let allm = find_allm(d, mem, &o).context(
            "no runtime.allm: the binary has no symbols and no M list was found in its data (is this the right binary for the core?)",
        )?;
        let allgs = find_allgs(d, mem, &o)
            .context("no runtime.allgs: no goroutine list was found in the binary's data")?;
        let allp = find_allp(d, mem, &o).unwrap_or((0, 0));
        Ok(Roots {
            allm,
            allgs,
            allp,
            gomaxprocs: (allp.1 > 0).then_some(allp.1 as i32),
            sched: None,
            wait_reason_strings: None,
            source: "heuristics",
        })
    }
}

/// Where the text the pclntab describes starts (and its funcdata base,
/// `gofunc`): from the moduledata, else the pclntab's own header, rebased.
fn place_text(
    p: &Process,
    layout: &Layout,
    pcln: &mut Pclntab,
    moduledata: Option<u64>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    let Some(md) = moduledata else {
        warnings.push("moduledata not found; using pcHeader.textStart".into());
        pcln.text = p.rt(pcln.text);
        return Ok(());
    };
    let field = |f: &str| {
        layout
            .field("runtime.moduledata", f)
            .map(|off| md.wrapping_add(off))
            .with_context(|| format!("layout lacks moduledata.{f}"))
    };
    pcln.text = p
        .mem
        .u64(field("text")?)
        .context("moduledata.text unreadable")?;
    pcln.gofunc = p.mem.u64(field("gofunc")?).unwrap_or(0);
    // Stack objects' pointer masks are offsets from it (absent: not read).
    pcln.rodata = field("rodata")
        .ok()
        .and_then(|a| p.mem.u64(a).ok())
        .unwrap_or(0);
    Ok(())
}

fn find_moduledata(d: &DataWords, mem: &dyn Memory, pcln: &Pclntab) -> Option<u64> {
    let funcnametab = pcln.addr + pcln.funcname_offset() as u64;
    d.words()
        .find(|&(a, v)| v == pcln.addr && mem.u64(a.wrapping_add(8)).ok() == Some(funcnametab))
        .map(|(a, _)| a)
}

fn is_m(mem: &dyn Memory, o: &Offs, m: u64) -> bool {
    m != 0
        && m.is_multiple_of(8)
        && mem
            .u64(m.wrapping_add(o.m_g0))
            .ok()
            .filter(|&g0| g0 != 0)
            .and_then(|g0| mem.u64(g0.wrapping_add(o.g_m)).ok())
            == Some(m)
}

/// `allm` is the data word whose M chain (through `alllink`) is longest; every
/// other pointer to an M (extra-M list, idle list) starts further down it.
fn find_allm(d: &DataWords, mem: &dyn Memory, o: &Offs) -> Option<u64> {
    let mut memo: HashMap<u64, bool> = HashMap::new();
    let mut best: Option<(usize, u64)> = None;
    for (_, v) in d.words() {
        if v == 0 || !v.is_multiple_of(8) || !*memo.entry(v).or_insert_with(|| is_m(mem, o, v)) {
            continue;
        }
        let mut n = 0;
        let mut cur = v;
        while cur != 0 && n < MAX_MS {
            if !*memo.entry(cur).or_insert_with(|| is_m(mem, o, cur)) {
                n = 0;
                break;
            }
            n += 1;
            cur = mem.u64(cur.wrapping_add(o.m_alllink)).unwrap_or(1);
        }
        if n > 0 && cur == 0 && best.is_none_or(|(bn, _)| n > bn) {
            best = Some((n, v));
        }
    }
    best.map(|(_, v)| v)
}

/// `allgs` is a `[]*g` whose first element is the main goroutine (goid 1).
fn find_allgs(d: &DataWords, mem: &dyn Memory, o: &Offs) -> Option<(u64, u64)> {
    let mut best: Option<(u64, u64)> = None;
    for (a, ptr) in d.words() {
        if ptr == 0 || !ptr.is_multiple_of(8) {
            continue;
        }
        let (Some(len), Some(cap)) = (d.word_at(a + 8), d.word_at(a + 16)) else {
            continue;
        };
        if len == 0 || len > cap || cap > MAX_GS as u64 {
            continue;
        }
        let goid = |i: u64| {
            mem.u64(ptr.wrapping_add(8 * i))
                .and_then(|g| mem.u64(g.wrapping_add(o.g_goid)))
                .ok()
        };
        if goid(0) != Some(1) || goid(len - 1).is_none_or(|id| id == 0) {
            continue;
        }
        if best.is_none_or(|(_, bl)| len > bl) {
            best = Some((ptr, len));
        }
    }
    best
}

/// `allp` is a `[]*p` whose i-th P has id i.
fn find_allp(d: &DataWords, mem: &dyn Memory, o: &Offs) -> Option<(u64, u64)> {
    d.words().find_map(|(a, ptr)| {
        let len = d.word_at(a + 8)?;
        let cap = d.word_at(a + 16)?;
        if ptr == 0 || len == 0 || len > cap || cap > 1 << 16 {
            return None;
        }
        (0..len)
            .all(|i| {
                mem.u64(ptr.wrapping_add(8 * i))
                    .and_then(|pp| {
                        Ok((
                            mem.u32(pp.wrapping_add(o.p_id))?,
                            mem.u32(pp.wrapping_add(o.p_status))?,
                        ))
                    })
                    .is_ok_and(|(id, st)| id as u64 == i && st <= 4)
            })
            .then_some((ptr, len))
    })
}

/// `runtime.waitReasonStrings`: by symbol, else found from the entry
/// "GC assist marking" (at the index `versions.json` gives), after the
/// empty string of `waitReasonZero`.
pub fn wait_reason_strings(
    p: &Process,
    roots: &Roots,
    facts: &VersionFacts,
) -> Result<Vec<String>> {
    let mem = &*p.mem;
    let base = match roots.wait_reason_strings {
        Some(a) => a,
        None => {
            let needle = b"GC assist marking";
            use object::{Object, ObjectSegment};
            let text_addr = p
                .exe
                .object()
                .segments()
                .find_map(|s| {
                    let data = s.data().ok()?;
                    let i = data.windows(needle.len()).position(|w| w == needle)?;
                    Some(p.rt(s.address() + i as u64))
                })
                .context("string \"GC assist marking\" not in the binary")?;
            let back = 16 * facts.wait_reason_gc_assist_marking as u64;
            let d = DataWords::read(p);
            let found = d.words().find_map(|(a, v)| {
                let base = a.checked_sub(back)?;
                (v == text_addr
                    && d.word_at(a.wrapping_add(8)) == Some(needle.len() as u64)
                    && d.word_at(base) == Some(0)
                    && d.word_at(base.wrapping_add(8)) == Some(0))
                .then_some(base)
            });
            found.context("waitReasonStrings table not found in data")?
        }
    };
    let n = facts.wait_reason_count;
    if n == 0 || n > 256 {
        bail!("bad wait reason count {n}");
    }
    (0..n as u64)
        .map(|i| {
            mem.go_string(base + 16 * i, 128)
                .context("wait reason string unreadable")
        })
        .collect()
}
