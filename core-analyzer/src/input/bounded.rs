//! Decompressing untrusted input without letting it grow without end: an
//! ELF file says how big it is (its program and section headers), so the
//! stream may not run past that; and a temporary file is removed when the
//! run is interrupted.
use std::ffi::CString;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicPtr, Ordering};

/// Bytes of the stream read to find its headers.
const HEAD: usize = 1 << 20;
/// When the headers cannot bound the file (more than 65535 program headers
/// keep their count in a section header at the end): at most this.
const FALLBACK_LIMIT: u64 = 1 << 40;

/// A decompressed stream that fails once it passes the size its own ELF
/// headers describe.
pub struct Bounded<R> {
    inner: R,
    head: Vec<u8>,
    at: usize,
    /// Bytes handed out so far.
    served: u64,
    pub limit: u64,
}

impl<R: Read> Bounded<R> {
    /// Reads the start of the stream; fails if it is not a 64-bit ELF file.
    pub fn new(mut inner: R, what: &Path) -> io::Result<Bounded<R>> {
        let mut head = vec![0u8; HEAD];
        let mut n = 0;
        while n < head.len() {
            let got = inner.read(&mut head[n..])?;
            if got == 0 {
                break;
            }
            n += got;
        }
        head.truncate(n);
        let limit = elf_extent(&head).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} does not decompress to an ELF file", what.display()),
            )
        })?;
        Ok(Bounded {
            inner,
            head,
            at: 0,
            served: 0,
            limit,
        })
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.at < self.head.len() {
            let n = buf.len().min(self.head.len() - self.at);
            buf[..n].copy_from_slice(&self.head[self.at..self.at + n]);
            self.at += n;
            n
        } else {
            self.inner.read(buf)?
        };
        self.served += n as u64;
        if self.served > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "it decompresses past the {} bytes its ELF headers describe (corrupt or hostile)",
                    self.limit
                ),
            ));
        }
        Ok(n)
    }
}

/// The end of the last thing a 64-bit little-endian ELF file's headers
/// place: program header table, each segment's file bytes, section header
/// table. `None` when `head` is not such a file or cut before its headers.
pub fn elf_extent(head: &[u8]) -> Option<u64> {
    if head.get(..4)? != b"\x7fELF" || head.get(4)? != &2 || head.get(5)? != &1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(head.get(o..o + 2)?.try_into().ok()?) as u64);
    let u64_at = |o: usize| Some(u64::from_le_bytes(head.get(o..o + 8)?.try_into().ok()?));
    let (phoff, shoff) = (u64_at(0x20)?, u64_at(0x28)?);
    let (phentsize, phnum) = (u16_at(0x36)?, u16_at(0x38)?);
    let (shentsize, shnum) = (u16_at(0x3a)?, u16_at(0x3c)?);
    if phnum == 0xffff {
        return Some(FALLBACK_LIMIT);
    }
    let mut end = phoff
        .checked_add(phnum.checked_mul(phentsize)?)?
        .max(shoff.checked_add(shnum.checked_mul(shentsize)?)?);
    for i in 0..phnum {
        let ph = usize::try_from(phoff.checked_add(i * phentsize)?).ok()?;
        let (off, filesz) = (u64_at(ph.checked_add(8)?)?, u64_at(ph.checked_add(32)?)?);
        end = end.max(off.checked_add(filesz)?);
    }
    Some(end)
}

/// The temporary file of a decompression under way, removed if the run is
/// interrupted (SIGINT, SIGTERM, SIGHUP) before it is renamed into place.
pub struct TmpGuard {
    path: *mut libc::c_char,
    old: [(libc::c_int, libc::sigaction); 3],
}

/// The one temporary file a signal handler removes (a handler may only use
/// what is already in place: a pointer and unlink(2)).
static TMP: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

extern "C" fn remove_and_die(sig: libc::c_int) {
    let p = TMP.swap(std::ptr::null_mut(), Ordering::SeqCst);
    // SAFETY: unlink, signal and raise are async-signal-safe; p is a
    // NUL-terminated path leaked by TmpGuard::new, or null.
    unsafe {
        if !p.is_null() {
            libc::unlink(p);
        }
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

impl TmpGuard {
    pub fn new(path: &Path) -> Option<TmpGuard> {
        use std::os::unix::ffi::OsStrExt;
        let c = CString::new(path.as_os_str().as_bytes()).ok()?.into_raw();
        TMP.store(c, Ordering::SeqCst);
        // SAFETY: sigaction with a handler that only calls async-signal-safe
        // functions; the old actions are kept and restored on drop.
        let old = SIGNALS.map(|sig| unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = remove_and_die as *const () as usize;
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, &new, &mut old);
            (sig, old)
        });
        Some(TmpGuard { path: c, old })
    }
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        // SAFETY: restores the actions saved in `new`; the path was leaked
        // by `new` and is no longer reachable from the handler.
        unsafe {
            for (sig, old) in &self.old {
                libc::sigaction(*sig, old, std::ptr::null_mut());
            }
            let _ = TMP.compare_exchange(
                self.path,
                std::ptr::null_mut(),
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
            drop(CString::from_raw(self.path));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf(phdrs: &[(u64, u64)], shoff: u64, shnum: u16) -> Vec<u8> {
        let mut h = vec![0u8; 64 + 56 * phdrs.len()];
        h[..6].copy_from_slice(b"\x7fELF\x02\x01");
        h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        h[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        h[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        h[0x3c..0x3e].copy_from_slice(&shnum.to_le_bytes());
        for (i, (off, size)) in phdrs.iter().enumerate() {
            let p = 64 + 56 * i;
            h[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            h[p + 32..p + 40].copy_from_slice(&size.to_le_bytes());
        }
        h
    }

    #[test]
    fn an_elf_file_says_how_big_it_is() {
        assert_eq!(
            elf_extent(&elf(&[(0x1000, 0x500), (0x2000, 0x100)], 0, 0)),
            Some(0x2100)
        );
        assert_eq!(
            elf_extent(&elf(&[(0x1000, 0x500)], 0x9000, 10)),
            Some(0x9000 + 640)
        );
        assert_eq!(elf_extent(&elf(&[(u64::MAX, 2)], 0, 0)), None, "overflow");
        assert_eq!(elf_extent(b"not elf at all"), None);
    }

    #[test]
    fn a_stream_past_its_size_is_an_error() {
        let mut data = elf(&[(0x1000, 0x1000)], 0, 0);
        data.resize(0x2000, 1);
        let mut out = vec![];
        let mut r = Bounded::new(&data[..], Path::new("ok")).unwrap();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, data);
        data.resize(HEAD + 0x5000, 7); // more than the headers allow
        let mut r = Bounded::new(&data[..], Path::new("bomb")).unwrap();
        let err = r.read_to_end(&mut vec![]).unwrap_err();
        assert!(err.to_string().contains("past the 8192 bytes"), "{err}");
    }
}
