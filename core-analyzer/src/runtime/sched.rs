//! `runtime.sched` and the extra-M counters: the scheduler-wide numbers that
//! `GODEBUG=schedtrace=1` prints.
use super::fields::View;
use super::GoRuntime;
use crate::memory::{Memory, ReadExt};
use crate::process::Process;
use anyhow::{Context, Result};

pub use crate::report::Sched;

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
