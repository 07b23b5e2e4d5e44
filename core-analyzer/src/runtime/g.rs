//! `runtime.g`: goroutines, from `allgs`.
use super::fields::View;
use super::{GoRuntime, MAX_GS};
use crate::memory::{Memory, ReadExt};
use anyhow::{bail, Context, Result};

/// The `_Gscan` bit, OR'd into the status while the GC owns the stack.
pub const GSCAN: u32 = 0x1000;
pub const GRUNNING: u32 = 2;
pub const GSYSCALL: u32 = 3;
pub const GWAITING: u32 = 4;

#[derive(Debug, Clone, Default)]
pub struct G {
    pub addr: u64,
    pub goid: u64,
    /// Raw `atomicstatus` (scan bit included).
    pub status: u32,
    pub waitreason: u8,
    pub m: u64,
    pub lockedm: u64,
    pub stack_lo: u64,
    pub stack_hi: u64,
    pub sched_sp: u64,
    pub sched_pc: u64,
    pub sched_bp: u64,
    pub sched_lr: u64,
    pub syscallsp: u64,
    pub syscallpc: u64,
    /// `None` before Go 1.23.
    pub syscallbp: Option<u64>,
    pub gopc: u64,
    pub startpc: u64,
    pub parent_goid: u64,
    pub waitsince: i64,
}

impl G {
    pub fn state(&self) -> u32 {
        self.status & !GSCAN
    }
}

/// Go's `isSystemGoroutine` by start function: runtime internals, not user code.
pub fn is_system_function(name: &str) -> bool {
    name.starts_with("runtime.") && name != "runtime.main"
}

pub struct GLayout {
    size: u64,
    f: [Option<u64>; 19],
}

const NAMES: [&str; 19] = [
    "goid",
    "atomicstatus",
    "waitreason",
    "m",
    "lockedm",
    "stack.lo",
    "stack.hi",
    "sched.sp",
    "sched.pc",
    "sched.bp",
    "sched.lr",
    "syscallsp",
    "syscallpc",
    "syscallbp",
    "gopc",
    "startpc",
    "parentGoid",
    "waitsince",
    "schedlink",
];

impl GLayout {
    pub fn new(rt: &GoRuntime) -> Result<GLayout> {
        GLayout::of(&rt.layout)
    }

    /// From a layout (DWARF's or a release's table).
    pub fn of(layout: &crate::layout::Layout) -> Result<GLayout> {
        let size = layout.size("runtime.g").context("layout lacks runtime.g")?;
        let mut f = [None; 19];
        for (i, n) in NAMES.iter().enumerate() {
            f[i] = layout.field("runtime.g", n);
        }
        Ok(GLayout { size, f })
    }

    pub fn decode(&self, addr: u64, buf: &[u8]) -> G {
        let v = View(buf);
        let f = &self.f;
        G {
            addr,
            goid: v.u64(f[0]),
            status: v.u32(f[1]),
            waitreason: v.u8(f[2]),
            m: v.u64(f[3]),
            lockedm: v.u64(f[4]),
            stack_lo: v.u64(f[5]),
            stack_hi: v.u64(f[6]),
            sched_sp: v.u64(f[7]),
            sched_pc: v.u64(f[8]),
            sched_bp: v.u64(f[9]),
            sched_lr: v.u64(f[10]),
            syscallsp: v.u64(f[11]),
            syscallpc: v.u64(f[12]),
            syscallbp: f[13].map(|o| v.u64(Some(o))),
            gopc: v.u64(f[14]),
            startpc: v.u64(f[15]),
            parent_goid: v.u64(f[16]),
            waitsince: v.u64(f[17]) as i64,
        }
    }

    pub fn read(&self, mem: &dyn Memory, addr: u64) -> Result<G> {
        let buf = mem
            .bytes(addr, self.size as usize)
            .with_context(|| format!("reading runtime.g at {addr:#x}"))?;
        Ok(self.decode(addr, &buf))
    }
}

/// Every G in `allgs` (dead ones included; callers filter).
pub fn all_gs(rt: &GoRuntime, mem: &dyn Memory, warnings: &mut Vec<String>) -> Result<Vec<G>> {
    let gl = GLayout::new(rt)?;
    let (ptr, len) = rt.roots.allgs;
    if len as usize > MAX_GS {
        bail!("runtime.allgs claims {len} goroutines (over the {MAX_GS} limit): the core or the layout is wrong");
    }
    let ptrs = mem
        .bytes(ptr, len as usize * 8)
        .with_context(|| format!("reading runtime.allgs ({len} pointers at {ptr:#x})"))?;
    // Memory follows what is real: one entry per distinct g (the runtime
    // lists each once; a repeat is corruption), never what `len` claims.
    let mut out = Vec::new();
    let mut seen = rustc_hash::FxHashSet::default();
    let (mut bad, mut repeated) = (0usize, 0usize);
    for c in ptrs.chunks_exact(8) {
        let a = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
        if !seen.insert(a) {
            repeated += 1;
            continue;
        }
        match gl.read(mem, a) {
            Ok(g) => out.push(g),
            Err(_) => bad += 1,
        }
    }
    if bad > 0 {
        warnings.push(format!("{bad} of {len} goroutines in runtime.allgs could not be read (pointers outside the core)"));
    }
    if repeated > 0 {
        warnings.push(format!(
            "runtime.allgs lists {repeated} of its {len} entries more than once (corrupt core); each goroutine is counted once"
        ));
    }
    Ok(out)
}
