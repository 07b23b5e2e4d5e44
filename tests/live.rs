//! Live processes: `cgocore analyze --pid` and `cgocore snapshot` on the
//! running scenario program (generated builds of Go 1.21 and 1.27, plain,
//! PIE, stripped, and the C host of a Go library). The answers equal a gdb
//! `gcore` of the same state, the program's own record and Go's own dump;
//! the process goes on as if nothing happened, through a hundred snapshots.
mod common;

use common::scenario::{nix_kill, Scenario};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn cgocore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .args(args)
        .env(
            "CGOCORE_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-cache"),
        )
        .output()
        .unwrap()
}

fn json_of(out: &Output, what: &str) -> Value {
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "{what}: exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// `cgocore snapshot --pid PID -o PATH`, which must succeed.
fn snapshot(pid: u32, path: &Path, what: &str) -> Output {
    let out = cgocore(&[
        "snapshot",
        "--pid",
        &pid.to_string(),
        "-o",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn live_json(pid: u32) -> Value {
    json_of(
        &cgocore(&["analyze", "--pid", &pid.to_string(), "--json"]),
        "analyze --pid",
    )
}

/// A gdb gcore of the process as it is now (sparse, in memory when there is room).
fn gcore(pid: u32, dir: &Scratch) -> PathBuf {
    let raw = dir.join("gcore");
    let st = Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string(), "-ex"])
        .arg(format!("gcore {}", raw.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success() && raw.exists(), "gdb gcore of {pid}");
    raw
}

/// What must be the same in two reports of one state: each thread's M,
/// goroutine, lock state and what it waits for (and whom for); each
/// goroutine's state and Go frames; the findings.
fn state(r: &Value) -> Value {
    let threads: BTreeMap<String, Value> = r["threads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let b = &t["blocked"];
            (
                t["tid"].to_string(),
                serde_json::json!([
                    t["kind"],
                    t["m"],
                    t["curg"],
                    t["lockedg"],
                    t["in_cgo"],
                    b["class"],
                    b["owner_tid"],
                    t["stack_goroutine"]
                ]),
            )
        })
        .collect();
    let goroutines: BTreeMap<String, Value> = r["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let go: Vec<&Value> = g["frames"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["lang"] == "go")
                .map(|f| &f["function"])
                .collect();
            (
                g["goid"].to_string(),
                serde_json::json!([g["status"], g["wait_reason"], g["locked"], g["lockedm"], go]),
            )
        })
        .collect();
    let findings: BTreeSet<String> = r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            // The subject (first tid) and the others as a set: threads are
            // listed in the order each source gives them (by tid live, by
            // creation in gdb's core), which differ once tids wrap around.
            let tids: Vec<u64> = f["evidence"]["tids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            let all: BTreeSet<u64> = tids.iter().copied().collect();
            let subject = ["lock-held-while-blocked", "wait-chain"]
                .contains(&f["kind"].as_str().unwrap_or(""))
                .then(|| tids.first().copied())
                .flatten();
            format!("{} {subject:?} {all:?}", f["kind"])
        })
        .collect();
    serde_json::json!({"threads": threads, "goroutines": goroutines, "findings": findings})
}

/// Where two states differ, briefly.
fn diff(a: &Value, b: &Value) -> Vec<String> {
    let mut out = vec![];
    for part in ["threads", "goroutines"] {
        let (x, y) = (a[part].as_object().unwrap(), b[part].as_object().unwrap());
        for k in x.keys().chain(y.keys()).collect::<BTreeSet<_>>() {
            if x.get(k) != y.get(k) {
                out.push(format!("{part} {k}: {:?} vs {:?}", x.get(k), y.get(k)));
            }
        }
    }
    if a["findings"] != b["findings"] {
        out.push(format!("findings: {} vs {}", a["findings"], b["findings"]));
    }
    out
}

/// The Go 1.27 plain build, where one build is enough.
fn go127_plain() -> Option<CoreCase> {
    cases()
        .into_iter()
        .find(|c| c.name.starts_with("go1.27.3/plain/"))
}

fn cases() -> Vec<CoreCase> {
    // musl on x86_64, dynamic (Alpine-style) and static: one release.
    let musl = generated_musl().into_iter().filter(|c| {
        ["musl", "musl-static"].contains(&c.truth.variant.as_str())
            && c.truth.go_version == "go1.27.3"
    });
    let mut v: Vec<CoreCase> = generated()
        .into_iter()
        .chain(generated_cshared())
        .filter(|c| c.truth.kind == "kernel")
        .filter(|c| ["go1.21.13", "go1.27.3"].contains(&c.truth.go_version.as_str()))
        .filter(|c| c.truth.variant != "cshared" || c.truth.go_version == "go1.27.3")
        .chain(musl)
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn have_gdb() -> bool {
    Command::new("gdb").arg("--version").output().is_ok()
}

/// `analyze --pid` equals a gcore of the same state, the program's record
/// and Go's dump, on each build (glibc, and musl dynamic and static).
#[test]
fn live_analysis_equals_a_gcore_and_the_program() {
    let cases = cases();
    if cases.is_empty() || !have_gdb() {
        assert!(
            !require_generated(),
            "generated builds and gdb are required"
        );
        eprintln!("skipped: no generated scenario builds or no gdb");
        return;
    }
    if require_generated() {
        assert_eq!(
            cases.len(),
            9,
            "1.21/1.27 x plain/pie/stripped + cshared + 1.27 musl dynamic and static"
        );
    }
    let mut errs = vec![];
    for c in &cases {
        let s = Scenario::start(c, "equal");
        let live = live_json(s.pid);
        assert_eq!(live["core_writer"], "live", "{}", c.name);
        let ms = live["stopped_ms"].as_f64().unwrap_or(-1.0);
        assert!(ms > 0.0, "{}: stopped_ms {ms}", c.name);
        // Every thread of the process is in the report.
        let tasks: BTreeSet<u64> = std::fs::read_dir(format!("/proc/{}/task", s.pid))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let tids: BTreeSet<u64> = live["threads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["tid"].as_u64().unwrap())
            .collect();
        assert_eq!(tids, tasks, "{}: threads", c.name);
        // The program's record: each scenario's goroutine is on its thread.
        for (name, (tid, goid)) in &s.record {
            let t = live["threads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["tid"] == *tid);
            let Some(t) = t else {
                errs.push(format!("{}: {name}: no thread {tid}", c.name));
                continue;
            };
            let on = [&t["curg"], &t["stack_goroutine"], &t["lockedg"]];
            if *goid != 0 && !on.iter().any(|v| **v == *goid) {
                errs.push(format!(
                    "{}: {name}: thread {tid} does not serve goroutine {goid}",
                    c.name
                ));
            }
        }
        // A gcore of the same state gives the same answers.
        let dir = Scratch::in_memory(&format!("live-gcore-{}", c.name.replace('/', "-")));
        let core = gcore(s.pid, &dir);
        let exe = c.exe.display().to_string();
        let from_core = json_of(
            &cgocore(&["analyze", core.to_str().unwrap(), "--exe", &exe, "--json"]),
            "analyze gcore",
        );
        for d in diff(&state(&live), &state(&from_core)) {
            errs.push(format!("{}: live vs gcore: {d}", c.name));
        }
        // Go's dump lists the same goroutines in the same states (a C host
        // running a Go library leaves SIGQUIT to C: no dump there).
        if c.truth.variant == "cshared" {
            continue;
        }
        let dump = s.dump();
        let go: BTreeMap<u64, String> = dump
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("goroutine ")?;
                let goid = rest.split_whitespace().next()?.parse().ok()?;
                let st = rest.split_once('[')?.1.split_once(']')?.0;
                Some((goid, st.split(',').next()?.trim().to_string()))
            })
            .collect();
        for g in live["goroutines"].as_array().unwrap() {
            let goid = g["goid"].as_u64().unwrap();
            let want = g["wait_reason"]
                .as_str()
                .unwrap_or(g["status"].as_str().unwrap());
            match go.get(&goid) {
                Some(st) if st == want || st.starts_with(want) => {}
                // Go's dump runs the crash: the goroutine that prints it is
                // running then, not as it was.
                Some(_) if g["status"] == "running" => {}
                other => errs.push(format!(
                    "{}: goroutine {goid}: {want} vs dump {other:?}",
                    c.name
                )),
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
}

/// A snapshot is megabytes, reopens as the same report, and gdb reads it.
#[test]
fn snapshot_is_small_and_reopens_as_the_same_report() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "snapshot");
    let dir = Scratch::new("live-snapshot");
    let live = live_json(s.pid);
    for file in ["snap.core", "snap.core.zst"] {
        let path = dir.join(file);
        let out = snapshot(s.pid, &path, file);
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.starts_with("wrote ") && said.contains("was stopped"),
            "{said}"
        );
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 8 << 20, "{file}: {size} bytes");
        let exe = c.exe.display().to_string();
        let snap = json_of(
            &cgocore(&["analyze", path.to_str().unwrap(), "--exe", &exe, "--json"]),
            "analyze snapshot",
        );
        assert_eq!(snap["core_writer"], "cgocore snapshot");
        assert!(snap["stopped_ms"].as_f64().is_some_and(|v| v > 0.0));
        let d = diff(&state(&live), &state(&snap));
        assert!(d.is_empty(), "{file}: {}", d.join("\n"));
        // Live-only knowledge survives: fds and thread names.
        let reader = s.record["read_pipe"].0;
        let t = snap["threads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tid"] == reader)
            .unwrap();
        let detail = t["blocked"]["detail"].as_str().unwrap();
        assert!(detail.contains(": pipe:["), "{detail}");
        assert!(t["name"].as_str().is_some_and(|n| !n.is_empty()));
    }
    // gdb opens it: every thread, and the mutex waiter's libc frames.
    if have_gdb() {
        let waiter = s.record["mutex_waiter"].0;
        let out = Command::new("gdb")
            .args(["-nx", "-batch", c.exe.to_str().unwrap()])
            .arg(dir.join("snap.core"))
            .args(["-ex", "info threads", "-ex", "thread apply all bt 4"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let n = live["threads"].as_array().unwrap().len();
        // `info threads` rows: "* 1    LWP 123  ...".
        let rows = text
            .lines()
            .filter(|l| {
                let mut w = l.trim_start_matches(['*', ' ']).split_whitespace();
                w.next().is_some_and(|id| id.parse::<u32>().is_ok()) && w.next() == Some("LWP")
            })
            .count();
        assert_eq!(rows, n, "{text}");
        let bt = text.split(&format!("(LWP {waiter})")).nth(1).unwrap_or("");
        assert!(
            bt.contains("__lll_lock_wait") || bt.contains("pthread_mutex_lock"),
            "{text}"
        );
    }
}

/// A hundred snapshots in a row, and the process goes on: goroutines and
/// threads where they were, a blocked read returns when its pipe is written,
/// Go's own dump is whole.
#[test]
fn a_live_process_is_never_harmed() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "harm");
    let before = live_json(s.pid);
    let dir = Scratch::new("live-harm");
    let snap = dir.join("s.core");
    for i in 0..100 {
        snapshot(s.pid, &snap, &format!("snapshot {i}"));
    }
    let after = live_json(s.pid);
    let d = diff(&state(&before), &state(&after));
    assert!(d.is_empty(), "after 100 snapshots: {}", d.join("\n"));
    // The pipe reader's other end is in the process: write one byte to it.
    let (reader, goid) = s.record["read_pipe"];
    let t = after["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == reader)
        .unwrap();
    let detail = t["blocked"]["detail"].as_str().unwrap().to_string();
    let write_fd: u32 = detail
        .split("other end here: fd ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no write end in {detail:?}"));
    std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/{}/fd/{write_fd}", s.pid))
        .and_then(|mut f| f.write_all(b"x"))
        .unwrap();
    // The read returns, and its goroutine ends.
    let mut gone = false;
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = live_json(s.pid);
        if !now["goroutines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["goid"] == goid)
        {
            gone = true;
            break;
        }
    }
    assert!(
        gone,
        "the reader (goroutine {goid}) did not return from read"
    );
    let dump = s.dump();
    assert!(
        dump.contains("SIGQUIT") && dump.contains("goroutine 1 "),
        "{dump}"
    );
    // Goroutine headers ("goroutine 7 [select]:"). A crash dump repeats, in
    // each M's own section, the goroutine it runs, or its g0 as goroutine 0,
    // depending on which Ms the signal finds where: count ids, not lines.
    let dumped: BTreeSet<u64> = dump
        .lines()
        .filter(|l| l.ends_with("]:"))
        .filter_map(|l| {
            l.strip_prefix("goroutine ")?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .filter(|&id| id != 0)
        .collect();
    let want: BTreeSet<u64> = before["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["goid"].as_u64())
        .filter(|&g| g != goid)
        .collect();
    assert_eq!(
        dumped, want,
        "Go's dump has every goroutine but the reader\n{dump}"
    );
}

/// One line that says what to do: no such process, not Go, already traced,
/// no permission.
#[test]
fn live_errors_say_what_to_do() {
    let fail = |out: Output, code: i32, needle: &str| {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    fail(
        cgocore(&["analyze", "--pid", "999999999"]),
        1,
        "no process 999999999",
    );
    let mut sleep = Command::new("sleep").arg("30").spawn().unwrap();
    let pid = sleep.id().to_string();
    fail(cgocore(&["analyze", "--pid", &pid]), 5, "not a Go program");
    // Another user may not trace it.
    let nobody = Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .args(["analyze", "--pid", &pid])
        .uid(65534)
        .gid(65534)
        .output();
    match nobody {
        Ok(out) if unsafe { libc::geteuid() } == 0 => fail(out, 1, "ptrace_scope"),
        _ => eprintln!("the permission case needs root to switch users; skipped"),
    }
    if have_gdb() {
        let mut gdb = Command::new("gdb")
            .args(["-nx", "-batch", "-p", &pid, "-ex", "shell sleep 20"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let status = format!("/proc/{pid}/status");
        for _ in 0..100 {
            let traced = std::fs::read_to_string(&status)
                .unwrap_or_default()
                .lines()
                .any(|l| l.starts_with("TracerPid:") && !l.ends_with("\t0"));
            if traced {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        fail(
            cgocore(&["analyze", "--pid", &pid]),
            1,
            &format!("already traced by process {}", gdb.id()),
        );
        let _ = gdb.kill();
        let _ = gdb.wait();
    }
    let _ = sleep.kill();
    let _ = sleep.wait();
}

/// cgocore killed while the process is stopped (SIGTERM, SIGINT, SIGKILL):
/// the kernel lets every thread go, and the process goes on where it was.
#[test]
fn killing_cgocore_mid_stop_lets_the_process_go() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "kill");
    let before = live_json(s.pid);
    let status = format!("/proc/{}/status", s.pid);
    let field = |name: &str| -> String {
        std::fs::read_to_string(&status)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGKILL] {
        let mut held = Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .args([
                "analyze",
                "--hold-stopped-ms",
                "30000",
                "--pid",
                &s.pid.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it holds the process stopped.
        let mut stopped = false;
        for _ in 0..200 {
            // The tracer is a thread of cgocore's (its capture thread).
            let tracer_process =
                std::fs::read_to_string(format!("/proc/{}/status", field("TracerPid:")))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|l| l.strip_prefix("Tgid:").map(|v| v.trim().to_string()));
            if tracer_process == Some(held.id().to_string()) && field("State:").starts_with('t') {
                stopped = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        assert!(stopped, "cgocore did not stop the process");
        nix_kill(held.id(), sig);
        let _ = held.wait();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(field("TracerPid:"), "0", "signal {sig}: still traced");
        assert!(
            !field("State:").starts_with('t'),
            "signal {sig}: {}",
            field("State:")
        );
        let after = live_json(s.pid);
        let d = diff(&state(&before), &state(&after));
        assert!(d.is_empty(), "after signal {sig}: {}", d.join("\n"));
    }
}

/// A process whose binary was replaced on disk since it started (a deploy):
/// /proc/PID/exe still holds the file it runs, and the answers are the same.
#[test]
fn a_process_whose_binary_was_removed() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let dir = Scratch::new("live-removed");
    let copy = CoreCase {
        name: c.name.clone(),
        core: c.core.clone(),
        exe: dir.join("cgostuck"),
        truth: c.truth.clone(),
    };
    std::fs::copy(&c.exe, &copy.exe).unwrap();
    let cuda = c.exe.parent().unwrap().join("libcuda.so.1");
    std::fs::copy(&cuda, dir.join("libcuda.so.1")).unwrap();
    let s = Scenario::start(&copy, "removed");
    std::fs::remove_file(&copy.exe).unwrap();
    let live = live_json(s.pid);
    let (tid, goid) = s.record["mutex_waiter"];
    let t = live["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == tid)
        .unwrap();
    assert_eq!(t["curg"], goid, "{t}");
    assert_eq!(t["blocked"]["class"], "mutex");
    assert!(
        live["binary"].as_str().unwrap().ends_with("/exe"),
        "{}",
        live["binary"]
    );
}

/// Threads of `pid` still traced or in a trace stop: `tid: State, TracerPid`.
fn held(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    tasks
        .iter()
        .filter_map(|t| {
            let status = std::fs::read_to_string(t.join("status")).ok()?;
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            let (state, tracer) = (field("State:"), field("TracerPid:"));
            (tracer != "0" || state.starts_with('t'))
                .then(|| format!("{}: {state}, traced by {tracer}", t.display()))
        })
        .collect()
}

fn task_state(pid: u32, tid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("State:").map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

/// A thread in uninterruptible sleep (the parent side of a vfork whose child
/// never execs, as a thread on a stalled NFS mount) cannot be stopped: it is
/// named with its state and kernel function, every other thread is read and
/// let go within the stop timeout, nothing stays traced, and a snapshot says
/// the same.
#[test]
fn a_thread_that_cannot_stop_holds_no_other() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start_with(&c, "dstate", &[], &[("CGOSTUCK_VFORK", "1")]);
    let (stuck, goid) = s.record["vfork_stuck"];
    assert!(
        task_state(s.pid, stuck).starts_with('D'),
        "{}",
        task_state(s.pid, stuck)
    );
    let pid = s.pid.to_string();
    let t0 = std::time::Instant::now();
    let out = cgocore(&["analyze", "--pid", &pid, "--json", "--stop-timeout", "1"]);
    let took = t0.elapsed();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let u = r["unstopped_threads"]
        .as_array()
        .expect("unstopped_threads");
    assert_eq!(u.len(), 1, "{u:?}");
    assert_eq!(u[0]["tid"], stuck);
    assert!(u[0]["state"].as_str().unwrap().starts_with('D'), "{u:?}");
    eprintln!("the vfork parent sleeps in {}", u[0]["wchan"]);
    let stopped_ms = r["stopped_ms"].as_f64().unwrap();
    assert!(stopped_ms < 1000.0 + 3000.0, "stopped {stopped_ms} ms");
    assert!(
        r["warnings"]
            .to_string()
            .contains(&format!("thread {stuck}")),
        "{}",
        r["warnings"]
    );
    // Every other thread was read; the goroutine in the vfork is known.
    let tids: BTreeSet<u64> = r["threads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["tid"].as_u64())
        .collect();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let tid: u64 = t.file_name().to_str().unwrap().parse().unwrap();
        assert_eq!(tids.contains(&tid), tid != stuck as u64, "thread {tid}");
    }
    assert!(r["goroutines"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["goid"] == goid));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(held(s.pid), Vec::<String>::new(), "let go");
    // A snapshot leaves it out the same way, and says so when read back.
    let dir = Scratch::new("live-dstate");
    let snap = dir.join("s.core");
    let out = cgocore(&[
        "snapshot",
        "--pid",
        &pid,
        "--stop-timeout",
        "1",
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = json_of(
        &cgocore(&["analyze", snap.to_str().unwrap(), "--json"]),
        "the snapshot",
    );
    assert_eq!(back["unstopped_threads"][0]["tid"], stuck);
    assert_eq!(
        held(s.pid),
        Vec::<String>::new(),
        "let go after the snapshot"
    );
    // The text names it too.
    let text = cgocore(&["analyze", "--pid", &pid, "--stop-timeout", "0.5"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains(&format!("warning: thread {stuck}")) && text.contains("did not stop in time"),
        "{text}"
    );
}

/// The process killed at random moments while cgocore stops it (2000
/// threads; half the runs hold it stopped a while, so the kill lands in the
/// stop): cgocore ends within seconds, saying the process exited (or with
/// its report, when it finished first), and the process is reaped by its
/// parent at once: no thread of it left traced as a zombie.
#[test]
fn a_process_killed_during_the_stop_is_let_go() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let mut rng = fastrand::Rng::with_seed(24);
    let mut exited = 0;
    for i in 0..6 {
        let mut s = Scenario::start_with(
            &c,
            &format!("killed-{i}"),
            &["-parked", "10", "-cblocked", "2000", "-no-arena"],
            &[],
        );
        let hold = if i % 2 == 0 { "500" } else { "0" };
        let mut cg = Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .args(["analyze", "--json", "--hold-stopped-ms", hold, "--pid"])
            .arg(s.pid.to_string())
            .env(
                "CGOCORE_CACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("live-cache"),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let after = Duration::from_millis(rng.u64(150..700));
        std::thread::sleep(after);
        nix_kill(s.pid, libc::SIGKILL);
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(st) = cg.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = cg.kill();
                panic!("run {i}: cgocore hung after the process was killed {after:?} in");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(cg.stderr.as_mut().unwrap(), &mut err).unwrap();
        match status.code() {
            Some(0) | Some(3) => {}
            Some(1) if err.contains("exited during the capture") => exited += 1,
            other => panic!("run {i} (killed {after:?} in): exit {other:?}: {err}"),
        }
        assert!(!err.contains("permission denied"), "{err}");
        // Its parent (this test) reaps it at once.
        let t0 = std::time::Instant::now();
        while s.child.try_wait().unwrap().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "run {i}: the killed process was not reaped: {:?}",
                held(s.pid)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "run {i}: killed {after:?} in, cgocore {:?}, reaped",
            status.code()
        );
    }
    assert!(exited > 0, "no kill landed during a stop");
}

/// A live process of hundreds of threads (400 goroutines in a C sleep, every
/// tenth locked): its threads are read and unwound in parts on every core
/// while it is stopped. Each of the 400 is on the thread the program
/// recorded, serving its goroutine, in C's sleep; every thread of the
/// process is in the report, and none is left stopped or traced.
#[test]
fn a_live_process_of_hundreds_of_threads() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start_with(
        &c,
        "hundreds",
        &["-parked", "10", "-cblocked", "400", "-no-arena"],
        &[],
    );
    let live = live_json(s.pid);
    let threads = live["threads"].as_array().unwrap();
    let tasks: BTreeSet<u64> = std::fs::read_dir(format!("/proc/{}/task", s.pid))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let tids: BTreeSet<u64> = threads.iter().map(|t| t["tid"].as_u64().unwrap()).collect();
    assert_eq!(tids, tasks, "every thread of the process");
    let blocked: Vec<_> = s
        .record
        .iter()
        .filter(|(name, _)| name.starts_with("cblocked_"))
        .collect();
    assert_eq!(blocked.len(), 400, "the program's record");
    let mut errs = vec![];
    for (name, (tid, goid)) in blocked {
        let Some(t) = threads.iter().find(|t| t["tid"] == *tid) else {
            errs.push(format!("{name}: no thread {tid}"));
            continue;
        };
        if t["curg"] != *goid || t["blocked"]["class"] != "sleep" {
            errs.push(format!(
                "{name}: thread {tid}: curg {} class {} (want goroutine {goid}, sleep)",
                t["curg"], t["blocked"]["class"]
            ));
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(held(s.pid).is_empty(), "{:?}", held(s.pid));
}

/// One thread already traced (a debugger attached to a single thread): the
/// error names it and its tracer, and nothing stays stopped.
#[test]
fn a_thread_traced_by_another_is_named() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "traced-thread");
    let (tid, _) = s.record["mutex_waiter"];
    // SAFETY: ptrace on a thread of a child process this test started.
    let seized = unsafe { libc::ptrace(libc::PTRACE_SEIZE, tid as i32, 0, 0) };
    assert_eq!(seized, 0, "{}", std::io::Error::last_os_error());
    let out = cgocore(&["analyze", "--pid", &s.pid.to_string()]);
    std::thread::sleep(Duration::from_millis(100));
    let left = held(s.pid);
    // Let it go before any assertion (a detach needs it in its stop): a
    // thread this test still traced would keep the process from being reaped.
    // SAFETY: as above.
    unsafe {
        libc::ptrace(libc::PTRACE_INTERRUPT, tid as i32, 0, 0);
        let mut st = 0;
        libc::waitpid(tid as i32, &mut st, libc::__WALL);
        libc::ptrace(libc::PTRACE_DETACH, tid as i32, 0, 0);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "thread {tid} of process {} is already traced by process {}",
            s.pid,
            std::process::id()
        )),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(left.len(), 1, "only the thread this test traces: {left:?}");
    assert!(held(s.pid).is_empty());
}

/// `snapshot -o` writes a regular file whole, or nothing: a FIFO, a device
/// node, a folder, a link are refused before the process is stopped; a full
/// file system is an error that leaves no temporary file and the old file
/// as it was; the snapshot is readable by its owner only.
#[test]
fn snapshot_writes_only_a_file_and_never_half_of_one() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "snap-out");
    let pid = s.pid.to_string();
    let dir = Scratch::new("live-snap-out");
    let snap = |path: &Path| cgocore(&["snapshot", "--pid", &pid, "-o", path.to_str().unwrap()]);
    let refused = |path: &Path, needle: &str| {
        let t0 = std::time::Instant::now();
        let out = snap(path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{path:?}: {err}");
        assert!(err.contains(needle), "{path:?}: {needle:?} in {err}");
        assert!(t0.elapsed() < Duration::from_secs(10));
    };
    let mk = |p: &Path, mode: u32, dev: u64| {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: mknod with a NUL-terminated path.
        unsafe { libc::mknod(c.as_ptr(), mode, dev) == 0 }
    };
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    refused(&fifo, "FIFO");
    let null = dir.join("null");
    if mk(&null, libc::S_IFCHR | 0o666, libc::makedev(1, 3)) {
        refused(&null, "character device");
        assert!(std::fs::metadata(&null)
            .unwrap()
            .file_type()
            .is_char_device());
    }
    refused(&dir.0, "a folder");
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = dir.join("link.core");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    refused(&link, "symbolic link");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    // Written over an old file: whole, owner-only.
    let good = dir.join("good.core");
    std::fs::write(&good, "old").unwrap();
    let out = snap(&good);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = std::fs::metadata(&good).unwrap();
    assert!(
        m.len() > 100_000 && m.permissions().mode() & 0o777 == 0o600,
        "{m:?}"
    );
    // A full file system: a tmpfs of 64 KiB.
    let small = dir.join("small");
    if let Some(_full) = Tmpfs::mount(&small, "64k") {
        let target = small.join("s.core.zst");
        std::fs::write(&target, "old").unwrap();
        let out = snap(&target);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        let left: Vec<_> = std::fs::read_dir(&small)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let old = std::fs::read_to_string(&target).unwrap_or_default();
        assert_eq!(old, "old", "the old file as it was");
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert_eq!(
            left,
            vec![std::ffi::OsString::from("s.core.zst")],
            "left behind"
        );
    }
    assert!(held(s.pid).is_empty());
}

/// A live capture reads the process once, while it is stopped, and finishes
/// over the copy after letting it go (no second analysis), with every
/// goroutine's frames.
#[test]
fn a_capture_reads_the_process_once() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let s = Scenario::start(&c, "one-pass");
    let before = cgocore::testing::analysis_reads();
    let cap = cgocore::capture_pid(
        s.pid,
        &cgocore::LiveOptions::default(),
        &cgocore::AnalyzeOptions::default(),
    )
    .unwrap();
    assert_eq!(cgocore::testing::analysis_reads() - before, 1, "one read");
    let (tid, goid) = s.record["mutex_waiter"];
    let g = cap
        .analysis
        .report
        .goroutines
        .iter()
        .find(|g| g.goid == goid)
        .unwrap();
    assert!(
        g.frames
            .iter()
            .any(|f| f.function.as_deref() == Some("main._Cfunc_block_mutex")),
        "{:?}",
        g.frames
    );
    let t = cap
        .analysis
        .report
        .threads
        .iter()
        .find(|t| t.tid == tid)
        .unwrap();
    assert_eq!(t.curg, Some(goid));
    assert!(cap.analysis.report.stopped_ms.is_some_and(|ms| ms > 0.0));
    assert!(held(s.pid).is_empty());
}

/// `cgocore top` on a process whose threads climb (one more goroutine a
/// 200 ms enters a C call that never returns; the program records how many):
/// ten JSON lines, the threads in C rising with the program's record, each
/// sample's stop reported and short, the Ms' rate and the limit's ETA
/// given, and the process unharmed afterwards.
#[test]
fn top_follows_a_climbing_thread_count() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    let dir = Scratch::new("live-top");
    let record = dir.join("climbed");
    let s = Scenario::start_with(
        &c,
        "top",
        // Without the wedged malloc arena: threads must keep being created.
        &["-parked", "10", "-no-arena"],
        &[("CGOSTUCK_CLIMB", record.to_str().unwrap())],
    );
    let climbed = || -> u64 {
        std::fs::read_to_string(&record)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = climbed();
    let out = cgocore(&[
        "top",
        "--pid",
        &s.pid.to_string(),
        "--interval",
        "0.4",
        "--count",
        "10",
    ]);
    let after = climbed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = s.pid;
    let samples: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(samples.len(), 10, "JSON lines without a terminal");
    let in_c: Vec<u64> = samples
        .iter()
        .map(|s| s["threads_in_c"].as_u64().unwrap())
        .collect();
    // The rise is the program's: between its record before and after.
    let rise = in_c[9] - in_c[0];
    assert!(
        rise >= 5 && rise <= after - before,
        "{in_c:?}, climbed {before} -> {after}"
    );
    assert!(in_c.windows(2).all(|w| w[1] >= w[0]), "{in_c:?}");
    for sample in &samples {
        let ms = sample["stopped_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 1000.0, "stopped {ms} ms");
        assert_eq!(sample["pid"], pid);
    }
    let last = &samples[9];
    // A new goroutine in C may take an idle M instead of a new thread, so
    // one interval can show no rise: the rate and the limit's ETA are
    // checked where the threads did rise.
    let rose = samples[1..]
        .iter()
        .find(|s| s["threads_per_second"].as_f64().is_some_and(|r| r > 0.0))
        .unwrap_or_else(|| panic!("no sample saw the threads rise: {in_c:?}"));
    assert!(rose["limit_in_seconds"].as_f64().unwrap() > 0.0, "{rose}");
    assert!(last["threads_per_second"].as_f64().is_some(), "{last}");
    assert_eq!(last["maxmcount"], 10000);
    let climbing = last["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["function"] == "C.climb_sleep")
        .unwrap_or_else(|| panic!("{}", last["groups"]));
    assert!(climbing["count"].as_u64().unwrap() >= rise, "{climbing}");
    // What goroutines wait on in Go: each mutex waiter counted on its mutex.
    let on = |kind: &str| -> u64 {
        last["waiting_on"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["kind"] == kind)
            .map(|w| w["count"].as_u64().unwrap())
            .sum()
    };
    let locking = last["goroutines"]["sync.Mutex.Lock"].as_u64().unwrap_or(0);
    assert!(
        locking > 0 && on("mutex") == locking,
        "{}",
        last["waiting_on"]
    );
    assert!(on("chan") > 0, "{}", last["waiting_on"]);
    // The same trend from a series of snapshots, given out of order.
    let snaps: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = dir.join(format!("s{i}.core"));
            snapshot(s.pid, &p, "a snapshot of the climbing process");
            std::thread::sleep(Duration::from_millis(600));
            p
        })
        .collect();
    let out = cgocore(&[
        "top",
        snaps[2].to_str().unwrap(),
        snaps[0].to_str().unwrap(),
        snaps[1].to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let series: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let in_c: Vec<u64> = series
        .iter()
        .map(|s| s["threads_in_c"].as_u64().unwrap())
        .collect();
    assert!(
        in_c.len() == 3 && in_c[0] < in_c[1] && in_c[1] < in_c[2],
        "oldest first: {in_c:?}"
    );
    assert!(series[2]["threads_per_second"].as_f64().unwrap() > 0.0);
    assert!(held(s.pid).is_empty(), "let go");
    assert!(
        std::fs::metadata(format!("/proc/{}", s.pid)).is_ok(),
        "alive"
    );
}

/// `cgocore top` in a real terminal (tmux): the header and the groups
/// drawn, `s` and `p` change the view, `q` quits, and the terminal is as it
/// was (the shell's line editing back, the view gone with the alternate
/// screen).
#[test]
fn top_in_a_real_terminal() {
    let Some(c) = go127_plain() else {
        assert!(!require_generated(), "generated builds are required");
        return;
    };
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            !require_generated(),
            "tmux is installed by scripts/test-all"
        );
        eprintln!("tmux not installed; skipped");
        return;
    }
    let s = Scenario::start_with(&c, "top-tty", &["-parked", "10", "-no-arena"], &[]);
    let dir = Scratch::new("live-top-tty");
    let sock = dir.join("tmux.sock");
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let cmd = format!(
        // The marker comes last: once it shows, stty's report is on the screen.
        "CGOCORE_CACHE={} {} top --pid {} --interval 0.3; rc=$?; stty -a; echo TOP-EXITED $rc; sleep 60",
        dir.join("cache").display(),
        env!("CARGO_BIN_EXE_cgocore"),
        s.pid
    );
    let out = tmux(&["new-session", "-d", "-x", "150", "-y", "50", &cmd]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let screen = || String::from_utf8_lossy(&tmux(&["capture-pane", "-p"]).stdout).to_string();
    let wait_for = |needle: &str| -> String {
        for _ in 0..100 {
            let text = screen();
            if text.contains(needle) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{needle:?} never shown:\n{}", screen())
    };
    let view = wait_for(&format!("cgocore top · process {}", s.pid));
    assert!(view.contains("COUNT  MOVED  CLASS"), "{view}");
    assert!(view.contains("C.block_sleep"), "{view}");
    assert!(
        view.contains("keys: q quit · p pause · s sort by movement"),
        "{view}"
    );
    tmux(&["send-keys", "s"]);
    wait_for("s sort by count");
    tmux(&["send-keys", "p"]);
    wait_for("PAUSED");
    tmux(&["send-keys", "q"]);
    let after = wait_for("TOP-EXITED 0");
    assert!(!after.contains("COUNT  MOVED"), "the view stays:\n{after}");
    assert!(
        after.contains(" icanon") && after.contains(" echo "),
        "not restored:\n{after}"
    );
    tmux(&["kill-server"]);
    assert!(held(s.pid).is_empty());
}

/// The queue program's Go 1.27 build (its kernel core's case), when made.
fn queue_build() -> Option<CoreCase> {
    let c = generated_queue()
        .into_iter()
        .find(|c| c.name == "go1.27.3/queue/kernel");
    assert!(
        c.is_some() || !require_generated(),
        "the queue program's build is required"
    );
    c
}

/// The queue program's record: `OBJECT <name> kind=<k> addr=<hex>
/// holders=<ids> waiters=<ids>` lines, by name.
fn queue_objects(s: &Scenario) -> BTreeMap<String, (u64, BTreeSet<u64>, Vec<u64>)> {
    let mut objects = BTreeMap::new();
    for l in s.lines.iter().filter(|l| l.starts_with("OBJECT ")) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let val = |k: &str| f.iter().find_map(|x| x.strip_prefix(k)).unwrap_or("");
        let ids = |v: &str| -> Vec<u64> { v.split(',').filter_map(|x| x.parse().ok()).collect() };
        let addr = u64::from_str_radix(val("addr=").trim_start_matches("0x"), 16).unwrap();
        objects.insert(
            f[1].to_string(),
            (
                addr,
                ids(val("holders=")).into_iter().collect(),
                ids(val("waiters=")),
            ),
        );
    }
    objects
}

/// `cgocore top`'s longest waits on the running queue program (a garbage
/// collection every 100 ms, so the runtime records when each blocked
/// goroutine was first seen blocked): five, longest first, each one of the
/// goroutines the program recorded blocking before it said READY, none
/// shorter than the time since READY nor longer than the program has run.
#[test]
fn top_shows_the_longest_waits() {
    let Some(c) = queue_build() else {
        return;
    };
    let started = std::time::Instant::now();
    let s = Scenario::start_with(&c, "queue-gc", &["-"], &[("QUEUE_GC", "1")]);
    let ready = started.elapsed().as_secs_f64();
    let recorded: BTreeSet<u64> = queue_objects(&s)
        .values()
        .flat_map(|(_, h, w)| h.iter().chain(w).copied().collect::<Vec<_>>())
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let since_ready = started.elapsed().as_secs_f64() - ready;
    let out = cgocore(&["top", "--pid", &s.pid.to_string(), "--once", "--json-lines"]);
    let ran = started.elapsed().as_secs_f64();
    let sample: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let waits = sample["longest_waits"].as_array().unwrap();
    let seconds: Vec<f64> = waits
        .iter()
        .map(|w| w["seconds"].as_f64().unwrap())
        .collect();
    assert!(
        waits.len() == 5
            && seconds.windows(2).all(|w| w[0] >= w[1])
            && seconds.iter().all(|&x| x >= since_ready - 0.2 && x <= ran)
            && waits
                .iter()
                .all(|w| recorded.contains(&w["goid"].as_u64().unwrap())),
        "{waits:?}: READY after {ready:.1} s, {since_ready:.1} s since, ran {ran:.1} s"
    );
    assert!(held(s.pid).is_empty(), "let go");
}

/// Goroutines queued in Go, read from the running queue program in one short
/// stop each: with `--json`, each waiter's object and the holders the
/// program recorded (the mutex a method holds across a cgo call, the one a
/// defer releases, the package-level one found further along the function,
/// the database/sql pool's connections); as text (no goroutine stacks asked
/// for: the capture keeps them anyway for the holders), the same holders in
/// the problems; the process let go unharmed. (The CLI, in its own process:
/// a capture in this one would count in another test's reads.)
#[test]
fn a_live_capture_links_goroutines_queued_in_go() {
    let Some(c) = queue_build() else {
        return;
    };
    let s = Scenario::start_with(&c, "queue", &["-"], &[]);
    let objects = queue_objects(&s);
    assert!(objects.len() >= 9, "{:?}", s.lines);
    let pid = s.pid.to_string();
    let r = json_of(
        &cgocore(&["analyze", "--pid", &pid, "--json"]),
        "analyze --pid --json",
    );
    let goroutines = r["goroutines"].as_array().unwrap();
    for name in ["store", "pool", "config", "sqldb", "ledger"] {
        let (addr, holders, waiters) = &objects[name];
        for w in waiters {
            let wo = goroutines
                .iter()
                .find(|g| g["goid"] == *w)
                .map(|g| &g["waits_on"])
                .filter(|w| w.is_object())
                .unwrap_or_else(|| panic!("{name}: waiter {w} has no waits_on"));
            assert_eq!(wo["addr"], *addr, "{name}: waiter {w}");
            let got: BTreeSet<u64> = wo["holders"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| h["goid"].as_u64())
                .collect();
            assert_eq!(&got, holders, "{name}: waiter {w}: {}", wo["holders"]);
        }
    }
    assert!(r["stopped_ms"].as_f64().is_some_and(|ms| ms > 0.0));
    let text = cgocore(&["analyze", "--pid", &pid]);
    assert!(
        text.status.success(),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let text = String::from_utf8_lossy(&text.stdout);
    for name in ["store", "pool", "config"] {
        let (_, holders, waiters) = &objects[name];
        let h = holders.iter().next().unwrap();
        let line = format!("{} goroutines wait for", waiters.len());
        assert!(
            text.lines()
                .any(|l| l.contains(&line) && l.contains(&format!("held by goroutine {h} "))),
            "{name}: no problem line with {line:?} held by {h}:\n{text}"
        );
    }
    assert!(held(s.pid).is_empty(), "the process is let go");
    assert!(std::path::Path::new(&format!("/proc/{}", s.pid)).exists());
}
