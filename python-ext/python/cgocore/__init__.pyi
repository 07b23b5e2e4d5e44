from typing import Any, Callable, Dict, List, Optional, Tuple

__version__: str

class CgocoreError(Exception):
    """A core or target cgocore cannot read, or an internal error: one line saying why."""

class NotACoreError(CgocoreError):
    """The input is not a core file cgocore can read."""

class NotGoError(CgocoreError):
    """Neither the executable nor any library it mapped is a Go binary."""

class WrongBinaryError(CgocoreError):
    """The binary is not the one the process ran (the message names both)."""

class UnsupportedGoVersionError(CgocoreError):
    """A Go release this cgocore has no knowledge of."""

class CorruptRuntimeError(CgocoreError):
    """The Go runtime's data in the process cannot be made sense of."""

class TargetMemoryError(CgocoreError):
    """The debugger or live target refused a read the analysis needs."""

Report = Dict[str, Any]

def analyze_core(core: str, exe: Optional[str] = ..., sysroot: Optional[str] = ...,
                 goroutine_frames: bool = ..., rules: Optional[str] = ...) -> Report: ...
def analyze_core_json(core: str, exe: Optional[str] = ..., sysroot: Optional[str] = ...,
                      goroutine_frames: bool = ..., rules: Optional[str] = ...) -> str: ...

class Analysis:
    json: str
    report: Report
    bridged_reads: int
    def __init__(self, report_json: str, bridged_reads: int = ...) -> None: ...
    def threads_table(self, labels: Optional[Dict[int, str]] = ...) -> str: ...
    def goroutines(self, which: str = ...) -> str: ...
    def thread_stack(self, tid: int) -> str: ...
    def goroutine(self, goid: int) -> str: ...
    def findings(self) -> str: ...
    def text(self, goroutines: str = ..., stacks: bool = ...) -> str: ...

def analyze_target(read: Callable[[int, int], Optional[bytes]],
                   threads: List[Tuple[int, Dict[str, int]]],
                   modules: List[Tuple[str, int]], exe: str, arch: str = ...,
                   pid: Optional[int] = ..., sysroot: Optional[str] = ...,
                   goroutine_frames: bool = ..., rules: Optional[str] = ...,
                   read_pages: int = ...) -> Analysis: ...
def analyze_target_json(read: Callable[[int, int], Optional[bytes]],
                        threads: List[Tuple[int, Dict[str, int]]],
                        modules: List[Tuple[str, int]], exe: str, arch: str = ...,
                        pid: Optional[int] = ..., sysroot: Optional[str] = ...,
                        goroutine_frames: bool = ..., rules: Optional[str] = ...,
                        read_pages: int = ...) -> Tuple[str, int]: ...
def render(report_json: str, goroutines: str = ..., stacks: bool = ...) -> str: ...
def render_threads(report_json: str, labels: Optional[Dict[int, str]] = ...) -> str: ...
def render_goroutines(report_json: str, which: str = ...) -> str: ...
def render_thread_stack(report_json: str, tid: int) -> str: ...
def render_goroutine(report_json: str, goid: int) -> str: ...
def render_findings(report_json: str) -> str: ...
