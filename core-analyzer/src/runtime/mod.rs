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
use anyhow::{anyhow, Context, Result};
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
        let facts = layout::table::facts(&version).ok_or_else(|| {
            Error::UnsupportedGoVersion(format!(
                "{version} is not supported (supported: {}); see docs/adding-a-go-version.md",
                layout::table::supported().collect::<Vec<_>>().join(", ")
            ))
        })?;
        let mut warnings = vec![];
        let layout = match layout::dwarf::layout_from_dwarf(exe, &version) {
            Ok(Some(l))
                if l.structs.contains_key("runtime.m") && l.structs.contains_key("runtime.g") =>
            {
                l
            }
            Ok(_) => layout::table::for_version(&version).context("no layout table")?,
            Err(e) => {
                warnings.push(format!(
                    "DWARF unreadable ({e:#}); using the built-in {version} layout"
                ));
                layout::table::for_version(&version).context("no layout table")?
            }
        };
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
        })
    }

    pub fn go_version(&self) -> &str {
        &self.buildinfo.go_version
    }

    pub fn off(&self, strukt: &str, field: &str) -> Result<u64> {
        self.layout
            .field(strukt, field)
            .ok_or_else(|| anyhow!("layout has no {strukt}.{field} for {}", self.go_version()))
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

/// The pclntab: from its section, else found by magic in the executable.
fn load_pclntab(p: &Process) -> Result<Pclntab> {
    Pclntab::load(&p.exe, p.bias)
}
