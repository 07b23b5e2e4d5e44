//! Independent items (threads, goroutines) worked on in contiguous parts, one
//! worker per core, with the results back in the items' order.

/// More workers than this only contend for the core file's reads.
const MAX_WORKERS: usize = 8;

/// `work` over `items`, split in parts of at least `min_part` items, each on
/// its own worker with a state `state` made on the calling thread (a worker's
/// own caches). Each part and its results, in order; `None` for a part whose
/// worker panicked: the caller says what that part lost.
pub fn in_parts<'t, T, S, R>(
    items: &'t [T],
    min_part: usize,
    mut state: impl FnMut() -> S,
    work: impl Fn(S, &'t [T]) -> Vec<R> + Sync,
) -> Vec<(&'t [T], Option<Vec<R>>)>
where
    T: Sync,
    S: Send,
    R: Send,
{
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_WORKERS);
    let part = items.len().div_ceil(workers).max(min_part).max(1);
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(part)
            .map(|p| {
                let st = state();
                (p, s.spawn(move || work(st, p)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(p, h)| (p, h.join().ok()))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_and_a_panicked_part_is_none() {
        let items: Vec<u32> = (0..10_000).collect();
        let parts = in_parts(&items, 100, || 2, |k, p| p.iter().map(|x| x * k).collect());
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
    fn no_items_no_parts() {
        let parts = in_parts(&[] as &[u8], 10, || (), |_, p| p.to_vec());
        assert!(parts.is_empty());
    }
}
