//! Every goroutine's stack: its Go frames from where Go's own traceback
//! starts, with the C frames of the thread that serves it spliced in.
use super::go::{GoUnwinder, PhysFrame};
use super::thread::ThreadStack;
use super::{Frame, Lang, Stack};
use crate::elf::regs::Arch;
use crate::memory::Memory;
use crate::runtime::{g, G};
use crate::symbolize::pclntab::Pclntab;
use rustc_hash::FxHashMap as HashMap;

/// How many goroutines a worker unwinds between two reports of progress.
const PROGRESS_EVERY: usize = 1024;

/// Go frames of a goroutine, from where Go's own traceback starts: the
/// syscall entry while `syscallsp` is set (in a syscall or cgo call, and
/// still while leaving one: runnable in `exitsyscall`, waiting for a P),
/// else the saved scheduler state; and its physical frames.
fn goroutine_stack_into(u: &GoUnwinder, g: &G, phys: Option<&mut Vec<PhysFrame>>) -> Stack {
    if g.state() == g::GRUNNING {
        return Stack {
            frames: vec![],
            truncated: Some("goroutine running on a thread; see the thread's stack".into()),
        };
    }
    if g.syscallsp != 0 {
        return u.unwind_into(g.syscallpc, g.syscallsp, 0, phys);
    }
    u.unwind_into(g.sched_pc, g.sched_sp, g.sched_lr, phys)
}

/// A look at each goroutine's physical Go frames in the unwinding pass
/// (one walk for both): `start` makes a worker's state, `scan` gives what one
/// goroutine's frames hold.
pub struct FrameScan<'s, W, R> {
    pub start: &'s (dyn Fn() -> W + Sync),
    pub scan: &'s (dyn Fn(&mut W, &G, &[PhysFrame]) -> R + Sync),
}

/// Every goroutine's stack, on all cores: goroutines are independent, and on
/// a 100k-goroutine core this is most of the work. `stack_of_g`: the thread
/// stack that serves a goroutine, by its address. Runs `scan` over each goroutine's physical
/// frames as they are walked. Returns the stacks and `scan`'s results in the
/// goroutines' order, and warnings.
pub fn unwind_goroutines_scanning<W, R: Send + Default>(
    pcln: &Pclntab,
    mem: &(dyn Memory + Send + Sync),
    arch: Arch,
    live: &[&G],
    stack_of_g: &HashMap<u64, &ThreadStack>,
    scan: &FrameScan<W, R>,
) -> (Vec<Stack>, Vec<R>, Vec<String>) {
    let phase = crate::progress::Phase::new("unwinding goroutines", Some(live.len() as u64));
    let parts = crate::parallel::in_parts(
        live,
        1024,
        || (),
        |(), part| {
            let u = GoUnwinder {
                pcln,
                mem,
                arch,
                cache: Default::default(),
            };
            let mut worker = (scan.start)();
            let (mut notes, mut phys) = (vec![], vec![]);
            let out: Vec<_> = part
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    if i % PROGRESS_EVERY == PROGRESS_EVERY - 1 {
                        crate::progress::advance(PROGRESS_EVERY as u64);
                    }
                    phys.clear();
                    let thread = stack_of_g.get(&g.addr).copied();
                    let stack = goroutine_frames(&u, g, thread, &mut notes, &mut phys);
                    (
                        stack,
                        (scan.scan)(&mut worker, g, &phys),
                        std::mem::take(&mut notes),
                    )
                })
                .collect();
            out
        },
    );
    drop(phase);
    let mut stacks = Vec::with_capacity(live.len());
    let mut found = Vec::with_capacity(live.len());
    let mut notes = vec![];
    for (part, p) in parts {
        match p {
            Some(results) => {
                for (s, f, n) in results {
                    stacks.push(s);
                    found.push(f);
                    notes.extend(n);
                }
            }
            // A worker that panicked: its goroutines say so; nothing scanned.
            None => {
                let lost = Stack {
                    frames: vec![],
                    truncated: Some("internal error while unwinding".into()),
                };
                stacks.extend(std::iter::repeat_n(lost, part.len()));
                found.extend(part.iter().map(|_| R::default()));
                notes.push("internal error while unwinding goroutines".into());
            }
        }
    }
    (stacks, found, notes)
}

/// A goroutine's frames: stitched from its thread's stack (C frames included)
/// when that agrees with its own Go stack, else the Go frames alone.
fn goroutine_frames(
    u: &GoUnwinder,
    g: &G,
    thread: Option<&ThreadStack>,
    warnings: &mut Vec<String>,
    phys: &mut Vec<PhysFrame>,
) -> Stack {
    let go_only = goroutine_stack_into(u, g, Some(phys));
    let Some(st) = thread else {
        return go_only;
    };
    let mut own = st.own_frames();
    let running = g.state() == g::GRUNNING;
    let go_part: Vec<&Frame> = own.iter().filter(|f| f.lang == Lang::Go).collect();
    let same = |a: &Frame, b: &Frame| a.function == b.function && a.line == b.line;
    let prefix = go_part.len() <= go_only.frames.len()
        && go_part.iter().zip(&go_only.frames).all(|(a, b)| same(a, b));
    let rest = &go_only.frames[go_part.len().min(go_only.frames.len())..];
    // A callback on a C-created thread: the thread's stack ends in C
    // (`start_thread`), the goroutine at its fake `goexit` base.
    let only_base = rest
        .iter()
        .all(|f| f.function.as_deref() == Some("runtime.goexit"));
    if running || (prefix && only_base) {
        own.extend(rest.iter().cloned());
        return Stack {
            frames: own,
            truncated: st.truncated.clone(),
        };
    }
    warnings.push(format!(
        "goroutine {}: its thread's stack disagrees with its saved Go state; showing the Go frames",
        g.goid
    ));
    go_only
}
