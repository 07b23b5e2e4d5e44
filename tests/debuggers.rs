//! The gdb and lldb faces, driven by real gdb 13 and lldb-16 in batch mode:
//! on cores of several Go versions and on a live scenario process stopped
//! under the debugger, `info cgo-threads` / `cgo threads` must report the same
//! M, lockedExt, lockedInt, lockedg and goroutine for every thread as
//! `cgocore analyze` on a core of the same state, and as the scenario program
//! says. Bad situations (no process, a non-Go program, a running process) give
//! one line, never a Python traceback.
//!
//! Needs the `cgocore` Python package (python-ext, built by scripts/test-all
//! into .cache/python, or $CGOCORE_PYTHONPATH).
mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn python_path() -> Option<PathBuf> {
    let p = std::env::var_os("CGOCORE_PYTHONPATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/python"));
    p.join("cgocore/__init__.py").exists().then_some(p)
}

/// The debugger and the package, or a skip (a failure in the full run).
fn ready(debugger: &str) -> Option<PathBuf> {
    match (have(debugger), python_path()) {
        (true, Some(p)) => Some(p),
        (d, p) => {
            assert!(
                !require_generated(),
                "{debugger} installed: {d}; cgocore package built: {}",
                p.is_some()
            );
            eprintln!("{debugger} or the cgocore Python package missing; skipped");
            None
        }
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (M, lockedExt, lockedInt, lockedg, curg) per tid, as the table prints them.
type Rows = BTreeMap<u32, [String; 5]>;

/// The thread table a debugger printed after `===THREADS===`, which must be
/// the CLI's for the same core (and no Python traceback on the way).
fn table_equals_cli(out: &str, want: &cgocore::report::Report, what: &str) -> Rows {
    assert!(!out.contains("Traceback"), "{what}: {out}");
    let rows = table(out, "===THREADS===");
    assert_eq!(
        rows,
        expected(want),
        "{what}: table vs cgocore analyze\n{out}"
    );
    rows
}

/// Rows of the thread table printed after `marker`.
fn table(out: &str, marker: &str) -> Rows {
    let mut rows = Rows::new();
    // The marker on a line of its own (lldb also echoes the command that printed it).
    let mut lines = out.lines().skip_while(|l| l.trim() != marker).skip(1);
    for line in lines.by_ref() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first().is_some_and(|x| x.starts_with("===")) {
            break;
        }
        // #  TID  KIND  M  LOCKEXT  LOCKINT  LOCKEDG  CURG ...
        if f.len() >= 8 && f[0].parse::<u32>().is_ok() {
            if let Ok(tid) = f[1].parse() {
                rows.insert(tid, [f[3], f[4], f[5], f[6], f[7]].map(String::from));
            }
        }
    }
    rows
}

/// The same columns from the library's report.
fn expected(r: &cgocore::report::Report) -> Rows {
    let o = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    r.threads
        .iter()
        .map(|t| {
            let m = r.ms.iter().find(|m| Some(m.id) == t.m);
            (
                t.tid,
                [
                    o(t.m.map(|m| format!("M{m}"))),
                    o(m.map(|m| m.locked_ext.to_string())),
                    o(m.map(|m| m.locked_int.to_string())),
                    o(t.lockedg.map(|g| g.to_string())),
                    o(t.curg.map(|g| g.to_string())),
                ],
            )
        })
        .collect()
}

/// Scenario threads in C carry their goroutine (from the program's own lines).
fn check_scenarios(rows: &Rows, scenarios: &BTreeMap<String, (u32, u64)>, what: &str) {
    for name in [
        "read_pipe",
        "mutex_waiter",
        "locked_in_c",
        "dns",
        "deadlock_ab",
    ] {
        let Some((tid, goid)) = scenarios.get(name) else {
            panic!("{what}: scenario {name} missing");
        };
        let row = rows
            .get(tid)
            .unwrap_or_else(|| panic!("{what}: thread {tid} ({name}) missing"));
        assert_eq!(row[4], goid.to_string(), "{what}: {name}: curg");
    }
    let (tid, _) = scenarios["locked_twice_go"];
    assert_eq!(rows[&tid][1], "2", "{what}: locked_twice_go lockedExt");
    let (tid, goid) = scenarios["locked_in_c"];
    assert_eq!(
        (rows[&tid][1].as_str(), rows[&tid][3].clone()),
        ("1", goid.to_string()),
        "{what}: locked_in_c lockedExt/lockedg"
    );
}

fn scenarios_of(case: &CoreCase) -> BTreeMap<String, (u32, u64)> {
    case.truth
        .scenarios
        .iter()
        .map(|(k, s)| (k.clone(), (s.tid, s.goid)))
        .collect()
}

/// `SCENARIO name tid=N goid=G` lines the program printed.
fn scenarios_printed(out: &str) -> BTreeMap<String, (u32, u64)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("SCENARIO ")?;
            let mut it = rest.split_whitespace();
            let name = it.next()?.to_string();
            let tid = it.next()?.strip_prefix("tid=")?.parse().ok()?;
            let goid = it.next()?.strip_prefix("goid=")?.parse().ok()?;
            Some((name, (tid, goid)))
        })
        .collect()
}

/// Cores of several Go versions: the fixtures and, when generated, plain
/// kernel and gcore cores of the oldest and newest releases.
fn core_cases() -> Vec<CoreCase> {
    let mut v = fixtures();
    v.extend(generated().into_iter().filter(|c| {
        c.truth.variant == "plain" && (c.name.starts_with("go1.21") || c.name.starts_with("go1.27"))
    }));
    v
}

/// A debugger that hangs fails the test in bounded time instead of the run.
const DEBUGGER_TIMEOUT: &str = "300";

fn gdb(args: &[&str], pp: &Path) -> Output {
    Command::new("timeout")
        .args(["-k", "10", DEBUGGER_TIMEOUT, "gdb"])
        .args([
            "-nx",
            "-batch",
            "-ex",
            "set auto-load no",
            "-ex",
            "set pagination off",
        ])
        .args([
            "-ex",
            &format!("source {}", root().join("gdb-scripts/cgocore.py").display()),
        ])
        .args(args)
        .env("CGOCORE_PYTHONPATH", pp)
        .output()
        .unwrap()
}

fn lldb(args: &[&str], pp: &Path) -> Output {
    Command::new("timeout")
        .args(["-k", "10", DEBUGGER_TIMEOUT, "lldb-16"])
        .args(["-b", "--no-lldbinit", "-o"])
        .arg(format!(
            "command script import {}",
            root().join("lldb-scripts/cgocore_lldb.py").display()
        ))
        .args(args)
        .env("CGOCORE_PYTHONPATH", pp)
        .output()
        .unwrap()
}

/// gdb commands that record the thread of every read the adapter makes.
const READ_THREADS: &str = "python import threading, cgocore.gdb_commands as g; seen = set(); \
    read = g._Target.read; \
    g._Target.read = lambda self, a, n: (seen.add(threading.get_ident()), read(self, a, n))[1]";

#[test]
fn gdb_on_cores_matches_the_cli_and_go() {
    let Some(pp) = ready("gdb") else { return };
    for c in &core_cases() {
        let (exe, core) = (uncompressed(&c.exe), uncompressed(&c.core));
        let want = analyze(c);
        let waiter = c.truth.scenarios["mutex_waiter"].tid;
        let m = want
            .report
            .threads
            .iter()
            .find(|t| t.tid == waiter)
            .unwrap()
            .m
            .unwrap();
        let out = gdb(
            &[
                exe.to_str().unwrap(),
                core.to_str().unwrap(),
                // Which threads read through gdb: gdb's API is not for
                // other threads, so every read must be made on gdb's own.
                "-ex",
                READ_THREADS,
                "-ex",
                "echo ===THREADS===\\n",
                "-ex",
                "info cgo-threads",
                "-ex",
                "echo ===BT===\\n",
                "-ex",
                &format!("cgo-bt m {m}"),
                "-ex",
                "echo ===DIAG===\\n",
                "-ex",
                "cgo-diagnose",
                // Goroutine stacks are unwound (and read through gdb) with
                // the GIL released: holding it would deadlock the reads.
                "-ex",
                "echo ===GOROUTINES===\\n",
                "-ex",
                "info cgo-goroutines cgo",
                "-ex",
                "echo ===END===\\n",
                "-ex",
                "python print('READ THREADS', 'gdb' if seen == {threading.get_ident()} else seen)",
            ],
            &pp,
        );
        let out = text(&out);
        assert!(
            out.contains("READ THREADS gdb"),
            "{}: reads off gdb's thread:\n{out}",
            c.name
        );
        let rows = table_equals_cli(&out, &want.report, &format!("{} (gdb)", c.name));
        check_scenarios(&rows, &scenarios_of(c), &c.name);
        let bt = &out[out.find("===BT===").unwrap()..out.find("===DIAG===").unwrap()];
        assert!(
            bt.contains("in C.block_mutex")
                && bt.contains("runtime.asmcgocall")
                && bt.contains("runtime.cgocall"),
            "{}: cgo-bt m {m}:\n{bt}",
            c.name
        );
        let diag = &out[out.find("===DIAG===").unwrap()..out.find("===GOROUTINES===").unwrap()];
        assert!(diag.contains("[CRITICAL] deadlock"), "{}: {diag}", c.name);
        let gs = &out[out.find("===GOROUTINES===").unwrap()..];
        let mutex_goid = c.truth.scenarios["mutex_waiter"].goid;
        assert!(
            gs.contains(&format!("goroutine {mutex_goid} "))
                && gs.contains("[C] ___pthread_mutex_lock"),
            "{}: info cgo-goroutines cgo:\n{gs}",
            c.name
        );
    }
}

/// The locked thread's row (lockedExt, lockedg, curg) as the program printed.
fn check_cshared(rows: &Rows, c: &CoreCase) {
    let s = &c.truth.scenarios["cshared_locked_in_c"];
    let row = &rows[&s.tid];
    assert_eq!(
        (row[1].as_str(), row[3].as_str(), row[4].as_str()),
        (
            "1",
            s.goid.to_string().as_str(),
            s.goid.to_string().as_str()
        ),
        "{}: cshared_locked_in_c",
        c.name
    );
}

/// A C program running a Go library (-buildmode=c-shared): given the host
/// program, gdb and lldb find the Go runtime in the library, and their tables
/// equal the CLI's and the program's record.
#[test]
fn debuggers_find_a_go_library_in_a_c_program() {
    let cases: Vec<CoreCase> = generated_cshared()
        .into_iter()
        .filter(|c| c.truth.kind == "kernel")
        .collect();
    assert!(
        !cases.is_empty() || !require_generated(),
        "no generated c-shared cores"
    );
    for c in &cases {
        let want = analyze(c).report;
        let mut outs = vec![];
        if let Some(pp) = ready("gdb") {
            let (exe, core) = (c.exe.to_str().unwrap(), c.core.to_str().unwrap());
            let args = [
                exe,
                core,
                "-ex",
                "echo ===THREADS===\\n",
                "-ex",
                "info cgo-threads",
            ];
            outs.push(("gdb", gdb(&args, &pp)));
        }
        if let Some(pp) = ready("lldb-16") {
            let target = format!(
                "target create {} --core {}",
                c.exe.display(),
                c.core.display()
            );
            let args = [
                "-o",
                &target,
                "-o",
                "script print('===THREADS===')",
                "-o",
                "cgo threads",
            ];
            outs.push(("lldb", lldb(&args, &pp)));
        }
        for (debugger, out) in outs {
            let what = format!("{} ({debugger})", c.name);
            check_cshared(&table_equals_cli(&text(&out), &want, &what), c);
        }
    }
}

#[test]
fn lldb_on_cores_matches_the_cli_and_go() {
    let Some(pp) = ready("lldb-16") else { return };
    for c in &core_cases() {
        let (exe, core) = (uncompressed(&c.exe), uncompressed(&c.core));
        let want = analyze(c);
        let out = lldb(
            &[
                "-o",
                &format!("target create {} --core {}", exe.display(), core.display()),
                "-o",
                "script print('===THREADS===')",
                "-o",
                "cgo threads",
                "-o",
                "script print('===BT===')",
                "-o",
                "cgo bt g 1",
                "-o",
                "script print('===END===')",
            ],
            &pp,
        );
        let out = text(&out);
        let rows = table_equals_cli(&out, &want.report, &format!("{} (lldb)", c.name));
        check_scenarios(&rows, &scenarios_of(c), &c.name);
        // The main goroutine: its own stack, or the thread it is in C on.
        let bt = out
            .rsplit("===BT===")
            .next()
            .and_then(|s| s.split("===END===").next())
            .unwrap_or("");
        assert!(
            (bt.contains("goroutine 1 ") || bt.contains("goroutine 1)"))
                && bt.contains("main.main"),
            "{}: cgo bt g 1:\n{out}",
            c.name
        );
    }
}

/// The newest generated scenario binary (it stops itself with SIGTRAP when
/// ready if CGOSTUCK_TRAP is set).
fn live_binary() -> Option<PathBuf> {
    let p = generated()
        .into_iter()
        .filter(|c| c.truth.variant == "plain")
        .map(|c| c.exe)
        .next_back()?;
    std::fs::read(&p)
        .ok()?
        .windows(13)
        .any(|w| w == b"CGOSTUCK_TRAP")
        .then_some(p)
}

#[test]
fn gdb_on_a_live_process_matches_a_core_of_the_same_state() {
    let Some(pp) = ready("gdb") else { return };
    let Some(exe) = live_binary() else {
        assert!(!require_generated(), "no generated scenario binary");
        return;
    };
    let dir = Scratch::in_memory("dbg-gdblive");
    let core = dir.join("core");
    let out = gdb(
        &[
            "-ex",
            "set environment CGOSTUCK_TRAP=1",
            "-ex",
            "set environment GOMAXPROCS=2",
            "-ex",
            "handle SIGTRAP stop",
            // The scenario raises SIGUSR2 and SIGRTMIN+4/+5 into its own C
            // handlers; Go preempts with SIGURG.
            "-ex",
            "handle SIGUSR2 SIG38 SIG39 nostop noprint pass",
            "-ex",
            "handle SIGURG nostop noprint pass",
            "-ex",
            "run -parked 40",
            "-ex",
            "echo ===THREADS===\\n",
            "-ex",
            "info cgo-threads",
            "-ex",
            "echo ===END===\\n",
            "-ex",
            &format!("gcore {}", core.display()),
            "-ex",
            "kill",
            exe.to_str().unwrap(),
        ],
        &pp,
    );
    let out = text(&out);
    assert!(!out.contains("Traceback"), "{out}");
    let rows = table(&out, "===THREADS===");
    assert!(!rows.is_empty(), "no table:\n{out}");
    check_scenarios(&rows, &scenarios_printed(&out), "gdb live");
    let p = cgocore::Process::from_core(
        &core,
        &cgocore::OpenOptions {
            exe: Some(exe.clone()),
            sysroot: None,
        },
    )
    .unwrap();
    let a = cgocore::analyze(p, None).unwrap();
    assert_eq!(
        rows,
        expected(&a.report),
        "live table vs the gcore of the same state"
    );
}

#[test]
fn lldb_on_a_live_process_matches_the_program() {
    let Some(pp) = ready("lldb-16") else { return };
    let Some(exe) = live_binary() else {
        assert!(!require_generated(), "no generated scenario binary");
        return;
    };
    let out = lldb(
        &[
            "-o",
            &format!("target create {}", exe.display()),
            "-o",
            "settings set target.env-vars CGOSTUCK_TRAP=1 GOMAXPROCS=2",
            "-o",
            "process handle SIGTRAP --stop true --notify true --pass false",
            "-o",
            "process handle SIGUSR2 --stop false --notify false --pass true",
            "-o",
            "process handle SIGRTMIN+4 SIGRTMIN+5 --stop false --notify false --pass true",
            "-o",
            "process handle SIGURG --stop false --notify false --pass true",
            "-o",
            "process launch -- -parked 40",
            "-o",
            "script print('===THREADS===')",
            "-o",
            "cgo threads",
            "-o",
            "script print('===END===')",
            "-o",
            "process kill",
        ],
        &pp,
    );
    let out = text(&out);
    assert!(!out.contains("Traceback"), "{out}");
    let rows = table(&out, "===THREADS===");
    assert!(!rows.is_empty(), "no table:\n{out}");
    check_scenarios(&rows, &scenarios_printed(&out), "lldb live");
}

#[test]
fn debuggers_say_one_line_when_there_is_nothing_to_explain() {
    let Some(pp) = ready("gdb") else { return };
    // No inferior at all.
    let out = text(&gdb(&["-ex", "info cgo-threads"], &pp));
    assert!(out.contains("cgocore: no process or core"), "{out}");
    // A C program: not Go.
    let out = text(&gdb(
        &["-ex", "starti", "-ex", "info cgo-threads", "/bin/true"],
        &pp,
    ));
    assert!(out.contains("not a Go program"), "{out}");
    assert!(!out.contains("Traceback"), "{out}");
    // A running process.
    if let Some(exe) = live_binary() {
        let out = text(&gdb(
            &[
                "-ex",
                "set non-stop on",
                "-ex",
                "handle SIGUSR2 SIG38 SIG39 nostop noprint pass",
                "-ex",
                "run -parked 4 > /dev/null &",
                "-ex",
                "shell sleep 2",
                "-ex",
                "info cgo-threads",
                "-ex",
                "interrupt -a",
                "-ex",
                "shell sleep 1",
                "-ex",
                "kill",
                exe.to_str().unwrap(),
            ],
            &pp,
        ));
        assert!(out.contains("cgocore: the process is running"), "{out}");
    }
    if have("lldb-16") {
        let out = text(&lldb(&["-o", "cgo threads"], &pp));
        assert!(out.contains("cgocore: no process or core"), "{out}");
        let out = text(&lldb(
            &[
                "-o",
                "target create /bin/true",
                "-o",
                "process launch --stop-at-entry",
                "-o",
                "cgo threads",
                "-o",
                "process kill",
            ],
            &pp,
        ));
        assert!(out.contains("not a Go program"), "{out}");
        assert!(!out.contains("Traceback"), "{out}");
    }
}

/// What a Python script prints (stdout and stderr), with the package on its path.
fn python(script: &str, pp: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", script])
        .env("PYTHONPATH", pp)
        .output()
        .unwrap();
    text(&out)
}

/// The Python API returns the CLI's JSON report as Python objects.
#[test]
fn python_api_matches_the_cli() {
    let Some(pp) = python_path() else {
        assert!(!require_generated(), "cgocore Python package not built");
        return;
    };
    let c = &fixtures()[0];
    let script = format!(
        "import cgocore, json\n\
         r = cgocore.analyze_core({core:?}, exe={exe:?})\n\
         print(json.dumps([[t['tid'], t['m'], t['curg'], (t['blocked'] or {{}}).get('class')] for t in r['threads']]))\n\
         try:\n    cgocore.analyze_core('/dev/null')\nexcept cgocore.CgocoreError as e:\n    print('ERR', e)\n",
        core = c.core.display().to_string(),
        exe = c.exe.display().to_string()
    );
    let s = python(&script, &pp);
    let first = s.lines().next().unwrap_or_default();
    let got: serde_json::Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {s}"));
    let r = analyze(c).report;
    let want: Vec<serde_json::Value> = r
        .threads
        .iter()
        .map(|t| {
            serde_json::json!([
                t.tid,
                t.m,
                t.curg,
                t.blocked.as_ref().map(|b| b.class.clone())
            ])
        })
        .collect();
    assert_eq!(got, serde_json::Value::Array(want));
    assert!(s.contains("ERR ") && !s.contains("Traceback"), "{s}");
}

/// Python errors are typed (a subclass per kind of `cgocore::Error`, all
/// `CgocoreError`s), and the `bt` resolver the gdb and lldb commands share
/// answers each form and says what is wrong with a bad one.
#[test]
fn python_errors_are_typed_and_the_shared_bt_resolver_answers() {
    let Some(pp) = python_path() else {
        assert!(!require_generated(), "cgocore Python package not built");
        return;
    };
    let f = fixtures();
    let (c, other) = (&f[0], &f[1]);
    let script = [
        "import cgocore, cgocore.debugger as d",
        "try:",
        "    cgocore.analyze_core(@CORE@, exe=@OTHER@)",
        "except cgocore.WrongBinaryError as e:",
        "    print('WRONG', isinstance(e, cgocore.CgocoreError))",
        "try:",
        "    cgocore.analyze_core('/dev/null')",
        "except cgocore.NotACoreError as e:",
        "    print('NOTCORE', isinstance(e, cgocore.CgocoreError))",
        "class A:",
        "    report = {'threads': [{'tid': 7, 'm': 3, 'curg': 5, 'stack_goroutine': None}],",
        "              'goroutines': [{'goid': 5}, {'goid': 9}]}",
        "    def thread_stack(self, tid):",
        "        return 'T%d' % tid",
        "    def goroutine(self, goid):",
        "        return 'G%d\\n\\n' % goid",
        "print('BT', d.bt(A(), ['m', '3'], {}, None, 'u'), d.bt(A(), ['g', '5'], {}, None, 'u'),",
        "      repr(d.bt(A(), ['g', '9'], {}, None, 'u')), d.bt(A(), ['2'], {7: '2'}, None, 'u'),",
        "      d.bt(A(), [], {}, 7, 'u'))",
        "for w in (['m', 'x'], ['m', '4'], ['g', '8'], ['2'], ['q', '1', '2']):",
        "    try:",
        "        d.bt(A(), w, {}, None, 'u')",
        "    except d.UsageError as e:",
        "        print('USAGE', e)",
    ]
    .join("\n")
    .replace("@CORE@", &format!("{:?}", c.core.display().to_string()))
    .replace("@OTHER@", &format!("{:?}", other.exe.display().to_string()));
    let s = python(&script, &pp);
    assert!(!s.contains("Traceback"), "{s}");
    for want in [
        "WRONG True",
        "NOTCORE True",
        "BT T7 T7 'G9\\n' T7 T7",
        "USAGE usage: u",
        "USAGE M4 has no thread in this process",
        "USAGE no goroutine 8",
        "USAGE no thread 2",
    ] {
        assert!(s.contains(want), "{want:?} in:\n{s}");
    }
    assert_eq!(s.matches("USAGE").count(), 5, "{s}");
}
