#!/usr/bin/env python3
"""Scale benchmark for cgocore analyze (not a timed test).

Generates (once, cached in .cache/bench) a real kernel core of the cgostuck scenario with
--parked goroutines parked in Go and --cblocked goroutines blocked in C, then runs
`cgocore analyze` (text, and --json with every goroutine's frames) several times and prints
the median wall time, CPU time and peak RSS of each. See bench/README.md.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(cmd, runs):
    walls, cpus, rss = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, ru = os.wait4(p.pid, 0)
        walls.append(time.perf_counter() - t0)
        cpus.append(ru.ru_utime + ru.ru_stime)
        rss.append(ru.ru_maxrss / 1024.0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            sys.exit("%s exited %d: %s" % (" ".join(cmd), code, p.stderr.read().decode()))
    return statistics.median(walls), statistics.median(cpus), statistics.median(rss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--go", default="1.27.3")
    ap.add_argument("--parked", type=int, default=10000)
    ap.add_argument("--cblocked", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    out = os.path.join(ROOT, ".cache", "bench", "p%d-c%d" % (a.parked, a.cblocked))
    subprocess.check_call([sys.executable, os.path.join(ROOT, "corefiles", "generate.py"), "--versions", a.go,
                           "--variants", "plain", "--kinds", "kernel", "--parked", str(a.parked),
                           "--cblocked", str(a.cblocked), "--out", out])
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "core-analyzer"], cwd=ROOT)
    exe = os.path.join(out, "go" + a.go, "plain", "cgostuck")
    core = os.path.join(out, "go" + a.go, "plain", "kernel", "core")
    cgocore = os.path.join(ROOT, "target", "release", "cgocore")
    size = os.path.getsize(core)
    print("core: %s (%.0f MB apparent), Go %s, %d parked + %d in C" % (core, size / 1e6, a.go, a.parked, a.cblocked))
    print("%-40s %10s %10s %12s" % ("command", "wall s", "cpu s", "peak RSS MB"))
    for label, extra in [("cgocore analyze (table)", []),
                         ("cgocore analyze --stacks --goroutines all", ["--stacks", "--goroutines", "all"]),
                         ("cgocore analyze --json (all frames)", ["--json"])]:
        w, c, r = measure([cgocore, "analyze", core, "--exe", exe] + extra, a.runs)
        print("%-40s %10.3f %10.3f %12.1f" % (label, w, c, r))


if __name__ == "__main__":
    main()
