//! `runtime.p`: the GOMAXPROCS processors, from `allp`.
use super::fields::View;
use super::GoRuntime;
use crate::memory::{Memory, ReadExt};
use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, Default)]
pub struct P {
    pub addr: u64,
    pub id: i32,
    pub status: u32,
    pub m: u64,
    pub schedtick: u32,
    pub syscalltick: u32,
    pub runq_len: u32,
}

pub fn all_ps(rt: &GoRuntime, mem: &dyn Memory) -> Result<Vec<P>> {
    let (ptr, len) = rt.roots.allp;
    if len == 0 {
        return Ok(vec![]);
    }
    if len > 1 << 16 {
        bail!("runtime.allp claims {len} Ps: the core or the layout is wrong");
    }
    let l = &rt.layout;
    let f = |n| l.field("runtime.p", n);
    let (id, status, m, st, sy, head, tail) = (
        f("id"),
        f("status"),
        f("m"),
        f("schedtick"),
        f("syscalltick"),
        f("runqhead"),
        f("runqtail"),
    );
    let need = [id, status, m, st, sy, head, tail]
        .iter()
        .flatten()
        .max()
        .copied()
        .unwrap_or(0)
        + 8;
    let ptrs = mem
        .bytes(ptr, len as usize * 8)
        .context("reading runtime.allp")?;
    ptrs.chunks_exact(8)
        .map(|c| {
            let addr = u64::from_le_bytes(c.try_into().unwrap());
            let buf = mem
                .bytes(addr, need as usize)
                .with_context(|| format!("reading runtime.p at {addr:#x}"))?;
            let v = View(&buf);
            Ok(P {
                addr,
                id: v.u32(id) as i32,
                status: v.u32(status),
                m: v.u64(m),
                schedtick: v.u32(st),
                syscalltick: v.u32(sy),
                runq_len: v.u32(tail).wrapping_sub(v.u32(head)),
            })
        })
        .collect()
}

/// `_Pidle` .. `_Pdead`, unchanged since Go 1.0.
pub fn status_name(status: u32) -> &'static str {
    match status {
        0 => "idle",
        1 => "running",
        2 => "syscall",
        3 => "gcstop",
        4 => "dead",
        _ => "?",
    }
}
