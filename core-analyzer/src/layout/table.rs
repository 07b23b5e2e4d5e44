//! Built-in layouts, generated from real DWARF of each supported toolchain
//! (`cgocore dev layout BINARY`, see docs/adding-a-go-version.md), plus the
//! per-version facts that are not offsets (status names).
use super::Layout;
use serde::Deserialize;

/// (major.minor, generated JSON).
const TABLES: &[(&str, &str)] = &[
    ("go1.21", include_str!("../../layouts/go1.21.json")),
    ("go1.22", include_str!("../../layouts/go1.22.json")),
    ("go1.23", include_str!("../../layouts/go1.23.json")),
    ("go1.24", include_str!("../../layouts/go1.24.json")),
    ("go1.25", include_str!("../../layouts/go1.25.json")),
    ("go1.26", include_str!("../../layouts/go1.26.json")),
    ("go1.27", include_str!("../../layouts/go1.27.json")),
];

pub fn supported() -> impl Iterator<Item = &'static str> {
    TABLES.iter().map(|(k, _)| *k)
}

/// Table for "go1.27.3" (by major.minor).
pub fn for_version(go_version: &str) -> Option<Layout> {
    let (maj, min) = crate::elf::buildinfo::major_minor(go_version)?;
    let key = format!("go{maj}.{min}");
    let (_, json) = TABLES.iter().find(|(k, _)| *k == key)?;
    serde_json::from_str(json).ok()
}

/// Facts about a release that are not struct offsets.
#[derive(Debug, Clone, Deserialize)]
pub struct VersionFacts {
    pub go: String,
    /// `gStatusStrings`, indexed by status (empty for unused values).
    pub g_status: Vec<String>,
    /// Status values that mean "not a goroutine of the program".
    pub dead_status: Vec<u32>,
    /// Length of `runtime.waitReasonStrings`.
    pub wait_reason_count: usize,
    /// Index of "GC assist marking" in it: how a stripped binary's table is found.
    pub wait_reason_gc_assist_marking: usize,
    /// `abi.FuncID_asmcgocall`: the pclntab's mark on `runtime.asmcgocall`.
    pub funcid_asmcgocall: u8,
    /// Slots cgo's assembly keeps on g0, per architecture (`amd64`, `arm64`).
    pub cgo_frames: std::collections::BTreeMap<String, CgoFrames>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CgoFrames {
    /// `asmcgocall` saves the goroutine's g here, counted from the CFA of the C
    /// function it calls (the SP right after that call returns).
    pub asmcgocall_old_g: u64,
    /// Where `asmcgocall` keeps the stack depth (switching path) or, when it
    /// was called on g0 (old g 0), the caller's SP; from the same CFA.
    pub asmcgocall_saved_sp: u64,
    /// `cgocallback` saves the previous `g0.sched.sp` here, from its own SP.
    pub cgocallback_saved_sp: u64,
}

const FACTS: &str = include_str!("../../layouts/versions.json");

impl VersionFacts {
    /// The status value Go names `name` (`"leaked"`), if this release has it.
    pub fn status(&self, name: &str) -> Option<u32> {
        let i = self.g_status.iter().position(|s| s == name)?;
        u32::try_from(i).ok()
    }
}

/// The facts of the newest release the tables know.
pub fn newest() -> VersionFacts {
    let all: Vec<VersionFacts> = serde_json::from_str(FACTS).expect("versions.json parses");
    all.into_iter()
        .max_by_key(|f| crate::elf::buildinfo::major_minor(&f.go))
        .expect("versions.json lists releases")
}

pub fn facts(go_version: &str) -> Option<VersionFacts> {
    let (maj, min) = crate::elf::buildinfo::major_minor(go_version)?;
    let all: Vec<VersionFacts> = serde_json::from_str(FACTS).ok()?;
    let key = format!("go{maj}.{min}");
    all.into_iter().find(|f| f.go == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_parses_and_has_core_fields() {
        for v in supported() {
            let l = for_version(&format!("{v}.0")).unwrap_or_else(|| panic!("{v} table"));
            for f in [
                "procid",
                "curg",
                "id",
                "alllink",
                "lockedg",
                "lockedExt",
                "lockedInt",
                "incgo",
                "ncgo",
            ] {
                assert!(l.field("runtime.m", f).is_some(), "{v} m.{f}");
            }
            assert!(l.field("runtime.g", "sched.pc").is_some(), "{v}");
            assert!(facts(&format!("{v}.1")).is_some(), "{v} facts");
        }
    }
}
