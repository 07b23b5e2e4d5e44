//! A page cache over a slow reader (a debugger bridge): each read across the
//! bridge costs about the same whatever its size, so memory is fetched in
//! large blocks once, and only unreadable blocks fall back to single pages.
use super::Memory;
use crate::error::Fault;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const PAGE: u64 = 4096;
/// Pages fetched per bridged read, by default. A bridge whose reads cost by
/// the byte (lldb reading a live process) wants fewer.
pub const BLOCK_PAGES: u64 = 16;
/// Most pages kept; beyond this the cache starts over (a bounded footprint).
const MAX_PAGES: usize = 1 << 16;

/// Reads `len` bytes at `addr`, or fails.
pub type ReadFn = dyn Fn(u64, usize) -> Option<Vec<u8>> + Send + Sync;

pub struct PagedMemory {
    read: Box<ReadFn>,
    /// Page number -> bytes, or `None` for a page that cannot be read.
    pages: Mutex<HashMap<u64, Option<Arc<[u8]>>>>,
    /// Blocks that cannot be read whole: fetched page by page.
    partial: Mutex<std::collections::HashSet<u64>>,
    block_pages: u64,
    /// Bridged reads made (for benchmarks and tests), shareable.
    pub reads: Arc<std::sync::atomic::AtomicUsize>,
}

impl PagedMemory {
    pub fn new(read: Box<ReadFn>) -> PagedMemory {
        Self::with_block_pages(read, BLOCK_PAGES)
    }

    pub fn with_block_pages(read: Box<ReadFn>, block_pages: u64) -> PagedMemory {
        PagedMemory {
            read,
            block_pages: block_pages.clamp(1, 256),
            pages: Mutex::new(HashMap::new()),
            partial: Default::default(),
            reads: Default::default(),
        }
    }

    fn fetch(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (self.read)(addr, len).filter(|b| b.len() == len)
    }

    fn page(&self, n: u64) -> Option<Arc<[u8]>> {
        let mut pages = self.pages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = pages.get(&n) {
            return p.clone();
        }
        if pages.len() > MAX_PAGES {
            pages.clear();
        }
        // A whole block in one bridged read; page by page if part of it is unmapped.
        let first = n - n % self.block_pages;
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        let whole = if partial.contains(&first) {
            None
        } else {
            self.fetch(first * PAGE, (self.block_pages * PAGE) as usize)
        };
        if let Some(block) = whole {
            for (i, chunk) in block.chunks(PAGE as usize).enumerate() {
                pages.insert(first + i as u64, Some(Arc::from(chunk)));
            }
        } else {
            partial.insert(first);
            let p = self.fetch(n * PAGE, PAGE as usize).map(Arc::from);
            pages.insert(n, p);
        }
        pages.get(&n).cloned().flatten()
    }
}

impl Memory for PagedMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        super::read_from_pages(addr, buf, |a, len| {
            // Not "not saved in the core": the debugger refused the read.
            self.page(a / PAGE).ok_or_else(|| Fault::Target {
                addr: a,
                len,
                msg: "the debugger could not read it".into(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_pages_and_holes() {
        // Readable: [0x10000, 0x20000) except the page at 0x13000.
        let m = PagedMemory::new(Box::new(|a, len| {
            let end = a + len as u64;
            let hole = a <= 0x13000 && 0x13000 < end;
            (a >= 0x10000 && end <= 0x20000 && !hole)
                .then(|| (a..end).map(|x| (x % 251) as u8).collect())
        }));
        let mut b = [0u8; 8];
        m.read(0x10ffc, &mut b).unwrap();
        assert_eq!(b[0], (0x10ffc % 251) as u8);
        assert_eq!(b[7], (0x11003 % 251) as u8);
        assert!(m.read(0x13008, &mut b).is_err());
        m.read(0x14000, &mut b).unwrap();
        assert!(m.read(0x30000, &mut b).is_err());
        m.read(0x12000, &mut b).unwrap();
        let before = m.reads.load(std::sync::atomic::Ordering::Relaxed);
        m.read(0x12010, &mut b).unwrap();
        assert!(m.read(0x13000, &mut b).is_err());
        assert_eq!(
            m.reads.load(std::sync::atomic::Ordering::Relaxed),
            before,
            "cached"
        );
    }
}
