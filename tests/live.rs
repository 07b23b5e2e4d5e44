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
            .args(["analyze", "--pid", &s.pid.to_string()])
            .env("CGOCORE_HOLD_STOPPED_MS", "30000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it holds the process stopped.
        let mut stopped = false;
        for _ in 0..200 {
            if field("TracerPid:") == held.id().to_string() && field("State:").starts_with('t') {
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
