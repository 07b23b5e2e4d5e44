//! A core's bytes read with `pread` through a small cache of blocks, not
//! through its mmap: a read of the mapping faults the file's pages into this
//! process, where they count as its memory in whatever size the page cache
//! holds them (with large folios, a 10,000-thread core's stacks kept 120 MB
//! of the file resident between releases, and the faults were a third of the
//! run). Copied out of the page cache, nothing of the core stays resident but
//! this cache, a few MB whatever the core.
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

/// Where a segment's bytes come from.
pub trait ReadAt: Send + Sync {
    /// Fill `buf` from `offset`; `false` if the file ends before it is full.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool;
}

impl<T: AsRef<[u8]> + Send + Sync> ReadAt for T {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        let data = self.as_ref();
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        match data.get(start..start.saturating_add(buf.len())) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

const BLOCK: usize = 4 << 10;
/// Shards (each its own lock, so the analysis's workers rarely wait on one
/// another) × blocks per shard: 4 MB in all.
const SHARDS: usize = 64;
const WAYS: usize = 16;

struct Slot {
    /// Block number + 1 (0: empty).
    tag: u64,
    /// Bytes of the block the file holds (the last block is short).
    len: usize,
    data: Box<[u8]>,
}

/// The last ways used first: a hit moves its slot to the front, a miss
/// replaces the slot at the back.
struct Shard([Option<Slot>; WAYS]);

pub struct CachedFile {
    file: File,
    len: u64,
    shards: Box<[Mutex<Shard>]>,
}

impl CachedFile {
    pub fn new(file: File) -> std::io::Result<CachedFile> {
        let len = file.metadata()?.len();
        Ok(CachedFile {
            file,
            len,
            shards: (0..SHARDS)
                .map(|_| Mutex::new(Shard(Default::default())))
                .collect(),
        })
    }

    fn pread(&self, offset: u64, buf: &mut [u8]) -> bool {
        offset.saturating_add(buf.len() as u64) <= self.len
            && self.file.read_exact_at(buf, offset).is_ok()
    }

    /// Copy `buf.len()` bytes at `within` of block `n` (they lie in it).
    fn read_in_block(&self, n: u64, within: usize, buf: &mut [u8]) -> bool {
        let mut s = self.shards[shard_of(n)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let slots = &mut s.0;
        let hit = slots
            .iter()
            .position(|x| x.as_ref().is_some_and(|x| x.tag == n + 1));
        let at = match hit {
            Some(i) => i,
            None => {
                let mut slot = slots[WAYS - 1].take().unwrap_or_else(|| Slot {
                    tag: 0,
                    len: 0,
                    data: vec![0u8; BLOCK].into_boxed_slice(),
                });
                let start = n * BLOCK as u64;
                let len = (self.len.saturating_sub(start)).min(BLOCK as u64) as usize;
                if !self.pread(start, &mut slot.data[..len]) {
                    // (a failed read may have filled part of it)
                    slot.tag = 0;
                    slots[WAYS - 1] = Some(slot);
                    return false;
                }
                (slot.tag, slot.len) = (n + 1, len);
                slots[WAYS - 1] = Some(slot);
                WAYS - 1
            }
        };
        slots[..=at].rotate_right(1);
        let slot = slots[0].as_ref().expect("the slot just used");
        match slot.data[..slot.len].get(within..within + buf.len()) {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

/// Fibonacci hashing: neighbouring blocks land in different shards.
fn shard_of(block: u64) -> usize {
    (block.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % SHARDS
}

impl ReadAt for CachedFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> bool {
        // Large reads (a goroutine's stack) go straight to the file.
        if buf.len() >= BLOCK {
            return self.pread(offset, buf);
        }
        let mut done = 0;
        while done < buf.len() {
            let at = offset.saturating_add(done as u64);
            let (n, within) = (at / BLOCK as u64, (at % BLOCK as u64) as usize);
            let take = (BLOCK - within).min(buf.len() - done);
            if !self.read_in_block(n, within, &mut buf[done..done + take]) {
                return false;
            }
            done += take;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pattern(len: usize) -> Vec<u8> {
        // Not periodic in the block size: a block read from the wrong place
        // does not match.
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn cached(bytes: &[u8]) -> (CachedFile, File) {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        (CachedFile::new(f.try_clone().unwrap()).unwrap(), f)
    }

    #[test]
    fn reads_across_blocks_match_the_file_and_end_with_it() {
        let bytes = pattern(3 * BLOCK + 100);
        let (c, _f) = cached(&bytes);
        for (off, len) in [
            (0, 8),
            (BLOCK - 4, 8),
            (10, 2 * BLOCK),
            (3 * BLOCK, 100),
            (5, 7),
        ] {
            let mut b = vec![0u8; len];
            assert!(c.read_at(off as u64, &mut b), "{off}+{len}");
            assert_eq!(b, bytes[off..off + len]);
        }
        let mut b = [0u8; 8];
        assert!(!c.read_at((3 * BLOCK + 96) as u64, &mut b), "past the end");
        assert!(!c.read_at(u64::MAX - 2, &mut b));
        assert!(!c.read_at((3 * BLOCK + 96) as u64, &mut vec![0u8; 2 * BLOCK]));
    }

    #[test]
    fn blocks_replaced_in_every_shard_still_read_the_file() {
        // Three times the cache's blocks, read forwards then backwards: every
        // shard's ways are filled and replaced, and each read is checked.
        let blocks = 3 * SHARDS * WAYS;
        let bytes = pattern(blocks * BLOCK);
        let (c, _f) = cached(&bytes);
        let order: Vec<usize> = (0..blocks).chain((0..blocks).rev()).collect();
        for n in order {
            let off = n * BLOCK + n % 97;
            let mut b = [0u8; 24];
            assert!(c.read_at(off as u64, &mut b), "block {n}");
            assert_eq!(b[..], bytes[off..off + 24], "block {n}");
        }
    }

    #[test]
    fn a_slot_whose_read_failed_is_not_kept() {
        // The file shrinks under the cache (a core cut short as it is read):
        // reading its last block fails after filling part of the slot it
        // took, the oldest of a full shard. That slot's old block is read
        // from the file again, not from the half-overwritten slot; and once
        // the bytes are back, so is the last block.
        let blocks = 40 * SHARDS;
        let bytes = pattern(blocks * BLOCK);
        let (c, f) = cached(&bytes);
        let last = (blocks - 1) as u64;
        let same: Vec<u64> = (0..last)
            .filter(|&n| shard_of(n) == shard_of(last))
            .take(WAYS)
            .collect();
        assert_eq!(same.len(), WAYS);
        let mut b = [0u8; 24];
        for &n in &same {
            assert!(c.read_at(n * BLOCK as u64, &mut b));
        }
        f.set_len(last * BLOCK as u64 + 16).unwrap();
        assert!(!c.read_at(last * BLOCK as u64, &mut b));
        let oldest = same[0] as usize * BLOCK;
        assert!(c.read_at(oldest as u64, &mut b));
        assert_eq!(b[..], bytes[oldest..oldest + 24]);
        f.write_all_at(&bytes[last as usize * BLOCK..], last * BLOCK as u64)
            .unwrap();
        assert!(c.read_at(last * BLOCK as u64 + 8, &mut b));
        let at = last as usize * BLOCK + 8;
        assert_eq!(b[..], bytes[at..at + 24]);
    }
}
