"""cgocore for lldb: Go programs stuck in cgo, on a live process or a core.

Load it (for example from ~/.lldbinit; `cgocore debugger-init lldb` prints the
line for this installation):

    command script import /path/to/site-packages/cgocore/lldb_commands.py

Commands (a `cgo` container):

    cgo threads                 every thread: M, lockedExt/lockedInt, lockedg, goroutine, what it waits for
    cgo goroutines [cgo|locked|all]
    cgo bt [THREAD | m M | g GOID]
    cgo diagnose                findings, most severe first

Everything goes through the command's execution context (exe_ctx), never the global
lldb.process, and through the SB API only, so nothing here is Linux-specific: on macOS
the same adapter hands the Rust core the Mach-O executable, threads and modules (the
core library reads Mach-O through `object`; see docs/debuggers.md for what is verified).
The logic every debugger shares is in the `cgocore` package (cgocore.debugger); this
file only tells it what lldb sees.
"""
import os
import shlex
import sys
import time

import lldb

# lldb may import this file by path, as a top-level module: the package's
# folder goes on the path so `import cgocore` finds the rest of it.
_SITE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _package():
    """The cgocore package and its debugger helpers (ImportError says why not)."""
    for p in (_SITE, os.environ.get("CGOCORE_PYTHONPATH")):
        if p and os.path.isdir(os.path.join(p, "cgocore")) and p not in sys.path:
            sys.path.append(p)
    import cgocore
    import cgocore.debugger
    return cgocore


class _Target:
    """What the Rust side needs from lldb: memory, threads with registers, modules."""

    def __init__(self, exe_ctx, dbg):
        begun = time.perf_counter()
        target = exe_ctx.GetTarget()
        process = exe_ctx.GetProcess()
        if not target.IsValid() or not process.IsValid() or process.GetNumThreads() == 0:
            raise dbg.TargetError("no process or core: launch or attach to a Go program, or load a core "
                         "(target create BINARY --core CORE)")
        state = process.GetState()
        if state in (lldb.eStateRunning, lldb.eStateStepping, lldb.eStateLaunching):
            raise dbg.TargetError("the process is running; interrupt it first (process interrupt)")
        exe = target.GetExecutable()
        if not exe.IsValid() or not exe.fullpath:
            raise dbg.TargetError("lldb has no executable for this target")
        self.process = process
        self.exe = exe.fullpath
        self.arch = target.GetTriple().split("-")[0]
        self.pid = process.GetProcessID() or None
        self.selected_tid = exe_ctx.GetThread().GetThreadID() if exe_ctx.GetThread().IsValid() else None
        self.threads, self.labels = [], {}
        # Only the registers the analysis reads: walking every register set
        # (FPU, AVX...) costs lldb far more.
        names = dbg.register_names(self.arch)
        for i in range(process.GetNumThreads()):
            th = process.GetThreadAtIndex(i)
            frame = th.GetFrameAtIndex(0)

            def read(name, frame=frame):
                r = frame.FindRegister(name)
                if not r.IsValid():
                    return None
                err = lldb.SBError()
                v = r.GetValueAsUnsigned(err, 0)
                return v if err.Success() else None
            tid = th.GetThreadID()
            self.threads.append((tid, dbg.collect_registers(names, read)))
            self.labels[tid] = str(th.GetIndexID())
        self.modules = []
        for m in target.module_iter():
            path = m.GetFileSpec().fullpath
            hdr = m.GetObjectFileHeaderAddress().GetLoadAddress(target)
            if path and hdr != lldb.LLDB_INVALID_ADDRESS:
                self.modules.append((path, hdr))
        self.collect_seconds = time.perf_counter() - begun

    def read(self, addr, size):
        err = lldb.SBError()
        data = self.process.ReadMemory(addr, size, err)
        return bytes(data) if err.Success() and data is not None else None


def _analyze(dbg, exe_ctx, goroutine_frames):
    t = _Target(exe_ctx, dbg)
    # lldb reads a live process by the byte: small blocks (measured: 64 KiB
    # blocks cost 4.6 s on 10k goroutines, single pages far less).
    pages = int(os.environ.get("CGOCORE_READ_PAGES", "1"))
    return dbg.analyze(t, goroutine_frames, read_pages=pages), t


class _Command:
    def __init__(self, debugger, internal_dict):
        pass

    def get_short_help(self):
        return self.__doc__.splitlines()[0]

    def get_long_help(self):
        return self.__doc__

    def __call__(self, debugger, command, exe_ctx, result):
        """Every failure is one `cgocore: ...` error, never a traceback."""
        try:
            cg = _package()
        except ImportError as e:
            result.SetError("cgocore: the cgocore Python package is not installed (%s); build "
                            "python-ext with maturin, or set CGOCORE_PYTHONPATH" % e)
            return
        try:
            out = self.run(cg.debugger, shlex.split(command or ""), exe_ctx)
            result.AppendMessage(out.rstrip("\n"))
        except (Exception, KeyboardInterrupt) as e:  # never let a bug take the session down
            result.SetError(cg.debugger.error_line(e, cg))


class Threads(_Command):
    """Every OS thread of a Go program: its Go M, LockOSThread state and goroutine.

Usage: cgo threads

Columns: # (lldb thread index), TID, KIND (go / extra: a C thread that called into Go /
foreign), M, LOCKEXT/LOCKINT (m.lockedExt, m.lockedInt), LOCKEDG, CURG, STATE, IN-CGO,
BLOCKED (what its C call waits for, and who holds the lock)."""

    def run(self, dbg, args, exe_ctx):
        a, t = _analyze(dbg, exe_ctx, False)
        out = dbg.threads_header(a.report, "cgo diagnose") + a.threads_table(t.labels)
        if os.environ.get("CGOCORE_TIMING"):
            out += dbg.timing_line(a)
        return out


class Goroutines(_Command):
    """Goroutines in the shape of Go's own dump, with their C frames.

Usage: cgo goroutines [cgo|locked|all]"""

    def run(self, dbg, args, exe_ctx):
        which = dbg.goroutine_filter(args, "cgo goroutines [cgo|locked|all]")
        a, _ = _analyze(dbg, exe_ctx, True)
        return a.goroutines(which)


class Bt(_Command):
    """The stitched stack of a thread: C frames flowing into its goroutine's Go frames.

Usage: cgo bt             the selected thread
       cgo bt THREAD      lldb thread index THREAD
       cgo bt m M         the thread of Go's M number M
       cgo bt g GOID      the thread serving goroutine GOID (else its own stack)"""

    def run(self, dbg, args, exe_ctx):
        a, t = _analyze(dbg, exe_ctx, dbg.bt_needs_goroutines(args))
        return dbg.bt(a, args, t.labels, t.selected_tid, "cgo bt " + dbg.BT_USAGE)


class Diagnose(_Command):
    """Findings, most severe first, with evidence and what to do.

Usage: cgo diagnose

Deadlocks across C locks, threads holding a C lock others wait for, LockOSThread'd
goroutines blocked in C, unsafe C signal handlers, thread pile-ups, nested LockOSThread,
foreign threads and extra Ms."""

    def run(self, dbg, args, exe_ctx):
        a, _ = _analyze(dbg, exe_ctx, False)
        return a.findings() or "cgocore: no findings"


COMMANDS = (("threads", "Threads"), ("goroutines", "Goroutines"), ("bt", "Bt"), ("diagnose", "Diagnose"))


def register(debugger, module):
    """Add the `cgo` commands; lldb finds their classes as `module.Class`
    (the name under which the imported script holds them)."""
    debugger.HandleCommand('command container add -h "Go programs stuck in cgo (cgocore)" cgo')
    for name, cls in COMMANDS:
        debugger.HandleCommand("command script add -o -c %s.%s cgo %s" % (module, cls, name))


def __lldb_init_module(debugger, internal_dict):
    register(debugger, __name__)
