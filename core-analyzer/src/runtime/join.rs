//! Which OS thread is which M: a pure join over decoded Ms, goroutine states
//! and thread stack pointers. Every rule here was taught by a real core.
use super::M;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// A thread as the join sees it.
#[derive(Debug, Clone, Copy)]
pub struct ThreadSp {
    pub tid: u32,
    pub sp: u64,
}

/// The result: for each thread its own M (if any), and the Ms borrowed only
/// to run Go's signal handler.
#[derive(Debug, Default)]
pub struct ThreadJoin {
    /// tid -> index into `ms` of the thread's own M (a signal-only M included:
    /// the stitcher walks through it).
    own: HashMap<u32, usize>,
    /// M indexes whose thread has another M of its own: a second extra M
    /// taken by Go's handler for a signal (`needm(signal)`), by tid.
    borrowed: HashMap<u32, Vec<usize>>,
    borrowed_set: HashSet<usize>,
    /// M indexes that are a C thread's only M, taken for a signal.
    signal_only: HashSet<usize>,
    /// M indexes found by a starting thread's stack (no procid yet).
    by_stack: HashSet<usize>,
    /// Free extra Ms: no thread, whatever their procid says.
    free_extra: HashSet<usize>,
}

impl ThreadJoin {
    /// `curg_dead(m)`: the M's `curg` is a dead goroutine. `stack(g)`: the
    /// `[lo, hi)` stack of the g at that address (for g0 and gsignal).
    pub fn new(
        ms: &[M],
        threads: &[ThreadSp],
        curg_dead: impl Fn(&M) -> bool,
        stack: impl Fn(u64) -> Option<(u64, u64)>,
    ) -> ThreadJoin {
        let mut j = ThreadJoin::default();
        // Go 1.21 leaves a stale procid on a free extra M: an extra M in C
        // whose goroutine is dead claims no thread.
        for (i, m) in ms.iter().enumerate() {
            if m.isextra && m.is_extra_in_c && curg_dead(m) {
                j.free_extra.insert(i);
            }
        }
        // When a thread whose extra M is back in C takes a signal, Go's
        // handler borrows a second extra M: the thread's own M is the one not
        // borrowed for the signal, else the one in C, else the oldest.
        let mut claims: HashMap<u64, Vec<usize>> = HashMap::default();
        for (i, m) in ms.iter().enumerate() {
            if m.procid != 0 && !j.free_extra.contains(&i) {
                claims.entry(m.procid).or_default().push(i);
            }
        }
        for (tid, mut list) in claims {
            list.sort_by_key(|&i| {
                let m = &ms[i];
                (m.is_extra_in_sig, !m.is_extra_in_c, m.id)
            });
            let Ok(tid) = u32::try_from(tid) else {
                continue;
            };
            j.own.insert(tid, list[0]);
            if list.len() > 1 {
                j.borrowed_set.extend(&list[1..]);
                j.borrowed.insert(tid, list[1..].to_vec());
            }
        }
        // A thread Go is still starting has no procid yet (minit sets it
        // after the signal setup): its stack pointer is on its M's g0 or
        // gsignal stack, or at the g0 stack's very top where Go's own clone
        // put it (the kernel starts the thread there).
        let unclaimed: Vec<usize> = (0..ms.len())
            .filter(|i| {
                let m = &ms[*i];
                m.procid == 0 && !j.free_extra.contains(i) && !m.isextra
            })
            .collect();
        if !unclaimed.is_empty() {
            for t in threads {
                if j.own.contains_key(&t.tid) {
                    continue;
                }
                let on =
                    |g: u64| stack(g).is_some_and(|(lo, hi)| lo != 0 && lo <= t.sp && t.sp <= hi);
                if let Some(&i) = unclaimed
                    .iter()
                    .find(|&&i| on(ms[i].g0) || on(ms[i].gsignal))
                {
                    j.own.insert(t.tid, i);
                    j.by_stack.insert(i);
                }
            }
        }
        j
    }

    /// After unwinding: a C thread's only M that Go's handler took for a
    /// signal reaching it. Go 1.22+ flags it (`isExtraInSig`); Go 1.21 shows
    /// it on the stack. `threads`: each thread of the process, and whether
    /// `runtime.badsignal` is one of its frames.
    pub fn mark_signal_only(&mut self, ms: &[M], threads: &[(u32, bool)]) {
        for &(tid, in_badsignal) in threads {
            let Some(&i) = self.own.get(&tid) else {
                continue;
            };
            let m = &ms[i];
            if m.is_extra_in_sig || (m.isextra && !m.is_extra_in_c && in_badsignal) {
                self.signal_only.insert(i);
            }
        }
    }

    /// The M whose stacks a thread's walk goes through (a signal-only M too).
    pub fn stack_m<'m>(&self, ms: &'m [M], tid: u32) -> Option<&'m M> {
        self.own.get(&tid).map(|&i| &ms[i])
    }

    /// The M a thread belongs to: none for a C thread that only borrowed one
    /// for a signal (it stays foreign).
    pub fn m_of<'m>(&self, ms: &'m [M], tid: u32) -> Option<&'m M> {
        let &i = self.own.get(&tid)?;
        (!self.signal_only.contains(&i)).then_some(&ms[i])
    }

    /// The id of an M the thread borrowed to run Go's signal handler.
    pub fn signal_m(&self, ms: &[M], tid: u32) -> Option<i64> {
        if let Some(list) = self.borrowed.get(&tid) {
            return list.first().map(|&i| ms[i].id);
        }
        let &i = self.own.get(&tid)?;
        self.signal_only.contains(&i).then_some(ms[i].id)
    }

    /// Borrowed for a signal only: its goroutine is not one of the program's.
    pub fn is_signal_borrowed(&self, i: usize) -> bool {
        self.borrowed_set.contains(&i) || self.signal_only.contains(&i)
    }

    /// The thread of the M at index `i`: its procid when that is a thread of
    /// the process, or the starting thread found by its stack.
    pub fn tid_of(&self, ms: &[M], i: usize, thread_exists: impl Fn(u32) -> bool) -> Option<u32> {
        let m = &ms[i];
        if m.procid != 0 && !self.free_extra.contains(&i) {
            if let Ok(tid) = u32::try_from(m.procid) {
                if thread_exists(tid) {
                    return Some(tid);
                }
            }
        }
        if m.procid == 0 && self.by_stack.contains(&i) {
            return self.own.iter().find(|(_, &x)| x == i).map(|(&tid, _)| tid);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, procid: u64) -> M {
        M {
            addr: 0x1000 * (id as u64 + 1),
            id,
            procid,
            g0: 0x10_0000 + id as u64,
            gsignal: 0x20_0000 + id as u64,
            curg: 0x30_0000 + id as u64,
            ..Default::default()
        }
    }

    fn ts(tids: &[(u32, u64)]) -> Vec<ThreadSp> {
        tids.iter().map(|&(tid, sp)| ThreadSp { tid, sp }).collect()
    }

    fn never_dead(_: &M) -> bool {
        false
    }

    fn no_stack(_: u64) -> Option<(u64, u64)> {
        None
    }

    #[test]
    fn a_go_thread_is_the_m_with_its_procid() {
        let ms = vec![m(0, 100), m(1, 101)];
        let j = ThreadJoin::new(
            &ms,
            &ts(&[(100, 0), (101, 0), (102, 0)]),
            never_dead,
            no_stack,
        );
        assert_eq!(j.m_of(&ms, 101).map(|m| m.id), Some(1));
        assert!(j.m_of(&ms, 102).is_none(), "no M claims a foreign thread");
        assert_eq!(j.tid_of(&ms, 0, |t| t == 100), Some(100));
        assert_eq!(j.signal_m(&ms, 100), None);
    }

    #[test]
    fn a_thread_fresh_from_gos_clone_is_its_m_by_the_stack_top() {
        // Go's own clone starts the thread with its stack pointer at the M's
        // g0 stack top; the M has no procid until the thread runs. A cgo M
        // still waiting for pthread_create has no g0 stack yet (lo 0, hi its
        // size): nothing matches it.
        let ms = vec![m(0, 100), m(1, 0), m(2, 0)];
        let stack = |g: u64| match g {
            0x10_0001 => Some((0x7000_0000, 0x7000_8000)),
            0x10_0002 => Some((0, 0x8000)),
            _ => None,
        };
        let j = ThreadJoin::new(
            &ms,
            &ts(&[(100, 0), (101, 0x7000_8000), (102, 0x8000)]),
            never_dead,
            stack,
        );
        assert_eq!(j.m_of(&ms, 101).map(|m| m.id), Some(1));
        assert!(j.m_of(&ms, 102).is_none());
    }

    #[test]
    fn a_free_extra_m_with_a_stale_procid_claims_nothing() {
        // Go 1.21: the extra M went back to the free list in C, its goroutine
        // dead, its procid still that of the last thread that used it.
        let mut free = m(3, 200);
        free.isextra = true;
        free.is_extra_in_c = true;
        let ms = vec![m(0, 100), free];
        let dead = |x: &M| x.id == 3;
        let j = ThreadJoin::new(&ms, &ts(&[(100, 0), (200, 0)]), dead, no_stack);
        assert!(j.m_of(&ms, 200).is_none());
        assert_eq!(j.tid_of(&ms, 1, |_| true), None);
    }

    #[test]
    fn a_second_extra_m_borrowed_for_a_signal_is_not_the_threads_own() {
        // The thread's bound extra M is in C; Go's handler took another one
        // for the crash signal (needm(signal), isExtraInSig on 1.22+).
        let mut own = m(5, 300);
        own.isextra = true;
        own.is_extra_in_c = true;
        let mut sig = m(2, 300);
        sig.isextra = true;
        sig.is_extra_in_sig = true;
        let ms = vec![sig, own];
        let mut j = ThreadJoin::new(&ms, &ts(&[(300, 0)]), never_dead, no_stack);
        j.mark_signal_only(&ms, &[(300, false)]);
        assert_eq!(j.m_of(&ms, 300).map(|m| m.id), Some(5));
        assert_eq!(j.signal_m(&ms, 300), Some(2));
        assert!(j.is_signal_borrowed(0) && !j.is_signal_borrowed(1));
    }

    #[test]
    fn among_equals_the_m_in_c_then_the_oldest_is_the_threads_own() {
        let mut a = m(7, 400);
        a.isextra = true;
        let mut b = m(4, 400);
        b.isextra = true;
        let ms = vec![a.clone(), b.clone()];
        let j = ThreadJoin::new(&ms, &ts(&[(400, 0)]), never_dead, no_stack);
        assert_eq!(j.m_of(&ms, 400).map(|m| m.id), Some(4), "the oldest");
        a.is_extra_in_c = true;
        let ms = vec![a, b];
        let j = ThreadJoin::new(&ms, &ts(&[(400, 0)]), never_dead, no_stack);
        assert_eq!(j.m_of(&ms, 400).map(|m| m.id), Some(7), "the one in C");
    }

    #[test]
    fn a_foreign_threads_only_m_taken_for_a_signal_leaves_it_foreign() {
        // Go 1.22+: flagged.
        let mut sig = m(6, 500);
        sig.isextra = true;
        sig.is_extra_in_sig = true;
        let ms = vec![sig];
        let mut j = ThreadJoin::new(&ms, &ts(&[(500, 0)]), never_dead, no_stack);
        j.mark_signal_only(&ms, &[(500, false)]);
        assert!(j.m_of(&ms, 500).is_none());
        assert_eq!(j.stack_m(&ms, 500).map(|m| m.id), Some(6));
        assert_eq!(j.signal_m(&ms, 500), Some(6));
        assert!(j.is_signal_borrowed(0));
    }

    #[test]
    fn go_1_21_shows_a_signal_only_m_by_badsignal_on_the_stack() {
        let mut x = m(6, 500);
        x.isextra = true; // not in C, no isExtraInSig on 1.21
        let ms = vec![x];
        let mut j = ThreadJoin::new(&ms, &ts(&[(500, 0)]), never_dead, no_stack);
        j.mark_signal_only(&ms, &[(500, false)]);
        assert_eq!(j.m_of(&ms, 500).map(|m| m.id), Some(6), "a callback in Go");
        j.mark_signal_only(&ms, &[(500, true)]);
        assert!(j.m_of(&ms, 500).is_none(), "in runtime.badsignal");
    }

    #[test]
    fn a_thread_still_starting_is_found_by_its_g0_or_gsignal_stack() {
        let starting = m(9, 0);
        let (g0, gsignal) = (starting.g0, starting.gsignal);
        let ms = vec![m(0, 100), starting];
        let stack = |g: u64| {
            (g == g0)
                .then_some((0x7000, 0x8000))
                .or((g == gsignal).then_some((0x9000, 0xa000)))
        };
        let j = ThreadJoin::new(&ms, &ts(&[(100, 0x7800), (601, 0x7800)]), never_dead, stack);
        assert_eq!(j.m_of(&ms, 601).map(|m| m.id), Some(9));
        assert_eq!(j.m_of(&ms, 100).map(|m| m.id), Some(0), "procid wins");
        assert_eq!(j.tid_of(&ms, 1, |_| true), Some(601));
        let j = ThreadJoin::new(&ms, &ts(&[(602, 0x9100)]), never_dead, stack);
        assert_eq!(j.m_of(&ms, 602).map(|m| m.id), Some(9), "on gsignal");
        let j = ThreadJoin::new(&ms, &ts(&[(603, 0xb000)]), never_dead, stack);
        assert!(j.m_of(&ms, 603).is_none());
    }

    #[test]
    fn an_extra_m_without_procid_is_never_matched_by_stack() {
        let mut x = m(9, 0);
        x.isextra = true;
        let g0 = x.g0;
        let ms = vec![x];
        let stack = |g: u64| (g == g0).then_some((0x7000, 0x8000));
        let j = ThreadJoin::new(&ms, &ts(&[(601, 0x7800)]), never_dead, stack);
        assert!(j.m_of(&ms, 601).is_none());
    }
}
