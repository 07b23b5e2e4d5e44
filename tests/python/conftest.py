"""The Python side of the debugger faces, tested against stand-in debuggers:
the cgocore package as built (CGOCORE_PYTHONPATH, else .cache/python)."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.environ.get("CGOCORE_PYTHONPATH") or os.path.join(ROOT, ".cache", "python"))
