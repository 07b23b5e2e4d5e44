"""cgocore for gdb: Go programs stuck in cgo, on a live process or a core.

Load it once (for example from ~/.gdbinit; `cgocore debugger-init gdb` prints
the line for this installation):

    source /path/to/site-packages/cgocore/gdb_commands.py

Commands:

    info cgo-threads                   every thread: M, lockedExt/lockedInt, lockedg, goroutine, what it waits for
    info cgo-goroutines [cgo|locked|all]   goroutines as Go's dump shows them, C frames included
    cgo-bt [THREAD | m M | g GOID]     one stitched stack: C frames flowing into the goroutine's Go frames
    cgo-diagnose                       findings: deadlocks, lock holders, locked threads in C, pile-ups

This file is part of the `cgocore` Python package (the Rust core and the
logic every debugger shares, cgocore.debugger); it only tells it what gdb
sees. gdb's Python may not have the package's folder on its path: sourced
from inside the package, the file puts it there.
"""
import os
import sys
import time

import gdb

try:
    _SITE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
except NameError:  # executed without a file name
    _SITE = None


def _package():
    """The cgocore package and its debugger helpers."""
    for p in (_SITE, os.environ.get("CGOCORE_PYTHONPATH")):
        if p and os.path.isdir(os.path.join(p, "cgocore")) and p not in sys.path:
            sys.path.append(p)
    try:
        import cgocore
        import cgocore.debugger
    except ImportError as e:
        raise gdb.GdbError("cgocore: the cgocore Python package is not installed (%s); build python-ext "
                           "with maturin, or set CGOCORE_PYTHONPATH" % e) from None
    return cgocore


def _modules():
    """(path, address of its ELF header) from `info proc mappings`: live or core."""
    try:
        text = gdb.execute("info proc mappings", to_string=True)
    except gdb.error:
        return []
    seen, out = set(), []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or not f[0].startswith("0x") or not f[-1].startswith("/"):
            continue
        try:
            start, offset = int(f[0], 16), int(f[3], 16)
        except ValueError:
            continue
        if offset == 0 and f[-1] not in seen:
            seen.add(f[-1])
            out.append((f[-1], start))
    return out


class _Target:
    """What the Rust side needs from gdb: memory, threads with registers, modules."""

    def __init__(self, dbg):
        begun = time.perf_counter()
        inf = gdb.selected_inferior()
        threads = inf.threads() if inf is not None else ()
        if inf is None or not threads:
            raise dbg.TargetError("no process or core: run or attach to a Go program, "
                                  "or load a core (gdb BINARY CORE)")
        if any(t.is_running() for t in threads):
            raise dbg.TargetError("the process is running; interrupt it first (Ctrl-C or `interrupt`)")
        exe = inf.progspace.filename if inf.progspace else None
        if not exe:
            raise dbg.TargetError("gdb has no executable for this inferior; use `file BINARY`")
        self.inf, self.exe, self.pid = inf, exe, inf.pid or None
        self.arch = gdb.newest_frame().architecture().name()
        names = dbg.register_names(self.arch)
        self.threads, self.labels = [], {}
        selected = gdb.selected_thread()
        self.selected_tid = (selected.ptid[1] or selected.ptid[2]) if selected is not None else None
        frame = gdb.selected_frame() if selected is not None else None
        try:
            for t in sorted(threads, key=lambda t: t.num):
                t.switch()
                f = gdb.newest_frame()

                def read(name, f=f):
                    try:
                        return int(f.read_register(name))
                    except (gdb.error, ValueError):
                        return None
                tid = t.ptid[1] or t.ptid[2] or t.ptid[0]
                self.threads.append((tid, dbg.collect_registers(names, read)))
                self.labels[tid] = str(t.num)
        finally:
            if selected is not None and selected.is_valid():
                selected.switch()
                if frame is not None and frame.is_valid():
                    frame.select()
        self.modules = _modules()
        self.collect_seconds = time.perf_counter() - begun

    def read(self, addr, size):
        try:
            return bytes(self.inf.read_memory(addr, size))
        except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
            return None


def _run(fn):
    """Run a command body: every failure is one `cgocore: ...` line
    (cgocore.debugger.error_line), never a traceback."""
    cg = _package()
    try:
        fn(cg.debugger)
    except gdb.GdbError:
        raise
    except (Exception, KeyboardInterrupt) as e:  # never let a bug take the session down
        raise gdb.GdbError(cg.debugger.error_line(e, cg)) from None


def _analyze(dbg, goroutine_frames):
    t = _Target(dbg)
    return dbg.analyze(t, goroutine_frames), t


class InfoCgoThreads(gdb.Command):
    """Every OS thread of a Go program: its Go M, LockOSThread state and goroutine.

Usage: info cgo-threads

Columns: # (gdb thread number), TID, KIND (go: created by Go; extra: a C thread that
called into Go; foreign: a C thread Go does not know), M, LOCKEXT/LOCKINT (m.lockedExt,
m.lockedInt), LOCKEDG (goroutine locked to the thread), CURG (goroutine running or in C
on it), STATE, IN-CGO, BLOCKED (what its C call waits for, and who holds the lock).
Works on a stopped live process and on a core (gdb BINARY CORE)."""

    def __init__(self):
        super().__init__("info cgo-threads", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        def go(dbg):
            a, t = _analyze(dbg, False)
            gdb.write(dbg.threads_header(a.report, "cgo-diagnose"))
            gdb.write(a.threads_table(t.labels))
            if os.environ.get("CGOCORE_TIMING"):
                gdb.write(dbg.timing_line(a))
        _run(go)


class InfoCgoGoroutines(gdb.Command):
    """Goroutines of a Go program, in the shape of Go's own dump, with their C frames.

Usage: info cgo-goroutines [cgo|locked|all]

cgo: goroutines in a cgo call; locked: goroutines locked to their thread; all (default)."""

    def __init__(self):
        super().__init__("info cgo-goroutines", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        def go(dbg):
            which = dbg.goroutine_filter((arg or "").split(), "info cgo-goroutines [cgo|locked|all]")
            a, _ = _analyze(dbg, True)
            gdb.write(a.goroutines(which))
        _run(go)


class CgoBt(gdb.Command):
    """The stitched stack of a thread: C frames flowing into its goroutine's Go frames.

Usage: cgo-bt            the selected thread
       cgo-bt THREAD     gdb thread number THREAD
       cgo-bt m M        the thread of Go's M number M
       cgo-bt g GOID     the thread serving goroutine GOID (else that goroutine's own stack)

Signal handler frames, runtime.asmcgocall (where gdb's own backtrace gives up) and callbacks
(crosscall2 -> runtime.cgocallback) are crossed."""

    def __init__(self):
        super().__init__("cgo-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        words = (arg or "").split()

        def go(dbg):
            a, t = _analyze(dbg, dbg.bt_needs_goroutines(words))
            gdb.write(dbg.bt(a, words, t.labels, t.selected_tid, "cgo-bt " + dbg.BT_USAGE))
        _run(go)


class CgoDiagnose(gdb.Command):
    """Findings, most severe first: deadlocks across C locks, threads holding a C lock others
wait for, LockOSThread'd goroutines blocked in C, unsafe C signal handlers, thread pile-ups,
nested LockOSThread, foreign threads and extra Ms. Each with evidence and what to do.

Usage: cgo-diagnose"""

    def __init__(self):
        super().__init__("cgo-diagnose", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        def go(dbg):
            a, _ = _analyze(dbg, False)
            text = a.findings()
            gdb.write(text if text else "cgocore: no findings\n")
        _run(go)


InfoCgoThreads()
InfoCgoGoroutines()
CgoBt()
CgoDiagnose()
