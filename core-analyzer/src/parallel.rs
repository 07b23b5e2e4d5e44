//! Independent items (threads, goroutines) worked on in contiguous parts, one
//! worker per core, with the results back in the items' order.

/// More workers than this only contend for the core file's reads.
const MAX_WORKERS: usize = 8;

thread_local! {
    /// Parts every split made on this thread takes, whatever its items'
    /// count (0: the callers' own sizes). See [`with_parts`].
    static FORCED_PARTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Runs `f` with every split it makes on this thread in `parts` parts: the
/// tests take the path of a core of 10,000 threads on the few of each core.
pub fn with_parts<T>(parts: usize, f: impl FnOnce() -> T) -> T {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            FORCED_PARTS.set(self.0);
        }
    }
    let _restore = Restore(FORCED_PARTS.replace(parts));
    f()
}

/// `work` over `items`, split in parts of at least `min_part` items, each on
/// its own worker with a state `state` made on the calling thread (a worker's
/// own caches). Each part and its result, in order; `None` for a part whose
/// worker panicked: the caller says what that part lost. A single part runs
/// on the calling thread: no thread is started for a small core, and a
/// debugger's memory bridge is read on the debugger's own thread.
pub fn in_parts<'t, T, S, R>(
    items: &'t [T],
    min_part: usize,
    mut state: impl FnMut() -> S,
    work: impl Fn(S, &'t [T]) -> R + Sync,
) -> Vec<(&'t [T], Option<R>)>
where
    T: Sync,
    S: Send,
    R: Send,
{
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS);
    let part = match FORCED_PARTS.get() {
        0 => items.len().div_ceil(workers).max(min_part),
        parts => items.len().div_ceil(parts),
    }
    .max(1);
    let here = |st, p| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(st, p))).ok();
    if items.len() <= part {
        return match items {
            [] => vec![],
            _ => vec![(items, here(state(), items))],
        };
    }
    std::thread::scope(|s| {
        let started: Vec<_> = items
            .chunks(part)
            .map(|p| {
                let st = state();
                // No thread to be had (the user's process limit, reached by
                // the very program under study): the part waits for this one.
                let h = std::thread::Builder::new().spawn_scoped(s, || work(st, p));
                (p, h)
            })
            .collect();
        started
            .into_iter()
            .map(|(p, h)| match h {
                Ok(h) => (p, h.join().ok()),
                Err(_) => (p, here(state(), p)),
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_and_a_panicked_part_is_none() {
        let items: Vec<u32> = (0..10_000).collect();
        let parts = in_parts(
            &items,
            100,
            || 2,
            |k, p| p.iter().map(|x| x * k).collect::<Vec<_>>(),
        );
        let all: Vec<u32> = parts.into_iter().flat_map(|(_, r)| r.unwrap()).collect();
        assert_eq!(all, items.iter().map(|x| x * 2).collect::<Vec<_>>());

        let parts = in_parts(
            &items,
            5_000,
            || (),
            |_, p| {
                assert!(p[0] != 5_000, "worker fails");
                p.to_vec()
            },
        );
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].1.as_deref(), Some(&items[..5_000]));
        assert_eq!(parts[1].0, &items[5_000..]);
        assert!(parts[1].1.is_none());
    }

    #[test]
    fn a_forced_split_holds_on_its_thread_only() {
        let items: Vec<u32> = (0..10).collect();
        let sizes =
            |p: Vec<(&[u32], Option<Vec<u32>>)>| p.iter().map(|(p, _)| p.len()).collect::<Vec<_>>();
        let forced = with_parts(3, || in_parts(&items, 1000, || (), |_, p| p.to_vec()));
        assert_eq!(sizes(forced), vec![4, 4, 2]);
        assert_eq!(
            sizes(in_parts(&items, 1000, || (), |_, p| p.to_vec())),
            vec![10]
        );
    }

    #[test]
    fn one_part_runs_here_and_its_panic_is_caught() {
        let here = std::thread::current().id();
        let items = [1u8, 2, 3];
        let parts = in_parts(&items, 10, || (), |_, _| std::thread::current().id());
        assert_eq!(parts[0].1, Some(here));
        let parts = in_parts(&items, 10, || (), |_, _| -> u8 { panic!("worker fails") });
        assert_eq!(parts.len(), 1);
        assert!(parts[0].1.is_none());
    }

    #[test]
    fn no_items_no_parts() {
        let parts = in_parts(&[] as &[u8], 10, || (), |_, p| p.to_vec());
        assert!(parts.is_empty());
    }
}
