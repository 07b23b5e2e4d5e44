//! `runtime.m`: one per OS thread the runtime knows (plus free extra Ms).
use super::fields::View;
use super::walk::{walk, Stop};
use super::{GoRuntime, MAX_MS};
use crate::memory::{Memory, ReadExt};
use anyhow::{Context, Result};

#[derive(Debug, Clone, Default)]
pub struct M {
    pub addr: u64,
    pub id: i64,
    pub procid: u64,
    pub g0: u64,
    pub gsignal: u64,
    pub curg: u64,
    pub p: u64,
    pub lockedg: u64,
    pub locked_ext: u32,
    pub locked_int: u32,
    pub incgo: bool,
    pub ncgo: i32,
    pub ncgocall: u64,
    pub isextra: bool,
    pub is_extra_in_c: bool,
    /// Borrowed only to run a signal handler on a foreign thread (Go 1.22+).
    pub is_extra_in_sig: bool,
    pub spinning: bool,
    pub blocked: bool,
    pub mstartfn: u64,
    pub vdso_sp: u64,
    pub vdso_pc: u64,
    pub alllink: u64,
}

/// Resolved offsets (None: the field does not exist in this release).
pub struct MLayout {
    size: u64,
    f: [Option<u64>; 21],
}

const NAMES: [&str; 21] = [
    "id",
    "procid",
    "g0",
    "gsignal",
    "curg",
    "p",
    "lockedg",
    "lockedExt",
    "lockedInt",
    "incgo",
    "ncgo",
    "ncgocall",
    "isextra",
    "isExtraInC",
    "spinning",
    "blocked",
    "mstartfn",
    "vdsoSP",
    "vdsoPC",
    "alllink",
    "isExtraInSig",
];

impl MLayout {
    pub fn new(rt: &GoRuntime) -> Result<MLayout> {
        let size = rt
            .layout
            .size("runtime.m")
            .context("layout lacks runtime.m")?;
        let mut f = [None; 21];
        for (i, n) in NAMES.iter().enumerate() {
            f[i] = rt.layout.field("runtime.m", n);
        }
        Ok(MLayout { size, f })
    }

    pub fn read(&self, mem: &dyn Memory, addr: u64) -> Result<M> {
        let buf = mem
            .bytes(addr, self.size as usize)
            .with_context(|| format!("reading runtime.m at {addr:#x}"))?;
        let v = View(&buf);
        let f = &self.f;
        Ok(M {
            addr,
            id: v.u64(f[0]) as i64,
            procid: v.u64(f[1]),
            g0: v.u64(f[2]),
            gsignal: v.u64(f[3]),
            curg: v.u64(f[4]),
            p: v.u64(f[5]),
            lockedg: v.u64(f[6]),
            locked_ext: v.u32(f[7]),
            locked_int: v.u32(f[8]),
            incgo: v.bool(f[9]),
            ncgo: v.u32(f[10]) as i32,
            ncgocall: v.u64(f[11]),
            isextra: v.bool(f[12]),
            is_extra_in_c: v.bool(f[13]),
            spinning: v.bool(f[14]),
            blocked: v.bool(f[15]),
            mstartfn: v.u64(f[16]),
            vdso_sp: v.u64(f[17]),
            vdso_pc: v.u64(f[18]),
            alllink: v.u64(f[19]),
            is_extra_in_sig: v.bool(f[20]),
        })
    }
}

/// Walk `allm` through `alllink`, stopping at a cycle or an unreadable M.
pub fn all_ms(rt: &GoRuntime, mem: &dyn Memory, warnings: &mut Vec<String>) -> Result<Vec<M>> {
    let ml = MLayout::new(rt)?;
    let (ms, stop) = walk(rt.roots.allm, MAX_MS, |a| {
        let m = ml.read(mem, a)?;
        let next = m.alllink;
        Ok((m, next))
    });
    match stop {
        Stop::End => {}
        Stop::Cycle(a) => warnings.push(format!(
            "cycle in runtime.allm at M {a:#x}: list cut after {} Ms",
            ms.len()
        )),
        Stop::Limit => warnings.push(format!("more than {MAX_MS} Ms on runtime.allm; list cut")),
        Stop::Broken(e) => warnings.push(format!(
            "runtime.allm list broken after {} Ms: {e}",
            ms.len()
        )),
    }
    Ok(ms)
}

/// The `mstartfn` funcval's code pointer, named.
pub fn mstartfn_name(rt: &GoRuntime, mem: &dyn Memory, m: &M) -> Option<String> {
    if m.mstartfn == 0 {
        return None;
    }
    let pc = mem.u64(m.mstartfn).ok()?;
    rt.func_name(pc).map(str::to_string)
}
