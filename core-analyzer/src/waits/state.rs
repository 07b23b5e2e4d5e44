//! The state of a sync value or channel, from its words (the sync package's
//! and the runtime's encodings, named below).
use super::Offs;
use crate::memory::{Memory, ReadExt};
use crate::report::ObjectState;

/// `sync.Mutex.state` bits: locked, woken, starving; waiters above them.
const MUTEX_LOCKED: u32 = 1;
const MUTEX_STARVING: u32 = 4;
const MUTEX_WAITER_SHIFT: u32 = 3;
/// `rwmutexMaxReaders`: a writer subtracts it from `readerCount`.
const RWMUTEX_MAX_READERS: i64 = 1 << 30;

pub fn read(o: &Offs, mem: &dyn Memory, kind: &str, addr: u64) -> ObjectState {
    let l = &o.l;
    let r32 = |off: Option<u64>| off.and_then(|f| mem.u32(addr.checked_add(f)?).ok());
    match kind {
        "mutex" => mutex(r32(l.mutex_field("state"))),
        "rwmutex" => {
            let w = l
                .field("sync.RWMutex", "w")
                .zip(l.mutex_field("state"))
                .map(|(a, b)| a.wrapping_add(b));
            let count = r32(l.field("sync.RWMutex", "readerCount")).map(|v| v as i32 as i64);
            let departing = r32(l.field("sync.RWMutex", "readerWait")).map(|v| v as i32 as i64);
            rwmutex(r32(w), count, departing)
        }
        "waitgroup" => {
            let st = l
                .field("sync.WaitGroup", "state")
                .and_then(|f| mem.u64(addr.checked_add(f)?).ok());
            ObjectState {
                counter: st.map(|s| (s >> 32) as i32 as i64),
                // The low 31 bits: since Go 1.25 bit 31 marks a synctest bubble.
                waiters: st.map(|s| s & 0x7fff_ffff),
                ..Default::default()
            }
        }
        "cond" => {
            let list = l.field("sync.Cond", "notify");
            let at = |f| {
                list.zip(l.field("runtime.notifyList", f))
                    .map(|(a, b)| a.wrapping_add(b))
            };
            let (wait, notify) = (r32(at("wait")), r32(at("notify")));
            ObjectState {
                waiters: wait.zip(notify).map(|(w, n)| w.wrapping_sub(n) as u64),
                ..Default::default()
            }
        }
        "chan" | "select" => chan(o, mem, addr),
        _ => ObjectState::default(),
    }
}

fn mutex(state: Option<u32>) -> ObjectState {
    ObjectState {
        locked: state.map(|s| s & MUTEX_LOCKED != 0),
        starving: state.map(|s| s & MUTEX_STARVING != 0),
        waiters: state.map(|s| (s >> MUTEX_WAITER_SHIFT) as u64),
        ..Default::default()
    }
}

/// A writer announces itself by making `readerCount` negative and waits for
/// the `readerWait` readers still inside; readers arriving after it queue.
fn rwmutex(w: Option<u32>, count: Option<i64>, departing: Option<i64>) -> ObjectState {
    let writer = count.map(|c| c < 0);
    let departing_n = departing.unwrap_or(0).max(0);
    // With a writer in: readerCount + max = readers still inside (the
    // writer waits for them) + readers queued behind it.
    let queued_readers = count
        .filter(|&c| c < 0)
        .map(|c| (c + RWMUTEX_MAX_READERS - departing_n).max(0) as u64)
        .unwrap_or(0);
    let pending = writer.zip(departing).map(|(wr, d)| wr && d > 0);
    let w = mutex(w);
    ObjectState {
        locked: writer.zip(departing).map(|(wr, d)| wr && d == 0),
        readers: count.map(|c| if c < 0 { departing_n } else { c }),
        writer_pending: pending,
        waiters: Some(w.waiters.unwrap_or(0) + queued_readers + u64::from(pending == Some(true))),
        ..Default::default()
    }
}

fn chan(o: &Offs, mem: &dyn Memory, addr: u64) -> ObjectState {
    let l = &o.l;
    let word = |f| {
        l.field("runtime.hchan", f)
            .and_then(|f| mem.u64(addr.wrapping_add(f)).ok())
    };
    let queue = |q: &str| {
        let first = l.field("runtime.hchan", &format!("{q}.first"))?;
        let next = l.field("runtime.sudog", "next")?;
        let mut sg = mem.u64(addr.wrapping_add(first)).ok()?;
        let mut n = 0u64;
        while sg != 0 && (n as usize) < o.max_list && o.step() {
            n += 1;
            sg = mem.u64(sg.wrapping_add(next)).ok()?;
        }
        Some(n)
    };
    ObjectState {
        len: word("qcount"),
        cap: word("dataqsiz"),
        closed: l
            .field("runtime.hchan", "closed")
            .and_then(|f| mem.u32(addr.wrapping_add(f)).ok())
            .map(|c| c != 0),
        senders: queue("sendq"),
        receivers: queue("recvq"),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mutex_word_says_locked_starving_and_waiters() {
        // locked | starving, 200 waiters (the sync package's encoding)
        let s = mutex(Some(1 | 4 | (200 << 3)));
        assert_eq!(
            (s.locked, s.starving, s.waiters),
            (Some(true), Some(true), Some(200))
        );
        let s = mutex(Some(0));
        assert_eq!((s.locked, s.waiters), (Some(false), Some(0)));
    }

    #[test]
    fn an_rwmutex_with_readers_inside_and_a_writer_waiting() {
        // Two readers in, a writer announced (-max), five readers after it.
        let count = 2 - RWMUTEX_MAX_READERS + 5;
        let s = rwmutex(Some(1), Some(count), Some(2));
        assert_eq!(s.readers, Some(2));
        assert_eq!(s.writer_pending, Some(true));
        assert_eq!(s.locked, Some(false));
        // the writer and the five readers queued behind it
        assert_eq!(s.waiters, Some(6));
        // The writer got in (no reader left), three readers queued.
        let s = rwmutex(Some(1), Some(3 - RWMUTEX_MAX_READERS), Some(0));
        assert_eq!(
            (s.locked, s.readers, s.waiters),
            (Some(true), Some(0), Some(3))
        );
        // Readers only.
        let s = rwmutex(Some(0), Some(4), Some(0));
        assert_eq!(
            (s.locked, s.readers, s.writer_pending),
            (Some(false), Some(4), Some(false))
        );
    }
}
