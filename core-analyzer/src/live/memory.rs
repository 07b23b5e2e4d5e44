//! A stopped process's memory, read page by page (`process_vm_readv`, else
//! `/proc/PID/mem`) and kept: the analysis reads each page once, and the
//! pages it read are what a snapshot saves.
use crate::error::Fault;
use crate::memory::Memory;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;
use rustc_hash::FxHashMap as HashMap;
use std::io::IoSliceMut;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, RwLock};

pub const PAGE: u64 = 4096;
/// Pages read by one `process_vm_readv` in [`RecordingMemory::keep_many`].
const BATCH: usize = 512;
pub type Page = Arc<[u8]>;

pub struct RecordingMemory {
    pid: Pid,
    mem_file: Option<std::fs::File>,
    /// Page number -> its bytes, or `None` where the process has none.
    pages: RwLock<HashMap<u64, Option<Page>>>,
    /// Most pages kept: a bound on what one capture may hold.
    max_pages: usize,
    /// The process has been let go: only what was read counts now (a page
    /// not read then is not saved, never read from the running process).
    frozen: std::sync::atomic::AtomicBool,
    /// This memory's number among all made in the process (see `LAST`).
    id: u64,
}

/// Numbers for `RecordingMemory::id`: never reused, so a page kept in
/// `LAST` for one capture is never taken for another's (`top` captures
/// again every interval).
static IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

thread_local! {
    /// The page this thread read last, and whose memory it is: most reads
    /// (a u64 at a time) fall in the page before them, and then take no
    /// lock shared with the other workers.
    static LAST: std::cell::RefCell<Option<(u64, u64, Page)>> = const { std::cell::RefCell::new(None) };
}

impl RecordingMemory {
    pub fn new(pid: u32, max_bytes: u64) -> RecordingMemory {
        RecordingMemory {
            pid: Pid::from_raw(pid as i32),
            mem_file: std::fs::File::open(format!("/proc/{pid}/mem")).ok(),
            pages: RwLock::new(HashMap::default()),
            max_pages: usize::try_from(max_bytes / PAGE).unwrap_or(usize::MAX),
            frozen: Default::default(),
            id: IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    fn fetch(&self, n: u64) -> Option<Page> {
        let addr = n.checked_mul(PAGE)?;
        let mut buf = vec![0u8; PAGE as usize];
        let remote = [RemoteIoVec {
            base: usize::try_from(addr).ok()?,
            len: PAGE as usize,
        }];
        let got = process_vm_readv(self.pid, &mut [IoSliceMut::new(&mut buf)], &remote);
        if got == Ok(PAGE as usize) {
            return Some(Arc::from(buf));
        }
        // Pages process_vm_readv refuses (PROT_NONE guard pages, ...) may
        // still be readable the way a debugger reads them.
        let f = self.mem_file.as_ref()?;
        (f.read_at(&mut buf, addr).ok()? == PAGE as usize).then(|| Arc::from(buf))
    }

    fn page(&self, n: u64) -> Result<Option<Page>, ()> {
        let last = LAST.with_borrow(|l| match l {
            Some((id, at, p)) if *id == self.id && *at == n => Some(p.clone()),
            _ => None,
        });
        if last.is_some() {
            return Ok(last);
        }
        let p = self.kept_or_fetch(n)?;
        if let Some(p) = &p {
            LAST.set(Some((self.id, n, p.clone())));
        }
        Ok(p)
    }

    fn kept_or_fetch(&self, n: u64) -> Result<Option<Page>, ()> {
        if let Some(p) = self.pages.read().unwrap_or_else(|e| e.into_inner()).get(&n) {
            return Ok(p.clone());
        }
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let p = self.fetch(n);
        let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
        if pages.len() >= self.max_pages {
            return Err(());
        }
        Ok(pages.entry(n).or_insert(p).clone())
    }

    /// Every page read so far, by address.
    pub fn saved_pages(&self) -> Vec<(u64, Page)> {
        let pages = self.pages.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(u64, Page)> = pages
            .iter()
            .filter_map(|(&n, p)| Some((n * PAGE, p.clone()?)))
            .collect();
        out.sort_unstable_by_key(|(a, _)| *a);
        out
    }

    /// Read `[addr, addr + len)` into the record (a snapshot keeps it).
    pub fn keep(&self, addr: u64, len: u64) {
        self.keep_many(&[(addr, len)]);
    }

    /// Read many ranges into the record: the pages not read yet, in batches
    /// of up to 512 per system call (one remote iovec per page; the kernel
    /// stops at a page it cannot read, which is skipped, and the batch goes
    /// on after it). 100k goroutine stacks: hundreds of calls, not 100k.
    pub fn keep_many(&self, ranges: &[(u64, u64)]) {
        if self.frozen.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let mut want: Vec<u64> = {
            let pages = self.pages.read().unwrap_or_else(|e| e.into_inner());
            ranges
                .iter()
                .flat_map(|&(addr, len)| addr / PAGE..addr.saturating_add(len).div_ceil(PAGE))
                .filter(|n| !pages.contains_key(n))
                .collect()
        };
        want.sort_unstable();
        want.dedup();
        let mut rest = &want[..];
        // One buffer for every batch: a batch cut short by an unreadable
        // page is followed by another, and a new 2 MB buffer for each cost
        // more than the reads (4,040 thread stacks read 8 KiB up from their
        // SPs, past their ends: 0.37 s, and 0.05 s with one buffer).
        let mut whole = vec![0u8; want.len().min(BATCH) * PAGE as usize];
        while !rest.is_empty() {
            let batch = &rest[..rest.len().min(BATCH)];
            let buf = &mut whole[..batch.len() * PAGE as usize];
            let remote: Vec<RemoteIoVec> = batch
                .iter()
                .filter_map(|&n| {
                    Some(RemoteIoVec {
                        base: usize::try_from(n.checked_mul(PAGE)?).ok()?,
                        len: PAGE as usize,
                    })
                })
                .collect();
            let got = process_vm_readv(self.pid, &mut [IoSliceMut::new(buf)], &remote).unwrap_or(0)
                / PAGE as usize;
            let mut pages = self.pages.write().unwrap_or_else(|e| e.into_inner());
            for (i, &n) in batch.iter().take(got).enumerate() {
                if pages.len() >= self.max_pages {
                    return;
                }
                let at = i * PAGE as usize;
                pages
                    .entry(n)
                    .or_insert(Some(Arc::from(&buf[at..at + PAGE as usize])));
            }
            drop(pages);
            // The page that stopped the batch is read alone (or found unreadable).
            if got < batch.len() {
                let _ = self.page(batch[got]);
            }
            rest = &rest[(got + 1).min(batch.len()).max(1).min(rest.len())..];
        }
    }

    /// From now on only what was read counts.
    pub fn freeze(&self) {
        self.frozen
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Memory for RecordingMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        crate::memory::read_from_pages(addr, buf, |a, len| match self.page(a / PAGE) {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(Fault::Unmapped { addr: a, len }),
            Err(()) => Err(Fault::Target {
                addr: a,
                len,
                msg: "the capture reached its memory bound".into(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::ReadExt;

    #[test]
    fn reads_this_process_and_keeps_what_it_read() {
        let data: Vec<u64> = (0..2048).collect(); // 16 KiB: crosses pages
        let m = RecordingMemory::new(std::process::id(), 1 << 20);
        let at = data.as_ptr() as u64;
        assert_eq!(m.u64(at + 8 * 1000).unwrap(), 1000);
        let mut buf = vec![0u8; 16384];
        m.read(at, &mut buf).unwrap();
        assert_eq!(&buf[8..16], &1u64.to_le_bytes());
        let kept = m.saved_pages();
        assert!(kept.len() >= 4 && kept.iter().all(|(a, p)| a % PAGE == 0 && p.len() == 4096));
        assert!(m.u64(8).is_err(), "page zero is not mapped");
    }

    #[test]
    fn a_batch_cut_short_goes_on_after_the_unreadable_page() {
        let n = 6usize;
        // SAFETY: a private anonymous mapping of this test's own, unmapped
        // at its end; the middle page made unreadable by `mprotect`.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                n * PAGE as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the mapping above, readable and writable, n pages long.
        let pages = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, n * PAGE as usize) };
        for (i, p) in pages.chunks_mut(PAGE as usize).enumerate() {
            p.fill(i as u8 + 1);
        }
        let bad = base as u64 + 2 * PAGE;
        // SAFETY: a page of the mapping above; `pages` is not used after.
        assert_eq!(
            unsafe { libc::mprotect(bad as *mut _, PAGE as usize, libc::PROT_NONE) },
            0
        );
        let m = RecordingMemory::new(std::process::id(), 1 << 20);
        m.keep_many(&[(base as u64, n as u64 * PAGE)]);
        m.freeze();
        for i in (0..n).filter(|&i| i != 2) {
            let mut b = [0u8; 8];
            m.read(base as u64 + i as u64 * PAGE + 100, &mut b).unwrap();
            assert_eq!(b, [i as u8 + 1; 8], "page {i}");
        }
        // SAFETY: the mapping above, no longer referenced.
        unsafe { libc::munmap(base, n * PAGE as usize) };
    }

    #[test]
    fn a_page_one_capture_read_is_not_anothers() {
        let data = vec![9u64; 512];
        let at = data.as_ptr() as u64;
        let first = RecordingMemory::new(std::process::id(), 1 << 20);
        assert_eq!(first.u64(at).unwrap(), 9);
        // A second capture, let go before it read anything: the page this
        // thread read last is the first capture's, never the second's.
        let second = RecordingMemory::new(std::process::id(), 1 << 20);
        second.freeze();
        assert!(second.u64(at).is_err());
        assert_eq!(first.u64(at + 8).unwrap(), 9);
    }

    #[test]
    fn the_bound_is_a_fault_not_growth() {
        let data = vec![7u8; 64 * 1024];
        let m = RecordingMemory::new(std::process::id(), 2 * PAGE);
        let mut buf = vec![0u8; data.len()];
        let err = m.read(data.as_ptr() as u64, &mut buf).unwrap_err();
        assert!(matches!(err, Fault::Target { .. }), "{err}");
        assert!(m.saved_pages().len() <= 2);
    }
}
