//! The Go runtime's own view of the process: version, layout, roots, and the
//! decoded Ms, Gs and Ps. Everything is read through `Memory`, so the same
//! code serves cores and live debuggers.
mod fields;
pub mod g;
pub mod join;
pub mod m;
pub mod p;
pub mod roots;
pub mod sched;
pub mod walk;

use crate::elf::buildinfo::{self, BuildInfo};
use crate::error::Error;
use crate::layout::{self, table::VersionFacts, Layout};
use crate::process::Process;
use crate::symbolize::pclntab::Pclntab;
use anyhow::{Context, Result};
pub use g::G;
pub use m::M;
pub use p::P;
pub use roots::Roots;

/// Upper bounds that turn corrupt counts into errors instead of huge allocations.
pub const MAX_MS: usize = 1 << 20;
pub const MAX_GS: usize = 50_000_000;

pub struct GoRuntime {
    pub buildinfo: BuildInfo,
    pub layout: Layout,
    pub facts: VersionFacts,
    pub pcln: Pclntab,
    pub roots: Roots,
    pub wait_reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// A release newer than the tables: facts carried over from the newest
    /// known one (the answer is then marked incomplete).
    pub carried_over: bool,
}

impl GoRuntime {
    pub fn load(proc_: &Process) -> Result<GoRuntime> {
        let exe = &proc_.exe;
        let (bi_addr, bi_bytes) = exe.section(".go.buildinfo").ok_or_else(|| {
            Error::NotGo(format!(
                "{} is not a Go program (it has no .go.buildinfo section), nor is any library it mapped \
                 (a Go -buildmode=c-shared library); cgocore explains Go processes",
                exe.path().display()
            ))
        })?;
        let mut blob = bi_bytes.to_vec();
        // Prefer the copy in memory (relocated pointers for the pre-1.18
        // format); the file's when memory's is corrupt.
        let _ = proc_.mem.read(proc_.rt(bi_addr), &mut blob);
        let mut buildinfo = buildinfo::parse(&blob, Some(&*proc_.mem))
            .or_else(|| buildinfo::parse(bi_bytes, None))
            .ok_or_else(|| Error::CorruptRuntime(".go.buildinfo is corrupt".into()))?;
        // A version string is printed and put in one-line errors: no
        // control characters from a corrupt file reach a terminal.
        if buildinfo.go_version.chars().any(char::is_control) {
            buildinfo.go_version = buildinfo.go_version.escape_debug().to_string();
        }
        let version = buildinfo.go_version.clone();
        let mut warnings = vec![];
        let dwarf = layout::dwarf::layout_from_dwarf(exe, &version);
        let dwarf_ok = matches!(&dwarf, Ok(Some(l))
            if l.structs.contains_key("runtime.m") && l.structs.contains_key("runtime.g"));
        let known = layout::table::facts(&version);
        let carried_over = known.is_none();
        let facts = match known {
            Some(f) => f,
            None => newer_release(&version, dwarf_ok, &mut warnings)?,
        };
        let mut layout = match dwarf {
            Ok(Some(l)) if dwarf_ok => l,
            Ok(_) => layout::table::for_version(&facts.go).context("no layout table")?,
            Err(e) => {
                warnings.push(format!(
                    "DWARF unreadable ({e:#}); using the built-in {version} layout"
                ));
                layout::table::for_version(&facts.go).context("no layout table")?
            }
        };
        if layout.source == "DWARF" {
            if let Some(table) = layout::table::for_version(&facts.go) {
                layout.fill_from(&table);
            }
        }
        let mut pcln = load_pclntab(proc_)?;
        let roots = Roots::find(proc_, &layout, &mut pcln, &mut warnings)?;
        let wait_reasons = roots::wait_reason_strings(proc_, &roots, &facts).unwrap_or_else(|e| {
            warnings.push(format!(
                "wait reason strings not found ({e:#}); wait reasons show as numbers"
            ));
            vec![]
        });
        Ok(GoRuntime {
            buildinfo,
            layout,
            facts,
            pcln,
            roots,
            wait_reasons,
            warnings,
            carried_over,
        })
    }

    pub fn go_version(&self) -> &str {
        &self.buildinfo.go_version
    }

    /// Function name at `pc`, or None outside Go text.
    pub fn func_name(&self, pc: u64) -> Option<&str> {
        self.pcln.find(pc).map(|f| self.pcln.name(&f))
    }

    /// Status name as Go prints it (wait reason for waiting goroutines).
    pub fn status_name(&self, status: u32) -> String {
        let st = status & !g::GSCAN;
        self.facts
            .g_status
            .get(st as usize)
            .filter(|s| !s.is_empty())
            .cloned()
            .unwrap_or_else(|| format!("status {st}"))
    }

    pub fn wait_reason(&self, r: u8) -> Option<String> {
        if r == 0 {
            return None;
        }
        Some(
            self.wait_reasons
                .get(r as usize)
                .cloned()
                .unwrap_or_else(|| format!("wait reason {r}")),
        )
    }
}

/// A release the built-in tables do not know. One newer than the newest they
/// know is read with its own DWARF for every offset, and the newest
/// release's other facts carried over, said in a warning; without DWARF (or
/// older than the oldest), it is refused, naming what is missing.
fn newer_release(
    version: &str,
    has_dwarf: bool,
    warnings: &mut Vec<String>,
) -> Result<layout::table::VersionFacts> {
    let known = layout::table::supported().collect::<Vec<_>>().join(", ");
    let newest = layout::table::newest();
    let newer = crate::elf::buildinfo::major_minor(version)
        .zip(crate::elf::buildinfo::major_minor(&newest.go))
        .is_some_and(|(v, n)| v > n);
    if !newer {
        return Err(Error::UnsupportedGoVersion(format!(
            "{version} is not supported (supported: {known}); see docs/adding-a-go-version.md"
        ))
        .into());
    }
    if !has_dwarf {
        return Err(Error::UnsupportedGoVersion(format!(
            "{version} is newer than the releases this cgocore knows ({known}) and the binary has no DWARF \
             to read the runtime's layout from: pass the unstripped binary (built without -ldflags=-s -w) \
             with --exe, or use a cgocore that knows {version}; see docs/adding-a-go-version.md"
        ))
        .into());
    }
    warnings.push(format!(
        "{version} is newer than the releases this cgocore knows ({known}): struct offsets come from the binary's \
         DWARF; carried over from {}: goroutine status names, the funcID of runtime.asmcgocall, the offsets \
         asmcgocall and cgocallback keep on the stack, and the wait reason that names the string table. \
         Check the answer against GOTRACEBACK output; see docs/adding-a-go-version.md",
        newest.go
    ));
    Ok(newest)
}

/// The pclntab: from its section, else found by magic in the executable.
fn load_pclntab(p: &Process) -> Result<Pclntab> {
    Pclntab::load(&p.exe, p.bias)
}
