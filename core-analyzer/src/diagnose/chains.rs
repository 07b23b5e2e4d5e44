//! The wait-for relation between threads (a thread waits for the lock a
//! thread holds): deadlock cycles, and wait chains — a thread waits for a
//! lock whose holder waits for another lock, and so on, to a thread that
//! waits for no lock-holding thread (the root: what to look at first) or
//! into a cycle. Each thread waits for at most one owner, so the owner links
//! form a functional graph, walked once with memoization (linear in threads).
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

pub struct WaitFor {
    /// Each cycle's threads in wait order, from its lowest tid (one thread:
    /// it waits for itself).
    pub cycles: Vec<Vec<u32>>,
    /// Chains in which some thread waits through at least one other thread.
    pub chains: Vec<Chain>,
    /// Every thread others wait on (a chain's root, or a thread of a cycle
    /// where chains enter it): who waits on it, directly or through others,
    /// nearest first.
    pub waiters: BTreeMap<u32, Vec<(u32, usize)>>,
    /// Each thread's owner: the thread holding the lock it waits for.
    pub owner: BTreeMap<u32, u32>,
}

pub fn wait_for(threads: &[ThreadInfo]) -> WaitFor {
    let links: Vec<(u32, Option<u32>)> = threads
        .iter()
        .map(|t| (t.tid, t.blocked.as_ref().and_then(|b| b.owner_tid)))
        .collect();
    wait_for_links(&links)
}

/// The same over (thread, the thread holding the lock it waits for).
pub fn wait_for_links(links: &[(u32, Option<u32>)]) -> WaitFor {
    let known: HashSet<u32> = links.iter().map(|(t, _)| *t).collect();
    let succ: BTreeMap<u32, u32> = links
        .iter()
        .filter_map(|&(t, o)| known.contains(&o?).then_some((t, o?)))
        .collect();
    let mut cycles: Vec<Vec<u32>> = vec![];
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
                let mut cycle = path.split_off(pos);
                for &n in &cycle {
                    memo.insert(n, (n, 0));
                }
                let low = (0..cycle.len()).min_by_key(|&i| cycle[i]).unwrap_or(0);
                cycle.rotate_left(low);
                cycles.push(cycle);
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
    for ws in by_root.values_mut() {
        ws.sort_by_key(|&(t, h)| (h, t));
    }
    let chains = by_root
        .clone()
        .into_iter()
        .filter(|(_, ws)| ws.iter().any(|&(_, h)| h >= 2))
        .map(|(root, waiting)| {
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
        .collect();
    cycles.sort();
    WaitFor {
        cycles,
        chains,
        waiters: by_root,
        owner: succ,
    }
}

#[cfg(test)]
mod tests {
    use super::wait_for_links;

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
        let wf = wait_for_links(&links);
        assert_eq!(wf.cycles, vec![vec![1, 2], vec![3]]);
        type Got = (u32, Vec<(u32, usize)>, Vec<u32>);
        let got: Vec<Got> = wf
            .chains
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
