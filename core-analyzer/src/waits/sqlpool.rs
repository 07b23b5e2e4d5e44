//! `database/sql`'s connection pool: a goroutine waiting in `(*DB).conn`
//! for a connection waits on the pool (`maxOpen` reached), not on the
//! one-off channel its select names. The pool is the `*DB` live in that
//! frame (Go's stack map), checked against its own fields; its holders are
//! the goroutines whose live frames point to one of its in-use connections
//! (`driverConn.db` is the pool, `inUse` set). The package's types come from
//! the binary's DWARF: a stripped binary gets the plain select.
use super::heap::Heap;
use crate::elf::exe::Binary;
use crate::layout::dwarf::structs_from_dwarf;
use crate::memory::{Memory, ReadExt};
use crate::report::ObjectState;
use crate::unwind::go::PhysFrame;
use crate::unwind::stackmap::StackMaps;

const WANTED: &[(&str, &[&str])] = &[
    ("database/sql.DB", &["numOpen", "maxOpen", "freeConn"]),
    ("database/sql.driverConn", &["db", "inUse"]),
];

/// Where the pool's fields are.
#[derive(Debug, Clone, Copy)]
pub struct SqlLayout {
    db_size: u64,
    num_open: u64,
    max_open: u64,
    free_conn: u64,
    /// `driverConn.db` and `driverConn.inUse`: what makes a pointer one of
    /// the pool's connections in use.
    pub dc_db: u64,
    pub dc_in_use: u64,
}

impl SqlLayout {
    pub fn from_dwarf(exe: &Binary) -> Option<SqlLayout> {
        // Go's linker puts every type in the runtime's compile unit.
        let s = structs_from_dwarf(exe, WANTED, &|cu| cu == b"runtime").ok()??;
        let db = s.get("database/sql.DB")?;
        let dc = s.get("database/sql.driverConn")?;
        Some(SqlLayout {
            db_size: db.size,
            num_open: *db.fields.get("numOpen")?,
            max_open: *db.fields.get("maxOpen")?,
            free_conn: *db.fields.get("freeConn")?,
            dc_db: *dc.fields.get("db")?,
            dc_in_use: *dc.fields.get("inUse")?,
        })
    }
}

/// The `*DB` whose pool the goroutine waits on: a live pointer in
/// `(*DB).conn`'s frame to the start of a heap object of the DB's size whose
/// pool is full (`numOpen >= maxOpen > 0`: the condition for waiting).
pub fn pool_of(
    maps: &StackMaps,
    mem: &dyn Memory,
    heap: &Heap,
    l: &SqlLayout,
    conn: &PhysFrame,
) -> Option<u64> {
    maps.live_pointers(conn).into_iter().find(|&p| {
        let fits = heap.object(p).is_some_and(|(base, size)| {
            base == p && size >= l.db_size && size < l.db_size.saturating_mul(2)
        });
        let st = state(mem, l, p);
        fits && st.max_open.is_some_and(|m| m > 0) && st.open >= st.max_open
    })
}

/// The pool's size, its limit and idle connections.
pub fn state(mem: &dyn Memory, l: &SqlLayout, db: u64) -> ObjectState {
    let word = |off: u64| mem.u64(db.wrapping_add(off)).ok();
    ObjectState {
        open: word(l.num_open).map(|v| v as i64 as u64),
        max_open: word(l.max_open).map(|v| v as i64 as u64),
        // The free list is a slice: its length is the word after the pointer.
        idle: word(l.free_conn + 8),
        ..Default::default()
    }
}

/// Whether `p` points to one of pool `db`'s connections in use.
pub fn in_use_conn(mem: &dyn Memory, l: &SqlLayout, db: u64, p: u64) -> bool {
    p != db
        && mem.u64(p.wrapping_add(l.dc_db)).ok() == Some(db)
        && mem.u8(p.wrapping_add(l.dc_in_use)).ok() == Some(1)
}
