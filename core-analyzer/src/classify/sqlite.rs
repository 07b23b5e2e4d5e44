//! SQLite's database lock, read from SQLite's own structures when its DWARF
//! is at hand (the amalgamation compiled into the program, as go-sqlite3
//! builds it). Each thread inside SQLite keeps its connection (`sqlite3 *`)
//! on its stack; a connection leads to each database file it has open
//! (`aDb[i].pBt->pBt->pPager`), the lock it holds there (`Pager.eLock`) and
//! its transaction (`Btree.inTrans`). A thread in SQLite's busy handler then
//! waits for the other connections on its file whose lock excludes its own:
//! their threads hold the lock, read, not guessed.
//!
//! A connection found on a stack is whose its own mutex says: in SQLite's
//! serialized mode (go-sqlite3's default) every API call holds the
//! connection's recursive mutex, whose glibc `__owner` is the calling
//! thread's id (musl's `_m_lock` holds it for a recursive mutex). A pointer on a stack is only a word in memory (a stack slot
//! an earlier cgo call on the same thread left behind); the mutex is a live
//! reference. A connection its mutex gives to another thread is that
//! thread's; one whose mutex is free is no thread's; one whose mutex cannot
//! be read (no mutex, musl, no types for it) is only likely the stack's.
mod accessors;
mod in_transaction;
mod left_open;

pub use accessors::Offsets;
pub use in_transaction::in_transaction;
pub use left_open::{GoSide, Parked};

use super::owner::mutex_owner;
use super::rules::{LibraryRule, Rules};
use crate::elf::exe::Binary;
use crate::layout::dwarf::structs_from_dwarf;
use crate::layout::StructLayout;
use crate::memory::{Memory, ReadExt};
use crate::process::Libc;
use crate::report::ThreadInfo;
use std::collections::{BTreeMap, HashSet};

/// What is read, by SQLite's own names (`magic` before 3.38, `eOpenState`
/// after).
const WANTED: &[(&str, &[&str])] = &[
    (
        "sqlite3",
        &[
            "aDb",
            "nDb",
            "aDbStatic",
            "eOpenState",
            "magic",
            "busyHandler",
            "mutex",
        ],
    ),
    ("sqlite3_mutex", &["mutex"]),
    ("__pthread_mutex_s", &["__owner"]),
    ("BusyHandler", &["nBusy"]),
    ("Db", &["zDbSName", "pBt"]),
    ("Btree", &["pBt", "inTrans"]),
    ("BtShared", &["pPager"]),
    ("Pager", &["eLock", "zFilename", "pWal"]),
];

/// A live connection's state byte (`SQLITE_STATE_OPEN`, `_BUSY`, `_SICK`)
/// or, before 3.38, magic word (`SQLITE_MAGIC_OPEN`, `_BUSY`, `_SICK`).
const OPEN_STATES: &[u8] = &[0x76, 0x6d, 0xba];
const OPEN_MAGICS: &[u32] = &[0xa029_a697, 0xf03b_7906, 0x4b77_1290];
/// `Pager.eLock` and `Btree.inTrans` values (stable since SQLite 3.0).
const LOCK_NAMES: &[&str] = &["no lock", "SHARED", "RESERVED", "PENDING", "EXCLUSIVE"];
const SHARED_LOCK: u8 = 1;
const RESERVED_LOCK: u8 = 2;
const TRANS_WRITE: u8 = 2;
/// Attached databases read per connection, and stack bytes searched per thread.
const MAX_DBS: u64 = 12;
const STACK_BYTES: u64 = 256 << 10;

/// SQLite's structures, and the C library whose mutex keeps the owner.
struct Layout(BTreeMap<String, StructLayout>, Option<Libc>);

impl Layout {
    fn off(&self, s: &str, f: &str) -> Option<u64> {
        self.0.get(s)?.fields.get(f).copied()
    }
    fn size(&self, s: &str) -> Option<u64> {
        self.0.get(s).map(|l| l.size)
    }
}

/// One database file a connection has open.
#[derive(Debug, Clone)]
struct DbFile {
    path: String,
    lock: u8,
    in_trans: u8,
    /// In WAL mode: a writer holds the WAL's write lock, not RESERVED.
    wal: bool,
}

#[derive(Debug, Clone)]
struct Connection {
    addr: u64,
    /// Whose it is, read from its mutex: `Some(tid)` a thread inside an API
    /// call with it, `Some(0)` none; `None` when the mutex cannot say.
    user: Option<u32>,
    /// In its busy handler now (`busyHandler.nBusy` > 0).
    busy: bool,
    files: Vec<DbFile>,
}

/// SQLite's library rule (`rules.json`): the one whose waiters wait for
/// the database lock.
pub fn rule(rules: &Rules) -> Option<&LibraryRule> {
    rules
        .libraries
        .iter()
        .find(|l| l.library == "sqlite" && l.waits_as.is_some())
}

/// Link SQLite busy waiters (`rule`'s) to the threads whose connections
/// hold their database's lock, read through `sqlite`'s DWARF. Returns the
/// waiters settled this way (found or not: their connection's state was
/// read), which the guess by library (`likely_holders`) then leaves alone.
pub fn link_waiters(
    mem: &dyn Memory,
    rule: &LibraryRule,
    sqlite: &Binary,
    threads: &mut [ThreadInfo],
    stacks: &dyn Fn(u32) -> Vec<u64>,
    go: &GoSide,
    libc: Option<Libc>,
) -> HashSet<u32> {
    let mut settled = HashSet::new();
    let bin = sqlite;
    // SQLite's types are in C compile units; Go's (one per package) are skipped.
    let Ok(Some(structs)) = structs_from_dwarf(bin, WANTED, &|cu: &[u8]| cu.ends_with(b".c"))
    else {
        return settled;
    };
    let l = Layout(structs, libc);
    if l.off("sqlite3", "aDb").is_none() || l.off("Pager", "eLock").is_none() {
        return settled;
    }
    let conns = connections_by_thread(mem, &l, rule, sqlite, threads, stacks);
    // What each holder's own line says: the lock its connection holds.
    let mut held: Vec<(u32, String)> = vec![];
    // Connections no thread uses, found from parked goroutines (read once).
    let mut left_open = None;
    for t in threads.iter_mut().filter(|t| rule.is_waiter(t)) {
        let Some(mine) = conns
            .iter()
            .find(|(tid, _)| *tid == t.tid)
            .and_then(|(_, cs)| {
                let own = |c: &&Connection| c.user == Some(t.tid);
                cs.iter()
                    .find(|c| c.busy && own(c))
                    .or_else(|| cs.iter().find(|c| c.busy))
                    .or_else(|| cs.iter().find(own))
                    .or(cs.first())
            })
        else {
            continue;
        };
        settled.insert(t.tid);
        let holders = holders_of(mine, t.tid, &conns);
        // Stated as fact only when every connection involved is read to be
        // its thread's from its mutex.
        let read = mine.user == Some(t.tid) && holders.iter().all(|h| h.3);
        let b = t.blocked.as_mut().expect("a waiter is blocked");
        let file = mine.files.first().map_or("?", |f| f.path.as_str());
        b.lock_symbol = Some(format!("SQLite database lock on {file}"));
        b.owner_likely = !read;
        let who: Vec<String> = holders
            .iter()
            .map(|(tid, addr, f, _)| {
                let what = holding(*addr, f);
                held.push((*tid, what.clone()));
                format!("thread {tid}'s {what}")
            })
            .collect();
        let evidence = if read {
            "read from SQLite's structures; each connection's mutex names the thread using it"
        } else {
            "likely: a connection pointer found on a thread's stack, whose mutex could not say whose it is"
        };
        b.explain = if who.is_empty() {
            let open = left_open.get_or_insert_with(|| left_open::held_by_goroutines(mem, &l, go));
            format!(
                "{}; connection {:#x} waits, and no other thread inside SQLite holds {file} ({evidence}): {}",
                b.explain,
                mine.addr,
                left_open_text(mine, open)
            )
        } else {
            format!(
                "{}; {}held by {} ({evidence})",
                b.explain,
                if read { "" } else { "likely " },
                who.join(", ")
            )
        };
        let tids: HashSet<u32> = holders.iter().map(|h| h.0).collect();
        if tids.len() == 1 {
            b.owner_tid = tids.into_iter().next();
        }
    }
    for (tid, what) in held {
        if let Some(b) = threads
            .iter_mut()
            .find(|t| t.tid == tid)
            .and_then(|t| t.blocked.as_mut())
            .filter(|b| !b.explain.contains(&what))
        {
            b.explain = format!("{}; holds SQLite's lock: its {what}", b.explain);
        }
    }
    settled
}

/// Who holds a lock no thread inside SQLite holds: the goroutines whose
/// stacks lead to a connection holding it (likely), else the possibilities.
fn left_open_text(mine: &Connection, open: &(Vec<(u64, Connection)>, bool)) -> String {
    let (found, complete) = open;
    let by: Vec<String> = found
        .iter()
        .filter_map(|(goid, c)| {
            let f = c.files.iter().find(|f| {
                mine.files
                    .iter()
                    .any(|m| m.path == f.path && excludes(f, m))
            })?;
            Some(format!(
                "goroutine {goid}, parked in Go, through {}",
                holding(c.addr, f)
            ))
        })
        .collect();
    if by.is_empty() {
        let searched = if *complete {
            ""
        } else {
            " (not every parked goroutine's stack was searched)"
        };
        return format!("a connection no thread is using holds it (a transaction left open), or another process{searched}");
    }
    format!(
        "likely held by {} — a transaction left open: no thread is using that connection (its mutex is free), and a *sql.Tx or *sql.Conn on the parked goroutine's stack leads to it (database/sql's driverConn, go-sqlite3's SQLiteConn; found by scanning the stack)",
        by.join(", ")
    )
}

/// The connections each thread uses: those on the stacks of the threads
/// inside SQLite (below a Go callback too), each given to the thread its
/// mutex names (see the module's comment).
fn connections_by_thread(
    mem: &dyn Memory,
    l: &Layout,
    rule: &LibraryRule,
    sqlite: &Binary,
    threads: &[ThreadInfo],
    stacks: &dyn Fn(u32) -> Vec<u64>,
) -> Vec<(u32, Vec<Connection>)> {
    let module = sqlite
        .path()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    // SQLite's frames anywhere on the stack: a thread parked in a Go
    // callback (an application SQL function) is inside sqlite3_step.
    let in_sqlite = |m: &str, _: &str| Some(m) == module.as_deref();
    let inside = |t: &ThreadInfo| rule.has_thread(t, &in_sqlite);
    let tids: HashSet<u32> = threads.iter().map(|t| t.tid).collect();
    let mut by: BTreeMap<u32, Vec<Connection>> = BTreeMap::new();
    for t in threads.iter().filter(|t| inside(t)) {
        for sp in stacks(t.tid) {
            for c in on_stack(mem, l, sp) {
                let Some(whose) = whose(t.tid, c.user, &tids) else {
                    continue;
                };
                let cs = by.entry(whose).or_default();
                if !cs.iter().any(|k| k.addr == c.addr) {
                    cs.push(c);
                }
            }
        }
    }
    by.into_iter().collect()
}

/// Whose a connection found on thread `found_on`'s stack is: the thread its
/// mutex names (`user`), none when its mutex is free or names no thread of
/// the process (a stale slot, an idle connection), the stack's own thread
/// (only likely) when the mutex cannot say.
fn whose(found_on: u32, user: Option<u32>, tids: &HashSet<u32>) -> Option<u32> {
    match user {
        Some(u) if u != 0 && tids.contains(&u) => Some(u),
        Some(_) => None,
        None => Some(found_on),
    }
}

/// The other threads' connections whose lock on `mine`'s files keeps it
/// waiting: (thread, connection, the file and lock, whether its mutex says
/// it is that thread's).
fn holders_of<'c>(
    mine: &Connection,
    me: u32,
    conns: &'c [(u32, Vec<Connection>)],
) -> Vec<(u32, u64, &'c DbFile, bool)> {
    let mut out: Vec<(u32, u64, &DbFile, bool)> = vec![];
    for (tid, cs) in conns.iter().filter(|(tid, _)| *tid != me) {
        for c in cs.iter().filter(|c| c.addr != mine.addr) {
            let blocking = c.files.iter().find(|f| {
                mine.files
                    .iter()
                    .any(|m| m.path == f.path && excludes(f, m))
            });
            if let Some(f) = blocking {
                if !out.iter().any(|(t, a, _, _)| t == tid && *a == c.addr) {
                    out.push((*tid, c.addr, f, c.user == Some(*tid)));
                }
            }
        }
    }
    out
}

/// `connection 0x… on FILE (RESERVED lock, a write transaction)`, or in WAL
/// mode `(the WAL write lock, a write transaction)`.
fn holding(addr: u64, f: &DbFile) -> String {
    let what = match (f.in_trans == TRANS_WRITE, f.wal) {
        (true, true) => "the WAL write lock, a write transaction".to_string(),
        (true, false) => format!("{}, a write transaction", lock_name(f.lock)),
        (false, _) => lock_name(f.lock),
    };
    format!("connection {addr:#x} on {} ({what})", f.path)
}

/// Whether a lock on a file (`held`) keeps `waiter` waiting: a write
/// transaction or RESERVED-and-above blocks another writer; one that holds
/// RESERVED already (waiting to commit) waits for every SHARED reader too.
fn excludes(held: &DbFile, waiter: &DbFile) -> bool {
    held.in_trans == TRANS_WRITE
        || held.lock >= RESERVED_LOCK
        || (waiter.lock >= RESERVED_LOCK && held.lock >= SHARED_LOCK)
}

fn lock_name(lock: u8) -> String {
    LOCK_NAMES
        .get(usize::from(lock))
        .map_or_else(|| format!("lock {lock}"), |n| format!("{n} lock"))
}

/// The connections a thread's stack points to, from `sp` up.
fn on_stack(mem: &dyn Memory, l: &Layout, sp: u64) -> Vec<Connection> {
    let mut seen = HashSet::new();
    let mut out = vec![];
    for i in 0..STACK_BYTES / 8 {
        let Some(slot) = sp.checked_add(8 * i) else {
            break;
        };
        let Ok(p) = mem.u64(slot) else {
            break; // the end of the stack's memory
        };
        if p % 8 != 0 || p < 0x1000 || !seen.insert(p) {
            continue;
        }
        if let Some(c) = connection(mem, l, p) {
            out.push(c);
        }
    }
    out
}

/// The connection at `p`, if `p` is one: a live state, 2..=127 databases,
/// and `aDb` pointing at its own `aDbStatic` (or a "main" first database).
fn connection(mem: &dyn Memory, l: &Layout, p: u64) -> Option<Connection> {
    let at = |s: &str, f: &str| p.checked_add(l.off(s, f)?);
    let adb = mem.u64(at("sqlite3", "aDb")?).ok()?;
    let open = match (at("sqlite3", "eOpenState"), at("sqlite3", "magic")) {
        (Some(a), _) => OPEN_STATES.contains(&mem.u8(a).ok()?),
        (None, Some(a)) => OPEN_MAGICS.contains(&mem.u32(a).ok()?),
        _ => false,
    };
    let ndb = u64::from(mem.u32(at("sqlite3", "nDb")?).ok()?);
    if !open || !(2..=127).contains(&ndb) {
        return None;
    }
    let db_size = l.size("Db").filter(|&s| s > 0)?;
    let name_of = |db: u64| {
        let z = mem.u64(db.checked_add(l.off("Db", "zDbSName")?)?).ok()?;
        mem.c_string(z, 64).ok()
    };
    if Some(adb) != at("sqlite3", "aDbStatic") && name_of(adb).as_deref() != Some("main") {
        return None;
    }
    let busy = at("sqlite3", "busyHandler")
        .and_then(|b| b.checked_add(l.off("BusyHandler", "nBusy")?))
        .and_then(|a| mem.u32(a).ok())
        .is_some_and(|n| n > 0 && n < 1 << 30);
    let files = (0..ndb.min(MAX_DBS))
        .filter_map(|i| db_file(mem, l, adb.checked_add(i.checked_mul(db_size)?)?))
        .collect();
    Some(Connection {
        addr: p,
        user: user(mem, l, p),
        busy,
        files,
    })
}

/// The thread inside an API call with connection `p`: its mutex's owner
/// (glibc's `__owner`, from the DWARF, else as its libc keeps it: musl's
/// `_m_lock`; 0 when free).
/// `None` when it has no mutex, or its layout or libc is not known.
fn user(mem: &dyn Memory, l: &Layout, p: u64) -> Option<u32> {
    let mutex = mem.u64(p.checked_add(l.off("sqlite3", "mutex")?)?).ok()?;
    if mutex == 0 {
        return None;
    }
    let pthread = mutex.checked_add(l.off("sqlite3_mutex", "mutex")?)?;
    match l.off("__pthread_mutex_s", "__owner") {
        Some(owner) => mem.u32(pthread.checked_add(owner)?).ok(),
        None => mutex_owner(mem, l.1, pthread),
    }
}

/// The file one `Db` entry has open, and the connection's lock on it.
fn db_file(mem: &dyn Memory, l: &Layout, db: u64) -> Option<DbFile> {
    let ptr = |base: u64, s: &str, f: &str| {
        mem.u64(base.checked_add(l.off(s, f)?)?)
            .ok()
            .filter(|&v| v != 0)
    };
    let btree = ptr(db, "Db", "pBt")?;
    let shared = ptr(btree, "Btree", "pBt")?;
    let pager = ptr(shared, "BtShared", "pPager")?;
    let in_trans = mem
        .u8(btree.checked_add(l.off("Btree", "inTrans")?)?)
        .ok()?;
    let lock = mem.u8(pager.checked_add(l.off("Pager", "eLock")?)?).ok()?;
    let path = mem.c_string(ptr(pager, "Pager", "zFilename")?, 4096).ok()?;
    let wal = ptr(pager, "Pager", "pWal").is_some();
    // The temporary database has no file.
    (!path.is_empty()).then_some(DbFile {
        path,
        lock,
        in_trans,
        wal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    #[test]
    fn a_connection_is_whose_its_mutex_says() {
        let tids: HashSet<u32> = [10, 11].into();
        assert_eq!(whose(10, Some(10), &tids), Some(10), "its own");
        // A stale pointer on thread 10's stack to thread 11's connection.
        assert_eq!(whose(10, Some(11), &tids), Some(11));
        assert_eq!(whose(10, Some(0), &tids), None, "no thread uses it");
        assert_eq!(
            whose(10, Some(99), &tids),
            None,
            "not a thread of this process"
        );
        assert_eq!(
            whose(10, None, &tids),
            Some(10),
            "no mutex to ask: the stack's (likely)"
        );
        // The owner read through sqlite3.mutex -> sqlite3_mutex.mutex -> __owner.
        let s = |f: &[(&str, u64)]| StructLayout {
            size: 64,
            fields: f.iter().map(|(n, o)| (n.to_string(), *o)).collect(),
            ..Default::default()
        };
        let l = Layout(
            BTreeMap::from([
                ("sqlite3".into(), s(&[("mutex", 24)])),
                ("sqlite3_mutex".into(), s(&[("mutex", 0)])),
                ("__pthread_mutex_s".into(), s(&[("__owner", 8)])),
            ]),
            Some(Libc::Glibc),
        );
        let mut m = MockMemory::default();
        m.put(0x1000 + 24, &0x2000u64.to_le_bytes());
        m.put(0x2008, &4242u32.to_le_bytes());
        assert_eq!(user(&m, &l, 0x1000), Some(4242));
        m.put(0x3000 + 24, &0u64.to_le_bytes());
        assert_eq!(user(&m, &l, 0x3000), None, "no mutex (SQLITE_OPEN_NOMUTEX)");
        // musl keeps no __pthread_mutex_s: the owner is _m_lock's low 30
        // bits, for a recursive mutex (_m_type 1) only.
        let mut musl = Layout(l.0.clone(), Some(Libc::Musl));
        musl.0.remove("__pthread_mutex_s");
        m.put_u64(0x4000 + 24, 0x5000);
        m.put_u32(0x5000, 1);
        m.put_u32(0x5004, 4242 | 0x4000_0000);
        assert_eq!(
            user(&m, &musl, 0x4000),
            Some(4242),
            "owner, waiters bit masked"
        );
        m.put_u32(0x5004, 0);
        assert_eq!(user(&m, &musl, 0x4000), Some(0), "free");
        m.put_u32(0x5000, 0);
        assert_eq!(
            user(&m, &musl, 0x4000),
            None,
            "a normal mutex keeps no owner"
        );
        musl.1 = None;
        assert_eq!(user(&m, &musl, 0x4000), None, "libc unknown: nothing read");
    }

    fn layout() -> Layout {
        let s = |size: u64, f: &[(&str, u64)]| StructLayout {
            size,
            fields: f.iter().map(|(n, o)| (n.to_string(), *o)).collect(),
            ..Default::default()
        };
        let structs = BTreeMap::from([
            (
                "sqlite3".into(),
                s(
                    512,
                    &[
                        ("aDb", 32),
                        ("nDb", 40),
                        ("eOpenState", 100),
                        ("busyHandler", 200),
                        ("aDbStatic", 256),
                    ],
                ),
            ),
            ("BusyHandler".into(), s(24, &[("nBusy", 16)])),
            ("Db".into(), s(32, &[("zDbSName", 0), ("pBt", 8)])),
            ("Btree".into(), s(64, &[("pBt", 8), ("inTrans", 16)])),
            ("BtShared".into(), s(64, &[("pPager", 0)])),
            ("Pager".into(), s(256, &[("eLock", 33), ("zFilename", 192)])),
        ]);
        Layout(structs, None)
    }

    /// A connection at `p` with "main" open on /tmp/x.db: lock and transaction.
    fn put_connection(m: &mut MockMemory, p: u64, lock: u8, in_trans: u8, busy: u32) {
        let (btree, shared, pager, name, file) =
            (p + 0x1000, p + 0x2000, p + 0x3000, p + 0x4000, p + 0x5000);
        m.put_u64(p + 32, p + 256);
        m.put_u32(p + 40, 2);
        m.put(p + 100, &[0x76]);
        m.put_u32(p + 216, busy);
        m.put_u64(p + 256, name);
        m.put_u64(p + 264, btree);
        m.put_u64(p + 288, 0); // temp: no Btree
        m.put(name, b"main\0");
        m.put_u64(btree + 8, shared);
        m.put(btree + 16, &[in_trans]);
        m.put_u64(shared, pager);
        m.put(pager + 33, &[lock]);
        m.put_u64(pager + 192, file);
        m.put(file, b"/tmp/x.db\0");
    }

    #[test]
    fn reads_a_connection_and_who_blocks_it() {
        let mut m = MockMemory::default();
        let l = layout();
        put_connection(&mut m, 0x10000, RESERVED_LOCK, TRANS_WRITE, 0);
        put_connection(&mut m, 0x20000, SHARED_LOCK, 1, 3);
        let writer = connection(&m, &l, 0x10000).unwrap();
        let waiter = connection(&m, &l, 0x20000).unwrap();
        assert!(!writer.busy && waiter.busy);
        assert_eq!(writer.files.len(), 1);
        assert_eq!(writer.files[0].path, "/tmp/x.db");
        let conns = vec![(1, vec![writer]), (2, vec![waiter.clone()])];
        let h = holders_of(&waiter, 2, &conns);
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].0, h[0].1), (1, 0x10000));
        assert_eq!(
            holding(h[0].1, h[0].2),
            "connection 0x10000 on /tmp/x.db (RESERVED lock, a write transaction)"
        );
        // Not a connection: a closed state byte, or aDb elsewhere than "main".
        m.put(0x10000 + 100, &[0xce]);
        assert!(connection(&m, &l, 0x10000).is_none());
    }

    #[test]
    fn readers_block_only_a_committer() {
        let f = |lock, in_trans| DbFile {
            path: "/db".into(),
            lock,
            in_trans,
            wal: false,
        };
        // A reader does not keep a would-be writer out; it keeps a committer out.
        assert!(!excludes(&f(SHARED_LOCK, 1), &f(SHARED_LOCK, 1)));
        assert!(excludes(&f(SHARED_LOCK, 1), &f(RESERVED_LOCK, TRANS_WRITE)));
        assert!(excludes(&f(RESERVED_LOCK, TRANS_WRITE), &f(0, 0)));
        // WAL: both SHARED; the write transaction holds the WAL write lock.
        assert!(excludes(&f(SHARED_LOCK, TRANS_WRITE), &f(SHARED_LOCK, 1)));
    }
}
