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
use crate::unwind::go::{GoUnwinder, PhysFrame, MAX_FRAMES};
use crate::unwind::stackmap::StackMaps;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// What a pass looks for: pointers into the objects' bounds (over the
/// stacks alone), or pointers to a pool's connections in use (which reads
/// the heap: done while a live process is stopped).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Looking {
    IntoObjects,
    AtPoolConnections,
}

/// What the pointers are checked against.
pub struct Targets {
    /// Bounds sorted by start, for a binary search per pointer.
    spans: Vec<(u64, u64, u64)>,
    /// Pools, held through their connections, not pointers to them.
    pools: Vec<(u64, SqlLayout)>,
}

impl Targets {
    /// The objects a pass looks for; `None` when there is nothing to find.
    pub fn new(objects: &BTreeMap<u64, Object>, looking: Looking) -> Option<Targets> {
        let into = looking == Looking::IntoObjects;
        let mut t = Targets {
            spans: objects
                .iter()
                .filter(|(_, o)| o.pool.is_none() && into)
                .map(|(&addr, o)| (o.bounds.0, o.bounds.1, addr))
                .collect(),
            pools: objects
                .iter()
                .filter(|_| !into)
                .filter_map(|(&addr, o)| Some((addr, o.pool?)))
                .collect(),
        };
        t.spans.sort_unstable();
        (!t.spans.is_empty() || !t.pools.is_empty()).then_some(t)
    }
}

/// For each goroutine (by address) that has any, its references, walking
/// their stacks here (the unwinding pass does the same through `scan`); the
/// goroutines are split between workers, as their unwinding is.
pub fn find(
    pcln: &Pclntab,
    mem: &(dyn Memory + Send + Sync),
    arch: Arch,
    gs: &[&G],
    (objects, looking): (&BTreeMap<u64, Object>, Looking),
) -> HashMap<u64, Vec<Reference>> {
    let Some(t) = Targets::new(objects, looking) else {
        return HashMap::default();
    };
    let t = &t;
    let mut out = HashMap::default();
    let parts = crate::parallel::in_parts(
        gs,
        1024,
        || (),
        |(), part| part_refs(pcln, mem, arch, part, t),
    );
    // A worker that panicked loses its part's references, not the run.
    for (_, refs) in parts {
        out.extend(refs.unwrap_or_default());
    }
    out
}

fn part_refs(
    pcln: &Pclntab,
    mem: &dyn Memory,
    arch: Arch,
    gs: &[&G],
    t: &Targets,
) -> HashMap<u64, Vec<Reference>> {
    let u = GoUnwinder {
        pcln,
        mem,
        arch,
        cache: Default::default(),
    };
    let maps = StackMaps::new(pcln, mem, arch);
    let mut out = HashMap::default();
    for g in gs {
        if g.state() == g::GRUNNING {
            continue;
        }
        let (pc, sp, lr) = if g.syscallsp != 0 {
            (g.syscallpc, g.syscallsp, 0)
        } else {
            (g.sched_pc, g.sched_sp, g.sched_lr)
        };
        let refs = scan(&maps, t, &u.physical_frames(pc, sp, lr, MAX_FRAMES));
        if !refs.is_empty() {
            out.insert(g.addr, refs);
        }
    }
    out
}

/// The references one goroutine's frames hold: each live pointer (stack
/// maps) that falls in an object's bounds, or names a pool's connection.
pub fn scan(maps: &StackMaps, t: &Targets, frames: &[PhysFrame]) -> Vec<Reference> {
    let mut refs: Vec<Reference> = vec![];
    for fr in frames {
        for p in maps.live_pointers(fr) {
            let by_bounds = containing(&t.spans, p).map(|o| (o, None, o == p));
            let by_conn = t
                .pools
                .iter()
                .filter(|(db, l)| sqlpool::in_use_conn(maps.memory(), l, *db, p))
                .map(|(db, _)| {
                    (
                        *db,
                        Some("one of its connections in use (a driverConn)"),
                        true,
                    )
                });
            for (object, via, exact) in by_bounds.chain(by_conn) {
                match refs.iter_mut().find(|r| r.object == object) {
                    Some(r) => r.exact |= exact,
                    None => refs.push(Reference {
                        object,
                        function: maps.function_name(fr).to_string(),
                        via,
                        exact,
                    }),
                }
            }
        }
    }
    refs
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
