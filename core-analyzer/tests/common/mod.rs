//! Finding real cores (committed fixtures and generated ones) and Go's own dump
//! of each, which is the ground truth.
#![allow(dead_code)]
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Clone)]
pub struct TruthGoroutine {
    pub goid: u64,
    pub state: String,
    pub locked: bool,
    pub m: Option<i64>,
    pub m_known: bool,
    pub frames: Vec<TruthFrame>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct TruthFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<i64>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Scenario {
    pub tid: u32,
    pub goid: u64,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Truth {
    pub goroutines: Vec<TruthGoroutine>,
    pub scenarios: HashMap<String, Scenario>,
    pub go_version: String,
    pub variant: String,
    pub kind: String,
    pub main_goid: Option<u64>,
}

pub struct CoreCase {
    pub name: String,
    pub core: PathBuf,
    pub exe: PathBuf,
    pub truth: Truth,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load_truth(p: &Path) -> Truth {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Committed fixtures: corefiles/fixtures/<name>/{core.zst, cgostuck.zst, truth.json}.
pub fn fixtures() -> Vec<CoreCase> {
    let dir = root().join("corefiles/fixtures");
    let mut out = vec![];
    for e in std::fs::read_dir(&dir).expect("corefiles/fixtures exists") {
        let d = e.unwrap().path();
        if !d.join("truth.json").exists() {
            continue;
        }
        out.push(CoreCase {
            name: d.file_name().unwrap().to_string_lossy().into(),
            core: d.join("core.zst"),
            exe: d.join("cgostuck.zst"),
            truth: load_truth(&d.join("truth.json")),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Generated cores: $CGOCORE_CORES (default .cache/cores)/go<ver>/<variant>/<kind>/.
pub fn generated() -> Vec<CoreCase> {
    let base = std::env::var_os("CGOCORE_CORES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/cores"));
    let mut out = vec![];
    let Ok(versions) = std::fs::read_dir(&base) else {
        return out;
    };
    for v in versions.flatten() {
        let Ok(variants) = std::fs::read_dir(v.path()) else {
            continue;
        };
        for var in variants.flatten() {
            let Ok(kinds) = std::fs::read_dir(var.path()) else {
                continue;
            };
            for k in kinds.flatten() {
                let d = k.path();
                let core = if d.join("core").exists() {
                    d.join("core")
                } else {
                    d.join("core.zst")
                };
                let exe = var.path().join("cgostuck");
                if !d.join("truth.json").exists() || !core.exists() || !exe.exists() {
                    continue;
                }
                out.push(CoreCase {
                    name: format!(
                        "{}/{}/{}",
                        v.file_name().to_string_lossy(),
                        var.file_name().to_string_lossy(),
                        k.file_name().to_string_lossy()
                    ),
                    core,
                    exe,
                    truth: load_truth(&d.join("truth.json")),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn require_generated() -> bool {
    std::env::var("CGOCORE_REQUIRE_GENERATED").is_ok_and(|v| v == "1")
}

pub fn analyze(case: &CoreCase) -> cgocore::Analysis {
    let opts = cgocore::OpenOptions {
        exe: Some(case.exe.clone()),
        sysroot: None,
    };
    let p = cgocore::Process::from_core(&case.core, &opts)
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
    cgocore::analyze(p, None).unwrap_or_else(|e| panic!("{}: {e:#}", case.name))
}
