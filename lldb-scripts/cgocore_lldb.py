"""cgocore for lldb: Go programs stuck in cgo, on a live process or a core.

Load it (for example from ~/.lldbinit):

    command script import /path/to/cgocore/lldb-scripts/cgocore_lldb.py

Commands (a `cgo` container):

    cgo threads                 every thread: M, lockedExt/lockedInt, lockedg, goroutine, what it waits for
    cgo goroutines [cgo|locked|all]
    cgo bt [THREAD | m M | g GOID]
    cgo diagnose                findings, most severe first

Everything goes through the command's execution context (exe_ctx), never the global
lldb.process, and through the SB API only, so nothing here is Linux-specific: on macOS
the same adapter hands the Rust core the Mach-O executable, threads and modules (the
core library reads Mach-O through `object`; see docs/debuggers.md for what is verified).
"""
import os
import shlex
import sys
import time

import lldb

_HERE = os.path.dirname(os.path.abspath(__file__))
_X86_REGS = ["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
             "r11", "r12", "r13", "r14", "r15", "orig_rax", "fs_base", "eflags"]
_ARM_REGS = ["pc", "sp", "fp", "lr"] + ["x%d" % i for i in range(29)] + ["tpidr"]


def _cgocore():
    try:
        import cgocore
        return cgocore
    except ImportError:
        pass
    for p in (os.environ.get("CGOCORE_PYTHONPATH"), os.path.join(_HERE, "..", ".cache", "python")):
        if p and os.path.isdir(p) and p not in sys.path:
            sys.path.insert(0, p)
    import cgocore  # raises ImportError with the reason; the command reports it
    return cgocore


class _Error(Exception):
    pass


class _Target:
    def __init__(self, exe_ctx):
        target = exe_ctx.GetTarget()
        process = exe_ctx.GetProcess()
        if not target.IsValid() or not process.IsValid() or process.GetNumThreads() == 0:
            raise _Error("no process or core: launch or attach to a Go program, or load a core "
                         "(target create BINARY --core CORE)")
        state = process.GetState()
        if state in (lldb.eStateRunning, lldb.eStateStepping, lldb.eStateLaunching):
            raise _Error("the process is running; interrupt it first (process interrupt)")
        exe = target.GetExecutable()
        if not exe.IsValid() or not exe.fullpath:
            raise _Error("lldb has no executable for this target")
        self.process = process
        self.exe = exe.fullpath
        self.arch = target.GetTriple().split("-")[0]
        self.pid = process.GetProcessID() or None
        self.threads, self.labels = [], {}
        names = _ARM_REGS if self.arch in ("aarch64", "arm64") else _X86_REGS
        for i in range(process.GetNumThreads()):
            th = process.GetThreadAtIndex(i)
            frame = th.GetFrameAtIndex(0)
            regs = {}
            # Only the registers the analysis reads: walking every register set
            # (FPU, AVX...) costs lldb far more.
            for name in names:
                r = frame.FindRegister(name)
                if not r.IsValid():
                    continue
                err = lldb.SBError()
                v = r.GetValueAsUnsigned(err, 0)
                if err.Success():
                    regs[name] = v & 0xFFFFFFFFFFFFFFFF
            if "fp" in regs and "x29" not in regs:
                regs["x29"] = regs["fp"]
            if "lr" in regs and "x30" not in regs:
                regs["x30"] = regs["lr"]
            tid = th.GetThreadID()
            self.threads.append((tid, regs))
            self.labels[tid] = str(th.GetIndexID())
        self.modules = []
        for m in target.module_iter():
            path = m.GetFileSpec().fullpath
            hdr = m.GetObjectFileHeaderAddress().GetLoadAddress(target)
            if path and hdr != lldb.LLDB_INVALID_ADDRESS:
                self.modules.append((path, hdr))

    def read(self, addr, size):
        err = lldb.SBError()
        data = self.process.ReadMemory(addr, size, err)
        return bytes(data) if err.Success() and data is not None else None


def _analyze(exe_ctx, goroutine_frames):
    cg = _cgocore()
    begun = time.perf_counter()
    t = _Target(exe_ctx)
    started = time.perf_counter()
    try:
        # lldb reads a live process by the byte: small blocks (measured: 64 KiB
        # blocks cost 4.6 s on 10k goroutines, single pages far less).
        a = cg.analyze_target(t.read, t.threads, t.modules, t.exe, arch=t.arch, pid=t.pid,
                              goroutine_frames=goroutine_frames,
                              read_pages=int(os.environ.get("CGOCORE_READ_PAGES", "1")))
    except cg.CgocoreError as e:
        raise _Error(str(e).splitlines()[0])
    a.seconds = time.perf_counter() - started
    a.collect_seconds = started - begun
    return a, t


class _Command:
    usage = ""

    def __init__(self, debugger, internal_dict):
        pass

    def get_short_help(self):
        return self.__doc__.splitlines()[0]

    def get_long_help(self):
        return self.__doc__

    def __call__(self, debugger, command, exe_ctx, result):
        try:
            result.AppendMessage(self.run(shlex.split(command or ""), exe_ctx).rstrip("\n"))
        except _Error as e:
            result.SetError("cgocore: %s" % e)
        except ImportError as e:
            result.SetError("cgocore: the cgocore Python package is not installed (%s); build "
                            "python-ext with maturin, or set CGOCORE_PYTHONPATH" % e)
        except Exception as e:  # never let a bug take the session down
            result.SetError("cgocore: internal error: %s" % e)


class Threads(_Command):
    """Every OS thread of a Go program: its Go M, LockOSThread state and goroutine.

Usage: cgo threads

Columns: # (lldb thread index), TID, KIND (go / extra: a C thread that called into Go /
foreign), M, LOCKEXT/LOCKINT (m.lockedExt, m.lockedInt), LOCKEDG, CURG, STATE, IN-CGO,
BLOCKED (what its C call waits for, and who holds the lock)."""

    def run(self, args, exe_ctx):
        a, t = _analyze(exe_ctx, False)
        r = a.report
        head = "%s · %d threads · %d goroutines · %d threads in cgo · %d findings (cgo diagnose)\n" % (
            r["go_version"], len(r["threads"]), len(r["goroutines"]),
            r["counts"]["threads_in_cgo"], len(r["findings"]))
        out = head + a.threads_table(t.labels)
        if os.environ.get("CGOCORE_TIMING"):
            out += "cgocore: threads and registers %.3f s, analysis %.3f s, %d bridged reads\n" % (
                a.collect_seconds, a.seconds, a.bridged_reads)
        return out


class Goroutines(_Command):
    """Goroutines in the shape of Go's own dump, with their C frames.

Usage: cgo goroutines [cgo|locked|all]"""

    def run(self, args, exe_ctx):
        which = args[0] if args else "all"
        if which not in ("all", "cgo", "locked") or len(args) > 1:
            raise _Error("usage: cgo goroutines [cgo|locked|all]")
        a, _ = _analyze(exe_ctx, True)
        return a.goroutines(which)


class Bt(_Command):
    """The stitched stack of a thread: C frames flowing into its goroutine's Go frames.

Usage: cgo bt             the selected thread
       cgo bt THREAD      lldb thread index THREAD
       cgo bt m M         the thread of Go's M number M
       cgo bt g GOID      the thread serving goroutine GOID (else its own stack)"""

    def run(self, args, exe_ctx):
        need_g = len(args) == 2 and args[0] == "g"
        a, t = _analyze(exe_ctx, need_g)
        r = a.report
        try:
            if not args:
                tid = exe_ctx.GetThread().GetThreadID()
            elif len(args) == 1:
                tid = next((k for k, v in t.labels.items() if v == args[0]), None)
                if tid is None:
                    raise _Error("no thread %s" % args[0])
            elif args[0] == "m":
                m = int(args[1])
                tid = next((x["tid"] for x in r["threads"] if x["m"] == m), None)
                if tid is None:
                    raise _Error("M%d has no thread in this process" % m)
            elif args[0] == "g":
                g = int(args[1])
                tid = next((x["tid"] for x in r["threads"]
                            if x["stack_goroutine"] == g or x["curg"] == g), None)
                if tid is None:
                    ids = [x["goid"] for x in r["goroutines"]]
                    if g not in ids:
                        raise _Error("no goroutine %d" % g)
                    return a.goroutines("all").split("\n\n")[ids.index(g)]
            else:
                raise ValueError
        except ValueError:
            raise _Error("usage: cgo bt [THREAD | m M | g GOID]")
        return a.thread_stack(tid)


class Diagnose(_Command):
    """Findings, most severe first, with evidence and what to do.

Usage: cgo diagnose

Deadlocks across C locks, threads holding a C lock others wait for, LockOSThread'd
goroutines blocked in C, unsafe C signal handlers, thread pile-ups, nested LockOSThread,
foreign threads and extra Ms."""

    def run(self, args, exe_ctx):
        a, _ = _analyze(exe_ctx, False)
        return a.findings() or "cgocore: no findings"


def __lldb_init_module(debugger, internal_dict):
    debugger.HandleCommand('command container add -h "Go programs stuck in cgo (cgocore)" cgo')
    for name, cls in (("threads", "Threads"), ("goroutines", "Goroutines"), ("bt", "Bt"),
                      ("diagnose", "Diagnose")):
        debugger.HandleCommand("command script add -o -c %s.%s cgo %s" % (__name__, cls, name))
