//! One way to read target memory, whatever backs it (a core with spliced files, a
//! live debugger, or a mock in tests). Decoders only ever see `Memory`.
mod file;
mod paged;
mod spliced;

pub use file::{CachedFile, ReadAt};
pub use paged::PagedMemory;
pub use spliced::{Segment, SegmentSource, SplicedMemory};

use crate::error::Fault;

/// Largest single read a decoder may ask for; guards against absurd lengths
/// read from corrupt runtime structures.
pub const MAX_READ: usize = 64 << 20;

pub trait Memory {
    /// Fill `buf` from `addr`, or fail naming the first byte that is missing.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault>;
}

/// A debugger's memory first, then the executable's and libraries' file
/// segments: lldb reads a core's saved pages only, not the text the kernel
/// left out of it.
pub struct FallbackMemory {
    pub first: Box<dyn Memory + Send + Sync>,
    pub files: SplicedMemory,
}

impl Memory for FallbackMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        match self.first.read(addr, buf) {
            Ok(()) => Ok(()),
            Err(e) => self.files.read(addr, buf).map_err(|_| e),
        }
    }
}

/// `[addr, addr + buf.len())` from a cache of 4 KiB pages: `page(address)`
/// gives the page holding that address, or the fault for it.
pub fn read_from_pages<P: AsRef<[u8]>>(
    addr: u64,
    buf: &mut [u8],
    page: impl Fn(u64, usize) -> Result<P, Fault>,
) -> Result<(), Fault> {
    const PAGE: u64 = 4096;
    let mut done = 0usize;
    while done < buf.len() {
        let a = addr.checked_add(done as u64).ok_or(Fault::Unmapped {
            addr,
            len: buf.len(),
        })?;
        let p = page(a, buf.len() - done)?;
        let p = p.as_ref();
        let off = (a % PAGE) as usize;
        let n = (PAGE as usize - off)
            .min(buf.len() - done)
            .min(p.len().saturating_sub(off));
        if n == 0 {
            return Err(Fault::Unmapped {
                addr: a,
                len: buf.len() - done,
            });
        }
        buf[done..done + n].copy_from_slice(&p[off..off + n]);
        done += n;
    }
    Ok(())
}

/// Typed helpers over any `Memory` (little-endian targets: amd64, arm64).
pub trait ReadExt: Memory {
    fn u8(&self, addr: u64) -> Result<u8, Fault> {
        let mut b = [0u8; 1];
        self.read(addr, &mut b)?;
        Ok(b[0])
    }
    fn u16(&self, addr: u64) -> Result<u16, Fault> {
        let mut b = [0u8; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn u32(&self, addr: u64) -> Result<u32, Fault> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&self, addr: u64) -> Result<u64, Fault> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>, Fault> {
        if len > MAX_READ {
            return Err(Fault::TooLarge {
                addr,
                len,
                limit: MAX_READ,
            });
        }
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }
    /// A Go string header `{ptr, len}` at `addr`, decoded lossily.
    fn go_string(&self, addr: u64, max: usize) -> Result<String, Fault> {
        let ptr = self.u64(addr)?;
        let len_at = addr
            .checked_add(8)
            .ok_or(Fault::Unmapped { addr, len: 16 })?;
        let len = usize::try_from(self.u64(len_at)?).unwrap_or(usize::MAX);
        if len == 0 {
            return Ok(String::new());
        }
        let b = self.bytes(ptr, len.min(max))?;
        Ok(String::from_utf8_lossy(&b).into_owned())
    }
    /// A NUL-terminated C string of at most `max` bytes.
    fn c_string(&self, addr: u64, max: usize) -> Result<String, Fault> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 64];
        while out.len() < max {
            let n = chunk.len().min(max - out.len());
            // Fall back to byte reads at the end of a mapping.
            let at = addr
                .checked_add(out.len() as u64)
                .ok_or(Fault::Unmapped { addr, len: max })?;
            if self.read(at, &mut chunk[..n]).is_err() {
                let b = self.u8(at)?;
                if b == 0 {
                    break;
                }
                out.push(b);
                continue;
            }
            if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
                out.extend_from_slice(&chunk[..z]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl<T: Memory + ?Sized> ReadExt for T {}

impl<T: Memory + ?Sized> Memory for &T {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        (**self).read(addr, buf)
    }
}

impl<T: Memory + ?Sized> Memory for std::sync::Arc<T> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        (**self).read(addr, buf)
    }
}

#[cfg(test)]
pub mod mock {
    //! A sparse byte map for decoder unit tests.
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    pub struct MockMemory {
        pub bytes: BTreeMap<u64, u8>,
    }

    impl MockMemory {
        pub fn put(&mut self, addr: u64, data: &[u8]) {
            for (i, b) in data.iter().enumerate() {
                self.bytes.insert(addr.wrapping_add(i as u64), *b);
            }
        }
        pub fn put_u64(&mut self, addr: u64, v: u64) {
            self.put(addr, &v.to_le_bytes());
        }
        pub fn put_u32(&mut self, addr: u64, v: u32) {
            self.put(addr, &v.to_le_bytes());
        }
    }

    impl Memory for MockMemory {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
            for (i, b) in buf.iter_mut().enumerate() {
                let a = addr.wrapping_add(i as u64);
                *b = *self
                    .bytes
                    .get(&a)
                    .ok_or(Fault::Unmapped { addr: a, len: 1 })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::mock::MockMemory;
    use super::*;

    #[test]
    fn strings_at_the_top_of_the_address_space_are_faults_not_overflows() {
        let mut m = MockMemory::default();
        m.put(u64::MAX - 7, &[b'a'; 8]);
        assert!(m.go_string(u64::MAX - 7, 64).is_err());
        assert!(m.c_string(u64::MAX - 7, 64).is_err());
        // A length the core claims is capped by `max`, not allocated.
        m.put_u64(0x1000, 0x2000);
        m.put_u64(0x1008, u64::MAX);
        m.put(0x2000, b"abcd");
        assert!(m.go_string(0x1000, 4).is_ok_and(|s| s == "abcd"));
    }
}
