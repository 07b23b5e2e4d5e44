//! One stack per OS thread: C frames (CFI), Go frames (pclntab) and signal
//! frames, stitched across the places where Go switches stacks:
//! - a C function returning into `asmcgocall` continues on the goroutine that
//!   made the cgo call (the old g saved on g0), from `g.syscallpc/sp`;
//! - `runtime.cgocallback` on a goroutine continues with the C frames of the
//!   callback's caller, found through the chain of `cgocallback` frames that
//!   starts at `m.g0.sched.sp`;
//! - `runtime.mcall`/`systemstack` on g0 continue on the goroutine that
//!   switched there (the locked goroutine, or `m.curg`);
//! - a sigreturn trampoline continues with the interrupted registers.
use super::go::{GoStep, GoUnwinder, MAX_FRAMES};
use super::native::{self, NativeUnwinder, Regs, Scan};
use super::{signal, Frame, Lang};
use crate::elf::regs::{Arch, Registers, SyscallState};
use crate::layout::table::CgoFrames;
use crate::memory::{Memory, ReadExt};
use crate::report::frame::STACK_BASES;
use crate::runtime::g::GLayout;
use crate::runtime::{G, M};
use crate::symbolize::modules::Modules;
use crate::symbolize::pclntab::Func;
use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;

/// Go's signal handler entry points, called by the kernel.
const SIGNAL_ENTRIES: [&str; 2] = ["runtime.sigtramp", "runtime.cgoSigtramp"];

/// What a frame is to the goroutine the thread serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Part of the logical stack: the C call and the goroutine's Go frames.
    Own,
    /// A signal handler running on top of what the thread was doing.
    Handler,
    /// Scheduler code on g0 (`schedule`, `stoplockedm`) while the goroutine waits.
    Sched,
    /// Glue between C and Go (`asmcgocall`, `crosscall2`): real frames that Go's
    /// traceback never shows.
    Bridge,
}

/// A signal handler on the stack: `frames[frame..]` is what it interrupted.
#[derive(Debug, Clone)]
pub struct SignalFrame {
    pub signo: i32,
    /// The mask the frame restores (`uc_sigmask`).
    pub saved_mask: Option<u64>,
    pub frame: usize,
    /// Go's handler (`runtime.sigtramp`), as opposed to a C handler.
    pub go_handler: bool,
    /// The syscall the interrupted code was in (from the signal context).
    pub syscall: SyscallState,
    /// The interrupted code's stack pointer.
    pub sp: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ThreadStack {
    pub frames: Vec<Frame>,
    pub roles: Vec<Role>,
    pub truncated: Option<String>,
    /// The goroutine (address) the stack continues into.
    pub goroutine: Option<u64>,
    /// Signal frames on the stack, innermost first.
    pub signals: Vec<SignalFrame>,
    /// Index of the first frame on the goroutine's stack when the thread is
    /// in scheduler code on g0 on that goroutine's behalf (`mcall`, `systemstack`).
    pub goroutine_frame: Option<usize>,
    /// Inconsistencies met on the way (not fatal).
    pub notes: Vec<String>,
}

impl ThreadStack {
    /// The frames of the goroutine's own stack: C call and Go frames, without
    /// signal handlers, scheduler code or glue.
    pub fn own_frames(&self) -> Vec<Frame> {
        self.frames
            .iter()
            .zip(&self.roles)
            .filter(|(_, r)| **r == Role::Own)
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Give the frames since the last boundary their role, now it is known.
    fn close_segment(&mut self, from: &mut usize, role: Role) {
        for r in &mut self.roles[*from..] {
            if *r == Role::Own {
                *r = role;
            }
        }
        *from = self.frames.len();
    }
}

pub struct Stitcher<'a> {
    pub go: GoUnwinder<'a>,
    pub native: &'a NativeUnwinder,
    pub modules: &'a Modules<'a>,
    pub glayout: &'a GLayout,
    pub gs: &'a HashMap<u64, &'a G>,
    pub cgo: &'a CgoFrames,
    /// The funcID the pclntab gives `runtime.asmcgocall` (`versions.json`).
    pub funcid_asmcgocall: u8,
}

/// Where the walk is, and what it has learned about this thread's stacks.
struct Walk<'m> {
    regs: Regs,
    /// `regs.pc` is the interrupted instruction, not a return address.
    first: bool,
    /// Go frames met while unwinding a callback's outer C segment are glue.
    in_callback_c: bool,
    /// Goroutine positions to resume after each callback's outer C segment.
    resume: Vec<Regs>,
    /// `cgocallback` frames on g0, innermost first, and how many are used.
    chain: Option<Vec<u64>>,
    chain_used: usize,
    m: Option<&'m M>,
    /// Start of the frames whose role is not yet decided.
    segment: usize,
}

impl Stitcher<'_> {
    fn mem(&self) -> &dyn Memory {
        self.go.mem
    }

    fn read_g(&self, addr: u64) -> Option<G> {
        if addr == 0 {
            return None;
        }
        match self.gs.get(&addr) {
            Some(g) => Some((*g).clone()),
            None => self.glayout.read(self.mem(), addr).ok(),
        }
    }

    /// The stitched stack of a thread stopped with `regs`, served by `m`.
    pub fn thread(&self, m: Option<&M>, regs: &Registers) -> ThreadStack {
        let mut out = ThreadStack::default();
        let mut w = Walk {
            regs: Regs {
                pc: regs.pc(),
                sp: regs.sp(),
                fp: regs.fp(),
                lr: regs.get("lr").unwrap_or(0),
            },
            first: true,
            in_callback_c: false,
            resume: vec![],
            chain: None,
            chain_used: 0,
            m,
            segment: 0,
        };
        self.attach_if_on_curg(&w, &mut out);
        out.truncated = self.walk(&mut w, &mut out);
        out
    }

    /// A thread stopped in Go code on its goroutine's stack is that goroutine.
    fn attach_if_on_curg(&self, w: &Walk, out: &mut ThreadStack) {
        if let Some(g) = w.m.and_then(|m| self.read_g(m.curg)) {
            if g.stack_lo <= w.regs.sp && w.regs.sp < g.stack_hi {
                out.goroutine = Some(g.addr);
            }
        }
    }

    /// Unwind until the stack ends; the reason it ended early, if it did.
    fn walk(&self, w: &mut Walk, out: &mut ThreadStack) -> Option<String> {
        loop {
            if out.frames.len() >= MAX_FRAMES {
                return Some(format!("more than {MAX_FRAMES} frames"));
            }
            let step = match self.go.pcln.find(w.regs.pc) {
                Some(f) => match self.go_frame(&f, w, out) {
                    Ok(Some(r)) => Step::Caller(r),
                    Ok(None) => Step::Moved,
                    Err(None) => Step::Ended,
                    Err(Some(why)) => Step::Truncated(why),
                },
                None => self.c_step(w, out),
            };
            let next = match step {
                Step::Caller(next) => next,
                Step::Moved => continue,
                Step::Ended => return None,
                Step::Truncated(why) => return Some(why),
            };
            w.first = false;
            if next.pc == 0 {
                return None;
            }
            let step = if signal::is_trampoline(self.mem(), self.go.arch, next.pc) {
                self.enter_signal_frame(next, w, out)
            } else if self.is_asmcgocall(next.pc) {
                w.regs = next;
                match self.leave_c(w, out) {
                    Ok(()) => Step::Moved,
                    Err(None) => Step::Ended,
                    Err(Some(why)) => Step::Truncated(why),
                }
            } else {
                w.regs = next;
                Step::Moved
            };
            match step {
                Step::Ended => return None,
                Step::Truncated(why) => return Some(why),
                _ => {}
            }
        }
    }

    /// One C frame named, and its caller: from the unwind tables, a
    /// validated search of the stack where they have nothing, or the end.
    fn c_step(&self, w: &mut Walk, out: &mut ThreadStack) -> Step {
        let pc = w.regs.pc;
        self.c_frame(w, out);
        // Go's own vDSO calls (nanotime, walltime) leave where they came
        // from in m.vdsoPC/SP, as Go's traceback uses them.
        let vdso = w.m.filter(|m| m.vdso_sp != 0 && m.vdso_pc != 0);
        if let (Some(m), None) = (vdso, self.modules.find(pc)) {
            if let Some(f) = out.frames.last_mut() {
                f.module = Some(Arc::from("[vdso]"));
            }
            w.regs = Regs {
                pc: m.vdso_pc,
                sp: m.vdso_sp,
                fp: w.regs.fp,
                lr: 0,
            };
            w.first = false;
            return Step::Moved;
        }
        if !w.first && native::returns_into_thread_exit(self.mem(), self.go.arch, pc) {
            return Step::Ended;
        }
        let other = match self.native.step(self.mem(), &w.regs, w.first) {
            Ok(Some(r))
                if signal::is_trampoline(self.mem(), self.go.arch, r.pc)
                    || self.native.plausible(self.mem(), &w.regs, &r)
                        && self.c_returns_into(r.pc) =>
            {
                return Step::Caller(r);
            }
            other => other,
        };
        // No unwind information here (musl's libc has none): where a thread
        // starts, the stack ends; elsewhere the return address is searched
        // for. A zero frame pointer ends the unwinder's fallback too, though
        // code without frame pointers may have zeroed it (x86_64: searched;
        // CFI ends real stacks at named or exiting thread starts).
        if self.at_thread_start(out) {
            return Step::Ended;
        }
        let ended = matches!(other, Ok(None));
        if ended && self.go.arch != Arch::X86_64 {
            return Step::Ended;
        }
        let callee = self.function_start(if w.first { pc } else { pc.wrapping_sub(1) });
        // C returns into Go only where Go called it.
        let accept = |ret: u64| self.c_returns_into(ret);
        match self
            .native
            .scan(self.mem(), &w.regs, w.first, callee, &accept)
        {
            Scan::Found(r) => Step::Caller(r),
            Scan::StackTop => Step::Ended,
            Scan::Exhausted if ended => Step::Ended,
            Scan::Exhausted => {
                let e = match other {
                    Err(e) => e,
                    _ => "no believable caller".into(),
                };
                Step::Truncated(format!("C unwinding stopped at {pc:#x}: {e}"))
            }
        }
    }

    /// The caller is the kernel's signal trampoline: the frame the signal
    /// interrupted continues the walk (a handler's segment ends here).
    fn enter_signal_frame(&self, next: Regs, w: &mut Walk, out: &mut ThreadStack) -> Step {
        let Some(saved) = signal::interrupted(self.mem(), self.go.arch, next.sp) else {
            return Step::Truncated(format!("signal frame at {:#x} unreadable", next.sp));
        };
        let go_handler = out.frames.last().is_some_and(|f| {
            f.lang == Lang::Go
                && f.function
                    .as_deref()
                    .is_some_and(|n| SIGNAL_ENTRIES.contains(&n))
        });
        out.close_segment(&mut w.segment, Role::Handler);
        out.signals.push(SignalFrame {
            signo: saved.signo,
            saved_mask: saved.mask,
            frame: out.frames.len(),
            go_handler,
            syscall: saved.syscall,
            sp: saved.regs.sp,
        });
        w.regs = saved.regs;
        w.first = true;
        self.attach_if_on_curg(w, out);
        Step::Moved
    }

    /// The frame just named is where a C library starts a thread or the
    /// process (musl's have no unwind information to say it is outermost).
    fn at_thread_start(&self, out: &ThreadStack) -> bool {
        out.frames
            .last()
            .and_then(|f| f.known_function())
            .is_some_and(|n| STACK_BASES.contains(&n))
    }

    /// Runtime address of the start of the C function holding `pc`.
    fn function_start(&self, pc: u64) -> Option<u64> {
        let m = self.modules.find(pc)?;
        let (start, _) = m.symbols().function_start(pc.wrapping_sub(m.bias))?;
        Some(start.wrapping_add(m.bias))
    }

    /// C code returns into Go only where Go called it (`asmcgocall`): a
    /// return address elsewhere in Go code is a stale word (frame-pointer
    /// unwinding through code without frame pointers finds them too).
    fn c_returns_into(&self, ret: u64) -> bool {
        self.go.pcln.find(ret).is_none() || self.is_asmcgocall(ret)
    }

    fn is_asmcgocall(&self, pc: u64) -> bool {
        self.go
            .pcln
            .find(pc)
            .is_some_and(|f| self.go.pcln.func_id(&f) == self.funcid_asmcgocall)
    }

    fn push(&self, out: &mut ThreadStack, frames: Vec<Frame>, role: Role) {
        out.roles.extend(std::iter::repeat_n(role, frames.len()));
        out.frames.extend(frames);
    }

    fn c_frame(&self, w: &Walk, out: &mut ThreadStack) {
        let pc = w.regs.pc;
        let lookup = if w.first { pc } else { pc.wrapping_sub(1) };
        let module = self.modules.find(pc);
        let frames: Vec<Frame> = match module {
            Some(m) => m
                .lookup(lookup)
                .into_iter()
                .map(|n| Frame {
                    pc,
                    function: n.function,
                    file: n.file,
                    line: n.line,
                    module: Some(m.name.clone()),
                    lang: Lang::C,
                    inlined: n.inlined,
                })
                .collect(),
            None => vec![Frame {
                pc,
                function: None,
                file: None,
                line: None,
                module: None,
                lang: Lang::C,
                inlined: false,
            }],
        };
        self.push(out, frames, Role::Own);
    }

    /// A Go frame: symbolize it and find its caller, switching stacks where Go
    /// does. `Ok(None)` when the walk already moved to another stack.
    fn go_frame(
        &self,
        f: &Func,
        w: &mut Walk,
        out: &mut ThreadStack,
    ) -> Result<Option<Regs>, Option<String>> {
        let pc = w.regs.pc;
        let lookup = if w.first || pc <= f.entry { pc } else { pc - 1 };
        let mut frames = vec![];
        self.go.symbolize(f, pc, lookup, &mut frames);
        for fr in &mut frames {
            fr.module = self.modules.find(pc).map(|m| m.name.clone());
        }
        let role = if w.in_callback_c {
            Role::Bridge
        } else {
            Role::Own
        };
        self.push(out, frames, role);
        let name = self.go.pcln.name(f);
        let on_g0 = out.goroutine.is_none();
        match name {
            "runtime.cgocallback" if !on_g0 && w.m.is_some() => {
                return self.enter_callback_c(f, lookup, w).map(|_| None);
            }
            "runtime.mcall" | "runtime.systemstack" | "runtime.morestack" if on_g0 && !w.first => {
                return self.switch_to_goroutine(name, w, out).map(|_| None);
            }
            _ => {}
        }
        // Go's traceback stops at the signal entry (TopFrame); the thread's
        // stack goes on through the kernel's signal frame.
        if SIGNAL_ENTRIES.contains(&name) {
            let size = self.go.pcln.sp_delta(f, lookup).unwrap_or(0) as u64;
            let (cfa, ret, _) = self.go.frame_slots(w.regs.sp, size, w.first, w.regs.lr);
            return match ret {
                Ok(ret) => Ok(Some(Regs {
                    pc: ret,
                    sp: cfa,
                    fp: w.regs.fp,
                    lr: 0,
                })),
                Err(e) => Err(Some(format!("signal frame unreadable: {e}"))),
            };
        }
        if name == "crosscall2" && self.go.arch == Arch::Aarch64 {
            return self.crosscall2_caller(f, w).map(Some);
        }
        match self.go.step(f, pc, lookup, w.regs.sp, w.regs.lr, w.first) {
            GoStep::Caller { pc, sp, fp } => Ok(Some(Regs {
                pc,
                sp,
                fp: fp.unwrap_or(w.regs.fp),
                lr: 0,
            })),
            GoStep::Top => Err(None),
            GoStep::Stop(why) => Err(Some(why)),
        }
    }

    /// The C caller of arm64's `crosscall2`, from the frame its prologue
    /// built. It is `NOFRAME`: it lowers SP by a constant and stores its C
    /// caller's x29 and x30 at an offset in that frame, not at 0(RSP) where Go
    /// keeps a return address; both numbers are read from each binary's own
    /// instructions (x86_64's `crosscall2` pushes a return address as Go
    /// frames do).
    fn crosscall2_caller(&self, f: &Func, w: &Walk) -> Result<Regs, Option<String>> {
        let p = super::prologue::decode(self.mem(), f.entry, w.regs.pc)
            .filter(|p| w.first || p.lr_below.is_some())
            .ok_or_else(|| Some("crosscall2's prologue is not the one known".to_string()))?;
        let (pc, sp, fp) = p
            .caller(self.mem(), w.regs.sp, w.regs.lr, w.regs.fp)
            .ok_or_else(|| Some("crosscall2's frame unreadable".to_string()))?;
        Ok(Regs { pc, sp, fp, lr: 0 })
    }

    /// g0 code that a goroutine switched to: continue on that goroutine.
    fn switch_to_goroutine(
        &self,
        via: &str,
        w: &mut Walk,
        out: &mut ThreadStack,
    ) -> Result<(), Option<String>> {
        let m =
            w.m.ok_or_else(|| Some(format!("{via} on a thread with no M")))?;
        // mcall parks the goroutine; only a locked one still belongs to the thread.
        let target = if via == "runtime.mcall" {
            m.lockedg
        } else {
            m.curg
        };
        let Some(g) = self.read_g(target) else {
            return Err(Some(format!(
                "g0 entered through {via}; the goroutine that switched here has moved on"
            )));
        };
        out.close_segment(&mut w.segment, Role::Sched);
        out.goroutine = Some(g.addr);
        out.goroutine_frame = Some(out.frames.len());
        w.regs = Regs {
            pc: g.sched_pc,
            sp: g.sched_sp,
            fp: g.sched_bp,
            lr: g.sched_lr,
        };
        w.first = false;
        Ok(())
    }

    /// A C function returned into `asmcgocall`: name that frame, then continue
    /// on the goroutine whose cgo call this is.
    fn leave_c(&self, w: &mut Walk, out: &mut ThreadStack) -> Result<(), Option<String>> {
        let cfa = w.regs.sp;
        let pc = w.regs.pc;
        if let Some(f) = self.go.pcln.find(pc) {
            let mut frames = vec![];
            self.go.symbolize(&f, pc, pc - 1, &mut frames);
            let module = self.modules.find(pc).map(|m| m.name.clone());
            for fr in &mut frames {
                fr.module = module.clone();
            }
            self.push(out, frames, Role::Bridge);
        }
        let old_g = self
            .mem()
            .u64(cfa.wrapping_add(self.cgo.asmcgocall_old_g))
            .unwrap_or(0);
        if let Some(resume) = w.resume.pop() {
            // The outer call of a callback: back on the same goroutine.
            if Some(old_g) != out.goroutine {
                out.notes.push(format!(
                    "asmcgocall's saved g {old_g:#x} is not the callback's goroutine"
                ));
            }
            w.in_callback_c = !w.resume.is_empty();
            w.regs = resume;
            w.first = false;
            return Ok(());
        }
        out.close_segment(&mut w.segment, Role::Own);
        if old_g == 0 {
            // Called on g0 itself (a runtime-internal C call: thread creation,
            // setenv): no switch; its caller's SP was saved instead of a g.
            return self.resume_after_nosave(cfa, w);
        }
        let Some(g) = self.read_g(old_g) else {
            return Err(Some(format!(
                "asmcgocall's saved g {old_g:#x} is unreadable"
            )));
        };
        if let Some(m) = w.m {
            if m.curg != g.addr {
                out.notes.push(format!(
                    "asmcgocall's saved g {:#x} is not m.curg {:#x}",
                    g.addr, m.curg
                ));
            }
        }
        if g.syscallsp == 0 {
            return Err(Some(format!(
                "goroutine {} has no saved cgo call state",
                g.goid
            )));
        }
        out.goroutine = Some(g.addr);
        w.regs = Regs {
            pc: g.syscallpc,
            sp: g.syscallsp,
            fp: g.syscallbp.unwrap_or(g.sched_bp),
            lr: 0,
        };
        w.first = false;
        Ok(())
    }

    /// Continue at the Go caller of an `asmcgocall` that ran C on the same stack.
    fn resume_after_nosave(&self, cfa: u64, w: &mut Walk) -> Result<(), Option<String>> {
        let orig = self
            .mem()
            .u64(cfa.wrapping_add(self.cgo.asmcgocall_saved_sp))
            .map_err(|e| Some(format!("asmcgocall's saved stack pointer unreadable: {e}")))?;
        // asmcgocall keeps a frame pointer: [orig] is the caller's BP and
        // [orig+8] the return address (arm64: the LR slot is at [orig]).
        let ret_slot = match self.go.arch {
            Arch::X86_64 => orig.wrapping_add(8),
            Arch::Aarch64 => orig,
        };
        let pc = self.mem().u64(ret_slot).unwrap_or(0);
        if self.go.pcln.find(pc).is_none() {
            return Err(Some(format!(
                "asmcgocall ran C on g0 and its caller at {pc:#x} is not Go code"
            )));
        }
        w.regs = Regs {
            pc,
            sp: ret_slot.wrapping_add(8),
            fp: self.mem().u64(orig).unwrap_or(0),
            lr: 0,
        };
        w.first = false;
        Ok(())
    }

    /// `runtime.cgocallback` on the goroutine: the C code that called into Go
    /// is on g0, above the k-th `cgocallback` frame of the chain.
    fn enter_callback_c(&self, f: &Func, lookup: u64, w: &mut Walk) -> Result<(), Option<String>> {
        let Some(m) = w.m else {
            return Err(Some("a callback on a thread without an M".into()));
        };
        let go_caller = match self.go.step(f, w.regs.pc, lookup, w.regs.sp, 0, false) {
            GoStep::Caller { pc, sp, fp } => Some(Regs {
                pc,
                sp,
                fp: fp.unwrap_or(0),
                lr: 0,
            }),
            _ => None,
        };
        let size = self.go.pcln.sp_delta(f, lookup).unwrap_or(0) as u64;
        let chain = w.chain.get_or_insert_with(|| self.callback_chain(m, size));
        let Some(&frame) = chain.get(w.chain_used) else {
            return Err(Some(
                "the C caller of this callback is not on the thread's g0 stack".into(),
            ));
        };
        w.chain_used += 1;
        let (cfa, ret, fp) = self.go.frame_slots(frame, size, false, 0);
        let ret = ret.map_err(|e| Some(format!("callback frame unreadable: {e}")))?;
        if let Some(r) = go_caller {
            w.resume.push(r);
        }
        w.in_callback_c = true;
        w.regs = Regs {
            pc: ret,
            sp: cfa,
            fp: fp.unwrap_or(0),
            lr: 0,
        };
        w.first = false;
        Ok(())
    }

    /// `cgocallback` frames on g0, innermost first: `m.g0.sched.sp` points at
    /// the innermost one while a callback runs, and each keeps the previous
    /// `g0.sched.sp`. A real one returns into `crosscall2`.
    fn callback_chain(&self, m: &M, size: u64) -> Vec<u64> {
        let mut chain = vec![];
        let Some(g0) = self.read_g(m.g0) else {
            return chain;
        };
        let mut x = g0.sched_sp;
        while x != 0 && chain.len() < 64 {
            let (_, ret, _) = self.go.frame_slots(x, size, false, 0);
            let in_crosscall2 = ret
                .ok()
                .and_then(|r| self.go.pcln.find(r))
                .is_some_and(|f| self.go.pcln.name(&f) == "crosscall2");
            if !in_crosscall2 {
                break;
            }
            chain.push(x);
            match self
                .mem()
                .u64(x.wrapping_add(self.cgo.cgocallback_saved_sp))
            {
                Ok(prev) if prev > x => x = prev,
                _ => break,
            }
        }
        chain
    }
}

/// The architecture key of `CgoFrames` tables.
pub fn arch_key(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "amd64",
        Arch::Aarch64 => "arm64",
    }
}
/// How one step of the walk came out: the end states are explicit.
enum Step {
    /// The caller's registers: the walk goes on from them.
    Caller(Regs),
    /// The walk's registers were moved already (a Go frame's own step, a
    /// signal frame entered, C left for Go): go on from there.
    Moved,
    /// The stack ends here, as it should (a thread's start, pc 0).
    Ended,
    /// The stack ends early, for this reason.
    Truncated(String),
}

#[cfg(test)]
mod tests;
