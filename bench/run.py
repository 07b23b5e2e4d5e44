#!/usr/bin/env python3
"""Scale benchmark for cgocore analyze, side by side with the tools people use today.

For every size (goroutines parked in Go x threads blocked in C, a tenth of them locked) and core
kind (kernel with GOTRACEBACK=crash, gdb's gcore), it generates a real core of the cgostuck
scenario once (cached in .cache/bench), then runs, on the same core, in the same run:

  cgocore analyze                       the thread table (and findings)
  cgocore analyze --goroutines all --stacks   everything as text
  cgocore analyze --json                everything, every stack, as JSON
  gdb: thread apply all bt              (--anchors)
  gdb + Go's runtime-gdb.py: info goroutines   (--anchors)
  dlv core: goroutines -t               (--anchors, when Delve is installed)

It records the median wall time, CPU time and peak RSS of --runs runs, the ratio of each anchor
to `cgocore analyze --json`, and (--callgrind) the instructions valgrind counts for cgocore, which
do not depend on what else the machine does. Results go to stdout and to bench/results.md.
See bench/README.md.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CGOCORE = os.path.join(ROOT, "target", "release", "cgocore")
COLD = "cgocore analyze --json, core not in page cache"


def evict(path):
    """Drop a file's pages from the page cache: the next run reads it from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure(cmd, runs, timeout=600, before=None):
    """Median wall, CPU and peak RSS (MB) of `runs` runs; None and why if it fails."""
    walls, cpus, rss = [], [], []
    for _ in range(runs):
        if before:
            before()
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                return None, "gave up after %d s" % timeout
            time.sleep(0.01)
        walls.append(time.perf_counter() - t0)
        cpus.append(ru.ru_utime + ru.ru_stime)
        rss.append(ru.ru_maxrss / 1024.0)
        if os.waitstatus_to_exitcode(status) not in (0, 3):
            err = p.stderr.read().decode(errors="replace").strip().splitlines()
            return None, (err[-1] if err else "exit %d" % os.waitstatus_to_exitcode(status))
    return (statistics.median(walls), statistics.median(cpus), statistics.median(rss)), None


def instructions(cmd):
    """Instructions counted by callgrind (repeatable on a busy machine)."""
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "cg.out")
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        m = re.search(rb"Collected : (\d+)", p.stderr)
        return int(m.group(1)) if m else None


def generate(go, parked, cblocked, kind):
    out = os.path.join(ROOT, ".cache", "bench", "p%d-c%d" % (parked, cblocked))
    # The scale programs measure scale, not classification: no wedged-arena
    # case, which a thousand threads sharing glibc's arenas cannot hold.
    subprocess.check_call([sys.executable, os.path.join(ROOT, "corefiles", "generate.py"), "--versions", go,
                           "--variants", "plain", "--kinds", kind, "--parked", str(parked),
                           "--cblocked", str(cblocked), "--out", out, "--no-arena"])
    base = os.path.join(out, "go" + go, "plain")
    return os.path.join(base, "cgostuck"), os.path.join(base, kind, "core")


def live(go, parked, cblocked, runs):
    """The running program: median stopped time of `cgocore analyze --pid`,
    the time and size of `cgocore snapshot`, and gdb's gcore beside them."""
    sys.path.insert(0, os.path.join(ROOT, "corefiles"))
    import generate as gen
    exe, _ = generate(go, parked, cblocked, "kernel")  # the build
    tmp = tempfile.mkdtemp(prefix="cgocore-bench-live-")
    p, _, err = gen.start(exe, tmp, ["-parked", str(parked), "-cblocked", str(cblocked), "-no-arena"],
                          kernel_core=False)
    try:
        time.sleep(0.5)
        stops = []
        for _ in range(runs):
            out = subprocess.check_output([CGOCORE, "analyze", "--pid", str(p.pid), "--json"])
            stops.append(json.loads(out)["stopped_ms"])
        snap = os.path.join(tmp, "snapshot.core")
        t0 = time.perf_counter()
        subprocess.check_call([CGOCORE, "snapshot", "--pid", str(p.pid), "-o", snap], stdout=subprocess.DEVNULL)
        snap_s = time.perf_counter() - t0
        row = {"stopped_ms": statistics.median(stops), "snapshot_s": snap_s,
               "snapshot_mb": os.path.getsize(snap) / 1e6}
        os.unlink(snap)
        return row
    finally:
        p.kill()
        p.wait()
        err.close()
        shutil.rmtree(tmp, ignore_errors=True)


def queue_core(go, objects, waiters):
    """A kernel core of the queue program at scale: `objects` mutexes, each
    held by a goroutine in C, with `waiters` goroutines waiting on each."""
    sys.path.insert(0, os.path.join(ROOT, "corefiles"))
    import generate as gen
    base = os.path.join(ROOT, ".cache", "bench", "queue-%dx%d" % (objects, waiters))
    with tempfile.TemporaryDirectory(prefix="cgocore-gocache-") as gocache:
        exe = gen.build(go, "queue", base, gocache)
    d = os.path.join(base, "kernel")
    # Not gen.captured_by: it loads the 100k-goroutine truth.json, and a big
    # parent's peak RSS is inherited by the children measure() times.
    if not os.path.exists(os.path.join(d, "core")):
        gen.capture(exe, "kernel", d, ["-objects", str(objects), "-waiters", str(waiters)], delay=1.0)
    return exe, os.path.join(d, "core")


def goroot(go):
    return os.path.join(ROOT, ".cache", "go", "v" + go, "lib", "python3.11", "site-packages", "go")


def anchors(go, exe, core):
    gdb = ["gdb", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set auto-load no", exe, core]
    out = [("gdb: thread apply all bt", gdb + ["-ex", "thread apply all bt"])]
    rt = os.path.join(goroot(go), "src", "runtime", "runtime-gdb.py")
    if os.path.exists(rt):
        out.append(("gdb + runtime-gdb.py: info goroutines", gdb + ["-ex", "source " + rt, "-ex", "info goroutines"]))
    dlv = shutil.which("dlv")
    if dlv:
        script = os.path.join(tempfile.gettempdir(), "cgocore-bench-dlv.txt")
        with open(script, "w") as f:
            f.write("goroutines -t\nexit\n")
        out.append(("dlv core: goroutines -t", [dlv, "core", exe, core, "--check-go-version=false",
                                                  "--allow-non-terminal-interactive=true", "--init", script]))
    return out


def matplotlib():
    """matplotlib from the system, else from a venv under .cache (installed once)."""
    try:
        import matplotlib as m
        return m
    except ImportError:
        pass
    venv = os.path.join(ROOT, ".cache", "plot-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", venv])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "matplotlib"])
    site = subprocess.check_output([py, "-c", "import site; print(site.getsitepackages()[0])"]).decode().strip()
    sys.path.insert(0, site)
    import matplotlib as m
    return m


def plot(records, out):
    """Wall time and peak RSS per tool, and cgocore's instructions, against goroutines."""
    m = matplotlib()
    m.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    tools = ["cgocore analyze --json", COLD, "gdb: thread apply all bt",
             "gdb + runtime-gdb.py: info goroutines", "dlv core: goroutines -t"]
    threads = sorted({r["threads"] for r in records})
    styles = {t: s for t, s in zip(threads, ["-", "--", ":", "-."])}
    for tool in tools:
        for t in threads:
            pts = sorted((r["goroutines"], r["wall_s"], r["rss_mb"]) for r in records
                         if r["command"] == tool and r["threads"] == t and r["kind"] == "kernel"
                         and r["wall_s"] is not None)
            if not pts:
                continue
            lab = "%s, %d threads" % (tool, t)
            color = "C%d" % tools.index(tool)
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], styles[t], color=color, marker="o", label=lab)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], styles[t], color=color, marker="o", label=lab)
    for t in threads:
        for cmd, color in (("cgocore analyze --json", "C0"), ("cgocore analyze", "C5")):
            pts = sorted((r["goroutines"], r["instructions"]) for r in records
                         if r["command"] == cmd and r["threads"] == t and r["kind"] == "kernel"
                         and r["instructions"])
            if pts:
                axes[2].plot([p[0] for p in pts], [p[1] / 1e9 for p in pts], styles[t], color=color, marker="o",
                             label="%s, %d threads" % (cmd, t))
    for ax, title, unit in ((axes[0], "wall time (kernel cores)", "s"),
                            (axes[1], "peak RSS (kernel cores)", "MB"),
                            (axes[2], "cgocore instructions (callgrind): linear in goroutines", "billion")):
        # Time and memory span decades; instructions on linear axes show the slope.
        if ax is not axes[2]:
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("goroutines parked in Go")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6)
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    print("plot written to", out)


def write_results(a, rows, records):
    """Tables so far (written after every core: a long run that stops keeps what it measured)."""
    with open(a.results, "w") as f:
        f.write("# Benchmark results\n\n")
        f.write("Machine: %s, %d CPUs; Go %s; median of %d runs. Generated by `bench/run.py %s`.\n\n"
                % (os.uname().machine, os.cpu_count(), a.go, a.runs, " ".join(sys.argv[1:])))
        f.write("| core | command | wall s | cpu s | peak RSS MB | vs cgocore --json | instructions |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for label, name, r, err, ir, ratio in rows:
            if r:
                f.write("| %s | %s | %.3f | %.3f | %.1f | %s | %s |\n" % (
                    label, name, r[0], r[1], r[2], ratio, "" if ir is None else "{:,}".format(ir)))
            else:
                f.write("| %s | %s | failed: %s | | | | |\n" % (label, name, err.replace("|", "/")))
    with open(os.path.splitext(a.results)[0] + ".json", "w") as f:
        json.dump(records, f, indent=1)
    print("\nwritten to", a.results, "and", os.path.splitext(a.results)[0] + ".json")


def write_live(a, live_rows):
    """The live table: bench/results-live.md beside results.md."""
    out = os.path.splitext(a.results)[0] + "-live.md"
    with open(out, "w") as f:
        f.write("# Live benchmark\n\n")
        f.write("Machine: %s, %d CPUs; Go %s. The running scenario program (goroutines parked in Go x threads "
                "blocked in C); `cgocore analyze --pid`'s stopped time is the median of %d runs. Generated by "
                "`bench/run.py %s`.\n\n" % (os.uname().machine, os.cpu_count(), a.go, a.runs, " ".join(sys.argv[1:])))
        f.write("| goroutines | threads in C | stopped ms | snapshot s | snapshot MB |\n|---|---|---|---|---|\n")
        for parked, cblocked, r in live_rows:
            f.write("| %d | %d | %.1f | %.2f | %.1f |\n" % (parked, cblocked, r["stopped_ms"], r["snapshot_s"],
                                                             r["snapshot_mb"]))
    print("\nwritten to", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--go", default="1.27.3")
    ap.add_argument("--sizes", default=",".join("%dx%d" % (g, t) for g in (1000, 10000, 100000)
                                                for t in (10, 200, 1000)),
                    help="comma-separated GOROUTINESxTHREADS (parked in Go x blocked in C)")
    ap.add_argument("--kinds", default="kernel", help="kernel,gcore,live (live: the running program, cgocore "
                    "analyze --pid's stopped time and cgocore snapshot's size)")
    ap.add_argument("--keep-going", action="store_true",
                    help="measure the other sizes when one cannot be made (the run still fails at the end)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--anchor-runs", type=int, default=1, help="runs of the (slow) anchors")
    ap.add_argument("--anchors", action="store_true", help="also time gdb, runtime-gdb.py and Delve")
    ap.add_argument("--callgrind", action="store_true", help="count cgocore's instructions with valgrind")
    ap.add_argument("--gcore-max-goroutines", type=int, default=100000,
                    help="skip gcore cores of sizes with more goroutines")
    ap.add_argument("--gcore-max-threads", type=int, default=200,
                    help="skip gcore cores of sizes with more threads in C: gdb 13 writes each thread's 64 MB "
                         "glibc heap reservation as zeros (19.4 GB apparent for 200 threads, written into "
                         "/dev/shm, then copied sparse), so 1000 threads would need ~75 GB of memory or disk")
    ap.add_argument("--cold", action="store_true",
                    help="also time cgocore --json with the core dropped from the page cache before each run")
    ap.add_argument("--plot", metavar="PNG", help="plot time, memory and instructions against core size "
                    "(matplotlib, installed into .cache/plot-venv when missing)")
    ap.add_argument("--queue", metavar="OBJECTSxWAITERS",
                    help="also measure the queue program: OBJECTS mutexes each held by a goroutine in C, WAITERS "
                    "goroutines queued on each (e.g. 100x1000: 100k goroutines on 100 objects)")
    ap.add_argument("--results", default=os.path.join(ROOT, "bench", "results.md"))
    ap.add_argument("--replot", action="store_true", help="only redraw --plot from the results JSON")
    a = ap.parse_args()
    if a.replot:
        with open(os.path.splitext(a.results)[0] + ".json") as f:
            plot(json.load(f), a.plot or os.path.join(ROOT, "bench", "scale.png"))
        return
    subprocess.check_call(["cargo", "build", "--release", "-q", "-p", "core-analyzer"], cwd=ROOT)
    rows, records, failed, live_rows = [], [], [], []
    if a.queue:
        objects, waiters = (int(x) for x in a.queue.split("x"))
        exe, core = queue_core(a.go, objects, waiters)
        label = "%dk goroutines queued on %d mutexes held in C, kernel core" % (objects * waiters // 1000, objects)
        print("\n%s (%.1f GB apparent)" % (label, os.path.getsize(core) / 1e9), flush=True)
        base = [CGOCORE, "analyze", core, "--exe", exe]
        for name, cmd in [("cgocore analyze", base), ("cgocore analyze --json", base + ["--json"])]:
            r, err = measure(cmd, a.runs)
            ir = instructions(cmd) if a.callgrind else None
            rows.append((label, name, r, err, ir, ""))
            records.append({"goroutines": objects * (waiters + 1), "threads": objects, "kind": "queue",
                            "apparent_gb": os.path.getsize(core) / 1e9, "command": name,
                            "wall_s": r and r[0], "cpu_s": r and r[1], "rss_mb": r and r[2],
                            "instructions": ir, "error": err})
            print("  %-45s %s" % (name, "%.3f s %.3f s cpu %.1f MB" % r if r else "failed: %s" % err), flush=True)
        write_results(a, rows, records)
    for size in a.sizes.split(","):
        parked, cblocked = (int(x) for x in size.split("x"))
        for kind in a.kinds.split(","):
            if kind == "gcore" and (cblocked > a.gcore_max_threads or parked > a.gcore_max_goroutines):
                print("\n%dx%d: no gcore core (see --gcore-max-threads, --gcore-max-goroutines)"
                      % (parked, cblocked), flush=True)
                continue
            if kind == "live":
                try:
                    r = live(a.go, parked, cblocked, a.runs)
                except (subprocess.CalledProcessError, RuntimeError) as e:
                    failed.append("%dx%d live: %s" % (parked, cblocked, e))
                    if not a.keep_going:
                        break
                    continue
                print("\n%dx%d live: stopped %.1f ms (median of %d); snapshot %.2f s, %.1f MB"
                      % (parked, cblocked, r["stopped_ms"], a.runs, r["snapshot_s"], r["snapshot_mb"]), flush=True)
                live_rows.append((parked, cblocked, r))
                write_live(a, live_rows)
                continue
            try:
                exe, core = generate(a.go, parked, cblocked, kind)
            except subprocess.CalledProcessError as e:
                failed.append("%dx%d %s: no core (%s)" % (parked, cblocked, kind, e))
                print("\n%s" % failed[-1], flush=True)
                if not a.keep_going:
                    break
                continue
            label = "%dk goroutines / %d threads, %s core" % (parked // 1000, cblocked, kind) if parked >= 1000 \
                else "%d goroutines / %d threads, %s core" % (parked, cblocked, kind)
            print("\n%s (%.1f GB apparent)" % (label, os.path.getsize(core) / 1e9), flush=True)
            base = [CGOCORE, "analyze", core, "--exe", exe]
            cmds = [("cgocore analyze", base),
                    ("cgocore analyze --goroutines all --stacks", base + ["--goroutines", "all", "--stacks"]),
                    ("cgocore analyze --json", base + ["--json"])]
            if a.cold:
                cmds.append((COLD, base + ["--json"]))
            if a.anchors:
                cmds += anchors(a.go, exe, core)
            ref = None
            for name, cmd in cmds:
                before = (lambda core=core: evict(core)) if name == COLD else None
                r, err = measure(cmd, a.runs if name.startswith("cgocore") else a.anchor_runs, before=before)
                # Instructions do not depend on the page cache or on text vs JSON much:
                # count the table and everything as JSON.
                ir = instructions(cmd) if a.callgrind and name in ("cgocore analyze", "cgocore analyze --json") \
                    else None
                if name == "cgocore analyze --json" and r:
                    ref = r[0]
                ratio = "%.1fx" % (r[0] / ref) if r and ref and not name.startswith("cgocore") else ""
                rows.append((label, name, r, err, ir, ratio))
                records.append({"goroutines": parked, "threads": cblocked, "kind": kind,
                                "apparent_gb": os.path.getsize(core) / 1e9, "command": name,
                                "wall_s": r and r[0], "cpu_s": r and r[1], "rss_mb": r and r[2],
                                "instructions": ir, "error": err})
                if r:
                    instr = "" if ir is None else "%.3g instr" % ir
                    print("  %-45s %8.3f s %8.3f s cpu %9.1f MB %s%s" % (
                        name, r[0], r[1], r[2], ratio and ratio + " of cgocore --json  ", instr), flush=True)
                else:
                    print("  %-45s failed: %s" % (name, err), flush=True)
            write_results(a, rows, records)
    if a.plot:
        plot(records, a.plot)
    if failed:
        # A size the README quotes that cannot be made is a failure, not a gap.
        sys.exit("bench: %d size(s) could not be measured:\n  %s" % (len(failed), "\n  ".join(failed)))


if __name__ == "__main__":
    main()
