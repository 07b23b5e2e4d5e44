"""What the gdb and lldb commands share.

The adapters (gdb-scripts/cgocore.py, lldb-scripts/cgocore_lldb.py) keep only
what differs per debugger: how they list threads, registers and modules, read
memory, and print. Everything else is here, once: which registers to collect,
the analysis call, the header line, and the `bt` argument resolver.
"""
import time

from . import analyze_target

X86_64_REGS = ["rip", "rsp", "rbp", "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10",
               "r11", "r12", "r13", "r14", "r15", "orig_rax", "fs_base", "eflags"]
AARCH64_REGS = ["pc", "sp", "x29", "x30"] + ["x%d" % i for i in range(29)] + ["tpidr"]
# Other names a debugger may give the same register (lldb: fp, lr).
ALIASES = {"x29": "fp", "x30": "lr"}

BT_USAGE = "[THREAD | m M | g GOID]"
GOROUTINE_FILTERS = ("all", "cgo", "locked")


class UsageError(Exception):
    """The command's words are off, or name something that is not there."""


class TargetError(Exception):
    """The debugger has nothing cgocore can read (no process, a running one)."""


def error_line(e, package):
    """The one line every failure of a command becomes, in gdb and lldb alike:
    `cgocore: <what went wrong>`, never a traceback; a bug says it is one."""
    text = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, KeyboardInterrupt):
        return "cgocore: interrupted"
    if isinstance(e, (UsageError, TargetError, package.CgocoreError)):
        return "cgocore: %s" % text
    return "cgocore: internal error: %s" % text


def register_names(arch):
    """The registers the analysis reads, for a debugger's architecture name."""
    return AARCH64_REGS if "aarch64" in arch or arch == "arm64" else X86_64_REGS


def collect_registers(names, read):
    """{name: value} for each register `read(name)` returns (None: absent);
    a register a debugger names otherwise is tried under its alias."""
    out = {}
    for name in names:
        v = read(name)
        if v is None and name in ALIASES:
            v = read(ALIASES[name])
        if v is not None:
            out[name] = v & 0xFFFFFFFFFFFFFFFF
    return out


def analyze(target, goroutine_frames, read_pages=16):
    """Analyze a target (an object with read, threads, modules, exe, arch,
    pid and collect_seconds); returns a cgocore.Analysis with timings."""
    started = time.perf_counter()
    a = analyze_target(target.read, target.threads, target.modules, target.exe, arch=target.arch,
                       pid=target.pid, goroutine_frames=goroutine_frames, read_pages=read_pages)
    a.seconds = time.perf_counter() - started
    a.collect_seconds = getattr(target, "collect_seconds", 0.0)
    return a


def threads_header(report, diagnose):
    """The line above the thread table; `diagnose` names the findings command."""
    return "%s · %d threads · %d goroutines · %d threads in cgo · %d findings (%s)\n" % (
        report["go_version"], len(report["threads"]), len(report["goroutines"]),
        report["counts"]["threads_in_cgo"], len(report["findings"]), diagnose)


def timing_line(a):
    return "cgocore: threads and registers %.3f s, analysis %.3f s, %d bridged reads\n" % (
        a.collect_seconds, a.seconds, a.bridged_reads)


def goroutine_filter(words, usage):
    which = words[0] if words else "all"
    if which not in GOROUTINE_FILTERS or len(words) > 1:
        raise UsageError("usage: %s" % usage)
    return which


def bt_needs_goroutines(words):
    """`bt g GOID` may print a goroutine no thread serves: unwind them all."""
    return len(words) == 2 and words[0] == "g"


def bt(a, words, labels, selected_tid, usage):
    """What `bt [THREAD | m M | g GOID]` prints: the stitched stack of the
    selected thread, of the thread the debugger numbers THREAD (`labels`:
    tid -> its number), of M's thread, or of the thread serving goroutine
    GOID (else that goroutine's own stack)."""
    r = a.report
    try:
        if not words:
            tid = selected_tid
        elif len(words) == 1:
            tid = next((k for k, v in labels.items() if v == words[0]), None)
            if tid is None:
                raise UsageError("no thread %s" % words[0])
        elif len(words) == 2 and words[0] == "m":
            m = int(words[1])
            tid = next((x["tid"] for x in r["threads"] if x["m"] == m), None)
            if tid is None:
                raise UsageError("M%d has no thread in this process" % m)
        elif len(words) == 2 and words[0] == "g":
            g = int(words[1])
            tid = next((x["tid"] for x in r["threads"]
                        if x["stack_goroutine"] == g or x["curg"] == g), None)
            if tid is None:
                if not any(x["goid"] == g for x in r["goroutines"]):
                    raise UsageError("no goroutine %d" % g)
                return a.goroutine(g).rstrip("\n") + "\n"
        else:
            raise ValueError(words)
    except ValueError:
        raise UsageError("usage: %s" % usage) from None
    return a.thread_stack(tid)
