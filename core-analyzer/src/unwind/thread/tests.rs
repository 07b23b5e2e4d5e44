//! One test per stitching rule: a real Go binary's pclntab and code (the
//! shipped Go 1.21 and 1.27 amd64 samples), its release's layout, and stacks built
//! in mock memory the way the runtime leaves them.
use super::*;
use crate::elf::exe::Binary;
use crate::error::Fault;
use crate::memory::mock::MockMemory;
use crate::runtime::g::GLayout;
use crate::symbolize::pclntab::Pclntab;
use crate::unwind::native::NativeUnwinder;

/// The shipped samples: the oldest and the newest release.
const SAMPLES: [(&str, &str); 2] = [
    ("go1.21.13-plain-kernel", "go1.21.13"),
    ("go1.27.3-plain-kernel", "go1.27.3"),
];

/// C code outside every module (no symbols, no unwind tables).
const C_CODE: u64 = 0x7f00_0000_1000;
/// The thread's g0 stack and a goroutine's stack.
const G0_STACK: u64 = 0x7f00_1000_0000;
const G_STACK: u64 = 0x00c0_0010_0000;
const STACK_BYTES: u64 = 0x2000;
const G_ADDR: u64 = 0x00c0_0000_8000;
const G0_ADDR: u64 = 0x00c0_0000_9000;

/// Stack memory in a mock, code from the binary's own text.
struct Mem {
    stacks: MockMemory,
    text: (u64, Vec<u8>),
}

impl Memory for Mem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        let (at, bytes) = (&self.text.0, &self.text.1);
        let off = addr.wrapping_sub(*at) as usize;
        match bytes.get(off..off.wrapping_add(buf.len())) {
            Some(b) if addr >= *at => {
                buf.copy_from_slice(b);
                Ok(())
            }
            _ => self.stacks.read(addr, buf),
        }
    }
}

struct World {
    bin: Binary,
    pcln: Pclntab,
    glayout: GLayout,
    cgo: CgoFrames,
    funcid_asmcgocall: u8,
    mem: Mem,
}

fn worlds() -> impl Iterator<Item = World> {
    SAMPLES.iter().map(|&(dir, version)| world(dir, version))
}

fn world(dir: &str, version: &str) -> World {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corefiles/fixtures")
        .join(dir)
        .join("cgostuck.zst");
    let bin = Binary::open(&path).expect("the shipped sample binary");
    let mut pcln = Pclntab::load(&bin, 0).expect("its pclntab");
    // Where Go's text starts (moduledata.text, as the analysis reads it).
    pcln.text = bin.symbol("runtime.text").expect("runtime.text").0;
    let layout = crate::layout::table::for_version(version).expect("layout table");
    let facts = crate::layout::table::facts(version).expect("version facts");
    let (at, text) = bin.section(".text").expect(".text");
    let mut stacks = MockMemory::default();
    for base in [G0_STACK, G_STACK] {
        stacks.put(base, &vec![0u8; STACK_BYTES as usize]);
    }
    let mem = Mem {
        stacks,
        text: (at, text.to_vec()),
    };
    World {
        glayout: GLayout::of(&layout).unwrap(),
        cgo: facts.cgo_frames["amd64"].clone(),
        funcid_asmcgocall: facts.funcid_asmcgocall,
        pcln,
        bin,
        mem,
    }
}

impl World {
    /// A return address inside `name`: just after its first call made
    /// with its frame set up (where a caller's pc sits); in assembly
    /// without a frame, after its first call.
    fn ret_in(&self, name: &str) -> u64 {
        let (entry, size) = self.sym(name);
        let calls: Vec<u64> = (entry + 1..entry + size)
            .filter(|&pc| super::super::x86_64::follows_call(&self.mem, pc))
            .collect();
        let framed = calls
            .iter()
            .find(|&&pc| self.frame_size(pc - 1).is_some_and(|s| s > 0));
        *framed
            .or(calls.first())
            .unwrap_or_else(|| panic!("no call in {name}"))
    }

    /// `runtime.goexit`'s pc as Go puts it above a goroutine's first frame.
    fn goexit(&self) -> u64 {
        self.sym("runtime.goexit").0 + 1
    }

    /// A function's (entry, size): assembly's own symbol carries an ABI
    /// suffix (the plain name may be Go's ABI wrapper around it).
    fn sym(&self, name: &str) -> (u64, u64) {
        let abi0 = format!("{name}.abi0");
        let found = self.bin.symbol(&abi0).or_else(|| self.bin.symbol(name));
        found.unwrap_or_else(|| panic!("no symbol {name}"))
    }

    fn frame_size(&self, lookup: u64) -> Option<u64> {
        let f = self.pcln.find(lookup)?;
        self.pcln.sp_delta(&f, lookup).map(|d| d as u64)
    }

    /// Lay out a Go frame at `sp` for a function at return address `pc`:
    /// its caller's return address where Go's unwinder reads it. The
    /// caller's stack pointer.
    fn go_frame(&mut self, sp: u64, pc: u64, ret: u64) -> u64 {
        let cfa = sp + self.frame_size(pc - 1).unwrap() + 8;
        self.mem.stacks.put_u64(cfa - 8, ret);
        cfa
    }

    fn stitch(&self, m: &M, gs: &[G], regs: [u64; 3]) -> ThreadStack {
        let modules = crate::symbolize::modules::Modules::none();
        let (at, text) = (&self.mem.text.0, &self.mem.text.1);
        let native = NativeUnwinder::without_tables(
            Arch::X86_64,
            std::iter::once(*at..at + text.len() as u64).collect(),
        );
        let gs: HashMap<u64, &G> = gs.iter().map(|g| (g.addr, g)).collect();
        let s = Stitcher {
            go: GoUnwinder {
                pcln: &self.pcln,
                mem: &self.mem,
                arch: Arch::X86_64,
                cache: Default::default(),
            },
            native: &native,
            modules: &modules,
            glayout: &self.glayout,
            gs: &gs,
            cgo: &self.cgo,
            funcid_asmcgocall: self.funcid_asmcgocall,
        };
        let named = [("rip", regs[0]), ("rsp", regs[1]), ("rbp", regs[2])];
        let named: Vec<(String, u64)> = named.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        s.thread(Some(m), &Registers::from_named(Arch::X86_64, &named, None))
    }
}

fn goroutine() -> G {
    G {
        addr: G_ADDR,
        goid: 42,
        stack_lo: G_STACK,
        stack_hi: G_STACK + STACK_BYTES,
        ..Default::default()
    }
}

fn names(st: &ThreadStack) -> Vec<String> {
    st.frames
        .iter()
        .map(|f| f.function.as_deref().unwrap_or("?").to_string())
        .collect()
}

/// The goroutine `g` in a cgo call made from `runtime.cgocall` (its saved
/// syscall pc and sp), with its frame laid out.
fn in_cgo_call(w: &mut World) -> G {
    let mut g = goroutine();
    g.syscallpc = w.ret_in("runtime.cgocall");
    g.syscallsp = G_STACK + 0x800;
    let goexit = w.goexit();
    w.go_frame(g.syscallsp, g.syscallpc, goexit);
    g
}

/// Lay out `asmcgocall`'s return and saved g above a C function whose CFA
/// is `cfa` (asmcgocall keeps the goroutine's g above the C frame).
fn returns_into_asmcgocall(w: &mut World, cfa: u64) {
    let ret = w.ret_in("runtime.asmcgocall");
    w.mem.stacks.put_u64(cfa - 8, ret);
    w.mem.stacks.put_u64(cfa + w.cgo.asmcgocall_old_g, G_ADDR);
}

/// A C call's thread stack: the C function (unnamed), the glue, the
/// goroutine's cgo call and its top.
const C_CALL_ON_A_GOROUTINE: [&str; 4] = [
    "?",
    "runtime.asmcgocall",
    "runtime.cgocall",
    "runtime.goexit",
];

/// An M running the goroutine.
fn running_it() -> M {
    M {
        curg: G_ADDR,
        ..Default::default()
    }
}

/// A C function (frame pointer `fp`) called by `asmcgocall` on g0 for the
/// goroutine, which made its cgo call from `runtime.cgocall`. Returns the
/// goroutine and the C frame's registers.
fn c_call_from_goroutine(w: &mut World, fp: u64) -> (G, [u64; 3]) {
    returns_into_asmcgocall(w, fp + 16);
    (in_cgo_call(w), [C_CODE, fp - 0x40, fp])
}

#[test]
fn c_returning_into_asmcgocall_continues_on_the_goroutine_of_the_cgo_call() {
    for mut w in worlds() {
        let (g, regs) = c_call_from_goroutine(&mut w, G0_STACK + 0x400);
        let st = w.stitch(&running_it(), &[g], regs);
        assert_eq!(names(&st), C_CALL_ON_A_GOROUTINE);
        assert_eq!(st.roles, [Role::Own, Role::Bridge, Role::Own, Role::Own]);
        assert_eq!(st.goroutine, Some(G_ADDR));
        assert_eq!((st.truncated, st.notes), (None, vec![]));
    }
}

#[test]
fn a_stale_return_into_go_code_is_passed_over_for_asmcgocall() {
    // The frame pointer leads into Go code that never calls C: a stale
    // word. The stack search finds the real return into asmcgocall.
    for mut w in worlds() {
        let sp = G0_STACK + 0x400;
        returns_into_asmcgocall(&mut w, sp + 0x18);
        let stale_fp = sp + 0x100;
        let stale = w.ret_in("runtime.gopark");
        w.mem.stacks.put_u64(stale_fp + 8, stale);
        let g = in_cgo_call(&mut w);
        let st = w.stitch(&running_it(), &[g], [C_CODE, sp, stale_fp]);
        assert_eq!(names(&st), C_CALL_ON_A_GOROUTINE);
        assert_eq!(st.goroutine, Some(G_ADDR));
    }
}

#[test]
fn c_run_on_g0_without_a_goroutine_continues_at_asmcgocalls_go_caller() {
    // Thread creation: newm1 calls asmcgocall on g0, which saves its
    // caller's SP instead of a g.
    for mut w in worlds() {
        let fp = G0_STACK + 0x400;
        let ret = w.ret_in("runtime.asmcgocall");
        w.mem.stacks.put_u64(fp + 8, ret);
        let cfa = fp + 16;
        let orig = G0_STACK + 0x600;
        w.mem.stacks.put_u64(cfa + w.cgo.asmcgocall_old_g, 0);
        w.mem.stacks.put_u64(cfa + w.cgo.asmcgocall_saved_sp, orig);
        let newm1 = w.ret_in("runtime.newm1");
        w.mem.stacks.put_u64(orig + 8, newm1);
        let mstart = w.sym("runtime.mstart").0 + 1;
        w.go_frame(orig + 16, newm1, mstart);
        let st = w.stitch(&M::default(), &[], [C_CODE, fp - 0x40, fp]);
        assert_eq!(
            names(&st),
            ["?", "runtime.asmcgocall", "runtime.newm1", "runtime.mstart"]
        );
        assert_eq!(st.goroutine, None);
        assert_eq!(st.truncated, None);
    }
}

#[test]
fn scheduler_code_reached_through_mcall_continues_on_the_locked_goroutine() {
    // A locked goroutine parked: its thread sleeps in stoplockedm on g0,
    // reached from the goroutine through mcall(park_m).
    for mut w in worlds() {
        let pcs = [
            "runtime.stoplockedm",
            "runtime.schedule",
            "runtime.park_m",
            "runtime.mcall",
        ]
        .map(|n| w.ret_in(n));
        let mut sp = G0_STACK + 0x400;
        let first = sp;
        for pair in pcs.windows(2) {
            sp = w.go_frame(sp, pair[0], pair[1]);
        }
        let mut g = goroutine();
        g.sched_pc = w.ret_in("runtime.gopark");
        g.sched_sp = G_STACK + 0x800;
        let goexit = w.goexit();
        w.go_frame(g.sched_sp, g.sched_pc, goexit);
        let m = M {
            lockedg: G_ADDR,
            ..Default::default()
        };
        let st = w.stitch(&m, &[g], [pcs[0], first, 0]);
        let want = [
            "runtime.stoplockedm",
            "runtime.schedule",
            "runtime.park_m",
            "runtime.mcall",
            "runtime.gopark",
            "runtime.goexit",
        ];
        assert_eq!(names(&st), want);
        assert_eq!(&st.roles[..4], [Role::Sched; 4]);
        assert_eq!(&st.roles[4..], [Role::Own; 2]);
        assert_eq!((st.goroutine, st.goroutine_frame), (Some(G_ADDR), Some(4)));
    }
}

#[test]
fn a_callback_continues_with_the_c_code_that_called_go_then_the_cgo_call() {
    // Go called C (asmcgocall on g0), C called back into Go (crosscall2 →
    // cgocallback on the goroutine's stack): the thread is in the callback.
    for mut w in worlds() {
        let (cb, cgocallback) = (
            w.ret_in("runtime.cgocallbackg"),
            w.ret_in("runtime.cgocallback"),
        );
        let first = G_STACK + 0x400;
        let cb_frame = w.go_frame(first, cb, cgocallback);
        // Above cgocallback on the goroutine: the cgo call it came from.
        let cgocall = w.ret_in("runtime.cgocall");
        let cgocall_sp = w.go_frame(cb_frame, cgocallback, cgocall);
        let goexit = w.goexit();
        w.go_frame(cgocall_sp, cgocall, goexit);
        // On g0: cgocallback's frame (m.g0.sched.sp) returns into crosscall2,
        // which returns into the C caller.
        let x = G0_STACK + 0x200;
        let crosscall2 = w.ret_in("crosscall2");
        let cc2_sp = w.go_frame(x, cgocallback, crosscall2);
        w.mem.stacks.put_u64(x + w.cgo.cgocallback_saved_sp, 0);
        let c_sp = w.go_frame(cc2_sp, crosscall2, C_CODE);
        // The C caller, with a frame pointer, returns into asmcgocall.
        let fp = c_sp + 0x40;
        returns_into_asmcgocall(&mut w, fp + 16);
        // crosscall2 restores the C caller's rbp from below its return address.
        w.mem.stacks.put_u64(c_sp - 16, fp);
        let g0 = G {
            addr: G0_ADDR,
            sched_sp: x,
            ..Default::default()
        };
        let m = M {
            g0: G0_ADDR,
            ..running_it()
        };
        let st = w.stitch(&m, &[goroutine(), g0], [cb, first, 0]);
        let want = [
            "runtime.cgocallbackg",
            "runtime.cgocallback",
            "crosscall2",
            "?",
            "runtime.asmcgocall",
            "runtime.cgocall",
            "runtime.goexit",
        ];
        assert_eq!(names(&st), want, "{:?}", st.truncated);
        use Role::{Bridge, Own};
        assert_eq!(st.roles, [Own, Own, Bridge, Own, Bridge, Own, Own]);
        assert_eq!((st.goroutine, st.notes), (Some(G_ADDR), vec![]));
    }
}

#[test]
fn a_signal_frame_continues_with_the_registers_it_interrupted() {
    // A C handler (frame pointer) returns into the kernel's sigreturn
    // trampoline; the frame beside it saved the goroutine's registers.
    for mut w in worlds() {
        let fp = G0_STACK + 0x400;
        let tramp = C_CODE + 0x100;
        w.mem.stacks.put(
            tramp,
            &[0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00, 0x0f, 0x05],
        );
        w.mem.stacks.put_u64(fp + 8, tramp);
        let uc = fp + 16;
        let interrupted = w.ret_in("runtime.gopark");
        let g_sp = G_STACK + 0x800;
        // struct ucontext: mcontext at 40; rip 128, rsp 120 in it; siginfo at 304.
        w.mem.stacks.put_u64(uc + 40 + 128, interrupted);
        w.mem.stacks.put_u64(uc + 40 + 120, g_sp);
        w.mem.stacks.put_u32(uc + 304, 10);
        w.mem.stacks.put_u32(uc + 304 + 8, (-6i32) as u32);
        let goexit = w.goexit();
        w.go_frame(g_sp, interrupted, goexit);
        let st = w.stitch(&running_it(), &[goroutine()], [C_CODE, fp - 0x40, fp]);
        assert_eq!(names(&st), ["?", "runtime.gopark", "runtime.goexit"]);
        assert_eq!(st.roles, [Role::Handler, Role::Own, Role::Own]);
        let s = &st.signals[..];
        assert_eq!((s.len(), s[0].signo, s[0].frame, s[0].sp), (1, 10, 1, g_sp));
        assert!(!s[0].go_handler);
        assert_eq!(st.goroutine, Some(G_ADDR));
    }
}

#[test]
fn a_vdso_call_continues_where_go_left_vdso_pc_and_sp() {
    // nanotime in the vDSO: outside every module. nanotime1 saved its
    // caller's pc and sp (sysmon's) in m.vdsoPC/SP.
    for mut w in worlds() {
        let sysmon = w.ret_in("runtime.sysmon");
        let sp = G0_STACK + 0x600;
        let mstart = w.sym("runtime.mstart").0 + 1;
        w.go_frame(sp, sysmon, mstart);
        let m = M {
            vdso_pc: sysmon,
            vdso_sp: sp,
            ..Default::default()
        };
        let st = w.stitch(&m, &[], [C_CODE, G0_STACK + 0x400, 0]);
        let names = names(&st);
        assert_eq!(names[0], "?");
        assert_eq!(
            names[names.len() - 2..],
            ["runtime.sysmon", "runtime.mstart"]
        );
        assert_eq!(st.frames[0].module.as_deref(), Some("[vdso]"));
        assert_eq!(st.truncated, None);
    }
}
