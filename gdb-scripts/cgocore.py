"""cgocore for gdb, from a checkout of the repository.

    source /path/to/cgocore/gdb-scripts/cgocore.py

Finds the cgocore Python package (on sys.path, in $CGOCORE_PYTHONPATH, or in
the repository's .cache/python, where scripts/build-python puts it) and loads
its gdb commands (cgocore/gdb_commands.py: info cgo-threads, info
cgo-goroutines, cgo-bt, cgo-diagnose). With the package installed (pip
install cgocore), `cgocore debugger-init gdb` prints the one line for
~/.gdbinit instead.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
for _p in (os.environ.get("CGOCORE_PYTHONPATH"), os.path.join(_HERE, "..", ".cache", "python")):
    if _p and os.path.isdir(_p) and _p not in sys.path:
        sys.path.append(_p)
try:
    import cgocore.gdb_commands  # noqa: F401  (importing it adds the commands)
except ImportError as _e:
    import gdb

    raise gdb.GdbError("cgocore: the cgocore Python package is not installed (%s); build python-ext "
                       "with maturin (scripts/build-python), or set CGOCORE_PYTHONPATH" % _e) from None
