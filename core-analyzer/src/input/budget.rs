//! How much decompressing an untrusted `.zst` may write: bounded by what is
//! written (holes cost nothing), never by what the stream's own headers
//! claim. Three bounds, each overridable: a ratio to the compressed size
//! (real cores write 6-15 bytes of data per compressed byte; a hostile stream
//! of one repeated byte writes thousands), an absolute cap, and the free
//! space of the file system written to, of which a margin is always left.
use std::io;
use std::path::{Path, PathBuf};

/// Bytes of data written per compressed byte, at most (`CGOCORE_MAX_RATIO`).
const DEFAULT_RATIO: u64 = 200;
/// Bytes of data written at most (`CGOCORE_MAX_DECOMPRESSED_MB`).
const DEFAULT_MAX_MB: u64 = 64 << 10;
/// Free space left on the file system written to (`CGOCORE_MIN_FREE_MB`):
/// 1 GiB, or 5% of a smaller file system.
const DEFAULT_MIN_FREE_MB: u64 = 1 << 10;
/// The free space is looked at again after this many bytes.
const CHECK_EVERY: u64 = 32 << 20;

pub struct Budget {
    written: u64,
    limit: u64,
    /// Why `limit` is what it is, for the message.
    limit_is: String,
    dir: Option<PathBuf>,
    min_free: Option<u64>,
    next_check: u64,
}

fn env_u64(k: &str) -> Option<u64> {
    std::env::var(k).ok()?.trim().parse().ok()
}

/// Free bytes and size of the file system holding `dir`.
fn space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct; c is NUL-terminated.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    let unit = s.f_frsize as u64;
    Some((s.f_bavail as u64 * unit, s.f_blocks as u64 * unit))
}

impl Budget {
    pub fn unlimited() -> Budget {
        Budget {
            written: 0,
            limit: u64::MAX,
            limit_is: String::new(),
            dir: None,
            min_free: None,
            next_check: u64::MAX,
        }
    }

    /// The budget for a stream of `compressed` bytes written into `dir`.
    pub fn new(compressed: u64, dir: &Path) -> Budget {
        let ratio = env_u64("CGOCORE_MAX_RATIO").unwrap_or(DEFAULT_RATIO);
        let cap = env_u64("CGOCORE_MAX_DECOMPRESSED_MB")
            .unwrap_or(DEFAULT_MAX_MB)
            .saturating_mul(1 << 20);
        let by_ratio = compressed.max(1 << 20).saturating_mul(ratio);
        let (limit, limit_is) = if by_ratio < cap {
            (
                by_ratio,
                format!("{ratio} times its compressed size (CGOCORE_MAX_RATIO)"),
            )
        } else {
            (
                cap,
                "the most cgocore writes (CGOCORE_MAX_DECOMPRESSED_MB)".to_string(),
            )
        };
        let min_free = env_u64("CGOCORE_MIN_FREE_MB")
            .map(|mb| mb.saturating_mul(1 << 20))
            .or_else(|| {
                let (_, size) = space(dir)?;
                Some((DEFAULT_MIN_FREE_MB << 20).min(size / 20))
            });
        Budget {
            written: 0,
            limit,
            limit_is,
            dir: Some(dir.to_path_buf()),
            min_free,
            next_check: 0,
        }
    }

    /// Account for `n` more bytes about to be written.
    pub fn spend(&mut self, n: u64) -> io::Result<()> {
        self.written = self.written.saturating_add(n);
        if self.written > self.limit {
            return Err(io::Error::other(format!(
                "it decompresses to more than {} MB of data, {}; corrupt or hostile, or raise the bound",
                self.limit >> 20,
                self.limit_is
            )));
        }
        if self.written >= self.next_check {
            self.next_check = self.written.saturating_add(CHECK_EVERY);
            if let (Some(dir), Some(min)) = (&self.dir, self.min_free) {
                let free = space(dir).map_or(u64::MAX, |(free, _)| free);
                if free < min.saturating_add(CHECK_EVERY) {
                    return Err(io::Error::other(format!(
                        "{} has {} MB free and cgocore leaves {} MB free there: free room, or set CGOCORE_CACHE to a folder on another disk (CGOCORE_MIN_FREE_MB sets the margin)",
                        dir.display(),
                        free >> 20,
                        min >> 20
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_may_write_a_ratio_of_its_compressed_size() {
        let dir = std::env::temp_dir();
        let mut b = Budget::new(2 << 20, &dir);
        b.min_free = None;
        b.spend(DEFAULT_RATIO * (2 << 20)).unwrap();
        let err = b.spend(1).unwrap_err().to_string();
        assert!(err.contains("200 times its compressed size"), "{err}");
        let mut u = Budget::unlimited();
        u.spend(u64::MAX / 2).unwrap();
    }

    #[test]
    fn the_margin_of_free_space_is_kept() {
        let dir = std::env::temp_dir();
        let mut b = Budget::new(1 << 20, &dir);
        b.min_free = Some(u64::MAX / 4); // more than any disk has
        let err = b.spend(0).unwrap_err().to_string();
        assert!(err.contains("MB free"), "{err}");
    }
}
