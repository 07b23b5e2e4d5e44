//! What users read, byte for byte: the report on the shipped sample core as
//! text, `--json`, `--stacks`, `--goroutines all`, `--sched` and `--dot`.
//! A change that alters any of them fails here; after a deliberate change,
//! regenerate with `CGOCORE_BLESS=1 cargo test --test golden` and say why in
//! the commit.
mod common;

use common::*;
use std::path::Path;
use std::process::Command;

const SAMPLE: &str = "corefiles/fixtures/go1.27.3-plain-kernel";

/// (file under tests/golden/sample, extra arguments); `--dot` writes to stdout.
const VIEWS: &[(&str, &[&str])] = &[
    ("analyze.txt", &[]),
    ("analyze.json", &["--json"]),
    ("stacks.txt", &["--stacks"]),
    ("goroutines-all.txt", &["--goroutines", "all"]),
    ("sched.txt", &["--sched"]),
    ("waitfor.dot", &["--dot", "-"]),
];

/// The sample's C frames are named from libc's detached debug info (Debian's
/// libc6-dbg, which scripts/test-all installs); without it the names differ.
fn have_libc_debug_info() -> bool {
    Path::new("/usr/lib/debug/.build-id").is_dir()
}

#[test]
fn sample_core_output_is_unchanged() {
    if !have_libc_debug_info() {
        assert!(
            !require_generated(),
            "libc6-dbg is not installed: the golden outputs name libc's internal frames"
        );
        eprintln!("skipped: libc6-dbg is not installed (scripts/test-all installs it)");
        return;
    }
    let root = root();
    let golden = root.join("tests/golden/sample");
    let bless = std::env::var_os("CGOCORE_BLESS").is_some();
    let mut changed = vec![];
    for (file, extra) in VIEWS {
        // Relative paths, run from the root: the report names them as given.
        let out = Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .current_dir(&root)
            .args(["analyze", &format!("{SAMPLE}/core.zst")])
            .args(["--exe", &format!("{SAMPLE}/cgostuck.zst")])
            .args(*extra)
            .env(
                "CGOCORE_CACHE",
                Path::new(env!("CARGO_TARGET_TMPDIR")).join("golden-cache"),
            )
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want_path = golden.join(file);
        if bless {
            std::fs::write(&want_path, &out.stdout).unwrap();
            continue;
        }
        let want = std::fs::read(&want_path).unwrap();
        if want != out.stdout {
            let got = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("golden-{file}"));
            std::fs::write(&got, &out.stdout).unwrap();
            changed.push(format!(
                "{file}: differs (diff {} {})",
                want_path.display(),
                got.display()
            ));
        }
    }
    assert!(
        changed.is_empty(),
        "the report on the sample core changed:\n  {}\n(if deliberate: CGOCORE_BLESS=1 cargo test --test golden)",
        changed.join("\n  ")
    );
}
