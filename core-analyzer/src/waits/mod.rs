//! What each goroutine parked in Go waits on, read from the runtime's own
//! record of the wait, never guessed from names:
//! - a channel operation or `select`: the goroutine's sudogs (`g.waiting`),
//!   each naming its channel;
//! - a semaphore (`sync.Mutex`, `RWMutex`, `WaitGroup`, `semacquire`): the
//!   sudog `semacquire1` keeps in its frame, whose `g` is the goroutine and
//!   whose `elem` is the semaphore; the sync value is found from the
//!   semaphore's field offset (DWARF or the layout tables);
//! - `sync.Cond`: the Cond in `Cond.Wait`'s frame whose notify list holds the
//!   goroutine's sudog.
//!
//! Then each object's state (locked, waiters, readers, counter, len/cap,
//! queues), its bounds (the heap object it is in, for the holders' search in
//! `references`) and its name where the binary has one.
pub mod heap;
pub mod naming;
pub mod references;
pub mod sqlpool;
mod state;

use crate::memory::{Memory, ReadExt};
use crate::process::Process;
use crate::report::ObjectState;
use crate::runtime::{g, GoRuntime, G};
use crate::unwind::go::{GoUnwinder, PhysFrame};
use crate::unwind::stackmap::StackMaps;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::collections::BTreeMap;

/// Go's tiny allocator block (`maxTinySize`).
const TINY_BLOCK: u64 = 16;
/// Cases a select may have (Go refuses more): its sudog list is no longer.
const MAX_SELECT_CASES: usize = 1 << 16;
/// List steps (sudogs followed) a whole read may take, beyond a few per
/// goroutine: a corrupt core's lists end there, never in a hang.
const BASE_STEPS: u64 = 1 << 22;
/// Frames from `gopark` up to the one that records the wait, at most:
/// `gopark`, `goparkunlock`, `semacquire1` (or `selectgo`, then
/// `(*DB).conn`; `notifyListWait`, then `Cond.Wait`), and the sync frames
/// above the semaphore that say which sync type waits.
const SELECT_FRAMES: usize = 3;
const COND_FRAMES: usize = 5;
const SEMA_FRAMES: usize = 8;

/// One goroutine's wait.
#[derive(Debug, Clone)]
pub struct GWait {
    pub kind: &'static str,
    pub addr: u64,
    pub channels: Vec<u64>,
    pub evidence: &'static str,
}

/// An object goroutines wait on.
#[derive(Debug, Clone)]
pub struct Object {
    pub kind: &'static str,
    pub state: ObjectState,
    /// What a live pointer to it points into: the heap object that holds it,
    /// or the package variable, else the value alone.
    pub bounds: (u64, u64),
    pub name: Option<String>,
    /// A database/sql pool: how its connections are recognized.
    pub pool: Option<sqlpool::SqlLayout>,
}

#[derive(Debug, Default)]
pub struct Waits {
    /// By the goroutine's address.
    pub of_goroutine: HashMap<u64, GWait>,
    pub objects: BTreeMap<u64, Object>,
    /// Goroutines' references to pools' connections (read with the heap).
    pub pool_references: HashMap<u64, Vec<crate::report::Reference>>,
    /// Some lists were not followed to their end (the step budget ran out:
    /// a corrupt core).
    pub cut_short: bool,
}

/// Field offsets the reading needs (absent ones turn a kind off).
pub(crate) struct Offs {
    g_waiting: Option<u64>,
    sg_g: Option<u64>,
    sg_elem: Option<u64>,
    sg_next: Option<u64>,
    sg_waitlink: Option<u64>,
    sg_c: Option<u64>,
    pub(crate) l: crate::layout::Layout,
    /// The longest a wait list can be: every goroutine on it.
    pub(crate) max_list: usize,
    /// List steps left for the whole read (shared by the workers).
    steps: std::sync::atomic::AtomicU64,
}

impl Offs {
    fn new(rt: &GoRuntime, goroutines: usize) -> Offs {
        let l = &rt.layout;
        let sg = |f| l.field("runtime.sudog", f);
        Offs {
            g_waiting: l.field("runtime.g", "waiting"),
            sg_g: sg("g"),
            sg_elem: sg("elem"),
            sg_next: sg("next"),
            sg_waitlink: sg("waitlink"),
            sg_c: sg("c"),
            l: l.clone(),
            max_list: goroutines + 1,
            steps: (BASE_STEPS + 8 * goroutines as u64).into(),
        }
    }

    /// One more step along a list, if the budget allows.
    pub(crate) fn step(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.steps
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    fn cut_short(&self) -> bool {
        self.steps.load(std::sync::atomic::Ordering::Relaxed) == 0
    }
}

/// The waits of the parked goroutines among `gs`, and their objects. The
/// goroutines are split between workers (each with its own caches).
pub fn read(rt: &GoRuntime, p: &Process, gs: &[&G]) -> Waits {
    let mem = &*p.mem;
    let o = Offs::new(rt, gs.len());
    let waiting: Vec<&G> = gs
        .iter()
        .copied()
        .filter(|g| g.state() == g::GWAITING)
        .collect();
    let sql = std::sync::OnceLock::new();
    let parts = crate::parallel::in_parts(
        &waiting,
        4096,
        || (),
        |(), part| read_part(rt, p, (&o, &sql), part),
    );
    // A worker that panicked loses its part's waits, not the run.
    let parts = parts.into_iter().filter_map(|(_, r)| r);
    let mut out = Waits::default();
    let mut found: Vec<(u64, sqlpool::SqlLayout)> = vec![];
    for (waits, pools) in parts {
        out.of_goroutine.extend(waits);
        for f in pools {
            if !found.iter().any(|(d, _)| *d == f.0) {
                found.push(f);
            }
        }
    }
    let mheap = p.exe.symbol("runtime.mheap_").map(|(a, _)| p.rt(a));
    let heap = heap::Heap::new(rt, mheap, mem, p.arch);
    let kinds: BTreeMap<u64, &'static str> = out
        .of_goroutine
        .values()
        .map(|w| (w.addr, w.kind))
        .collect();
    let globals = Globals::new(p, kinds.keys().copied());
    for (addr, kind) in kinds {
        let global = globals.of(addr);
        // A 16-byte block may hold several tiny objects (Go's tiny allocator
        // packs pointer-free values): a pointer into it is not a pointer to
        // this one, so only the value's own address counts there.
        let bounds = heap
            .as_ref()
            .and_then(|h| h.object(addr))
            .filter(|&(_, n)| n > TINY_BLOCK)
            .map(|(b, n)| (b, b.saturating_add(n)))
            .or(global.as_ref().map(|g| g.1))
            .unwrap_or((addr, addr.saturating_add(1)));
        let pool = found.iter().find(|(db, _)| *db == addr).map(|(_, l)| *l);
        out.objects.insert(
            addr,
            Object {
                kind,
                state: match &pool {
                    Some(l) => sqlpool::state(mem, l, addr),
                    None => state::read(&o, mem, kind, addr),
                },
                bounds,
                name: global.map(|g| g.0),
                pool,
            },
        );
    }
    out.cut_short = o.cut_short();
    let looking = (&out.objects, references::Looking::AtPoolConnections);
    out.pool_references = references::find(&rt.pcln, mem, p.arch, gs, looking);
    out
}

/// One worker's goroutines: each one's wait, and the pools found.
fn read_part(
    rt: &GoRuntime,
    p: &Process,
    (o, sql): (&Offs, &SqlCell),
    gs: &[&G],
) -> (HashMap<u64, GWait>, Vec<(u64, sqlpool::SqlLayout)>) {
    let mem = &*p.mem;
    let u = GoUnwinder {
        pcln: &rt.pcln,
        mem,
        arch: p.arch,
        cache: Default::default(),
    };
    let maps = StackMaps::new(&rt.pcln, mem, p.arch);
    let mheap = p.exe.symbol("runtime.mheap_").map(|(a, _)| p.rt(a));
    let heap = heap::Heap::new(rt, mheap, mem, p.arch);
    let mut pools = Pools::new(p, sql);
    let mut lists = CondLists::default();
    let mut out = HashMap::default();
    for g in gs {
        let Some(reason) = rt.wait_reason(g.waitreason) else {
            continue;
        };
        let w = match reason.as_str() {
            "chan send" | "chan receive" => chan_wait(o, mem, g, false),
            "select" => chan_wait(o, mem, g, true)
                .map(|w| pools.pool_wait((&u, &maps), heap.as_ref(), g, w)),
            "sync.Mutex.Lock"
            | "sync.RWMutex.RLock"
            | "sync.RWMutex.Lock"
            | "sync.WaitGroup.Wait"
            | "semacquire" => sema_wait(o, (&u, &maps), g, &reason),
            "sync.Cond.Wait" => cond_wait(o, (&u, &maps), g, &mut lists),
            _ => None,
        };
        if let Some(w) = w {
            out.insert(g.addr, w);
        }
    }
    (out, pools.found)
}

/// The database/sql types, read from DWARF once for every worker (when a
/// select first waits in `(*DB).conn`).
type SqlCell = std::sync::OnceLock<Option<sqlpool::SqlLayout>>;

/// database/sql pools found so far.
struct Pools<'p> {
    exe: &'p crate::elf::exe::Binary,
    layout: &'p SqlCell,
    found: Vec<(u64, sqlpool::SqlLayout)>,
}

impl<'p> Pools<'p> {
    fn new(p: &'p Process, layout: &'p SqlCell) -> Pools<'p> {
        Pools {
            exe: &p.exe,
            layout,
            found: vec![],
        }
    }

    /// A select in `database/sql.(*DB).conn` waits on the pool: the wait is
    /// the `*DB` live in that frame (else the select as read).
    fn pool_wait(
        &mut self,
        (u, maps): (&GoUnwinder, &StackMaps),
        heap: Option<&heap::Heap>,
        g: &G,
        w: GWait,
    ) -> GWait {
        let frames = u.physical_frames(g.sched_pc, g.sched_sp, g.sched_lr, SELECT_FRAMES);
        let Some(conn) = frames
            .iter()
            .find(|f| u.pcln.name(&f.func) == "database/sql.(*DB).conn")
        else {
            return w;
        };
        let exe = self.exe;
        let Some(l) = *self
            .layout
            .get_or_init(|| sqlpool::SqlLayout::from_dwarf(exe))
        else {
            return w;
        };
        let Some(db) = heap.and_then(|h| sqlpool::pool_of(maps, u.mem, h, &l, conn)) else {
            return w;
        };
        if !self.found.iter().any(|(d, _)| *d == db) {
            self.found.push((db, l));
        }
        GWait {
            addr: db,
            evidence: "its select in database/sql.(*DB).conn waits for a connection of the pool live in that frame (Go's stack map)",
            ..w
        }
    }
}

/// Channel operations and selects: `g.waiting` lists the goroutine's
/// sudogs (one per case), each naming its channel.
fn chan_wait(o: &Offs, mem: &dyn Memory, g: &G, select: bool) -> Option<GWait> {
    let (waiting, c, link) = (o.g_waiting?, o.sg_c?, o.sg_waitlink?);
    let mut sg = mem.u64(g.addr.wrapping_add(waiting)).ok()?;
    // A channel operation has one sudog; a select one per case.
    let cap = if select { MAX_SELECT_CASES } else { 1 };
    let (mut channels, mut seen, mut named) = (vec![], HashSet::default(), HashSet::default());
    let mut n = 0;
    while sg != 0 && n < cap && seen.insert(sg) && o.step() {
        n += 1;
        let ch = mem.u64(sg.wrapping_add(c)).ok()?;
        if ch != 0 && named.insert(ch) {
            channels.push(ch);
        }
        sg = mem.u64(sg.wrapping_add(link)).ok()?;
    }
    let addr = *channels.first()?;
    Some(if select {
        GWait {
            kind: "select",
            addr,
            channels,
            evidence: "its sudogs (g.waiting) name the select's channels",
        }
    } else {
        GWait {
            kind: "chan",
            addr,
            channels: vec![],
            evidence: "its sudog (g.waiting) names the channel",
        }
    })
}

/// Semaphore waits: the sudog in `semacquire1`'s frame whose `g` is this
/// goroutine names the semaphore; which field of which sync value it is
/// follows from the wait reason and the sync frames above.
fn sema_wait(o: &Offs, (u, maps): (&GoUnwinder, &StackMaps), g: &G, reason: &str) -> Option<GWait> {
    let frames = u.physical_frames(g.sched_pc, g.sched_sp, g.sched_lr, SEMA_FRAMES);
    let at = frames
        .iter()
        .position(|f| u.pcln.name(&f.func) == "runtime.semacquire1")?;
    let (sg_g, sg_elem) = (o.sg_g?, o.sg_elem?);
    // The sudog is a live pointer of semacquire1's frame (used after the park).
    let sema = maps.live_pointers(&frames[at]).into_iter().find_map(|w| {
        let ok = u.mem.u64(w.checked_add(sg_g)?).ok()? == g.addr;
        ok.then(|| u.mem.u64(w.wrapping_add(sg_elem)).ok())
            .flatten()
            .filter(|&e| e != 0)
    })?;
    // Which sync call waits: the frames just above (inlined ones included).
    let above = &frames[at + 1..frames.len().min(at + 5)];
    let names = frame_names(u, above);
    let has = |n: &str| names.iter().any(|x| &**x == n);
    let l = &o.l;
    let (kind, field) = match reason {
        "sync.Mutex.Lock" if has("sync.(*RWMutex).Lock") => (
            "rwmutex",
            l.field("sync.RWMutex", "w")? + l.mutex_field("sema")?,
        ),
        "sync.Mutex.Lock" => ("mutex", l.mutex_field("sema")?),
        "sync.RWMutex.RLock" => ("rwmutex", l.field("sync.RWMutex", "readerSem")?),
        "sync.RWMutex.Lock" => ("rwmutex", l.field("sync.RWMutex", "writerSem")?),
        _ if reason == "sync.WaitGroup.Wait" || has("sync.(*WaitGroup).Wait") => {
            ("waitgroup", l.field("sync.WaitGroup", "sema")?)
        }
        _ => ("sema", 0),
    };
    Some(GWait {
        kind,
        addr: sema.checked_sub(field)?,
        channels: vec![],
        evidence: "its sudog, live in runtime.semacquire1's frame, names the semaphore",
    })
}

/// The goroutines on each notify list seen so far (a list is walked once).
#[derive(Default)]
struct CondLists(HashMap<u64, HashSet<u64>>);

/// `sync.Cond.Wait`: the Cond in `Cond.Wait`'s frame (or its arguments)
/// whose notify list holds a sudog of this goroutine.
fn cond_wait(
    o: &Offs,
    (u, maps): (&GoUnwinder, &StackMaps),
    g: &G,
    lists: &mut CondLists,
) -> Option<GWait> {
    let frames = u.physical_frames(g.sched_pc, g.sched_sp, g.sched_lr, COND_FRAMES);
    let wait = frames
        .iter()
        .find(|f| u.pcln.name(&f.func) == "sync.(*Cond).Wait")?;
    let notify = o.l.field("sync.Cond", "notify")?;
    let head = o.l.field("runtime.notifyList", "head")?;
    let (sg_g, sg_next) = (o.sg_g?, o.sg_next?);
    let on_list = |list: u64, lists: &mut CondLists| -> bool {
        let gs = lists.0.entry(list).or_insert_with(|| {
            let mut gs = HashSet::default();
            let mut sg = u.mem.u64(list.wrapping_add(head)).unwrap_or(0);
            while sg != 0 && gs.len() < o.max_list && o.step() {
                match (
                    u.mem.u64(sg.wrapping_add(sg_g)),
                    u.mem.u64(sg.wrapping_add(sg_next)),
                ) {
                    (Ok(gp), Ok(next)) if gs.insert(gp) => sg = next,
                    _ => break,
                }
            }
            gs
        });
        gs.contains(&g.addr)
    };
    // The Cond is live in Cond.Wait's frame (its L is locked after the park).
    let addr = maps
        .live_pointers(wait)
        .into_iter()
        .find(|&c| on_list(c.wrapping_add(notify), lists))?;
    Some(GWait {
        kind: "cond",
        addr,
        channels: vec![],
        evidence: "its sudog is on the Cond's notify list",
    })
}

/// Every function name of the frames, inlined ones included.
fn frame_names(u: &GoUnwinder, frames: &[PhysFrame]) -> Vec<String> {
    let mut out = vec![];
    for f in frames {
        let mut v = vec![];
        let lookup = if f.pc > f.func.entry { f.pc - 1 } else { f.pc };
        u.symbolize(&f.func, f.pc, lookup, &mut v);
        out.extend(
            v.into_iter()
                .filter_map(|fr| fr.function.map(|s| s.to_string())),
        );
    }
    out
}

/// Package-level variables, for naming objects: (name, bounds) of the
/// symbol an address is in.
struct Globals(Vec<(u64, u64, String)>);

impl Globals {
    fn new(p: &Process, addrs: impl Iterator<Item = u64>) -> Globals {
        let want: Vec<u64> = addrs.collect();
        let hits = p
            .exe
            .symbols()
            .iter()
            .filter(|(_, (_, size))| *size > 0)
            .map(|(n, (a, size))| (p.rt(*a), p.rt(*a).saturating_add(*size), n))
            .filter(|(a, e, _)| want.iter().any(|w| a <= w && w < e))
            .map(|(a, e, n)| (a, e, n.clone()))
            .collect();
        Globals(hits)
    }

    fn of(&self, addr: u64) -> Option<(String, (u64, u64))> {
        let (a, e, n) = self.0.iter().find(|(a, e, _)| *a <= addr && addr < *e)?;
        let name = if addr == *a {
            n.clone()
        } else {
            format!("{n}+{}", addr - a)
        };
        Some((name, (*a, *e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{Layout, StructLayout};
    use crate::memory::mock::MockMemory;

    fn offs(goroutines: usize, steps: u64) -> Offs {
        let sudog = StructLayout {
            size: 88,
            fields: [
                ("g", 0),
                ("next", 8),
                ("elem", 24),
                ("waitlink", 64),
                ("c", 80),
            ]
            .map(|(n, o)| (n.to_string(), o))
            .into(),
            ..Default::default()
        };
        let mut l = Layout::default();
        l.structs.insert("runtime.sudog".into(), sudog);
        Offs {
            g_waiting: Some(0x100),
            sg_g: Some(0),
            sg_elem: Some(24),
            sg_next: Some(8),
            sg_waitlink: Some(64),
            sg_c: Some(80),
            l,
            max_list: goroutines + 1,
            steps: steps.into(),
        }
    }

    #[test]
    fn a_select_whose_sudogs_form_a_cycle_ends() {
        // g.waiting -> sudog A -> sudog B -> sudog A ..., on channels 1 and 2.
        let mut m = MockMemory::default();
        let (g, a, b) = (0x1000u64, 0x2000u64, 0x3000u64);
        m.put(g + 0x100, &a.to_le_bytes());
        m.put(a + 80, &0x10u64.to_le_bytes());
        m.put(a + 64, &b.to_le_bytes());
        m.put(b + 80, &0x20u64.to_le_bytes());
        m.put(b + 64, &a.to_le_bytes());
        let gp = G {
            addr: g,
            ..Default::default()
        };
        let o = offs(10, 1_000);
        let w = chan_wait(&o, &m, &gp, true).unwrap();
        assert_eq!((w.kind, w.channels.clone()), ("select", vec![0x10, 0x20]));
        // A channel operation reads its one sudog.
        let w = chan_wait(&o, &m, &gp, false).unwrap();
        assert_eq!((w.kind, w.addr), ("chan", 0x10));
        // With no steps left, nothing is followed, and the read says so.
        let spent = offs(10, 0);
        assert!(chan_wait(&spent, &m, &gp, true).is_none());
        assert!(spent.cut_short());
    }
}
