//! The runbooks' commands, run. Every ```` ```sh ```` block in
//! `docs/runbooks/*.md` runs (`sh -e`, from the repository root, with the
//! built `cgocore` first on `PATH`, `$TMP` a scratch folder, and `$PID` a
//! running scenario program when the block names it), and must succeed; the
//! ```` ```text ```` block right after it, if there is one, must be exactly
//! what it printed. `scripts/regen-runbooks` (`CGOCORE_BLESS=1`) rewrites
//! those blocks from what the commands print now.
mod common;

use common::scenario::Scenario;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A command block, and the output block after it (line range in the file).
struct Block {
    line: usize,
    script: String,
    output: Option<(usize, usize, String)>,
}

/// The fenced blocks of a page: `sh` commands, each with the `text` block
/// that directly follows it (blank lines between allowed).
fn blocks(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let fence_end = |from: usize| (from..lines.len()).find(|&i| lines[i].trim_end() == "```");
    let mut out = vec![];
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```sh" {
            i += 1;
            continue;
        }
        let end = fence_end(i + 1).unwrap_or_else(|| panic!("line {}: unclosed ```sh", i + 1));
        let script = lines[i + 1..end].join("\n");
        let mut next = end + 1;
        while next < lines.len() && lines[next].trim().is_empty() {
            next += 1;
        }
        let output = (next < lines.len() && lines[next].trim_end() == "```text").then(|| {
            let oend = fence_end(next + 1).expect("unclosed ```text");
            let body: String = lines[next + 1..oend]
                .iter()
                .map(|l| format!("{l}\n"))
                .collect();
            (next + 1, oend, body)
        });
        out.push(Block {
            line: i + 1,
            script,
            output,
        });
        i = end + 1;
    }
    out
}

fn pages() -> Vec<PathBuf> {
    let dir = root().join("docs/runbooks");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    v.sort();
    v
}

/// The program a `$PID` block runs against: the generated Go 1.27 build.
fn live_case() -> Option<CoreCase> {
    generated()
        .into_iter()
        .find(|c| c.name.starts_with("go1.27.3/plain/kernel"))
}

/// `go` for the blocks that run `go tool pprof`: a toolchain the test run
/// installed (.cache/go).
fn go_bin() -> PathBuf {
    root().join(".cache/go/v1.27.3/bin")
}

/// The debugger commands need the built Python module: `$CGOCORE_PYTHONPATH`
/// or the checkout's `.cache/python` (`scripts/build-python`).
fn python_module_built() -> bool {
    std::env::var_os("CGOCORE_PYTHONPATH").is_some()
        || root().join(".cache/python/cgocore").exists()
}

fn run(script: &str, tmp: &Path, pid: Option<u32>) -> (bool, String, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_cgocore")).parent().unwrap();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        go_bin().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-ec")
        .arg(script)
        .current_dir(root())
        .env("PATH", path)
        .env("TMP", tmp)
        .env("COLUMNS", "100")
        .env(
            "CGOCORE_CACHE",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("runbooks-cache"),
        );
    if let Some(pid) = pid {
        cmd.env("PID", pid.to_string());
    }
    let (out, _) = run_limited(&mut cmd, 4 << 30, Duration::from_secs(300));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_runbook_command_runs_and_prints_what_the_page_shows() {
    let bless = std::env::var("CGOCORE_BLESS").is_ok_and(|v| v == "1");
    let tmp = Scratch::new("runbooks");
    let mut scenario: Option<Scenario> = None;
    let mut errs = vec![];
    let mut ran = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.file_name().unwrap().to_string_lossy().to_string();
        let mut new_lines: Vec<String> = text.lines().map(str::to_string).collect();
        // Output blocks are replaced from the last up, so line numbers hold.
        let mut replacements = vec![];
        for b in blocks(&text) {
            let debugger = b.script.contains("gdb ") || b.script.contains("lldb");
            if debugger && !python_module_built() {
                assert!(
                    !require_generated(),
                    "the Python module is not built (scripts/build-python)"
                );
                eprintln!(
                    "{name}:{}: skipped (no Python module for the debugger commands)",
                    b.line
                );
                continue;
            }
            if b.script.contains(".cache/cores/")
                && !generated_libs()
                    .iter()
                    .any(|c| c.truth.go_version == "go1.27.3")
            {
                assert!(
                    !require_generated(),
                    "no generated core for {name}:{}",
                    b.line
                );
                eprintln!("{name}:{}: skipped (cores not generated)", b.line);
                continue;
            }
            if b.script.contains("go tool") && !go_bin().join("go").exists() {
                assert!(!require_generated(), "no Go toolchain in .cache/go");
                eprintln!("{name}:{}: skipped (no Go toolchain)", b.line);
                continue;
            }
            let pid = if b.script.contains("$PID") {
                if scenario.is_none() {
                    match live_case() {
                        Some(c) => scenario = Some(Scenario::start(&c, "runbooks")),
                        None => {
                            assert!(!require_generated(), "no generated core for $PID blocks");
                            eprintln!("{name}:{}: skipped (no generated build to run)", b.line);
                            continue;
                        }
                    }
                }
                scenario.as_ref().map(|s| s.pid)
            } else {
                None
            };
            let (ok, stdout, stderr) = run(&b.script, &tmp.0, pid);
            ran += 1;
            if !ok {
                errs.push(format!(
                    "{name}:{}: command failed:\n{}\n{stderr}",
                    b.line, b.script
                ));
                continue;
            }
            if let Some((from, to, want)) = &b.output {
                if bless {
                    replacements.push((*from, *to, stdout.clone()));
                } else if *want != stdout {
                    errs.push(format!(
                        "{name}:{}: output differs (scripts/regen-runbooks rewrites it)\n--- page\n{want}--- now\n{stdout}",
                        b.line
                    ));
                }
            }
        }
        if bless && !replacements.is_empty() {
            replacements.sort_by_key(|r| std::cmp::Reverse(r.0));
            for (from, to, out) in replacements {
                let body: Vec<String> = out.lines().map(str::to_string).collect();
                new_lines.splice(from..to, body);
            }
            std::fs::write(&page, new_lines.join("\n") + "\n").unwrap();
        }
    }
    assert!(ran > 0, "no ```sh block in docs/runbooks");
    assert!(errs.is_empty(), "{}", errs.join("\n\n"));
}

/// Every page is linked from the runbooks' index, and the index from the
/// README and `cgocore analyze --help`.
#[test]
fn runbooks_are_linked() {
    let index = std::fs::read_to_string(root().join("docs/runbooks/README.md")).unwrap();
    for p in pages() {
        let f = p.file_name().unwrap().to_string_lossy().to_string();
        if f != "README.md" {
            assert!(
                index.contains(&format!("({f})")),
                "{f} is not in docs/runbooks/README.md"
            );
        }
    }
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(readme.contains("docs/runbooks/README.md"));
    let help = Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .args(["analyze", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("docs/runbooks"));
}
