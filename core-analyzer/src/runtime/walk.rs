//! Bounded, cycle-checked walks of the runtime's linked lists.
use std::collections::HashSet;

pub enum Stop {
    End,
    Cycle(u64),
    Limit,
    Broken(String),
}

/// Follow `next` from `head` until 0, collecting decoded items. Never loops
/// forever and never collects more than `limit` items.
pub fn walk<T>(
    head: u64,
    limit: usize,
    mut read: impl FnMut(u64) -> anyhow::Result<(T, u64)>,
) -> (Vec<T>, Stop) {
    let mut out = vec![];
    let mut seen = HashSet::new();
    let mut cur = head;
    while cur != 0 {
        if !seen.insert(cur) {
            return (out, Stop::Cycle(cur));
        }
        if out.len() >= limit {
            return (out, Stop::Limit);
        }
        match read(cur) {
            Ok((item, next)) => {
                out.push(item);
                cur = next;
            }
            Err(e) => return (out, Stop::Broken(format!("{e:#}"))),
        }
    }
    (out, Stop::End)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{mock::MockMemory, ReadExt};

    #[test]
    fn stops_at_cycle_with_items_so_far() {
        let mut m = MockMemory::default();
        m.put_u64(0x100, 0x200);
        m.put_u64(0x200, 0x300);
        m.put_u64(0x300, 0x200); // cycle back
        let (items, stop) = walk(0x100, 10, |a| Ok((a, m.u64(a)?)));
        assert_eq!(items, vec![0x100, 0x200, 0x300]);
        assert!(matches!(stop, Stop::Cycle(0x200)));
    }

    #[test]
    fn stops_at_limit_and_unreadable() {
        let mut m = MockMemory::default();
        for i in 0..100u64 {
            m.put_u64(0x1000 + 8 * i, 0x1000 + 8 * (i + 1));
        }
        let (items, stop) = walk(0x1000, 5, |a| Ok((a, m.u64(a)?)));
        assert_eq!(items.len(), 5);
        assert!(matches!(stop, Stop::Limit));
        let (items, stop) = walk(0x1000, 1000, |a| Ok((a, m.u64(a)?)));
        assert_eq!(items.len(), 100);
        assert!(matches!(stop, Stop::Broken(ref s) if s.contains("0x1320")));
    }
}
