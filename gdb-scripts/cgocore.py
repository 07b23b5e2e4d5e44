"""cgocore for gdb: Go programs stuck in cgo, on a live process or a core.

Load it once (for example from ~/.gdbinit):

    source /path/to/cgocore/gdb-scripts/cgocore.py

Commands:

    info cgo-threads                   every thread: M, lockedExt/lockedInt, lockedg, goroutine, what it waits for
    info cgo-goroutines [cgo|locked|all]   goroutines as Go's dump shows them, C frames included
    cgo-bt [THREAD | m M | g GOID]     one stitched stack: C frames flowing into the goroutine's Go frames
    cgo-diagnose                       findings: deadlocks, lock holders, locked threads in C, pile-ups

The Rust core is the `cgocore` Python package (python-ext/, built with maturin). The
script finds it on sys.path, in $CGOCORE_PYTHONPATH, or in the repository's .cache/python.
"""
import os
import sys
import time

import gdb

_HERE = os.path.dirname(os.path.abspath(__file__))
_X86_REGS = ["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
             "r11", "r12", "r13", "r14", "r15", "orig_rax", "fs_base", "eflags"]
_ARM_REGS = ["pc", "sp", "x29", "x30"] + ["x%d" % i for i in range(29)] + ["tpidr"]


def _cgocore():
    try:
        import cgocore
        return cgocore
    except ImportError:
        pass
    for p in (os.environ.get("CGOCORE_PYTHONPATH"), os.path.join(_HERE, "..", ".cache", "python")):
        if p and os.path.isdir(p) and p not in sys.path:
            sys.path.insert(0, p)
    try:
        import cgocore
        return cgocore
    except ImportError as e:
        raise gdb.GdbError("cgocore: the cgocore Python package is not installed (%s); build python-ext "
                           "with maturin, or set CGOCORE_PYTHONPATH" % e)


def _u64(v):
    return int(v) & 0xFFFFFFFFFFFFFFFF


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

    def __init__(self):
        inf = gdb.selected_inferior()
        threads = inf.threads() if inf is not None else ()
        if inf is None or not threads:
            raise gdb.GdbError("cgocore: no process or core: run or attach to a Go program, "
                               "or load a core (gdb BINARY CORE)")
        if any(t.is_running() for t in threads):
            raise gdb.GdbError("cgocore: the process is running; interrupt it first (Ctrl-C or `interrupt`)")
        exe = inf.progspace.filename if inf.progspace else None
        if not exe:
            raise gdb.GdbError("cgocore: gdb has no executable for this inferior; use `file BINARY`")
        self.inf, self.exe, self.pid = inf, exe, inf.pid or None
        self.arch = gdb.newest_frame().architecture().name()
        regs = _ARM_REGS if "aarch64" in self.arch else _X86_REGS
        self.threads, self.labels = [], {}
        selected = gdb.selected_thread()
        frame = gdb.selected_frame() if selected is not None else None
        try:
            for t in sorted(threads, key=lambda t: t.num):
                t.switch()
                f = gdb.newest_frame()
                values = {}
                for r in regs:
                    try:
                        values[r] = _u64(f.read_register(r))
                    except (gdb.error, ValueError):
                        pass
                tid = t.ptid[1] or t.ptid[2] or t.ptid[0]
                self.threads.append((tid, values))
                self.labels[tid] = str(t.num)
        finally:
            if selected is not None and selected.is_valid():
                selected.switch()
                if frame is not None and frame.is_valid():
                    frame.select()
        self.modules = _modules()

    def read(self, addr, size):
        try:
            return bytes(self.inf.read_memory(addr, size))
        except (gdb.MemoryError, gdb.error, OverflowError, ValueError):
            return None


def _analyze(goroutine_frames):
    cg = _cgocore()
    begun = time.perf_counter()
    t = _Target()
    started = time.perf_counter()
    try:
        a = cg.analyze_target(t.read, t.threads, t.modules, t.exe, arch=t.arch, pid=t.pid,
                              goroutine_frames=goroutine_frames)
    except cg.CgocoreError as e:
        raise gdb.GdbError("cgocore: %s" % str(e).splitlines()[0])
    except Exception as e:  # never let a bug take the session down
        raise gdb.GdbError("cgocore: internal error: %s" % e)
    a.seconds = time.perf_counter() - started
    a.collect_seconds = started - begun
    return a, t


def _run(fn):
    try:
        fn()
    except gdb.GdbError:
        raise
    except KeyboardInterrupt:
        raise gdb.GdbError("cgocore: interrupted")
    except Exception as e:
        raise gdb.GdbError("cgocore: %s" % str(e).splitlines()[0] if str(e) else type(e).__name__)


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
        def go():
            a, t = _analyze(False)
            r = a.report
            gdb.write("%s · %d threads · %d goroutines · %d threads in cgo · %d findings (cgo-diagnose)\n"
                      % (r["go_version"], len(r["threads"]), len(r["goroutines"]),
                         r["counts"]["threads_in_cgo"], len(r["findings"])))
            gdb.write(a.threads_table(t.labels))
            if os.environ.get("CGOCORE_TIMING"):
                gdb.write("cgocore: threads and registers %.3f s, analysis %.3f s, %d bridged reads\n"
                          % (a.collect_seconds, a.seconds, a.bridged_reads))
        _run(go)


class InfoCgoGoroutines(gdb.Command):
    """Goroutines of a Go program, in the shape of Go's own dump, with their C frames.

Usage: info cgo-goroutines [cgo|locked|all]

cgo: goroutines in a cgo call; locked: goroutines locked to their thread; all (default)."""

    def __init__(self):
        super().__init__("info cgo-goroutines", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        which = (arg or "all").strip()
        if which not in ("all", "cgo", "locked"):
            raise gdb.GdbError("usage: info cgo-goroutines [cgo|locked|all]")

        def go():
            a, _ = _analyze(True)
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

        def go():
            need_g = len(words) == 2 and words[0] == "g"
            a, t = _analyze(need_g)
            r = a.report
            tid = None
            try:
                if not words:
                    sel = gdb.selected_thread()
                    tid = sel.ptid[1] or sel.ptid[2]
                elif len(words) == 1:
                    num = words[0]
                    tid = next((k for k, v in t.labels.items() if v == num), None)
                    if tid is None:
                        raise gdb.GdbError("cgocore: no gdb thread %s" % num)
                elif words[0] == "m":
                    m = int(words[1])
                    tid = next((x["tid"] for x in r["threads"] if x["m"] == m), None)
                    if tid is None:
                        raise gdb.GdbError("cgocore: M%d has no thread in this process" % m)
                elif words[0] == "g":
                    g = int(words[1])
                    tid = next((x["tid"] for x in r["threads"]
                                if x["stack_goroutine"] == g or x["curg"] == g), None)
                    if tid is None:
                        if not any(x["goid"] == g for x in r["goroutines"]):
                            raise gdb.GdbError("cgocore: no goroutine %d" % g)
                        gdb.write(a.goroutines("all").split("\n\n")[
                            [x["goid"] for x in r["goroutines"]].index(g)] + "\n")
                        return
                else:
                    raise ValueError
            except ValueError:
                raise gdb.GdbError("usage: cgo-bt [THREAD | m M | g GOID]")
            gdb.write(a.thread_stack(tid))
        _run(go)


class CgoDiagnose(gdb.Command):
    """Findings, most severe first: deadlocks across C locks, threads holding a C lock others
wait for, LockOSThread'd goroutines blocked in C, unsafe C signal handlers, thread pile-ups,
nested LockOSThread, foreign threads and extra Ms. Each with evidence and what to do.

Usage: cgo-diagnose"""

    def __init__(self):
        super().__init__("cgo-diagnose", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        def go():
            a, _ = _analyze(False)
            text = a.findings()
            gdb.write(text if text else "cgocore: no findings\n")
        _run(go)


InfoCgoThreads()
InfoCgoGoroutines()
CgoBt()
CgoDiagnose()
