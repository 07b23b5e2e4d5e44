//! Opening input files: mmap, and transparent zstd (`core.zst` as
//! systemd-coredump stores it). A compressed file is streamed once into a
//! sparse cache file and mmap'd from there, so later runs pay nothing.
use anyhow::{bail, Context, Result};
use memmap2::Mmap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod bounded;
mod budget;
mod cache;

pub(crate) use bounded::TmpGuard;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// An mmap'd input file (decompressed if it was zstd).
pub struct Mapped {
    pub path: PathBuf,
    /// The file mapped: the decompressed copy of a `.zst`.
    pub real_path: PathBuf,
    pub map: Mmap,
    /// The file mapped (an unnamed temporary file has no path to reopen).
    file: File,
}

impl Mapped {
    /// The file, for reads beside the mapping.
    pub fn reopen(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Drop this process's page mappings of the file, once what was read
    /// through the mapping (a core's headers and notes) is parsed. The bytes
    /// stay in the page cache.
    pub fn release(&self) {
        self.release_range(0..self.map.len());
    }

    /// [`Mapped::release`] for the bytes at `range` of the file (a core's
    /// notes already read: 10,000 threads have 110 MB of them).
    pub fn release_range(&self, range: std::ops::Range<usize>) {
        let end = range.end.min(self.map.len());
        if range.start >= end {
            return;
        }
        // SAFETY: the mapping is read-only and file-backed; MADV_DONTNEED only
        // discards page table entries, and later reads see the same bytes.
        let _ = unsafe {
            self.map.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                end - range.start,
            )
        };
    }
}

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// Cores are sparse (9 GB apparent, 290 MB of data for 100k goroutines), and
/// a first run on a core not yet in the page cache spent most of its time in
/// the kernel zero-filling holes that fault readahead pulled in around each
/// page read (7-9 s cold against 0.9 s warm). Asking for the data extents
/// up front (SEEK_DATA/SEEK_HOLE, then WILLNEED) reads them in large
/// sequential requests and leaves the holes alone: 1.0 s cold.
const PREFETCH_BUDGET: u64 = 1 << 30;

/// Start reading the file's data extents (up to `PREFETCH_BUDGET` bytes, in
/// file order) into the page cache, on a background thread.
pub fn prefetch_data(m: &Mapped) {
    let Ok(file) = m.file.try_clone() else {
        return;
    };
    let len = m.map.len() as u64;
    let _ = std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || prefetch_extents(&file, len, PREFETCH_BUDGET));
}

/// Extents found in the page cache one after another, after which the rest of
/// a core is taken to be there too (a core just written, or read before): on a
/// core of 10,000 threads, each stack its own extent, the prefetch was 64,000
/// system calls that read nothing. (A core partly evicted is then read as it
/// is used: slower, never wrong.)
const RESIDENT_RUN: u32 = 256;

#[cfg(target_os = "linux")]
fn prefetch_extents(file: &File, len: u64, budget: u64) {
    use std::os::unix::io::AsRawFd;
    let fd = file.as_raw_fd();
    let (mut off, mut left) = (0i64, budget as i64);
    let mut resident = 0;
    while (off as u64) < len && left > 0 && resident < RESIDENT_RUN {
        // SAFETY: plain syscalls on a file descriptor this function owns.
        let data = unsafe { libc::lseek(fd, off, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after off (or no SEEK_DATA support)
        }
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        if hole <= data {
            break;
        }
        let n = (hole - data).min(left);
        if in_page_cache(fd, data) {
            resident += 1;
        } else {
            resident = 0;
            unsafe { libc::posix_fadvise(fd, data, n, libc::POSIX_FADV_WILLNEED) };
        }
        left -= n;
        off = hole;
    }
}

/// Whether the byte at `off` is in the page cache: a read that may not wait
/// for the disk (`RWF_NOWAIT`) succeeds. Where the kernel cannot tell, no.
/// The system call itself, not libc's wrapper: musl has one only from 1.2.5.
#[cfg(target_os = "linux")]
fn in_page_cache(fd: std::os::unix::io::RawFd, off: i64) -> bool {
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec over a local byte, on a descriptor the caller owns;
    // the offset's high half is 0 on a 64-bit target.
    let n = unsafe { libc::syscall(libc::SYS_preadv2, fd, &iov, 1, off, 0, libc::RWF_NOWAIT) };
    n == 1
}

#[cfg(not(target_os = "linux"))]
fn prefetch_extents(_file: &File, _len: u64, _budget: u64) {}

/// Open a file for reading only if it is a regular file, and without ever
/// opening anything else: a FIFO, a device (whose open alone may act: arm a
/// watchdog, rewind a tape) or a socket named by a user or by a core from
/// another host is refused, never waited on. On Linux the path is first
/// opened with `O_PATH` (which opens nothing), checked, and reopened through
/// that descriptor; elsewhere it is checked, opened without blocking, and
/// checked again to be the same file.
pub fn open_file(path: &Path) -> Result<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let cannot = || format!("cannot open {}", path.display());
    #[cfg(target_os = "linux")]
    let (probe, meta) = {
        let probe = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .with_context(cannot)?;
        let meta = probe.metadata().with_context(cannot)?;
        (Some(probe), meta)
    };
    #[cfg(not(target_os = "linux"))]
    let (probe, meta): (Option<File>, _) = (None, std::fs::metadata(path).with_context(cannot)?);
    if let Some(what) = not_a_file(&meta.file_type()) {
        bail!("{} is {what}, not a file", path.display());
    }
    let reopen = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(p)
    };
    let f = match probe.as_ref().map(|p| {
        use std::os::unix::io::AsRawFd;
        reopen(Path::new(&format!("/proc/self/fd/{}", p.as_raw_fd())))
    }) {
        Some(Ok(f)) => f,
        // No /proc (a bare container): by name, checked below.
        _ => reopen(path).with_context(cannot)?,
    };
    let now = f.metadata().with_context(cannot)?;
    if (now.dev(), now.ino()) != (meta.dev(), meta.ino()) || !now.is_file() {
        bail!("{} changed while it was opened", path.display());
    }
    Ok(f)
}

/// What a file type is in words, when it is not a regular file.
fn not_a_file(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    })
}

pub fn open(path: &Path) -> Result<Arc<Mapped>> {
    let mut f = open_file(path)?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).unwrap_or(0);
    let (real, file) = if n == 4 && magic == ZSTD_MAGIC {
        let d = cache::decompressed(path)?;
        (d.path, d.file)
    } else {
        (path.to_path_buf(), f)
    };
    if file.metadata()?.len() == 0 {
        bail!("{} is empty", path.display());
    }
    // SAFETY: the file is opened read-only; a core or binary changing under us
    // can only yield wrong bytes, which every decoder already tolerates.
    let map =
        unsafe { Mmap::map(&file) }.with_context(|| format!("cannot mmap {}", real.display()))?;
    Ok(Arc::new(Mapped {
        path: path.to_path_buf(),
        real_path: real,
        map,
        file,
    }))
}

const PAGE: usize = 4096;

/// A core is mostly zeros: check them a word at a time (a byte-wise `all`
/// made this check most of a first run on a 9 GB core).
fn is_zero(b: &[u8]) -> bool {
    // SAFETY: any bit pattern is a valid u128.
    let (head, words, tail) = unsafe { b.align_to::<u128>() };
    head.iter().all(|&x| x == 0)
        && words.iter().fold(0u128, |acc, &w| acc | w) == 0
        && tail.iter().all(|&x| x == 0)
}

/// Copy `r` into `w`, seeking over all-zero pages so cores stay sparse.
pub fn write_sparse(r: &mut impl Read, w: &mut File) -> Result<()> {
    write_sparse_within(r, w, &mut budget::Budget::unlimited())
}

/// The same, bounded by `budget`: what is written (not the holes) is spent.
fn write_sparse_within(r: &mut impl Read, w: &mut File, budget: &mut budget::Budget) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    budget.spend(0)?;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = r.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        // Page by page, so holes stay as fine as the kernel left them (coarser
        // extents map more zero pages in later, through fault-around).
        let page = |at: usize| &buf[at..(at + PAGE).min(filled)];
        let mut at = 0;
        while at < filled {
            let zero = is_zero(page(at));
            let mut end = (at + PAGE).min(filled);
            while end < filled && is_zero(page(end)) == zero {
                end = (end + PAGE).min(filled);
            }
            if zero {
                w.seek(SeekFrom::Current((end - at) as i64))?;
            } else {
                budget.spend((end - at) as u64)?;
                w.write_all(&buf[at..end])?;
            }
            at = end;
        }
        len += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    w.set_len(len)?;
    Ok(())
}

/// `p` (an absolute path in the target's file system) as seen from this host:
/// under `sysroot`, resolved as if the sysroot were `/` (see [`in_root`]).
pub fn under_sysroot(sysroot: &Option<PathBuf>, p: &str) -> PathBuf {
    match sysroot {
        Some(root) => in_root(root, p),
        None => PathBuf::from(p),
    }
}

/// Symbolic links followed resolving one path, as the kernel's limit.
const MAX_LINKS: usize = 40;

/// `p` resolved inside `root` the way `openat2(RESOLVE_IN_ROOT)` does: `..`
/// stops at the root, and a symbolic link's target is resolved inside it too
/// (an absolute one from the root), so nothing a core names leads out of the
/// sysroot to this host's files. Done component by component in user space:
/// one way on every kernel (and where a sysroot is `/proc/PID/root`, whose
/// absolute links the kernel would resolve from this host's root). The
/// result has no links left to follow but a missing last part.
pub fn in_root(root: &Path, p: &str) -> PathBuf {
    use std::collections::VecDeque;
    use std::ffi::OsString;
    use std::path::Component;
    let parts = |p: &Path| -> Vec<OsString> {
        p.components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_os_string()),
                Component::ParentDir => Some("..".into()),
                _ => None,
            })
            .collect()
    };
    let mut todo: VecDeque<OsString> = parts(Path::new(p)).into();
    let mut done: Vec<OsString> = vec![];
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            done.pop();
            continue;
        }
        let here: PathBuf = std::iter::once(root.as_os_str())
            .chain(done.iter().map(|d| d.as_os_str()))
            .chain(std::iter::once(c.as_os_str()))
            .collect();
        let is_link = std::fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            done.push(c);
            continue;
        }
        links += 1;
        // A link that cannot be read is not followed: the kernel would
        // follow it from this host's root.
        let target = std::fs::read_link(&here).ok();
        let Some(target) = target.filter(|_| links <= MAX_LINKS) else {
            // A name that cannot exist, and says why when it is printed.
            return root.join(format!("(unresolvable symbolic links resolving {p})"));
        };
        if target.is_absolute() {
            done.clear();
        }
        for t in parts(&target).into_iter().rev() {
            todo.push_front(t);
        }
    }
    std::iter::once(root.as_os_str())
        .chain(done.iter().map(|d| d.as_os_str()))
        .collect()
}

/// A path under `/dev` (`//dev/x`, `/./dev/x` too): device nodes a core
/// names are never libraries.
pub fn is_device_path(p: &str) -> bool {
    Path::new(p).starts_with("/dev")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_sysroot() {
        let root = std::env::temp_dir().join(format!("cgocore-inroot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::write(root.join("usr/lib/libc.so.6"), b"x").unwrap();
        let link = |target: &str, at: &str| {
            std::os::unix::fs::symlink(target, root.join(at)).unwrap();
        };
        link("/usr/lib", "lib"); // absolute: from the root
        link("../../../../../../etc", "usr/up"); // climbs past the root
        link("loop2", "loop1");
        link("loop1", "loop2");
        let want = root.join("usr/lib/libc.so.6");
        assert_eq!(in_root(&root, "/usr/lib/libc.so.6"), want);
        assert_eq!(in_root(&root, "//lib/./libc.so.6"), want);
        assert_eq!(in_root(&root, "/../../../usr/lib/libc.so.6"), want);
        assert_eq!(in_root(&root, "/usr/up/passwd"), root.join("etc/passwd"));
        assert!(!in_root(&root, "/loop1/x").exists());
        assert!(in_root(&root, "/loop1/x").starts_with(&root));
        assert!(is_device_path("//dev/watchdog") && is_device_path("/./dev/x"));
        assert!(!is_device_path("/devices/x"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn sparse_copy_keeps_bytes_and_leaves_zero_pages_as_holes() {
        // 3 MiB: data at an odd offset, a zero MiB, data across a buffer edge.
        let mut src = vec![0u8; 3 << 20];
        src[5] = 1;
        src[(1 << 20) - 3..(1 << 20) + 3].fill(7);
        src[(3 << 20) - 1] = 9;
        let path = std::env::temp_dir().join(format!("cgocore-sparse-{}", std::process::id()));
        let mut w = File::create(&path).unwrap();
        write_sparse(&mut &src[..], &mut w).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), src);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let f = File::open(&path).unwrap();
            // SAFETY: lseek on a descriptor this test owns.
            let data = unsafe { libc::lseek(f.as_raw_fd(), 2 << 20, libc::SEEK_DATA) };
            assert_eq!(data, (3 << 20) - 4096, "the zero MiB and more is a hole");
        }
        let _ = std::fs::remove_file(&path);
    }
}
