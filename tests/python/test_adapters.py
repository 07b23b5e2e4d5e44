"""The gdb and lldb adapters and what they share (cgocore.debugger), each
against a stand-in of its debugger's module: what they ask the debugger,
and that every failure is one `cgocore: ...` line, the same in both."""
import importlib
import sys
import types

import pytest

import cgocore
from cgocore import debugger as dbg


# ---- what both share -------------------------------------------------------

def test_every_failure_is_one_line_the_same_in_both():
    assert dbg.error_line(dbg.UsageError("usage: cgo-bt"), cgocore) == "cgocore: usage: cgo-bt"
    assert dbg.error_line(dbg.TargetError("no process"), cgocore) == "cgocore: no process"
    assert dbg.error_line(cgocore.NotGoError("not Go\nmore"), cgocore) == "cgocore: not Go"
    assert dbg.error_line(RuntimeError("x\ny"), cgocore) == "cgocore: internal error: x"
    assert dbg.error_line(ValueError(""), cgocore) == "cgocore: internal error: ValueError"
    assert dbg.error_line(KeyboardInterrupt(), cgocore) == "cgocore: interrupted"


def test_registers_by_name_or_alias():
    assert dbg.register_names("aarch64")[:4] == ["pc", "sp", "x29", "x30"]
    assert dbg.register_names("i386:x86-64")[0] == "rip"
    have = {"pc": 1, "sp": 2, "fp": 3, "lr": -1}
    got = dbg.collect_registers(["pc", "sp", "x29", "x30", "x0"], have.get)
    assert got == {"pc": 1, "sp": 2, "x29": 3, "x30": 0xFFFFFFFFFFFFFFFF}


class FakeAnalysis:
    """An analysis of two threads: 100 (M0, goroutine 7) and 101 (M3, in C
    for goroutine 9); goroutine 12 runs on none."""

    report = {
        "threads": [
            {"tid": 100, "m": 0, "curg": 7, "stack_goroutine": 7},
            {"tid": 101, "m": 3, "curg": 9, "stack_goroutine": 9},
        ],
        "goroutines": [{"goid": 7}, {"goid": 9}, {"goid": 12}],
    }

    def thread_stack(self, tid):
        return "stack of %d\n" % tid

    def goroutine(self, goid):
        return "goroutine %d\n\n" % goid


@pytest.mark.parametrize("words,want", [
    ([], "stack of 101\n"),
    (["2"], "stack of 101\n"),
    (["m", "0"], "stack of 100\n"),
    (["g", "9"], "stack of 101\n"),
    (["g", "12"], "goroutine 12\n"),
])
def test_bt_finds_the_stack_asked_for(words, want):
    labels = {100: "1", 101: "2"}
    assert dbg.bt(FakeAnalysis(), words, labels, 101, "cgo-bt X") == want


@pytest.mark.parametrize("words,msg", [
    (["9"], "no thread 9"),
    (["m", "5"], "M5 has no thread in this process"),
    (["g", "44"], "no goroutine 44"),
    (["g", "x"], "usage: cgo-bt X"),
    (["a", "b", "c"], "usage: cgo-bt X"),
])
def test_bt_says_what_is_not_there(words, msg):
    with pytest.raises(dbg.UsageError, match=msg):
        dbg.bt(FakeAnalysis(), words, {100: "1"}, 100, "cgo-bt X")


def test_goroutine_filters():
    assert dbg.goroutine_filter([], "u") == "all"
    assert dbg.goroutine_filter(["cgo"], "u") == "cgo"
    with pytest.raises(dbg.UsageError):
        dbg.goroutine_filter(["cgo", "more"], "u")
    assert dbg.bt_needs_goroutines(["g", "5"]) and not dbg.bt_needs_goroutines(["m", "5"])


# ---- gdb -------------------------------------------------------------------

def fake_gdb(inferior=None, mappings=""):
    """A stand-in `gdb` module: commands register, `info proc mappings`
    answers `mappings`, the selected inferior is `inferior`."""
    gdb = types.ModuleType("gdb")

    class GdbError(Exception):
        pass

    class Command:
        made = {}

        def __init__(self, name, kind):
            Command.made[name] = self

    gdb.GdbError, gdb.error, gdb.MemoryError = GdbError, RuntimeError, MemoryError
    gdb.Command, gdb.COMMAND_STATUS, gdb.COMMAND_STACK = Command, 1, 2
    gdb.selected_inferior = lambda: inferior
    gdb.execute = lambda cmd, to_string=False: mappings
    gdb.written = []
    gdb.write = gdb.written.append
    return gdb


def load_gdb_commands(gdb):
    sys.modules["gdb"] = gdb
    sys.modules.pop("cgocore.gdb_commands", None)
    return importlib.import_module("cgocore.gdb_commands")


def test_gdb_commands_register_and_read_the_mappings():
    text = """process 4242
Mapped address spaces:

          Start Addr           End Addr       Size     Offset  Perms  objfile
            0x400000           0x401000     0x1000        0x0  r--p   /srv/app
            0x401000           0x4a0000    0x9f000     0x1000  r-xp   /srv/app
      0x7f0000000000     0x7f0000028000    0x28000        0x0  r--p   /usr/lib/x86_64-linux-gnu/libc.so.6
      0x7f0000028000     0x7f00001bd000   0x195000    0x28000  r-xp   /usr/lib/x86_64-linux-gnu/libc.so.6
      0x7ffd00000000     0x7ffd00021000    0x21000        0x0  rw-p   [stack]
"""
    gdb = fake_gdb(mappings=text)
    m = load_gdb_commands(gdb)
    assert set(gdb.Command.made) == {"info cgo-threads", "info cgo-goroutines", "cgo-bt", "cgo-diagnose"}
    assert m._modules() == [("/srv/app", 0x400000), ("/usr/lib/x86_64-linux-gnu/libc.so.6", 0x7F0000000000)]


class FakeThread:
    def __init__(self, running):
        self.running = running

    def is_running(self):
        return self.running


class FakeInferior:
    def __init__(self, threads):
        self._threads = threads

    def threads(self):
        return self._threads


@pytest.mark.parametrize("inferior,msg", [
    (None, "cgocore: no process or core: run or attach to a Go program"),
    (FakeInferior([]), "cgocore: no process or core"),
    (FakeInferior([FakeThread(True)]), "cgocore: the process is running; interrupt it first"),
])
def test_gdb_says_one_line_when_there_is_nothing_to_read(inferior, msg):
    gdb = fake_gdb(inferior=inferior)
    load_gdb_commands(gdb)
    for name in ("info cgo-threads", "cgo-diagnose"):
        with pytest.raises(gdb.GdbError) as e:
            gdb.Command.made[name].invoke("", False)
        assert str(e.value).startswith(msg) and "\n" not in str(e.value)


def test_gdb_usage_errors_come_before_any_reading():
    gdb = fake_gdb(inferior=None)
    load_gdb_commands(gdb)
    with pytest.raises(gdb.GdbError, match="^cgocore: usage: info cgo-goroutines"):
        gdb.Command.made["info cgo-goroutines"].invoke("bogus", False)


# ---- lldb ------------------------------------------------------------------

def fake_lldb():
    lldb = types.ModuleType("lldb")
    lldb.eStateRunning, lldb.eStateStepping, lldb.eStateLaunching, lldb.eStateStopped = 1, 2, 3, 4
    return lldb


class Valid:
    def __init__(self, ok, threads=0, state=4):
        self.ok, self.threads, self.state = ok, threads, state

    def IsValid(self):
        return self.ok

    def GetNumThreads(self):
        return self.threads

    def GetState(self):
        return self.state


class ExeCtx:
    def __init__(self, target, process):
        self.target, self.process = target, process

    def GetTarget(self):
        return self.target

    def GetProcess(self):
        return self.process


class Result:
    def __init__(self):
        self.error, self.messages = None, []

    def SetError(self, e):
        self.error = e

    def AppendMessage(self, m):
        self.messages.append(m)


def load_lldb_commands():
    sys.modules["lldb"] = fake_lldb()
    sys.modules.pop("cgocore.lldb_commands", None)
    return importlib.import_module("cgocore.lldb_commands")


@pytest.mark.parametrize("ctx,msg", [
    (ExeCtx(Valid(False), Valid(False)), "cgocore: no process or core: launch or attach"),
    (ExeCtx(Valid(True), Valid(True, threads=3, state=1)), "cgocore: the process is running"),
])
def test_lldb_says_the_same_one_line(ctx, msg):
    m = load_lldb_commands()
    for cls in (m.Threads, m.Diagnose, m.Bt):
        r = Result()
        cls(None, {})(None, "", ctx, r)
        assert r.error.startswith(msg) and "\n" not in r.error, r.error
        assert r.messages == []


def test_lldb_usage_error_and_registration():
    m = load_lldb_commands()
    r = Result()
    m.Goroutines(None, {})(None, "bogus", ExeCtx(Valid(False), Valid(False)), r)
    assert r.error == "cgocore: usage: cgo goroutines [cgo|locked|all]"
    said = []
    debugger = types.SimpleNamespace(HandleCommand=said.append)
    m.register(debugger, "cgocore_lldb")
    assert said[0].startswith("command container add")
    assert "command script add -o -c cgocore_lldb.Bt cgo bt" in said
