//! Who holds a lock, read from the lock itself. The C libraries keep the
//! owner beside the futex word a waiter sleeps on; where, is ABI knowledge
//! kept in this one table. An owner is only reported when it is a thread of
//! the core, so a wrong guess about the lock type names nobody.
use super::Context;
use crate::memory::ReadExt;

#[derive(Clone, Copy)]
enum Owner {
    /// A thread id stored at futex + offset.
    Tid(i64),
    /// A thread pointer (`struct pthread *`, the thread's `fs_base`/`TPIDR_EL0`).
    ThreadPointer(i64),
    /// The thread id in the futex word itself, under a mask (musl).
    TidInWord(u32),
}

/// (classes, where the owner is, which library and lock this is).
const SLOTS: &[(&[&str], Owner, &str)] = &[
    // glibc pthread_mutex_t: { int __lock; unsigned __count; int __owner; ... }
    // (glibc's arena and environment locks are bare futex words: no owner.)
    (
        &["mutex", "loader-lock"],
        Owner::Tid(GLIBC_MUTEX_OWNER),
        "glibc pthread_mutex_t.__owner",
    ),
    // glibc _IO_lock_t: { int lock; int cnt; void *owner; }
    (
        &["stdio-lock"],
        Owner::ThreadPointer(8),
        "glibc _IO_lock_t.owner",
    ),
    // glibc pthread_rwlock_t: __readers, __writers, __wrphase_futex, __writers_futex,
    // __pad3, __pad4, __cur_writer (+24); readers sleep on __readers or __wrphase_futex.
    (
        &["rwlock"],
        Owner::Tid(24),
        "glibc pthread_rwlock_t.__cur_writer",
    ),
    (
        &["rwlock"],
        Owner::Tid(24 - 8),
        "glibc pthread_rwlock_t.__cur_writer",
    ),
    (
        &["rwlock"],
        Owner::Tid(24 - 12),
        "glibc pthread_rwlock_t.__cur_writer",
    ),
    // musl pthread_mutex_t: _m_lock holds the owner's tid (low 30 bits) for
    // recursive, error-checking and robust mutexes; a default one holds
    // EBUSY, no owner.
    (
        &["mutex", "loader-lock"],
        Owner::TidInWord(MUSL_TID_MASK),
        "musl pthread_mutex_t._m_lock",
    ),
    // musl FILE.lock: the owner's tid, the waiters flag in bit 30.
    (
        &["stdio-lock"],
        Owner::TidInWord(0x3fff_ffff),
        "musl FILE.lock",
    ),
];

/// glibc's `pthread_mutex_t.__owner`, the same on every architecture.
const GLIBC_MUTEX_OWNER: i64 = 8;

/// The thread holding the `pthread_mutex_t` at `mutex` (0: free), read as
/// its C library keeps it; `None` when the libc is not known.
pub fn mutex_owner(
    mem: &dyn crate::memory::Memory,
    libc: Option<crate::process::Libc>,
    mutex: u64,
) -> Option<u32> {
    match libc? {
        crate::process::Libc::Glibc => mem.u32(mutex.checked_add_signed(GLIBC_MUTEX_OWNER)?).ok(),
        crate::process::Libc::Musl => musl_mutex_owner(mem, mutex),
    }
}

/// musl's `pthread_mutex_t`: `_m_type` (`__u.__i[0]`) and `_m_lock`
/// (`__u.__vi[1]`), the same on every architecture.
const MUSL_MUTEX_TYPE: u64 = 0;
const MUSL_MUTEX_LOCK: u64 = 4;
const MUSL_TID_MASK: u32 = 0x3fff_ffff;

/// The thread holding the musl `pthread_mutex_t` at `mutex` (0: free), when
/// its type records one (recursive, error-checking, robust: the low two bits
/// of `_m_type`); a normal mutex keeps no owner.
fn musl_mutex_owner(mem: &dyn crate::memory::Memory, mutex: u64) -> Option<u32> {
    let kind = mem.u32(mutex.checked_add(MUSL_MUTEX_TYPE)?).ok()?;
    if kind & 3 == 0 {
        return None;
    }
    Some(mem.u32(mutex.checked_add(MUSL_MUTEX_LOCK)?).ok()? & MUSL_TID_MASK)
}

/// `offsetof(struct pthread, tid)` in glibc: after the TCB header padded to
/// 24 pointers on arm64, after x86_64's larger `tcbhead_t`.
fn pthread_tid_offset(arch: crate::elf::regs::Arch) -> u64 {
    match arch {
        crate::elf::regs::Arch::X86_64 => 0x2d0,
        crate::elf::regs::Arch::Aarch64 => 0xd0,
    }
}

/// The tid of the thread holding the lock whose futex word is at `futex`.
pub fn owner(cx: &Context, class: &str, futex: u64) -> Option<u32> {
    let known = |tid: u32| cx.threads.iter().any(|(t, _)| *t == tid && tid != 0);
    SLOTS
        .iter()
        .filter(|(classes, _, _)| classes.contains(&class))
        .find_map(|(_, slot, _)| match *slot {
            Owner::Tid(off) => {
                let tid = cx.mem.u32(futex.wrapping_add_signed(off)).ok()?;
                known(tid).then_some(tid)
            }
            Owner::ThreadPointer(off) => {
                let tp = cx.mem.u64(futex.wrapping_add_signed(off)).ok()?;
                let by_tp = cx.threads.iter().find(|(_, p)| *p == tp && tp != 0);
                // glibc keeps `struct pthread *` (THREAD_SELF): the thread
                // pointer itself on x86_64, below it on arm64; cores without
                // thread pointers (qemu-user's) have none to compare. Its
                // `tid` field (at a fixed offset, as libthread_db reads it)
                // names the thread on both.
                by_tp.map(|(t, _)| *t).or_else(|| {
                    let tid = cx
                        .mem
                        .u32(tp.checked_add(pthread_tid_offset(cx.arch))?)
                        .ok()?;
                    (tp != 0 && known(tid)).then_some(tid)
                })
            }
            Owner::TidInWord(mask) => {
                let tid = cx.mem.u32(futex).ok()? & mask;
                known(tid).then_some(tid)
            }
        })
}

/// Where in a lock object its waiters sleep, by class: glibc's condvar
/// (since 2.25) puts them on `__g_signals[0..2]`, 40 and 44 bytes into the
/// 48-byte `pthread_cond_t`. A symbol `never_cv+40` names the condvar itself.
const FUTEX_IN_OBJECT: &[(&str, &[u64])] = &[("condvar", &[40, 44])];

/// The lock object's name, given the symbol of the futex word a waiter sleeps on.
pub fn object_symbol(class: &str, sym: String) -> String {
    let Some((base, off)) = sym.rsplit_once('+') else {
        return sym;
    };
    let inside = off.parse::<u64>().is_ok_and(|off| {
        FUTEX_IN_OBJECT
            .iter()
            .any(|(c, offs)| *c == class && offs.contains(&off))
    });
    if inside {
        base.to_string()
    } else {
        sym
    }
}

/// Locks that record no owner but that one code path holds while it waits
/// for another lock: glibc's fork takes malloc's `list_lock`, then
/// `main_arena` and every other arena in turn (`__malloc_fork_lock_parent`),
/// so a thread stopped there holds the first two unless it waits for one of
/// them itself. (lock symbol, function holding it; names as rules see them.)
const HELD_BY_CODE: &[(&str, &str)] = &[
    ("list_lock", "malloc_fork_lock_parent"),
    ("main_arena", "malloc_fork_lock_parent"),
];

/// The function whose frame on a stack means its thread holds the lock named
/// `symbol`, if that lock is known to be held that way.
pub fn held_by_code(symbol: &str) -> Option<&'static str> {
    HELD_BY_CODE
        .iter()
        .find(|(s, _)| *s == symbol)
        .map(|(_, f)| *f)
}

/// `name` (normalized) if it is a function of `HELD_BY_CODE`.
pub fn holding_code(name: &str) -> Option<&'static str> {
    HELD_BY_CODE.iter().map(|(_, f)| *f).find(|f| *f == name)
}
