//! The CLI on bad input: a clear message and a non-zero exit, never a panic.
mod common;

use common::*;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::process::{Command, Output};

/// `cgocore analyze ARGS...` with a per-run decompression cache.
fn cgocore(args: &[&dyn AsRef<OsStr>]) -> Output {
    cgocore_command("analyze", args)
}

/// `cgocore COMMAND ARGS...` with the same cache.
fn cgocore_command(command: &str, args: &[&dyn AsRef<OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .arg(command)
        .args(args.iter().map(|a| a.as_ref()))
        .env("CGOCORE_CACHE", cache())
        .output()
        .unwrap()
}

/// One cache for every run: entries are keyed by the compressed file, so it
/// stays as big as the fixtures' decompressed (sparse) cores.
fn cache() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache")
}

fn fail_with(out: &Output, needle: &str) {
    fail_with_code(out, 1, needle);
}

/// Exit codes scripts act on: 4 wrong binary, 5 not Go, 6 unknown Go release.
fn fail_with_code(out: &Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn text_and_json_on_a_fixture() {
    let c = &fixtures()[0];
    let out = cgocore(&[&c.core, &"--exe", &c.exe]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let holder = &c.truth.scenarios["mutex_holder"];
    assert!(
        text.contains(&c.truth.go_version) && text.contains(&holder.tid.to_string()),
        "{text}"
    );
    let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    for k in ["tid", "kind", "m"] {
        assert!(v["threads"][0].get(k).is_some(), "threads[].{k}");
    }
    for k in [
        "id",
        "tid",
        "locked_ext",
        "locked_int",
        "lockedg",
        "curg",
        "incgo",
        "ncgo",
        "isextra",
    ] {
        assert!(v["ms"][0].get(k).is_some(), "ms[].{k}");
    }
    for k in ["goid", "status", "wait_reason", "locked", "m"] {
        assert!(v["goroutines"][0].get(k).is_some(), "goroutines[].{k}");
    }
}

#[test]
fn wrong_binary_is_refused_naming_both() {
    let f = fixtures();
    let plain: Vec<_> = f.iter().filter(|c| c.truth.variant == "plain").collect();
    let (a, b) = (
        plain[0],
        plain
            .iter()
            .find(|c| c.truth.go_version != plain[0].truth.go_version)
            .unwrap(),
    );
    let out = cgocore(&[&a.core, &"--exe", &b.exe]);
    fail_with_code(&out, 4, "does not match the core");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&*a.core.to_string_lossy()) && err.contains(&*b.exe.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn truncated_core_fails_cleanly_or_warns() {
    let c = &fixtures()[0];
    let full = cgocore::testing::open_input(&c.core).unwrap();
    let tmp = Scratch::new("cli-trunc");
    for frac in [2usize, 10, 50] {
        let cut = tmpfile(
            &tmp,
            &format!("trunc{frac}"),
            &full.map[..full.map.len() / frac],
        );
        let out = cgocore(&[&cut, &"--exe", &c.exe]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1) | Some(3)),
            "1/{frac}: exit {:?} {err}",
            out.status.code()
        );
        assert!(!err.contains("panicked"), "{err}");
        if out.status.code() == Some(3) {
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("truncated"),
                "partial report must say why"
            );
        }
    }
}

#[test]
fn not_a_core_and_garbage() {
    let c = &fixtures()[0];
    let tmp = Scratch::new("cli-garbage");
    let exe = tmpfile(
        &tmp,
        "exe",
        &cgocore::testing::open_input(&c.exe).unwrap().map[..],
    );
    fail_with(&cgocore(&[&exe]), "not a core");
    fail_with(
        &cgocore(&[&tmpfile(&tmp, "garbage", &[0x55; 4096])]),
        "not an ELF file",
    );
    fail_with(&cgocore(&[&tmpfile(&tmp, "empty", b"")]), "is empty");
    fail_with(
        &cgocore(&[&tmpfile(&tmp, "bad.zst", b"\x28\xb5\x2f\xfd garbage")]),
        "zstd",
    );
    fail_with(&cgocore(&[&"/nonexistent/core"]), "cannot open");
    let hdr = cgocore::testing::open_input(&c.core).unwrap();
    fail_with(
        &cgocore(&[&tmpfile(&tmp, "hdronly", &hdr.map[..64])]),
        "program headers",
    );
}

#[test]
fn unrelated_binary_is_refused() {
    // A core of a C program: the test binary itself is not Go, so use `sleep`.
    let sh = "/bin/true";
    let c = &fixtures()[0];
    let out = cgocore(&[&c.core, &"--exe", &sh]);
    fail_with_code(&out, 4, "does not match");
    // Where the executable the core names is on this host (a generated
    // core), a non-Go --exe is still refused, not swapped for that one (only
    // a Go library the program loaded stands in for a non-Go executable).
    if let Some(g) = generated().into_iter().find(|c| c.truth.variant == "plain") {
        fail_with_code(&cgocore(&[&g.core, &"--exe", &sh]), 4, "does not match");
    }
}

#[test]
fn cycle_in_allm_gives_partial_report() {
    let c = plain_fixture();
    let bin = cgocore::testing::Binary::open(&c.exe).unwrap();
    let a = analyze(&c);
    let (m0, _) = bin.symbol("runtime.m0").unwrap();
    let alllink = cgocore::testing::runtime_field(&a, "runtime.m", "alllink").unwrap();
    // m0 is last on allm: point it back at the head.
    let tmp = Scratch::new("cli-cycle");
    let core = patched_core(
        &c,
        &tmp,
        "cycle",
        &[(m0 + alllink, cgocore::testing::allm_root(&a))],
    );
    let out = cgocore(&[&"--json", &"--exe", &c.exe, &core]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["warnings"].to_string().contains("cycle in runtime.allm"),
        "{}",
        r["warnings"]
    );
    assert_eq!(
        r["ms"].as_array().unwrap().len(),
        a.report.ms.len(),
        "each M once"
    );
}

#[test]
fn absurd_allglen_and_wild_pointer_give_partial_report() {
    let c = plain_fixture();
    let bin = cgocore::testing::Binary::open(&c.exe).unwrap();
    let (allgs, _) = bin.symbol("runtime.allgs").unwrap();
    let tmp = Scratch::new("cli-allgs");
    for (name, patch) in [
        ("hugelen", (allgs + 8, 1u64 << 40)),
        ("wildptr", (allgs, 0xdead_0000_0000)),
    ] {
        let core = patched_core(&c, &tmp, name, &[patch]);
        let out = cgocore(&[&"--exe", &c.exe, &core]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("warning: goroutines unreadable"),
            "{name}: {text}"
        );
        assert!(
            text.contains(&c.truth.scenarios["foreign_thread"].tid.to_string()),
            "threads still reported"
        );
    }
}

#[test]
fn sysroot_finds_the_executable_the_core_names() {
    let c = plain_fixture();
    let core =
        cgocore::testing::CoreFile::parse(cgocore::testing::open_input(&c.core).unwrap()).unwrap();
    let phdr = core.auxv_get(cgocore::testing::AT_PHDR).unwrap();
    let named = core.file_at(phdr).unwrap().path.clone();
    let tmp = Scratch::new("cli-sysroot");
    let root = tmp.0.clone();
    let dest = root.join(named.trim_start_matches('/'));
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(
        &dest,
        &cgocore::testing::open_input(&c.exe).unwrap().map[..],
    )
    .unwrap();
    let out = cgocore(&[&"--json", &"--sysroot", &root, &c.core]);
    // The sysroot holds the executable only: the answer says the C library
    // is missing there (exit 3, incomplete).
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["binary"].as_str().unwrap(), dest.to_str().unwrap());
    assert!(
        r["warnings"].to_string().contains("C library"),
        "{}",
        r["warnings"]
    );
    // Without the file in the sysroot, the error says what to do.
    let _ = std::fs::remove_file(&dest);
    let out = cgocore(&[&"--sysroot", &root, &c.core]);
    fail_with(&out, "--exe");
}

/// A real kernel core of a C program: cgocore says it is not a Go program.
#[test]
fn core_of_a_c_program_is_not_go() {
    let tmp = Scratch::new("cli-cprog");
    let dir = &tmp.0;
    std::fs::write(
        dir.join("c.c"),
        "#include <stdlib.h>\nint main(void){abort();}\n",
    )
    .unwrap();
    let built = Command::new("cc")
        .arg("-o")
        .arg(dir.join("cprog"))
        .arg(dir.join("c.c"))
        .status();
    assert!(built.is_ok_and(|s| s.success()), "cc is needed");
    let _ = Command::new("sh")
        .arg("-c")
        .arg("ulimit -c unlimited; exec ./cprog")
        .current_dir(dir)
        .status();
    let core = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        });
    let Some(core) = core else {
        eprintln!("no kernel core written (core_pattern is not 'core'?); skipped");
        assert!(
            !require_generated(),
            "kernel cores are required in the full run"
        );
        return;
    };
    let out = cgocore(&[&core]);
    fail_with_code(&out, 5, "not a Go program");
}

/// `--sched`: one line per P and per M, numbers equal to the JSON report's;
/// `--dot`: the mutex waiter points at shared_mu, which points at its holder.
#[test]
fn sched_and_dot_on_a_fixture() {
    let c = fixtures()
        .into_iter()
        .find(|c| c.truth.variant == "plain")
        .expect("a plain fixture");
    let json = cgocore(&[&c.core, &"--exe", &c.exe, &"--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--sched"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("SCHED: gomaxprocs={} ", v["gomaxprocs"]))
            && first.contains(&format!("threads={}", v["sched"]["mcount"])),
        "{first}"
    );
    let count = |p: &str| {
        text.lines()
            .filter(|l| l.trim_start().starts_with(p))
            .count()
    };
    assert_eq!(count("P"), v["ps"].as_array().unwrap().len());
    assert_eq!(count("M"), v["ms"].as_array().unwrap().len());
    assert_eq!(count("G"), v["goroutines"].as_array().unwrap().len());

    let dot = cgocore(&[&c.core, &"--exe", &c.exe, &"--dot", &"-"]);
    let g = String::from_utf8_lossy(&dot.stdout);
    let waiter = c.truth.scenarios["mutex_waiter"].tid;
    let holder = c.truth.scenarios["mutex_holder"].tid;
    let lock = g
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("t{waiter} -> "))
                .and_then(|r| r.split(' ').next())
        })
        .unwrap_or_else(|| panic!("no edge from the waiter:\n{g}"));
    assert!(
        g.contains(&format!("{lock} -> t{holder} [label=\"held by\"]")),
        "{g}"
    );
    assert!(g.contains("mutex shared_mu"), "{g}");
}

/// `data` with every `from` replaced by `to` (same length), and how many.
fn replaced(mut data: Vec<u8>, from: &[u8], to: &[u8]) -> (Vec<u8>, usize) {
    let mut n = 0;
    for i in 0..data.len().saturating_sub(from.len()) {
        if &data[i..i + from.len()] == from {
            data[i..i + from.len()].copy_from_slice(to);
            n += 1;
        }
    }
    (data, n)
}

/// A Go release newer than the built-in knowledge: exit 6, naming the
/// version and what to read. The sample's version string is patched in the
/// binary and in the core's copy of the build info alike.
#[test]
fn unknown_go_release_has_its_own_exit_code() {
    let c = fixtures()
        .into_iter()
        .find(|c| c.truth.go_version == "go1.27.3")
        .expect("the go1.27.3 fixture");
    let tmp = Scratch::new("cli-newgo");
    let patch = |src: &std::path::Path, name: &str| {
        let data = cgocore::testing::open_input(src).unwrap().map.to_vec();
        let (data, n) = replaced(data, b"go1.27.3", b"go1.99.3");
        assert!(n > 0, "{name}: no version string");
        tmpfile(&tmp, name, &data)
    };
    let exe = patch(&c.exe, "exe");
    let core = patch(&c.core, "core");
    // With DWARF: analyzed, the offsets from it, a warning naming what was
    // carried over from the newest known release (exit 3); the answer is
    // still the fixture's.
    let out = cgocore(&[&core, &"--exe", &exe, &"--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let w = r["warnings"].to_string();
    assert!(
        w.contains("go1.99.3 is newer") && w.contains("carried over from go1.27"),
        "{w}"
    );
    let waiter = c.truth.scenarios["mutex_waiter"].tid as u64;
    let t = r["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == waiter)
        .unwrap();
    let holder = c.truth.scenarios["mutex_holder"].tid as u64;
    assert_eq!(
        (
            t["blocked"]["class"].as_str(),
            t["blocked"]["owner_tid"].as_u64()
        ),
        (Some("mutex"), Some(holder))
    );
    // Without DWARF: exit 6, naming what is missing and what to read.
    let stripped = tmp.join("exe-stripped");
    let ok = std::process::Command::new("objcopy")
        .args([
            "--strip-debug".as_ref(),
            exe.as_os_str(),
            stripped.as_os_str(),
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let out = cgocore(&[&core, &"--exe", &stripped]);
    fail_with_code(
        &out,
        6,
        "go1.99.3 is newer than the releases this cgocore knows",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no DWARF") && err.contains("docs/adding-a-go-version.md"),
        "{err}"
    );
    // Older than the oldest known: refused as before.
    let older = |src: &std::path::Path, name: &str| {
        let (data, _) = replaced(std::fs::read(src).unwrap(), b"go1.99.3", b"go1.19.3");
        tmpfile(&tmp, name, &data)
    };
    let (old_exe, old_core) = (older(&exe, "exe-old"), older(&core, "core-old"));
    let out = cgocore(&[&old_core, &"--exe", &old_exe]);
    fail_with_code(&out, 6, "go1.19.3 is not supported");
}

/// `--pprof`: the real `go tool pprof` (from the Go toolchains the tests
/// install) lists one trace per goroutine, with the frames and labels the
/// report has: C frames (with their library) on top of the Go frames.
#[test]
fn pprof_profile_reads_in_go_tool_pprof() {
    let go = std::fs::read_dir(root().join(".cache/go"))
        .ok()
        .and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin/go"))
                .find(|p| p.exists())
        });
    let Some(go) = go else {
        assert!(
            !require_generated(),
            "the Go toolchains are installed in the full run"
        );
        eprintln!("skipped: no Go toolchain in .cache/go");
        return;
    };
    let c = plain_fixture();
    let tmp = Scratch::new("cli-pprof");
    let prof = tmp.join("goroutines.pb.gz");
    let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--pprof", &prof, &"--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: cgocore::Report = serde_json::from_slice(&out.stdout).unwrap();
    let traces = Command::new(&go)
        .args(["tool", "pprof", "-symbolize=none", "-traces"])
        .arg(&prof)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&traces.stdout);
    assert!(
        traces.status.success(),
        "{}",
        String::from_utf8_lossy(&traces.stderr)
    );
    // goid -> (frames, state) as pprof prints them.
    let mut got: std::collections::HashMap<u64, (Vec<String>, String)> = Default::default();
    for block in text.split("-----------+").skip(1) {
        let (mut goid, mut state, mut frames) = (None, String::new(), vec![]);
        for line in block.lines().skip(1) {
            let t = line.trim();
            if let Some(v) = t.strip_prefix("goid:") {
                goid = v.trim().parse::<u64>().ok();
            } else if let Some(v) = t.strip_prefix("state:") {
                state = v.trim().to_string();
            } else if line.starts_with("         1   ") {
                frames.push(t.trim_start_matches('1').trim().to_string());
            } else if line.starts_with("             ") && !t.is_empty() {
                frames.push(t.to_string());
            }
        }
        if let Some(g) = goid {
            got.insert(g, (frames, state));
        }
    }
    assert_eq!(
        got.len(),
        r.goroutines.len(),
        "one trace per goroutine:\n{text}"
    );
    for g in &r.goroutines {
        let want: Vec<String> = g
            .frames
            .iter()
            .map(cgocore::report::pprof::frame_name)
            .collect();
        let (frames, state) = &got[&g.goid];
        assert_eq!(frames, &want, "goroutine {}", g.goid);
        assert_eq!(state, g.state(), "goroutine {}", g.goid);
    }
    assert!(text.contains("(libc.so.6)"), "C frames with their library");
}

/// Completions for bash, zsh and fish, and a man page, from the CLI's own
/// definitions; bash accepts the script.
#[test]
fn completions_and_man_page() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for shell in ["bash", "zsh", "fish"] {
        let s = run(&["completions", shell]);
        assert!(
            s.contains("analyze") && s.contains("snapshot") && s.contains("--pid"),
            "{shell}"
        );
    }
    let script = run(&["completions", "bash"]);
    let tmp = Scratch::new("cli-completions");
    let path = tmp.join("cgocore.bash");
    std::fs::write(&path, script).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p cgocore", path.display()))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("_cgocore cgocore"),
        "{out:?}"
    );
    let man = run(&["man"]);
    assert!(
        man.contains(".TH cgocore 1") && man.contains("analyze"),
        "{man}"
    );
}

/// `--goroutines all` has the shape of Go's own dump: the parser that reads
/// Go's real dumps for the tests' ground truth (corefiles/generate.py) reads
/// ours into the same goroutines, states, locks, Ms and Go frames.
#[test]
fn goroutine_dump_reads_like_gos_own() {
    let c = plain_fixture();
    let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--goroutines", &"all"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let dump = &text[text.find("\ngoroutine ").expect("goroutines") + 1..];
    let script = "import json, sys\nsys.path.insert(0, sys.argv[1])\nimport generate\n\
                  print(json.dumps(generate.parse(sys.stdin.read(), [])['goroutines']))\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .arg(root().join("corefiles"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    let parsed = child.wait_with_output().unwrap();
    let ours: Vec<serde_json::Value> = serde_json::from_slice(&parsed.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&parsed.stdout)));
    assert_eq!(ours.len(), c.truth.goroutines.len());
    let by_goid: std::collections::HashMap<u64, &serde_json::Value> = ours
        .iter()
        .map(|o| (o["goid"].as_u64().unwrap(), o))
        .collect();
    for t in &c.truth.goroutines {
        let o = by_goid[&t.goid];
        assert_eq!(o["state"], t.state.as_str(), "goroutine {}", t.goid);
        assert_eq!(o["locked"], t.locked, "goroutine {}", t.goid);
        if t.m_known {
            assert_eq!(o["m"].as_i64(), t.m, "goroutine {}", t.goid);
        }
        // Ours carry the C frames too, marked [C].
        let go: Vec<&str> = o["frames"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["function"].as_str())
            .filter(|f| !f.starts_with("[C] "))
            .collect();
        let want: Vec<&str> = t.frames.iter().map(|f| f.function.as_str()).collect();
        assert_eq!(go, want, "goroutine {}", t.goid);
    }
}

/// Progress: on a terminal (a pty from `script`), long phases show a bar
/// (here at once: CGOCORE_PROGRESS_AFTER_MS=0); `--quiet` and a pipe show
/// nothing.
#[test]
fn progress_shows_on_a_terminal_only() {
    let c = plain_fixture();
    let tmp = Scratch::new("cli-progress");
    let bin = env!("CARGO_BIN_EXE_cgocore");
    let run_in_pty = |quiet: &str, cache: &str| {
        let cmd = format!(
            "CGOCORE_PROGRESS_AFTER_MS=0 CGOCORE_CACHE={} {bin} analyze {quiet} {} --exe {} --goroutines all > /dev/null",
            tmp.join(cache).display(),
            c.core.display(),
            c.exe.display()
        );
        let out = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    };
    let Ok(shown) = run_in_pty("", "a") else {
        assert!(!require_generated(), "script (util-linux) is needed");
        return;
    };
    assert!(
        shown.contains("decompressing") && shown.contains("core.zst"),
        "{shown:?}"
    );
    assert_eq!(run_in_pty("--quiet", "b").unwrap(), "", "--quiet");
    let piped = Command::new(bin)
        .args(["analyze"])
        .arg(&c.core)
        .arg("--exe")
        .arg(&c.exe)
        .env("CGOCORE_PROGRESS_AFTER_MS", "0")
        .env("CGOCORE_CACHE", tmp.join("c"))
        .output()
        .unwrap();
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
}

/// A core without NT_FILE (qemu-user's aarch64 core) whose C library is not
/// on this host: a warning that says what to pass, and exit 3; with the
/// guest's root as --sysroot, libraries come from the dynamic linker's list
/// and the answer is complete.
#[test]
fn missing_c_library_is_a_warning_and_exit_3() {
    let Some(c) = generated_arm64()
        .into_iter()
        .find(|c| c.truth.kind == "qemu")
    else {
        assert!(!require_generated(), "no arm64 qemu core");
        return;
    };
    let out = cgocore(&[&c.core, &"--exe", &c.exe]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("C library") && text.contains("--sysroot"),
        "{text}"
    );
    let sysroot = c.truth.sysroot.clone().unwrap();
    let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--sysroot", &sysroot, &"--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mutex_waiter = c.truth.scenarios["mutex_waiter"].tid as u64;
    let t = r["threads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tid"] == mutex_waiter)
        .unwrap();
    assert_eq!(t["blocked"]["class"], "mutex", "{t}");
}

/// `--goroutines` alone groups the goroutines (state, wait, frames) with a
/// count, largest first: on real cores, every goroutine is in one group,
/// and every set of goroutines Go's own dump shows with the same frames is
/// one group, with the same ids.
#[test]
fn goroutines_grouped_as_in_gos_dump() {
    use std::collections::BTreeMap;
    let mut cases = vec![plain_fixture()];
    cases.extend(
        generated()
            .into_iter()
            .filter(|c| c.truth.kind == "kernel" && c.truth.variant == "plain"),
    );
    for c in &cases {
        let out = cgocore(&[&c.core, &"--exe", &c.exe, &"--goroutines"]);
        assert!(matches!(out.status.code(), Some(0) | Some(3)), "{}", c.name);
        let text = String::from_utf8_lossy(&out.stdout);
        let listing = text
            .split_once(" goroutines in ")
            .expect("the grouped listing")
            .1;
        // "N goroutine(s) [state...]: id, id, ..."
        let groups: Vec<(usize, Vec<u64>)> = listing
            .lines()
            .filter(|l| l.contains(" goroutine") && l.contains("]: "))
            .map(|l| {
                let n = l.split(' ').next().unwrap().parse().unwrap();
                let ids = l.rsplit_once("]: ").unwrap().1;
                (n, ids.split(", ").filter_map(|i| i.parse().ok()).collect())
            })
            .collect();
        let total: usize = groups.iter().map(|g| g.0).sum();
        assert_eq!(
            total,
            c.truth.goroutines.len(),
            "{}: every goroutine once",
            c.name
        );
        // Go's dump, grouped by its frames.
        let mut by_frames: BTreeMap<Vec<(String, Option<i64>)>, Vec<u64>> = BTreeMap::new();
        for g in &c.truth.goroutines {
            let key = g
                .frames
                .iter()
                .map(|f| (f.function.clone(), f.line))
                .collect();
            by_frames.entry(key).or_default().push(g.goid);
        }
        // Each set Go's dump shows with the same frames is one of ours.
        for mut same in by_frames.into_values().filter(|v| v.len() > 1) {
            same.sort();
            let shown = same.len().min(12);
            assert!(
                groups
                    .iter()
                    .any(|(n, ids)| *n == same.len() && ids[..] == same[..shown]),
                "{}: {same:?} not a group: {groups:?}",
                c.name
            );
        }
        assert!(groups.windows(2).all(|w| w[0].0 >= w[1].0), "largest first");
    }
}

/// No thread to be had: the user's process limit reached, as it is for the
/// user whose program hit it (the crash under `ulimit -u`). cgocore, run as
/// user nobody under `RLIMIT_NPROC` 1 (no thread can start), gives the same
/// report as with threads, on a small core and on the 10,000-thread one
/// (whose threads are otherwise split between workers); `analyze --pid`
/// says what to do, and leaves the process alone.
#[test]
fn no_thread_to_be_had_the_same_report() {
    let is_root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !is_root || !have("setpriv") || !have("prlimit") {
        // The full run (CI) is root on Debian, util-linux installed.
        assert!(
            !require_generated(),
            "needs root, setpriv and prlimit (util-linux)"
        );
        eprintln!("skipped: needs root, setpriv and prlimit (util-linux)");
        return;
    }
    let dir = Scratch::new("no-thread");
    let open_to_all = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    open_to_all(&dir.0, 0o755);
    let bin = dir.join("cgocore");
    std::fs::copy(env!("CARGO_BIN_EXE_cgocore"), &bin).unwrap();
    open_to_all(&bin, 0o755);
    // A command as user nobody, with no thread to be had.
    let as_nobody = |args: &[&dyn AsRef<OsStr>]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "prlimit",
                "--nproc=1",
            ])
            .args(args.iter().map(|a| a.as_ref()))
            .output()
            .unwrap()
    };
    let mut cases: Vec<CoreCase> = fixtures().into_iter().take(1).collect();
    cases.extend(generated_exhaust());
    for (i, c) in cases.iter().enumerate() {
        // Copies nobody may read (sparse: the 10,000-thread core is 84 GB apparent).
        let (core, exe) = (dir.join(format!("core-{i}")), dir.join(format!("exe-{i}")));
        let copied = Command::new("cp")
            .arg("--sparse=always")
            .arg(uncompressed(&c.core))
            .arg(&core)
            .status()
            .unwrap();
        assert!(copied.success());
        std::fs::copy(uncompressed(&c.exe), &exe).unwrap();
        open_to_all(&core, 0o644);
        open_to_all(&exe, 0o755);
        for json in [true, false] {
            let mut args: Vec<&dyn AsRef<OsStr>> = vec![&core, &"--exe", &exe];
            if json {
                args.push(&"--json");
            }
            let want = cgocore(&args);
            let mut theirs: Vec<&dyn AsRef<OsStr>> = vec![&bin, &"analyze"];
            theirs.extend(&args);
            let got = as_nobody(&theirs);
            let err = String::from_utf8_lossy(&got.stderr);
            assert_eq!(got.status.code(), Some(0), "{}: {err}", c.name);
            assert!(
                got.stdout == want.stdout,
                "{} (json {json}): the report differs without threads",
                c.name
            );
        }
        std::fs::remove_file(&core).unwrap();
    }
    // A live capture needs its tracer thread: a clear error, exit 1 (the
    // shell becomes cgocore, which is asked to stop itself: it never gets
    // that far).
    let pid_of_itself = format!("exec {} analyze --pid $$", bin.display());
    let out = as_nobody(&[&"sh", &"-c", &pid_of_itself]);
    fail_with(&out, "process limit reached");
}

/// `top CORE`: each group of threads in C is named by the cgo call, or,
/// outside one, by the thread's own entry: a start routine the program gives
/// `pthread_create` (read from its scenario.c) or runtime/cgo's
/// `threadentry`, never another function; "?" where the stack does not
/// reach its base or the program is stripped. On amd64 glibc (the shipped
/// core, and a stripped build's), arm64 (qemu's form and the kernel's) and
/// musl (static, dynamic, arm64).
#[test]
fn top_of_a_core_names_every_group() {
    let source =
        std::fs::read_to_string(root().join("corefiles/scenarios/cgostuck/scenario.c")).unwrap();
    let mut entries: BTreeSet<String> = source
        .lines()
        .filter(|l| l.contains("spawn(") || l.contains("pthread_create("))
        .flat_map(|l| l.split(|c: char| !c.is_ascii_alphanumeric() && c != '_'))
        .filter(|w| w.ends_with("_main"))
        .map(String::from)
        .collect();
    assert!(entries.contains("foreign_main"), "{entries:?}");
    entries.insert("threadentry".into());
    let mut cases = fixtures();
    cases.truncate(1);
    cases.extend(
        generated()
            .into_iter()
            .filter(|c| c.name.contains("/stripped/"))
            .take(1),
    );
    cases.extend(generated_arm64());
    cases.extend(generated_musl());
    for c in &cases {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&c.core, &"--exe", &c.exe, &"--json-lines"];
        let sysroot = c.truth.sysroot.clone().unwrap_or_default();
        if !sysroot.is_empty() {
            args.extend([&"--sysroot" as &dyn AsRef<OsStr>, &sysroot]);
        }
        let out = cgocore_command("top", &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(3)),
            "{}: {err}",
            c.name
        );
        let sample: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let groups: BTreeSet<(String, String)> = sample["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["class"].as_str().unwrap().into(),
                    g["function"].as_str().unwrap().into(),
                )
            })
            .collect();
        let named: Vec<_> = groups
            .iter()
            .filter(|(_, f)| !f.starts_with("C.") && f != "?")
            .collect();
        assert!(
            named.iter().all(|(_, f)| entries.contains(f)),
            "{}: a group named after no start routine: {named:?}",
            c.name
        );
        if c.name.contains("/stripped/") {
            assert!(named.is_empty(), "{}: {named:?}", c.name);
            continue;
        }
        for want in [("sleep", "foreign_main"), ("sleep", "extra_in_c_main")] {
            assert!(
                groups.iter().any(|(k, f)| (k.as_str(), f.as_str()) == want),
                "{}: {want:?} in {groups:?}",
                c.name
            );
        }
        if c.core.starts_with(root().join("corefiles")) {
            assert!(
                groups.iter().all(|(_, f)| f != "?"),
                "{}: {groups:?}",
                c.name
            );
            assert!(groups.contains(&("env-lock".into(), "setenv_victim_main".into())));
        }
    }
}
