//! The CLI on bad input: a clear message and a non-zero exit, never a panic.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output};

fn cgocore(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .arg("analyze")
        .args(args)
        .env("CGOCORE_CACHE", cache())
        .output()
        .unwrap()
}

fn cache() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cgocore-cli-cache-{}", std::process::id()))
}

fn fail_with(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn tmpfile(name: &str, data: &[u8]) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("cgocore-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn text_and_json_on_a_fixture() {
    let c = &fixtures()[0];
    let out = cgocore(&[&c.core, Path::new("--exe"), &c.exe]);
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
    let out = cgocore(&[&c.core, Path::new("--exe"), &c.exe, Path::new("--json")]);
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
    let out = cgocore(&[&a.core, Path::new("--exe"), &b.exe]);
    fail_with(&out, "does not match the core");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&*a.core.to_string_lossy()) && err.contains(&*b.exe.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn truncated_core_fails_cleanly_or_warns() {
    let c = &fixtures()[0];
    let full = cgocore::input::open(&c.core).unwrap();
    for frac in [2usize, 10, 50] {
        let cut = tmpfile(&format!("trunc{frac}"), &full.map[..full.map.len() / frac]);
        let out = cgocore(&[&cut, Path::new("--exe"), &c.exe]);
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
    let exe = tmpfile("exe", &cgocore::input::open(&c.exe).unwrap().map[..]);
    fail_with(&cgocore(&[&exe]), "not a core");
    fail_with(
        &cgocore(&[&tmpfile("garbage", &[0x55; 4096])]),
        "not an ELF file",
    );
    fail_with(&cgocore(&[&tmpfile("empty", b"")]), "is empty");
    fail_with(
        &cgocore(&[&tmpfile("bad.zst", b"\x28\xb5\x2f\xfd garbage")]),
        "zstd",
    );
    fail_with(&cgocore(&[Path::new("/nonexistent/core")]), "cannot open");
    let hdr = cgocore::input::open(&c.core).unwrap();
    fail_with(
        &cgocore(&[&tmpfile("hdronly", &hdr.map[..64])]),
        "program headers",
    );
}

#[test]
fn unrelated_binary_is_refused() {
    // A core of a C program: the test binary itself is not Go, so use `sleep`.
    let sh = Path::new("/bin/true");
    let c = &fixtures()[0];
    let out = cgocore(&[&c.core, Path::new("--exe"), sh]);
    fail_with(&out, "does not match");
}
