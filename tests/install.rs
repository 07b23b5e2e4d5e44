//! `pip install cgocore` as a user would: the built wheel into a fresh venv,
//! then the `cgocore` command on the sample core, and gdb and lldb loading
//! the debugger commands from the line `cgocore debugger-init` prints, with
//! no environment variable set.
mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn wheel() -> Option<PathBuf> {
    std::fs::read_dir(root().join("target/wheels"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
}

/// A command without the variables the test run sets for the repository.
fn clean(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("CGOCORE_PYTHONPATH")
        .env_remove("PYTHONPATH")
}

fn ok(out: Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}: {text}");
    text
}

#[test]
fn the_wheel_installs_the_command_and_the_debugger_commands() {
    let Some(wheel) = wheel() else {
        assert!(
            !require_generated(),
            "scripts/build-python builds the wheel in the full run"
        );
        eprintln!("skipped: no wheel in target/wheels (scripts/build-python)");
        return;
    };
    let tmp = Scratch::new("install");
    let venv = tmp.join("venv");
    ok(
        Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .output()
            .unwrap(),
        "venv",
    );
    let bin = |n: &str| venv.join("bin").join(n);
    ok(
        clean(
            Command::new(bin("pip"))
                .args(["install", "-q", "--no-index", "--no-deps"])
                .arg(&wheel),
        )
        .output()
        .unwrap(),
        "pip install",
    );
    // The command, on the sample core.
    let c = fixtures()
        .into_iter()
        .find(|c| c.truth.go_version == "go1.27.3")
        .unwrap();
    let out = clean(
        Command::new(bin("cgocore"))
            .arg("analyze")
            .arg(&c.core)
            .arg("--exe")
            .arg(&c.exe)
            .arg("--json"),
    )
    .env("CGOCORE_CACHE", tmp.join("cache"))
    .output()
    .unwrap();
    let json = ok(out, "cgocore analyze");
    let r: cgocore::Report = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(r.threads.len(), analyze(&c).report.threads.len());
    ok(
        clean(Command::new(bin("cgocore")).arg("--version"))
            .output()
            .unwrap(),
        "--version",
    );

    // The line for ~/.gdbinit, and gdb using it on the sample core.
    let line = ok(
        clean(Command::new(bin("cgocore")).args(["debugger-init", "gdb"]))
            .output()
            .unwrap(),
        "init",
    );
    let path = ok(
        clean(Command::new(bin("cgocore")).args(["debugger-init", "gdb", "--path"]))
            .output()
            .unwrap(),
        "init --path",
    );
    let path = path.trim();
    assert_eq!(line.trim(), format!("source {path}"));
    assert!(Path::new(path).exists(), "{path}");
    let (exe, core) = (uncompressed(&c.exe), uncompressed(&c.core));
    if Command::new("gdb").arg("--version").output().is_ok() {
        let out = clean(Command::new("gdb").args([
            "-nx",
            "-batch",
            "-ex",
            line.trim(),
            "-ex",
            "info cgo-threads",
        ]))
        .arg(&exe)
        .arg(&core)
        .output()
        .unwrap();
        let text = ok(out, "gdb");
        assert!(
            text.contains("go1.27.3 ·") && text.contains("LOCKEXT"),
            "{text}"
        );
    }
    // The line for ~/.lldbinit, and lldb using it.
    let line = ok(
        clean(Command::new(bin("cgocore")).args(["debugger-init", "lldb"]))
            .output()
            .unwrap(),
        "init",
    );
    if Command::new("lldb-16").arg("--version").output().is_ok() {
        let out = clean(Command::new("lldb-16").args(["-b", "-o", line.trim()]))
            .args([
                "-o",
                &format!("target create {} --core {}", exe.display(), core.display()),
            ])
            .args(["-o", "cgo threads"])
            .output()
            .unwrap();
        let text = ok(out, "lldb");
        assert!(
            text.contains("go1.27.3 ·") && text.contains("LOCKEXT"),
            "{text}"
        );
    }
}
