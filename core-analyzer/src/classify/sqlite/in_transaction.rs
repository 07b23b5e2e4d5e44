//! Without SQLite's DWARF: which threads inside SQLite use a connection
//! that is inside a transaction (`BEGIN` without its `COMMIT`), the ones that
//! may hold a database lock. A word on a thread's stack is that thread's
//! connection only when the connection's own mutex names the thread (a live
//! reference: SQLite's serialized mode holds it through every API call); its
//! autocommit flag then says whether a transaction is open. Offsets come
//! from SQLite's accessors (`accessors.rs`).
use super::accessors::Offsets;
use crate::classify::owner::mutex_owner;
use crate::memory::{Memory, ReadExt};
use crate::process::Libc;

/// Stack bytes searched per stack, and in all (a thousand threads inside
/// SQLite stay bounded).
const STACK_BYTES: u64 = 256 << 10;
const TOTAL_BYTES: u64 = 64 << 20;

/// Of `candidates`, each thread whose connection is in a transaction, and
/// that connection.
pub fn in_transaction(
    mem: &dyn Memory,
    off: Offsets,
    libc: Option<Libc>,
    candidates: &[u32],
    stacks: &dyn Fn(u32) -> Vec<u64>,
) -> Vec<(u32, u64)> {
    let mut budget = TOTAL_BYTES;
    candidates
        .iter()
        .filter_map(|&tid| {
            stacks(tid)
                .into_iter()
                .find_map(|sp| connection_in_transaction(mem, off, libc, tid, sp, &mut budget))
                .map(|c| (tid, c))
        })
        .collect()
}

/// A connection on the stack from `sp` up whose mutex `tid` holds and whose
/// autocommit flag is 0. SQLite's unix mutex starts with its
/// `pthread_mutex_t`.
fn connection_in_transaction(
    mem: &dyn Memory,
    off: Offsets,
    libc: Option<Libc>,
    tid: u32,
    sp: u64,
    budget: &mut u64,
) -> Option<u64> {
    for i in 0..STACK_BYTES / 8 {
        *budget = budget.checked_sub(8)?;
        let p = mem.u64(sp.checked_add(8 * i)?).ok()?;
        if p % 8 != 0 || p < 0x1000 {
            continue;
        }
        let Some(mutex) = p
            .checked_add(off.mutex)
            .and_then(|a| mem.u64(a).ok())
            .filter(|&m| m % 8 == 0 && m >= 0x1000)
        else {
            continue;
        };
        if mutex_owner(mem, libc, mutex) != Some(tid) {
            continue;
        }
        match p.checked_add(off.auto_commit).and_then(|a| mem.u8(a).ok()) {
            Some(0) => return Some(p),
            // Its connection, in autocommit mode: no transaction open.
            Some(1) => return None,
            _ => continue,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::mock::MockMemory;

    #[test]
    fn a_connection_counts_only_when_its_mutex_names_the_thread() {
        let off = Offsets {
            mutex: 0x18,
            auto_commit: 0x65,
        };
        let (sp, conn, mutex, other) = (0x10_000u64, 0x20_000u64, 0x30_000u64, 0x40_000u64);
        let mut m = MockMemory::default();
        m.put(sp, &[0u8; 64]);
        // A stale pointer first (another thread's connection), then its own.
        m.put_u64(sp + 8, other);
        m.put_u64(sp + 16, conn);
        for (c, mx, owner, ac) in [(conn, mutex, 77u32, 0u8), (other, mutex + 0x100, 88, 0)] {
            m.put_u64(c + off.mutex, mx);
            m.put(c + off.auto_commit, &[ac]);
            m.put(mx, &[0u8; 16]);
            m.put_u32(mx + 8, owner);
        }
        let stacks = |_| vec![sp];
        let found = in_transaction(&m, off, Some(Libc::Glibc), &[77], &stacks);
        assert_eq!(found, vec![(77, conn)]);
        // Autocommit: its connection, no transaction.
        m.put(conn + off.auto_commit, &[1]);
        assert!(in_transaction(&m, off, Some(Libc::Glibc), &[77], &stacks).is_empty());
        // No libc known: no owner read, nothing claimed.
        m.put(conn + off.auto_commit, &[0]);
        assert!(in_transaction(&m, off, None, &[77], &stacks).is_empty());
    }
}
