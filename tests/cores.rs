//! One named trial per core and check, runnable alone:
//!
//!     cargo test --test cores -- go1.27.3/plain/kernel/stacks
//!     cargo test --test cores -- go1.21.13/          (every check of a release)
//!     cargo test --test cores -- /classes            (one check on every core)
//!
//! Cores are the committed fixtures (`fixture/<name>/...`) and those
//! `corefiles/generate.py` made (`<go version>/<variant>/<kind>/...`): the
//! cgostuck scenario's glibc, arm64 and musl builds. Checks (`tests/checks/`):
//! `dump` (threads, Ms, goroutines and frames against Go's dump, and who
//! wrote the core), `stacks` (C frames stitched to goroutines, the threads and
//! goroutines unwound in three parts each), `classes`
//! (blocked-call classes, owners, findings, incidents; glibc x86_64 builds:
//! arm64 and musl have their own in tests/classify.rs).
mod checks;
mod common;

use common::*;
use libtest_mimic::{Arguments, Failed, Trial};
use std::collections::HashSet;
use std::sync::Arc;

/// Which builds a core comes from: what else its checks assert.
#[derive(Clone, Copy, PartialEq)]
enum Platform {
    /// x86_64 glibc: fixtures and the generated releases' builds.
    Glibc,
    Arm64,
    Musl,
}

fn main() {
    let args = Arguments::from_args();
    let mut trials = vec![Trial::test("generated/variety", variety)];
    let groups = [
        (Platform::Glibc, fixtures()),
        (Platform::Glibc, generated()),
        (Platform::Arm64, generated_arm64()),
        (Platform::Musl, generated_musl()),
    ];
    for (platform, cases) in groups {
        for case in cases {
            let case = Arc::new(case);
            let name = |check: &str| {
                let prefix = if case.core.starts_with(root().join("corefiles")) {
                    "fixture/"
                } else {
                    ""
                };
                format!("{prefix}{}/{check}", case.name)
            };
            let c = case.clone();
            trials.push(Trial::test(name("dump"), move || dump(&c, platform)));
            let c = case.clone();
            // Split in parts as a core of thousands of threads is (each
            // worker with its own unwinder): the stacks must not change.
            trials.push(Trial::test(name("stacks"), move || {
                let a = cgocore::testing::with_parts(3, || analyze(&c));
                failed(checks::stacks::check(&c, &a))
            }));
            if platform == Platform::Glibc {
                let c = case.clone();
                trials.push(Trial::test(name("classes"), move || classes(&c)));
            }
        }
    }
    libtest_mimic::run(&args, trials).exit();
}

fn failed(errs: Vec<String>) -> Result<(), Failed> {
    if errs.is_empty() {
        Ok(())
    } else {
        Err(format!("{} mismatches:\n{}", errs.len(), errs.join("\n")).into())
    }
}

/// Go's dump, and the core's writer: a "gcore" core must be gdb's (one
/// overwritten by the kernel's crash core once made every gcore test a
/// second kernel test); the kernel's names the signal Go's crash relay died
/// of, gdb's none (it attached with SIGSTOP).
fn dump(case: &CoreCase, platform: Platform) -> Result<(), Failed> {
    let a = analyze(case);
    let mut errs = checks::dump::check(case, &a);
    let mut e = |s: String| errs.push(format!("{}: {s}", case.name));
    let r = &a.report;
    let gcore = case.truth.kind == "gcore";
    match platform {
        Platform::Arm64 => {
            if r.arch != "aarch64" {
                e(format!("arch {}", r.arch));
            }
            if !a
                .process
                .libraries
                .iter()
                .any(|l| l.path.contains("libc.so"))
            {
                e("libc not found from the dynamic linker's list".into());
            }
        }
        Platform::Glibc | Platform::Musl => {
            let want = if gcore { "gdb gcore" } else { "kernel" };
            if core_writer(&case.core) != want {
                e(format!(
                    "written by {}, not {want}",
                    core_writer(&case.core)
                ));
            }
        }
    }
    if platform == Platform::Glibc {
        if r.core_writer.as_deref() != Some(core_writer(&case.core)) {
            e(format!("core_writer {:?}", r.core_writer));
        }
        let killed = r.signal.is_some_and(|s| s == 3 || s == 6);
        if gcore == killed {
            e(format!("signal {:?}", r.signal));
        }
    }
    failed(errs)
}

fn classes(case: &CoreCase) -> Result<(), Failed> {
    let a = analyze(case);
    let mut errs = checks::classes::check_classes(case, &a.report, a.process.arch);
    errs.extend(checks::classes::check_findings(case, &a));
    errs.extend(checks::classes::check_incidents(case, &a.report));
    failed(errs)
}

/// With CGOCORE_REQUIRE_GENERATED=1: every supported release has cores, and
/// arm64 and musl builds of two releases in each form.
fn variety() -> Result<(), Failed> {
    if fixtures().len() < 3 {
        return Err("expected committed fixtures in corefiles/fixtures".into());
    }
    if !require_generated() {
        return Ok(());
    }
    let releases = |cases: &[CoreCase]| -> HashSet<String> {
        cases.iter().map(|c| c.truth.go_version.clone()).collect()
    };
    let glibc = generated();
    if releases(&glibc).len() != 7 {
        return Err(format!(
            "every supported Go release must have cores: {:?}",
            releases(&glibc)
        )
        .into());
    }
    let want = |cases: Vec<CoreCase>, what: fn(&CoreCase) -> String, kinds: &[&str]| {
        let have: HashSet<String> = cases.iter().map(what).collect();
        let ok = kinds.iter().all(|k| have.contains(*k)) && releases(&cases).len() >= 2;
        ok.then_some(())
            .ok_or(format!("cores of {kinds:?} for two Go releases: {have:?}"))
    };
    want(
        generated_arm64(),
        |c| c.truth.kind.clone(),
        &["qemu", "kernel"],
    )?;
    want(
        generated_musl(),
        |c| c.truth.variant.clone(),
        &["musl", "musl-static", "musl-arm64", "musl-arm64-dynamic"],
    )?;
    Ok(())
}
