//! gdb 13 as the oracle for the M fields: it reads `runtime.allm` through the
//! binary's DWARF, and cgocore must report the same lockedExt, lockedInt and
//! lockedg for every M.
mod common;

use common::*;
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

#[test]
fn gdb_reads_the_same_m_fields() {
    if Command::new("gdb").arg("--version").output().is_err() {
        assert!(
            !require_generated(),
            "gdb is required for the full test run"
        );
        eprintln!("gdb not installed; skipped");
        return;
    }
    let tmp = std::env::temp_dir().join(format!("cgocore-gdb-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let script = tmp.join("walk.py");
    std::fs::write(&script, WALK).unwrap();
    let mut checked = 0;
    for (i, c) in fixtures().iter().enumerate() {
        let a = analyze(c);
        let core = tmp.join(format!("core{i}"));
        let exe = tmp.join(format!("exe{i}"));
        std::fs::write(&core, &cgocore::input::open(&c.core).unwrap().map[..]).unwrap();
        std::fs::write(&exe, &cgocore::input::open(&c.exe).unwrap().map[..]).unwrap();
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
    let _ = std::fs::remove_dir_all(&tmp);
}
