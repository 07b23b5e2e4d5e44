//! The decompression cache: each `.zst` input is streamed once into a sparse
//! file keyed by the input's path, size and mtime. Least recently used
//! entries go once the cache outgrows its budget, so a machine that opens
//! many compressed cores (or a CI that clones the fixtures afresh each run)
//! does not fill its disk.
use anyhow::{Context, Result};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Disk the cache may hold (bytes actually allocated: entries are sparse).
/// The newest entry stays whatever its size.
const DEFAULT_BUDGET_MB: u64 = 8 * 1024;

fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CGOCORE_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("cgocore");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("cgocore");
    }
    std::env::temp_dir().join("cgocore-cache")
}

fn budget() -> u64 {
    std::env::var("CGOCORE_CACHE_MAX_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_BUDGET_MB)
        .saturating_mul(1 << 20)
}

/// Path of the decompressed copy, creating it if needed.
pub(super) fn decompressed(path: &Path) -> Result<PathBuf> {
    let meta = fs::metadata(path)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .hash(&mut h);
    meta.len().hash(&mut h);
    meta.modified().ok().hash(&mut h);
    let dir = cache_dir();
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().trim_end_matches(".zst").to_string())
        .unwrap_or_default();
    let out = dir.join(format!("{:016x}-{}", h.finish(), name));
    if out.exists() {
        touch(&out);
        return Ok(out);
    }
    fs::create_dir_all(&dir).with_context(|| {
        format!(
            "cannot create cache folder {} (set CGOCORE_CACHE)",
            dir.display()
        )
    })?;
    // Unique per process *and* call: threads may decompress the same file at once.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{}.{}.{seq}.tmp", h.finish(), std::process::id()));
    remove_orphans(&dir);
    let guard = super::bounded::TmpGuard::new(&tmp);
    let result = (|| -> Result<()> {
        let dec = zstd::stream::read::Decoder::new(super::open_file(path)?)?;
        let dec = super::bounded::Bounded::new(dec, path)
            .with_context(|| format!("{} is not a valid zstd stream", path.display()))?;
        let _phase = crate::progress::Phase::new(
            &format!("decompressing {}", path.display()),
            Some(dec.limit),
        );
        let mut dec = crate::progress::Reader(dec);
        let mut w = File::create(&tmp)?;
        super::write_sparse(&mut dec, &mut w).with_context(|| {
            format!(
                "{} is not a valid zstd stream of an ELF file; stopped, nothing kept",
                path.display()
            )
        })?;
        Ok(())
    })();
    drop(guard);
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, &out)?;
    evict(&dir, &out, budget());
    Ok(out)
}

/// Temporary files of decompressions whose process is gone (killed before
/// its signal handler could run, SIGKILL) and that have not grown for ten
/// minutes (a writer in another PID namespace sharing the cache looks gone
/// too, but its file still grows): removed.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        // .<hash>.<pid>.<seq>.tmp
        let pid = name
            .strip_suffix(".tmp")
            .and_then(|n| n.split('.').nth(2))
            .and_then(|p| p.parse::<i32>().ok());
        // SAFETY: kill with signal 0 only asks whether the process exists.
        let gone = pid.is_some_and(|p| unsafe { libc::kill(p, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH));
        let stale = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(600));
        if gone && stale {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// Marks an entry as used (eviction goes by mtime; atime is often off).
fn touch(p: &Path) {
    if let Ok(f) = File::options().write(true).open(p) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Bytes a file holds on disk (holes are free).
fn allocated(m: &fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        m.blocks() * 512
    }
    #[cfg(not(unix))]
    {
        m.len()
    }
}

/// Removes the least recently used entries until the cache fits `budget`,
/// never `keep`. Removing a file another process has mapped is safe: the
/// mapping keeps it until unmapped. Temporary files of writers at work are
/// not entries.
fn evict(dir: &Path, keep: &Path, budget: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let (tmp, mut files): (Vec<_>, Vec<_>) = entries
        .flatten()
        .filter_map(|e| {
            let m = e.metadata().ok().filter(|m| m.is_file())?;
            let is_tmp = e.file_name().to_string_lossy().starts_with('.');
            Some((is_tmp, (m.modified().ok()?, allocated(&m), e.path())))
        })
        .partition(|(is_tmp, _)| *is_tmp);
    let mut files: Vec<(SystemTime, u64, PathBuf)> = files.drain(..).map(|(_, f)| f).collect();
    // Writers' temporary files are not entries, but take room all the same.
    let mut total: u64 = files
        .iter()
        .chain(tmp.iter().map(|(_, f)| f))
        .map(|f| f.1)
        .sum();
    files.sort_by_key(|f| f.0);
    for (_, size, path) in files {
        if total <= budget {
            break;
        }
        if path != keep && fs::remove_file(&path).is_ok() {
            total -= size;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn eviction_drops_least_recently_used_entries_but_not_the_new_one() {
        let dir = std::env::temp_dir().join(format!("cgocore-evict-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let t0 = SystemTime::now() - Duration::from_secs(3600);
        let mut paths = vec![];
        for (i, name) in ["old", "mid", "new"].iter().enumerate() {
            let p = dir.join(name);
            fs::write(&p, vec![1u8; 64 << 10]).unwrap();
            let f = File::options().write(true).open(&p).unwrap();
            f.set_modified(t0 + Duration::from_secs(60 * i as u64))
                .unwrap();
            paths.push(p);
        }
        // A writer's temporary file is not an entry.
        fs::write(dir.join(".x.tmp"), vec![1u8; 64 << 10]).unwrap();
        let one = allocated(&fs::metadata(&paths[0]).unwrap());
        // Room for two and the writer's temporary file (it takes room
        // too): the oldest entry goes.
        evict(&dir, &paths[0], 3 * one);
        assert!(paths[0].exists(), "kept although oldest");
        assert!(!paths[1].exists());
        assert!(paths[2].exists());
        assert!(dir.join(".x.tmp").exists());
        // No room at all: only the kept one stays.
        evict(&dir, &paths[0], 0);
        assert!(paths[0].exists() && !paths[2].exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
