//! Which goroutines' live frames point to the objects others wait on: every
//! Go frame's live pointer slots (Go's stack maps) checked against each
//! object's bounds. The evidence for who holds a mutex Go does not record.
use super::sqlpool::{self, SqlLayout};
use super::Object;
use crate::elf::regs::Arch;
use crate::memory::Memory;
use crate::report::Reference;
use crate::runtime::{g, G};
use crate::symbolize::pclntab::Pclntab;
use crate::unwind::go::{GoUnwinder, MAX_FRAMES};
use crate::unwind::stackmap::live_pointers;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// For each goroutine (by address) that has any, its references.
pub fn find(
    pcln: &Pclntab,
    mem: &dyn Memory,
    arch: Arch,
    gs: &[&G],
    objects: &BTreeMap<u64, Object>,
) -> HashMap<u64, Vec<Reference>> {
    let mut out = HashMap::default();
    if objects.is_empty() {
        return out;
    }
    // Bounds sorted by start, for a binary search per pointer. A pool is
    // held through its connections, not pointers to it.
    let mut spans: Vec<(u64, u64, u64)> = objects
        .iter()
        .filter(|(_, o)| o.pool.is_none())
        .map(|(&addr, o)| (o.bounds.0, o.bounds.1, addr))
        .collect();
    let pools: Vec<(u64, SqlLayout)> = objects
        .iter()
        .filter_map(|(&addr, o)| Some((addr, o.pool?)))
        .collect();
    spans.sort_unstable();
    let u = GoUnwinder {
        pcln,
        mem,
        arch,
        cache: Default::default(),
    };
    for g in gs.iter().filter(|g| g.state() != g::GRUNNING) {
        let (pc, sp, lr) = if g.syscallsp != 0 {
            (g.syscallpc, g.syscallsp, 0)
        } else {
            (g.sched_pc, g.sched_sp, g.sched_lr)
        };
        let mut refs: Vec<Reference> = vec![];
        for fr in u.physical_frames(pc, sp, lr, MAX_FRAMES) {
            for p in live_pointers(pcln, mem, arch, &fr) {
                let by_bounds = containing(&spans, p).map(|o| (o, None));
                let by_conn = pools
                    .iter()
                    .filter(|(db, l)| sqlpool::in_use_conn(mem, l, *db, p))
                    .map(|(db, _)| (*db, Some("one of its connections in use (a driverConn)")));
                for (object, via) in by_bounds.chain(by_conn) {
                    if !refs.iter().any(|r| r.object == object) {
                        refs.push(Reference {
                            object,
                            function: pcln.name(&fr.func).to_string(),
                            via,
                        });
                    }
                }
            }
        }
        if !refs.is_empty() {
            out.insert(g.addr, refs);
        }
    }
    out
}

/// The objects whose bounds hold `p` (several when objects share a heap
/// object: a struct with two mutexes).
fn containing(spans: &[(u64, u64, u64)], p: u64) -> impl Iterator<Item = u64> + '_ {
    let end = spans.partition_point(|s| s.0 <= p);
    spans[..end]
        .iter()
        .rev()
        .take_while(move |s| s.0 == spans[end - 1].0)
        .filter(move |s| p < s.1)
        .map(|s| s.2)
}
