//! A transaction left open: the database lock is held by a connection no
//! thread is using (its mutex is free), so no thread's stack leads to it.
//! The goroutine holding the transaction does: a `*sql.Tx` or a pinned
//! `*sql.Conn` on its stack leads through `driverConn.ci`
//! to go-sqlite3's `SQLiteConn.db`, the connection, whose own state says
//! which lock it holds. The words are found by scanning the parked
//! goroutines' stacks (this runs while a live process is stopped, before
//! goroutines are unwound with their stack maps), so such a holder is only
//! likely, and the text says how it was found.
use super::{connection, Connection, Layout};
use crate::elf::exe::Binary;
use crate::layout::dwarf::structs_from_dwarf;
use crate::memory::{Memory, ReadExt};
use std::collections::{HashMap, HashSet};

/// A goroutine parked in Go: its id, the function it started in and the
/// used part of its stack.
pub struct Parked {
    pub goid: u64,
    pub start: Option<String>,
    pub sp: u64,
    pub hi: u64,
}

/// database/sql's own goroutines (a transaction's `awaitDone`, a pool's
/// opener and cleaner) hold its objects for the package, not the program.
fn bookkeeping(g: &Parked) -> bool {
    g.start
        .as_deref()
        .is_some_and(|f| f.starts_with("database/sql."))
}

/// What the search needs of the Go side: the executable (database/sql's and
/// the binding's types, from its DWARF) and the goroutines parked in Go.
pub struct GoSide<'a> {
    pub exe: &'a Binary,
    pub parked: &'a dyn Fn() -> Vec<Parked>,
}

/// Go's type names for the chain from a transaction to SQLite's connection.
const WANTED: &[(&str, &[&str])] = &[
    ("database/sql.Tx", &["dc", "txi"]),
    ("database/sql.Conn", &["dc", "db"]),
    ("database/sql.driverConn", &["ci", "db"]),
    ("github.com/mattn/go-sqlite3.SQLiteConn", &["db"]),
    ("github.com/mattn/go-sqlite3.SQLiteTx", &["c"]),
];
/// Stack bytes searched per goroutine, and in all: 100k parked goroutines
/// are not all read for one waiter.
const STACK_BYTES: u64 = 64 << 10;
const TOTAL_BYTES: u64 = 64 << 20;

/// Field offsets along the chain (`Tx.dc` is the transaction's
/// `*driverConn`, `driverConn.ci` a `driver.Conn` interface whose data word
/// follows its type word, `SQLiteConn.db` the `*sqlite3`).
struct Chain {
    tx_dc: u64,
    tx_txi: u64,
    conn_dc: u64,
    conn_db: u64,
    dc_ci: u64,
    dc_db: u64,
    sc_db: u64,
    stx_c: u64,
}

impl Chain {
    fn from_dwarf(exe: &Binary) -> Option<Chain> {
        // Go's linker puts every type in the runtime's compile unit.
        let s = structs_from_dwarf(exe, WANTED, &|cu| cu == b"runtime").ok()??;
        let f = |t: &str, m: &str| s.get(t)?.fields.get(m).copied();
        Some(Chain {
            tx_dc: f("database/sql.Tx", "dc")?,
            tx_txi: f("database/sql.Tx", "txi")?,
            conn_dc: f("database/sql.Conn", "dc")?,
            conn_db: f("database/sql.Conn", "db")?,
            dc_ci: f("database/sql.driverConn", "ci")?,
            dc_db: f("database/sql.driverConn", "db")?,
            sc_db: f("github.com/mattn/go-sqlite3.SQLiteConn", "db")?,
            stx_c: f("github.com/mattn/go-sqlite3.SQLiteTx", "c")?,
        })
    }

    /// The `*sqlite3` behind `p` if `p` is a `*sql.Tx` over go-sqlite3 (its
    /// connection and its driver transaction agree on the `SQLiteConn`) or
    /// a `*sql.Conn` (it and its connection agree on the `*DB`): each word
    /// checked against another, so a stray pointer does not pass.
    fn sqlite3_of(&self, mem: &dyn Memory, p: u64) -> Option<u64> {
        let word = |a: u64, off: u64| {
            a.checked_add(off)
                .and_then(|a| mem.u64(a).ok())
                .filter(|&v| v % 8 == 0 && v >= 0x1000)
        };
        let conn = |dc: u64| word(dc, self.dc_ci.checked_add(8)?);
        let tx = || {
            let sc = conn(word(p, self.tx_dc)?)?;
            let stx = word(p, self.tx_txi.checked_add(8)?)?;
            (word(stx, self.stx_c)? == sc).then_some(sc)
        };
        let pinned = || {
            let dc = word(p, self.conn_dc)?;
            (word(dc, self.dc_db)? == word(p, self.conn_db)?).then(|| conn(dc))?
        };
        word(tx().or_else(pinned)?, self.sc_db)
    }
}

/// The connections no thread is using that the parked goroutines' stacks
/// lead to, by goroutine; and whether every stack was searched.
pub fn held_by_goroutines(
    mem: &dyn Memory,
    l: &Layout,
    go: &GoSide,
) -> (Vec<(u64, Connection)>, bool) {
    let Some(chain) = Chain::from_dwarf(go.exe) else {
        return (vec![], true);
    };
    let mut read: HashMap<u64, Option<Connection>> = HashMap::new();
    let (mut out, mut budget) = (vec![], TOTAL_BYTES);
    for g in (go.parked)().into_iter().filter(|g| !bookkeeping(g)) {
        let len = g.hi.saturating_sub(g.sp).min(STACK_BYTES);
        let Some(left) = budget.checked_sub(len) else {
            return (out, false);
        };
        budget = left;
        let mut seen = HashSet::new();
        for slot in (g.sp..g.sp.saturating_add(len)).step_by(8) {
            let Ok(p) = mem.u64(slot) else {
                break;
            };
            if p % 8 != 0 || p < 0x1000 || !seen.insert(p) {
                continue;
            }
            if let Some(c) = chain.sqlite3_of(mem, p) {
                let conn = read.entry(c).or_insert_with(|| connection(mem, l, c));
                // Only a connection whose mutex says no thread is inside an API
                // call with it (one a thread uses is that thread's; one whose mutex
                // cannot be read is not said to be free).
                if let Some(conn) = conn.as_ref().filter(|c| c.user == Some(0)) {
                    if !out
                        .iter()
                        .any(|(id, k): &(u64, Connection)| *id == g.goid && k.addr == conn.addr)
                    {
                        out.push((g.goid, conn.clone()));
                    }
                }
            }
        }
    }
    (out, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    fn chain() -> Chain {
        Chain {
            tx_dc: 16,
            tx_txi: 32,
            conn_dc: 8,
            conn_db: 0,
            dc_ci: 40,
            dc_db: 0,
            sc_db: 0,
            stx_c: 0,
        }
    }

    #[test]
    fn a_transaction_leads_to_its_connection_only_when_its_words_agree() {
        let (tx, dc, sc, stx, db, sqlite3) = (0x1000u64, 0x2000, 0x3000, 0x4000, 0x5000, 0x9000);
        let mut m = MockMemory::default();
        m.put_u64(tx + 16, dc);
        m.put_u64(tx + 40, stx); // txi's data word
        m.put_u64(dc + 48, sc); // ci's data word
        m.put_u64(dc, db);
        m.put_u64(sc, sqlite3);
        m.put_u64(stx, sc);
        let c = chain();
        assert_eq!(c.sqlite3_of(&m, tx), Some(sqlite3));
        // The driver transaction names another SQLiteConn: not a Tx.
        m.put_u64(stx, 0x7000);
        assert_eq!(c.sqlite3_of(&m, tx), None);
        // A pinned *sql.Conn: its DB and its connection's agree.
        let conn = 0x6000;
        m.put_u64(conn, db);
        m.put_u64(conn + 8, dc);
        assert_eq!(c.sqlite3_of(&m, conn), Some(sqlite3));
        m.put_u64(conn, 0x8000);
        assert_eq!(c.sqlite3_of(&m, conn), None);
    }

    #[test]
    fn database_sqls_own_goroutines_are_not_holders() {
        let g = |start: &str| Parked {
            goid: 1,
            start: Some(start.into()),
            sp: 0,
            hi: 0,
        };
        assert!(bookkeeping(&g("database/sql.(*Tx).awaitDone")));
        assert!(!bookkeeping(&g("main.handle")));
    }
}
