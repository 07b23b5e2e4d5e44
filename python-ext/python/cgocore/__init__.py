"""cgocore: explain Go programs stuck in cgo.

The same analysis as ``cgocore analyze --json``, from Python:

    import cgocore
    report = cgocore.analyze_core("core.1234", exe="./server")
    for t in report["threads"]:
        print(t["tid"], t["m"], (t["blocked"] or {}).get("class"))

Debuggers describe a live target with a reader and its threads and modules
(see gdb-scripts/cgocore.py and lldb-scripts/cgocore_lldb.py).
"""
import json

from ._cgocore import (  # noqa: F401
    CgocoreError,
    CorruptRuntimeError,
    NotACoreError,
    NotGoError,
    TargetMemoryError,
    UnsupportedGoVersionError,
    WrongBinaryError,
    __version__,
    analyze_core_json,
    analyze_target_json,
    render,
    render_findings,
    render_goroutine,
    render_goroutines,
    render_thread_stack,
    render_threads,
)


def analyze_core(core, exe=None, sysroot=None, goroutine_frames=True, rules=None):
    """Analyze a core file (kernel core, gcore, or .zst); returns the report as dicts."""
    return json.loads(analyze_core_json(core, exe, sysroot, goroutine_frames, rules))


class Analysis:
    """A report plus the JSON it came from, so it can be rendered without re-analysis."""

    def __init__(self, report_json, bridged_reads=0):
        self.json = report_json
        self.report = json.loads(report_json)
        self.bridged_reads = bridged_reads

    def threads_table(self, labels=None):
        return render_threads(self.json, labels)

    def goroutines(self, which="all"):
        return render_goroutines(self.json, which)

    def thread_stack(self, tid):
        return render_thread_stack(self.json, tid)

    def goroutine(self, goid):
        return render_goroutine(self.json, goid)

    def findings(self):
        return render_findings(self.json)

    def text(self, goroutines="none", stacks=False):
        return render(self.json, goroutines, stacks)


def analyze_target(read, threads, modules, exe, arch="x86_64", pid=None, sysroot=None,
                   goroutine_frames=False, rules=None, read_pages=16):
    """Analyze a target a debugger describes; returns an Analysis.

    read(addr, size) -> bytes or None; threads: [(tid, {register: value})];
    modules: [(path, address of its ELF header)]; read_pages: 4 KiB pages per
    bridged read (fewer where the bridge pays by the byte).
    """
    j, n = analyze_target_json(read, threads, modules, exe, arch, pid, sysroot,
                               goroutine_frames, rules, read_pages)
    return Analysis(j, n)
