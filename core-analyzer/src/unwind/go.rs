//! Go frames from the pclntab: pcsp gives each frame's size, the inline tree
//! expands inlined calls the way Go's traceback prints them. No DWARF needed.
use super::{Frame, Lang, Stack};
use crate::elf::regs::Arch;
use crate::memory::{Memory, ReadExt};
use crate::symbolize::pclntab::{Func, Pclntab, FLAG_SPWRITE, FLAG_TOPFRAME, FUNCDATA_INLTREE};
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Deepest stack we walk; deeper ones are reported truncated.
pub const MAX_FRAMES: usize = 1024;

pub struct GoUnwinder<'a> {
    pub pcln: &'a Pclntab,
    pub mem: &'a dyn Memory,
    pub arch: Arch,
    /// Frames and frame sizes by pc: 100k goroutines park at a few places.
    pub cache: GoCache,
}

/// Per-unwinder memo of pclntab decoding (one per thread of work).
#[derive(Default)]
pub struct GoCache {
    frames: std::cell::RefCell<HashMap<(u64, u64), Vec<Frame>>>,
    sp: std::cell::RefCell<HashMap<u64, Option<i32>>>,
}

/// Entries kept per cache before it starts over (bounded memory).
const CACHE_MAX: usize = 1 << 16;

impl GoCache {
    fn sp_delta(&self, pcln: &Pclntab, f: &Func, lookup: u64) -> Option<i32> {
        let mut m = self.sp.borrow_mut();
        if let Some(v) = m.get(&lookup) {
            return *v;
        }
        if m.len() > CACHE_MAX {
            m.clear();
        }
        let v = pcln.sp_delta(f, lookup);
        m.insert(lookup, v);
        v
    }
}

impl GoUnwinder<'_> {
    /// Frames for `f` at `pc` (a return address unless `innermost_trap`):
    /// inlined calls first, then `f` itself.
    pub fn symbolize(&self, f: &Func, pc: u64, lookup: u64, out: &mut Vec<Frame>) {
        if let Some(v) = self.cache.frames.borrow().get(&(pc, lookup)) {
            out.extend(v.iter().cloned());
            return;
        }
        let start = out.len();
        self.symbolize_uncached(f, pc, lookup, out);
        let mut c = self.cache.frames.borrow_mut();
        if c.len() > CACHE_MAX {
            c.clear();
        }
        c.insert((pc, lookup), out[start..].to_vec());
    }

    fn symbolize_uncached(&self, f: &Func, pc: u64, lookup: u64, out: &mut Vec<Frame>) {
        let mut at = lookup;
        let mut guard = 0;
        while let Some(ix) = self.pcln.inline_index(f, at) {
            guard += 1;
            let Some(tree) = self.pcln.funcdata_off(f, FUNCDATA_INLTREE) else {
                break;
            };
            let entry = self
                .pcln
                .gofunc
                .wrapping_add(tree as u64)
                .wrapping_add((ix as u64).wrapping_mul(16));
            let (Ok(name_off), Ok(parent_pc)) = (
                self.mem.u32(entry.wrapping_add(4)),
                self.mem.u32(entry.wrapping_add(8)),
            ) else {
                break;
            };
            out.push(self.frame(f, pc, at, self.pcln.name_at(name_off), true));
            at = f.entry.wrapping_add(parent_pc as u64);
            if guard > 64 {
                break;
            }
        }
        out.push(self.frame(f, pc, at, self.pcln.name(f), false));
    }

    /// One Go frame named `name`, located at `at` within `f`.
    fn frame(&self, f: &Func, pc: u64, at: u64, name: &str, inlined: bool) -> Frame {
        let loc = self.pcln.file_line(f, at);
        Frame {
            pc,
            function: Some(Arc::from(name)),
            file: loc.map(|(file, _)| Arc::from(file)),
            line: loc.map(|(_, l)| l as u32),
            module: None,
            lang: Lang::Go,
            inlined,
        }
    }

    /// Walk a goroutine stack from (pc, sp); `lr` is the link register on
    /// arm64. `phys` also gets each physical frame (for a stack-map scan in
    /// the same pass).
    pub fn unwind_into(
        &self,
        mut pc: u64,
        mut sp: u64,
        lr: u64,
        mut phys: Option<&mut Vec<PhysFrame>>,
    ) -> Stack {
        let mut frames = vec![];
        let mut innermost = true;
        // The frame above was injected by a signal (Go's `unwindTrap`): this
        // frame's pc is the interrupted instruction, not a return address.
        let mut trap = false;
        loop {
            if frames.len() >= MAX_FRAMES {
                return Stack {
                    frames,
                    truncated: Some(format!("more than {MAX_FRAMES} frames")),
                };
            }
            let Some(f) = self.pcln.find(pc) else {
                return Stack {
                    frames,
                    truncated: Some(format!("pc {pc:#x} is not in Go code")),
                };
            };
            // Return addresses point after the call: look up the call itself.
            let lookup = if pc > f.entry && !trap { pc - 1 } else { pc };
            self.symbolize(&f, pc, lookup, &mut frames);
            let interrupted = trap;
            trap = is_injected(self.pcln.name(&f));
            let step = self.step(&f, pc, lookup, sp, lr, innermost);
            if let Some(v) = phys.as_deref_mut() {
                let cfa = match &step {
                    GoStep::Caller { sp: s, .. } => *s,
                    _ => self
                        .cache
                        .sp_delta(self.pcln, &f, lookup)
                        .map_or(sp, |d| self.frame_slots(sp, d as u64, innermost, lr).0),
                };
                v.push(PhysFrame {
                    func: f,
                    pc,
                    sp,
                    cfa,
                    interrupted,
                });
            }
            match step {
                GoStep::Caller { pc: p, sp: s, .. } => {
                    pc = p;
                    sp = s;
                }
                GoStep::Top => {
                    return Stack {
                        frames,
                        truncated: None,
                    }
                }
                GoStep::Stop(why) => {
                    return Stack {
                        frames,
                        truncated: Some(why),
                    }
                }
            }
            innermost = false;
        }
    }

    /// The caller of Go function `f` stopped at `pc` with stack pointer `sp`,
    /// from its pcsp frame size. `lookup` is `pc`, or `pc - 1` for a return
    /// address. Go's rules: stop at TopFrame functions, and at functions that
    /// write SP (they switch stacks) unless innermost or `cgocallback`.
    pub fn step(
        &self,
        f: &Func,
        pc: u64,
        lookup: u64,
        sp: u64,
        lr: u64,
        innermost: bool,
    ) -> GoStep {
        let flag = self.pcln.flag(f);
        if flag & FLAG_TOPFRAME != 0 {
            return GoStep::Top;
        }
        let name = self.pcln.name(f);
        if flag & FLAG_SPWRITE != 0 && name != "runtime.cgocallback" && !innermost {
            return GoStep::Stop(format!("{name} switches stacks"));
        }
        let Some(delta) = self.cache.sp_delta(self.pcln, f, lookup) else {
            return GoStep::Stop(format!("no frame size for {name} at {pc:#x}"));
        };
        let (cfa, ret, fp) = self.frame_slots(sp, delta as u64, innermost, lr);
        let Ok(ret) = ret else {
            return GoStep::Stop(format!("stack unreadable at {sp:#x}"));
        };
        // Only a top frame (goexit, mstart) ends a stack; a zero return
        // address anywhere else means the walk went wrong, and says so.
        if ret == 0 {
            return GoStep::Stop(format!(
                "{name} has no return address (the stack ends before its top frame)"
            ));
        }
        if cfa <= sp && !innermost {
            return GoStep::Stop("stack pointer did not advance".into());
        }
        GoStep::Caller {
            pc: ret,
            sp: cfa,
            fp,
        }
    }

    /// For a frame of `size` bytes at `sp`: the caller's SP, the return address
    /// and the caller's frame pointer (`None` where the frame saved none).
    pub fn frame_slots(
        &self,
        sp: u64,
        size: u64,
        innermost: bool,
        lr: u64,
    ) -> (u64, Result<u64, crate::error::Fault>, Option<u64>) {
        match self.arch {
            // [saved BP][return address] sit just below the caller's SP.
            Arch::X86_64 => {
                let cfa = sp.wrapping_add(size).wrapping_add(8);
                let fp = (size >= 8)
                    .then(|| self.mem.u64(cfa.wrapping_sub(16)).ok())
                    .flatten();
                (cfa, self.mem.u64(cfa.wrapping_sub(8)), fp)
            }
            // The return address is at 0(RSP), the caller's FP just below RSP.
            Arch::Aarch64 => {
                let cfa = sp.wrapping_add(size);
                let ret = if size == 0 && innermost {
                    Ok(lr)
                } else {
                    self.mem.u64(sp)
                };
                let fp = (size > 0)
                    .then(|| self.mem.u64(sp.wrapping_sub(8)).ok())
                    .flatten();
                (cfa, ret, fp)
            }
        }
    }
}

/// One physical Go frame: where it stopped and the stack it owns
/// (`sp`..`cfa`), as stack maps and frame scans need it.
#[derive(Debug, Clone, Copy)]
pub struct PhysFrame {
    pub func: Func,
    pub pc: u64,
    pub sp: u64,
    pub cfa: u64,
    /// Interrupted by a signal (the frame below an injected call): its pc is
    /// not a call site, and Go scans it conservatively.
    pub interrupted: bool,
}

impl GoUnwinder<'_> {
    /// The physical frames from (pc, sp), innermost first, at most `max`.
    pub fn physical_frames(&self, mut pc: u64, mut sp: u64, lr: u64, max: usize) -> Vec<PhysFrame> {
        let mut out = vec![];
        let mut innermost = true;
        let mut trap = false;
        while out.len() < max {
            let Some(f) = self.pcln.find(pc) else { break };
            let lookup = if pc > f.entry && !trap { pc - 1 } else { pc };
            let cfa = self
                .cache
                .sp_delta(self.pcln, &f, lookup)
                .map(|d| self.frame_slots(sp, d as u64, innermost, lr).0);
            out.push(PhysFrame {
                func: f,
                pc,
                sp,
                cfa: cfa.unwrap_or(sp),
                interrupted: trap,
            });
            trap = is_injected(self.pcln.name(&f));
            match self.step(&f, pc, lookup, sp, lr, innermost) {
                GoStep::Caller { pc: p, sp: s, .. } => {
                    pc = p;
                    sp = s;
                }
                GoStep::Top | GoStep::Stop(_) => break,
            }
            innermost = false;
        }
        out
    }
}

/// Functions a signal makes a goroutine "call" (Go's injected calls): the
/// frame below them was interrupted, not calling.
pub fn is_injected(name: &str) -> bool {
    matches!(
        name,
        "runtime.asyncPreempt" | "runtime.sigpanic" | "runtime.debugCallV2"
    )
}

pub enum GoStep {
    Caller {
        pc: u64,
        sp: u64,
        fp: Option<u64>,
    },
    /// The outermost frame (`goexit`, `mstart`, a zero return address).
    Top,
    Stop(String),
}
