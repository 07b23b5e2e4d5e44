//! `runtime.sched` and the extra-M counters: the scheduler-wide numbers that
//! `GODEBUG=schedtrace=1` prints.
use super::fields::View;
use super::GoRuntime;
use crate::memory::{Memory, ReadExt};
use crate::process::Process;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sched {
    /// `mcount()`: Ms ever created minus Ms freed (schedtrace's `threads=`).
    pub mcount: i64,
    /// Ms whose thread exited (`sched.nmfreed`). Go ends a thread only when a
    /// goroutine exits while locked to it (LockOSThread without Unlock).
    pub nmfreed: i64,
    pub maxmcount: i32,
    /// Idle Ms (`nmidle`), and Ms parked because their locked goroutine is not runnable.
    pub idle_ms: i32,
    pub idle_locked_ms: i32,
    pub spinning_ms: i32,
    pub idle_ps: i32,
    /// System goroutines (plus unused extra-M goroutines).
    pub ngsys: i32,
    /// Global run queue length.
    pub runqueue: i32,
    /// Free extra Ms (`extraMLength`) and extra Ms borrowed by C threads (`extraMInUse`).
    pub extra_ms_free: Option<u32>,
    pub extra_ms_in_use: Option<u32>,
}

pub fn read(rt: &GoRuntime, p: &Process) -> Result<Option<Sched>> {
    let Some(addr) = rt.roots.sched else {
        return Ok(None);
    };
    let mem: &dyn Memory = &*p.mem;
    let size = rt
        .layout
        .size("runtime.schedt")
        .context("layout lacks runtime.schedt")?;
    let buf = mem
        .bytes(addr, size as usize)
        .context("reading runtime.sched")?;
    let v = View(&buf);
    let f = |n: &str| rt.layout.field("runtime.schedt", n);
    let sym = |n: &str| p.exe.symbol(n).and_then(|(a, _)| mem.u32(p.rt(a)).ok());
    // The run queue length moved into gQueue.size in Go 1.25.
    let runq = f("runqsize").or_else(|| f("runq.size"));
    Ok(Some(Sched {
        mcount: (v.u64(f("mnext")) as i64).wrapping_sub(v.u64(f("nmfreed")) as i64),
        nmfreed: v.u64(f("nmfreed")) as i64,
        maxmcount: v.u32(f("maxmcount")) as i32,
        idle_ms: v.u32(f("nmidle")) as i32,
        idle_locked_ms: v.u32(f("nmidlelocked")) as i32,
        spinning_ms: v.u32(f("nmspinning")) as i32,
        idle_ps: v.u32(f("npidle")) as i32,
        ngsys: v.u32(f("ngsys")) as i32,
        runqueue: v.u32(runq) as i32,
        extra_ms_free: sym("runtime.extraMLength"),
        extra_ms_in_use: sym("runtime.extraMInUse"),
    }))
}
