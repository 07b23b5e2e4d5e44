"""cgocore for lldb, from a checkout of the repository.

    command script import /path/to/cgocore/lldb-scripts/cgocore_lldb.py

Finds the cgocore Python package (on sys.path, in $CGOCORE_PYTHONPATH, or in
the repository's .cache/python, where scripts/build-python puts it) and adds
its lldb commands (cgocore/lldb_commands.py: cgo threads|goroutines|bt|
diagnose). With the package installed (pip install cgocore), `cgocore
debugger-init lldb` prints the one line for ~/.lldbinit instead.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.environ.get("CGOCORE_PYTHONPATH"), os.path.join(_HERE, "..", ".cache", "python")):
    if _p and os.path.isdir(_p) and _p not in sys.path:
        sys.path.append(_p)
try:
    # lldb finds the command classes by this module's name.
    from cgocore.lldb_commands import Bt, Diagnose, Goroutines, Threads, register  # noqa: F401
    _missing = None
except ImportError as _e:
    _missing = _e


def __lldb_init_module(debugger, internal_dict):
    if _missing is not None:
        print("cgocore: the cgocore Python package is not installed (%s); build python-ext with "
              "maturin (scripts/build-python), or set CGOCORE_PYTHONPATH" % _missing)
        return
    register(debugger, __name__)
