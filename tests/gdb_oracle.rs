//! gdb 13 as the oracle for the M fields: it reads `runtime.allm` through the
//! binary's DWARF, and cgocore must report the same lockedExt, lockedInt and
//! lockedg for every M.
mod common;

use common::*;
use std::collections::HashMap;
use std::process::Command;

const WALK: &str = r#"
import gdb
gp = gdb.lookup_type('runtime.g').pointer()
m = gdb.parse_and_eval("'runtime.allm'")
while int(m) != 0:
    lg = int(m['lockedg'])
    goid = int(gdb.Value(lg).cast(gp)['goid']) if lg else -1
    print("ORACLE-M %d %d %d %d %d" % (int(m['id']), int(m['procid']), int(m['lockedExt']), int(m['lockedInt']), goid))
    m = m['alllink']
"#;

/// gdb is installed; without it the oracle tests skip, except in the full run.
fn have_gdb() -> bool {
    let ok = Command::new("gdb").arg("--version").output().is_ok();
    if !ok {
        assert!(
            !require_generated(),
            "gdb is required for the full test run"
        );
        eprintln!("gdb not installed; skipped");
    }
    ok
}

#[test]
fn gdb_reads_the_same_m_fields() {
    if !have_gdb() {
        return;
    }
    let tmp = Scratch::new("gdb-oracle");
    let script = tmp.join("walk.py");
    std::fs::write(&script, WALK).unwrap();
    let mut checked = 0;
    for c in &fixtures() {
        let a = analyze(c);
        let (core, exe) = (uncompressed(&c.core), uncompressed(&c.exe));
        let out = Command::new("gdb")
            .args(["-nx", "-batch", "-ex", "set auto-load no"])
            .arg(&exe)
            .arg(&core)
            .arg("-ex")
            .arg(format!("source {}", script.display()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let rows: Vec<Vec<i64>> = text
            .lines()
            .filter_map(|l| l.strip_prefix("ORACLE-M "))
            .map(|l| l.split(' ').map(|v| v.parse().unwrap()).collect())
            .collect();
        assert!(
            !rows.is_empty(),
            "{}: gdb printed no Ms:\n{text}\n{}",
            c.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(rows.len(), a.report.ms.len(), "{}: M count", c.name);
        for (row, m) in rows.iter().zip(&a.report.ms) {
            let ours = vec![
                m.id,
                m.procid as i64,
                m.locked_ext as i64,
                m.locked_int as i64,
                m.lockedg.map_or(-1, |g| g as i64),
            ];
            assert_eq!(
                &ours, row,
                "{}: M{} differs from gdb (id procid lockedExt lockedInt lockedg)",
                c.name, m.id
            );
        }
        checked += 1;
    }
    assert!(checked > 0);
}

/// One frame of gdb's `bt`: function name and the pc it printed, if any.
#[derive(Debug, Clone, PartialEq)]
struct GdbFrame {
    name: String,
    pc: Option<u64>,
}

/// `thread apply all bt`, per LWP. `<signal handler called>` is a frame named so.
fn gdb_backtraces(exe: &std::path::Path, core: &std::path::Path) -> HashMap<u32, Vec<GdbFrame>> {
    let out = Command::new("gdb")
        .args([
            "-nx",
            "-batch",
            "-ex",
            "set auto-load no",
            "-ex",
            "set width 0",
        ])
        .arg(exe)
        .arg(core)
        .args(["-ex", "thread apply all bt"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut all: HashMap<u32, Vec<GdbFrame>> = HashMap::new();
    let mut cur: Option<u32> = None;
    for line in text.lines() {
        if line.starts_with("Thread ") {
            cur = line
                .split("(LWP ")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .and_then(|s| s.parse().ok());
            continue;
        }
        let (Some(tid), Some(rest)) = (cur, line.strip_prefix('#')) else {
            continue;
        };
        // "#5  0x00007f.. in name (args) at file:line" or "#0  name (args) ..."
        let rest = rest.split_once(' ').map_or("", |x| x.1).trim_start();
        let (pc, rest) = match rest.split_once(" in ") {
            Some((a, b)) if a.starts_with("0x") => (u64::from_str_radix(&a[2..], 16).ok(), b),
            _ => (None, rest),
        };
        let name = if rest.starts_with("<signal handler called>") {
            "<signal handler called>".to_string()
        } else {
            rest.split(" (").next().unwrap_or("").to_string()
        };
        all.entry(tid).or_default().push(GdbFrame { name, pc });
    }
    all
}

/// The part of gdb's backtrace it gets right: what the thread was doing (after
/// the last signal frame) up to `asmcgocall`, where gdb loses the goroutine,
/// or to the first frame it cannot name; Go scheduler switches (`mcall`) and
/// thread starts (`mstart`) end it too, since gdb then walks into stale memory.
fn trusted(frames: &[GdbFrame]) -> &[GdbFrame] {
    let start = frames
        .iter()
        .rposition(|f| f.name == "<signal handler called>")
        .map_or(0, |i| i + 1);
    let tail = &frames[start..];
    let mut end = tail.len();
    for (i, f) in tail.iter().enumerate() {
        if f.name == "??" {
            end = i;
            break;
        }
        if ["runtime.asmcgocall", "runtime.mcall", "runtime.mstart"].contains(&f.name.as_str()) {
            end = i + 1;
            break;
        }
    }
    &tail[..end]
}

/// gdb 13 with the same binary, core and (detached) libc debug info is the
/// oracle for C frames: for every thread, the frames gdb trusts must be the
/// start of cgocore's stack (below any signal handler), same names, same pcs.
#[test]
fn gdb_backtraces_agree_on_c_frames() {
    if !have_gdb() {
        return;
    }
    let mut cases = fixtures();
    cases.extend(
        generated()
            .into_iter()
            .filter(|c| c.truth.variant != "stripped"),
    );
    let (mut threads, mut stitched, mut errs) = (0, 0, vec![]);
    for c in &cases {
        let a = analyze(c);
        if a.report.warnings.iter().any(|w| w.contains("library")) {
            eprintln!("{}: libraries differ from this host's; skipped", c.name);
            continue;
        }
        let gdb = gdb_backtraces(&uncompressed(&c.exe), &uncompressed(&c.core));
        assert!(!gdb.is_empty(), "{}: gdb printed no backtraces", c.name);
        for t in &a.report.threads {
            let Some(theirs) = gdb.get(&t.tid) else {
                errs.push(format!("{}: gdb lacks thread {}", c.name, t.tid));
                continue;
            };
            // gdb adds "tail call frames" from DWARF call-site info: callers
            // that jumped (not called) to the next frame, with no frame on the
            // stack. Their pc follows a `jmp`, a real return address a `call`.
            let after_jmp = |pc: u64| {
                use cgocore::testing::ReadExt;
                a.process
                    .mem
                    .u8(pc.wrapping_sub(5))
                    .is_ok_and(|b| b == 0xe9)
                    || a.process
                        .mem
                        .u8(pc.wrapping_sub(2))
                        .is_ok_and(|b| b == 0xeb)
            };
            let want: Vec<GdbFrame> = trusted(theirs)
                .iter()
                .enumerate()
                .filter(|(i, f)| *i == 0 || f.pc.is_none_or(|pc| !after_jmp(pc)))
                .map(|(_, f)| f.clone())
                .collect();
            let want = &want[..];
            // gdb's trusted part follows its last signal frame; so does ours.
            let ours = &t.frames[t.signals.last().map_or(0, |x| x.frame)..];
            threads += 1;
            let same = want.len() <= ours.len()
                && want.iter().zip(ours).all(|(g, o)| {
                    o.function.as_deref() == Some(g.name.as_str())
                        && g.pc.is_none_or(|pc| pc == o.pc)
                });
            if !same {
                errs.push(format!(
                    "{}: thread {}:\n  gdb  {:?}\n  ours {:?}",
                    c.name,
                    t.tid,
                    want.iter().map(|f| (&f.name, f.pc)).collect::<Vec<_>>(),
                    ours.iter()
                        .take(want.len() + 1)
                        .map(|f| (f.function.clone().unwrap_or_default(), f.pc))
                        .collect::<Vec<_>>()
                ));
            }
            if want.last().is_some_and(|f| f.name == "runtime.asmcgocall") && want.len() > 1 {
                stitched += 1;
                // Past asmcgocall gdb shows garbage; cgocore continues into Go.
                if ours
                    .get(want.len())
                    .is_none_or(|f| f.lang != cgocore::report::frame::Lang::Go)
                {
                    errs.push(format!(
                        "{}: thread {} not stitched past asmcgocall",
                        c.name, t.tid
                    ));
                }
            }
        }
    }
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    assert!(
        threads > 0 && stitched > 0,
        "{threads} threads, {stitched} stitched"
    );
    eprintln!(
        "{threads} thread stacks agree with gdb; {stitched} C stacks continued past asmcgocall"
    );
}
