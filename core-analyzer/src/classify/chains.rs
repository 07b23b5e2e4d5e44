//! Wait chains: a thread waits for a lock whose holder waits for another
//! lock, and so on, to a thread that waits for no lock-holding thread (the
//! root: what to look at first) or into a deadlock cycle. Each thread waits
//! for at most one owner, so the owner links form a functional graph, walked
//! once with memoization (linear in threads, cycles included).
use crate::report::ThreadInfo;
use std::collections::{BTreeMap, HashMap, HashSet};

pub struct Chain {
    /// The thread at the end of the chain (in a cycle: where the chain enters it).
    pub root: u32,
    /// Every thread waiting on the root, directly or through others, with its
    /// distance in hops, nearest first.
    pub waiting: Vec<(u32, usize)>,
    /// The longest chain, from its farthest thread to the root.
    pub longest: Vec<u32>,
}

/// Chains in which some thread waits through at least one other thread.
pub fn chains(threads: &[ThreadInfo]) -> Vec<Chain> {
    let links: Vec<(u32, Option<u32>)> = threads
        .iter()
        .map(|t| (t.tid, t.blocked.as_ref().and_then(|b| b.owner_tid)))
        .collect();
    chains_of(&links)
}

/// The same over (thread, the thread holding the lock it waits for).
pub fn chains_of(links: &[(u32, Option<u32>)]) -> Vec<Chain> {
    let known: HashSet<u32> = links.iter().map(|(t, _)| *t).collect();
    let succ: BTreeMap<u32, u32> = links
        .iter()
        .filter_map(|&(t, o)| {
            let o = o?;
            (o != t && known.contains(&o)).then_some((t, o))
        })
        .collect();
    // tid -> (root, hops to it)
    let mut memo: HashMap<u32, (u32, usize)> = HashMap::new();
    for &start in succ.keys() {
        let mut path: Vec<u32> = vec![];
        let mut on_path: HashMap<u32, usize> = HashMap::new();
        let mut cur = start;
        let (root, mut hops) = loop {
            if let Some(&base) = memo.get(&cur) {
                break base;
            }
            if let Some(&pos) = on_path.get(&cur) {
                // A cycle: each of its threads is a root of its own.
                for &n in &path[pos..] {
                    memo.insert(n, (n, 0));
                }
                path.truncate(pos);
                break (cur, 0);
            }
            match succ.get(&cur) {
                None => {
                    memo.insert(cur, (cur, 0));
                    break (cur, 0);
                }
                Some(&next) => {
                    on_path.insert(cur, path.len());
                    path.push(cur);
                    cur = next;
                }
            }
        };
        for &n in path.iter().rev() {
            hops += 1;
            memo.insert(n, (root, hops));
        }
    }
    let mut by_root: BTreeMap<u32, Vec<(u32, usize)>> = BTreeMap::new();
    for (&tid, &(root, hops)) in &memo {
        if hops > 0 {
            by_root.entry(root).or_default().push((tid, hops));
        }
    }
    by_root
        .into_iter()
        .filter(|(_, ws)| ws.iter().any(|&(_, h)| h >= 2))
        .map(|(root, mut waiting)| {
            waiting.sort_by_key(|&(t, h)| (h, t));
            let far = waiting.last().map_or(root, |&(t, _)| t);
            let mut longest = vec![far];
            let mut cur = far;
            while cur != root && longest.len() <= waiting.len() {
                let Some(&n) = succ.get(&cur) else { break };
                longest.push(n);
                cur = n;
            }
            Chain {
                root,
                waiting,
                longest,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::chains_of;

    #[test]
    fn chains_roots_and_cycles() {
        // 5 -> 4 -> 3 -> 3 (waits for itself); 6 -> 3; 7 -> 8 (one hop only);
        // 10 -> 9 -> 1 -> 2 -> 1 (into an ABBA cycle, entered at 1; the cycle's
        // own threads are the deadlock finding's, not the chain's).
        let links = [
            (3, Some(3)),
            (4, Some(3)),
            (5, Some(4)),
            (6, Some(3)),
            (7, Some(8)),
            (8, None),
            (1, Some(2)),
            (2, Some(1)),
            (9, Some(1)),
            (10, Some(9)),
        ];
        let cs = chains_of(&links);
        type Got = (u32, Vec<(u32, usize)>, Vec<u32>);
        let got: Vec<Got> = cs
            .into_iter()
            .map(|c| (c.root, c.waiting, c.longest))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, vec![(9, 1), (10, 2)], vec![10, 9, 1]),
                (3, vec![(4, 1), (6, 1), (5, 2)], vec![5, 4, 3]),
            ]
        );
    }
}
