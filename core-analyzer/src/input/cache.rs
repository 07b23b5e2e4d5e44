//! The decompression cache: each `.zst` input is streamed once into a sparse
//! file, and later runs map that copy. The cache is private to its user: a
//! folder of theirs (mode 0700), never a shared fixed-name one; an entry is
//! trusted only when the record beside it matches the input and the entry's
//! length; entries are written under unpredictable names created
//! exclusively, then renamed into place. Where no private folder can be had,
//! the input is decompressed into an unnamed temporary file that goes when
//! the run ends. Least recently used entries go once the cache outgrows its
//! budget.
use super::budget::Budget;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Disk the cache may hold (bytes actually allocated: entries are sparse).
/// The newest entry stays whatever its size.
const DEFAULT_BUDGET_MB: u64 = 8 * 1024;
/// The record beside an entry.
const ID_SUFFIX: &str = ".id";
/// The largest record read.
const MAX_RECORD: u64 = 64 << 10;
/// Bytes of the compressed input, at each end, that its identity hashes.
const SAMPLE: u64 = 64 << 10;

/// The cache folder: `$CGOCORE_CACHE`, else the user's cache home
/// (`$XDG_CACHE_HOME`, `~/.cache`), else their runtime folder
/// (`$XDG_RUNTIME_DIR`, per user); none when none is set (a service manager,
/// cron, `env -i`).
fn cache_dir() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = std::env::var_os("CGOCORE_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    var("XDG_CACHE_HOME")
        .map(|d| d.join("cgocore"))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("cgocore")))
        .or_else(|| var("XDG_RUNTIME_DIR").map(|d| d.join("cgocore")))
}

fn budget() -> u64 {
    std::env::var("CGOCORE_CACHE_MAX_MB")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(DEFAULT_BUDGET_MB)
        .saturating_mul(1 << 20)
}

fn euid() -> u32 {
    // SAFETY: geteuid has no failure mode.
    unsafe { libc::geteuid() }
}

/// Make `dir` the user's private folder, or say why it cannot be: `Err` when
/// it is unsafe to use (a link, another user's folder, inside a folder others
/// may rename it in), `Ok(Some(why))` when it cannot be created (a read-only
/// home): no cache then.
fn private_dir(dir: &Path) -> Result<Option<String>> {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        return Ok(Some(format!("cannot create {}: {e}", dir.display())));
    }
    let fix = "remove it, or set CGOCORE_CACHE to a folder of your own";
    let m = fs::symlink_metadata(dir)?;
    if m.file_type().is_symlink() || !m.is_dir() {
        bail!(
            "the cache folder {} is {}, not a folder of yours: {fix}",
            dir.display(),
            if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a folder"
            }
        );
    }
    if m.uid() != euid() {
        bail!(
            "the cache folder {} belongs to user {}, not to you (user {}): whoever owns it can plant entries in it; {fix}",
            dir.display(),
            m.uid(),
            euid()
        );
    }
    if let Some(parent) = dir.parent().and_then(|p| fs::metadata(p).ok()) {
        let others_may_rename = parent.mode() & 0o022 != 0 && parent.mode() & 0o1000 == 0;
        if others_may_rename && parent.uid() != euid() && parent.uid() != 0 {
            bail!(
                "the cache folder {} is in a folder others may write to: {fix}",
                dir.display()
            );
        }
    }
    if m.mode() & 0o077 != 0 {
        // Decompressed cores hold the process's memory: its user's alone.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make the cache folder {} private", dir.display()))?;
    }
    Ok(None)
}

/// What the compressed input was when its entry was made, and how long the
/// entry is: the record an entry is trusted by.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Identity {
    input: String,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    /// A hash of its first and last `SAMPLE` bytes.
    sample: u64,
    /// The decompressed length (set once it is known).
    length: u64,
}

impl Identity {
    fn same_input(&self, o: &Identity) -> bool {
        (
            &self.input,
            self.dev,
            self.ino,
            self.size,
            self.mtime_ns,
            self.sample,
        ) == (&o.input, o.dev, o.ino, o.size, o.mtime_ns, o.sample)
    }
}

fn identity(path: &Path, f: &mut File) -> Result<Identity> {
    let m = f.metadata()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let mut buf = vec![0u8; SAMPLE as usize];
    for at in [0, m.len().saturating_sub(SAMPLE)] {
        f.seek(SeekFrom::Start(at))?;
        let n = f.read(&mut buf)?;
        buf[..n].hash(&mut h);
    }
    f.seek(SeekFrom::Start(0))?;
    Ok(Identity {
        input: fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .to_string_lossy()
            .into_owned(),
        dev: m.dev(),
        ino: m.ino(),
        size: m.len(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        sample: h.finish(),
        length: 0,
    })
}

/// A decompressed input: its file, and where it is (for messages and tools).
pub(super) struct Decompressed {
    pub file: File,
    pub path: PathBuf,
}

/// The decompressed copy of `path`, from the cache or made now.
pub(super) fn decompressed(path: &Path) -> Result<Decompressed> {
    let mut input = super::open_file(path)?;
    let mut ident = identity(path, &mut input)?;
    let dir = match cache_dir() {
        Some(dir) => match private_dir(&dir)? {
            None => Some(dir),
            Some(why) => {
                eprintln!("cgocore: no cache ({why}); decompressing into a temporary file (set CGOCORE_CACHE)");
                None
            }
        },
        None => None,
    };
    let Some(dir) = dir else {
        // No name anyone could plant or read: gone when the run ends.
        let mut file = tempfile::tempfile().context("cannot create a temporary file")?;
        decompress(path, input, &mut file, &std::env::temp_dir())?;
        return Ok(Decompressed {
            file,
            path: PathBuf::from(format!("(decompressed {})", path.display())),
        });
    };
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&ident.input, ident.size, ident.mtime_ns).hash(&mut h);
    let key = h.finish();
    let name = path
        .file_name()
        .map(|s| s.to_string_lossy().trim_end_matches(".zst").to_string())
        .unwrap_or_default();
    let entry = dir.join(format!("{key:016x}-{name}"));
    let id_path = dir.join(format!("{key:016x}-{name}{ID_SUFFIX}"));
    if fs::symlink_metadata(&entry).is_ok() {
        match verify(&entry, &id_path, &ident) {
            Ok(file) => {
                touch(&file);
                return Ok(Decompressed { file, path: entry });
            }
            Err(why) => {
                eprintln!(
                    "cgocore: the cached copy of {} {why}; decompressing it again",
                    path.display()
                );
                let _ = fs::remove_file(&entry);
                let _ = fs::remove_file(&id_path);
            }
        }
    }
    remove_orphans(&dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{key:016x}.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(&dir)
        .with_context(|| format!("cannot write in the cache folder {}", dir.display()))?;
    // Removed by the handler if the run is interrupted (SIGINT, SIGTERM).
    let guard = super::TmpGuard::new(tmp.path());
    ident.length = decompress(path, input, tmp.as_file_mut(), &dir)?;
    tmp.as_file().sync_all()?;
    // The record first, then the entry: whoever sees the entry sees its
    // record; a run killed in between leaves a record whose entry is
    // missing or of another length, which is not trusted.
    let mut rec = tempfile::Builder::new()
        .prefix(&format!(".{key:016x}.{}.", std::process::id()))
        .suffix(".tmp")
        .tempfile_in(&dir)?;
    serde_json::to_writer(rec.as_file_mut(), &ident)?;
    rec.persist(&id_path).map_err(|e| e.error)?;
    let file = tmp
        .persist(&entry)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write in the cache folder {}", dir.display()))?;
    drop(guard);
    evict(&dir, &entry, budget());
    Ok(Decompressed { file, path: entry })
}

/// Stream the zstd input into `out` (sparse), bounded by what is written:
/// returns the decompressed length.
fn decompress(path: &Path, input: File, out: &mut File, dir: &Path) -> Result<u64> {
    let compressed = input.metadata()?.len();
    let dec = zstd::stream::read::Decoder::new(input)?;
    let dec = super::bounded::Bounded::new(dec, path)
        .with_context(|| format!("{} is not a valid zstd stream", path.display()))?;
    let _phase = crate::progress::Phase::new(
        &format!("decompressing {}", path.display()),
        Some(dec.limit),
    );
    let mut budget = Budget::new(compressed, dir);
    let mut dec = crate::progress::Reader(dec);
    super::write_sparse_within(&mut dec, out, &mut budget).with_context(|| {
        format!(
            "{} could not be decompressed; stopped, nothing kept",
            path.display()
        )
    })?;
    Ok(out.metadata()?.len())
}

/// The entry, if it is what its record says: both regular files of this
/// user, the record naming this very input, the entry as long as recorded
/// and as its own ELF headers describe. Otherwise why not.
fn verify(entry: &Path, id_path: &Path, want: &Identity) -> std::result::Result<File, String> {
    let mine = |p: &Path| -> std::result::Result<fs::Metadata, String> {
        let m = fs::symlink_metadata(p).map_err(|_| "has no record beside it".to_string())?;
        if !m.is_file() || m.uid() != euid() {
            return Err("is not a file of yours".into());
        }
        Ok(m)
    };
    mine(id_path)?;
    // A record is a few hundred bytes: more is not one of ours.
    let mut rec = vec![];
    File::open(id_path)
        .and_then(|f| f.take(MAX_RECORD + 1).read_to_end(&mut rec))
        .map_err(|e| format!("has an unreadable record ({e})"))?;
    if rec.len() as u64 > MAX_RECORD {
        return Err("has a damaged record".into());
    }
    let got: Identity =
        serde_json::from_slice(&rec).map_err(|_| "has a damaged record".to_string())?;
    if !got.same_input(want) {
        return Err("was made from another file".into());
    }
    let m = mine(entry)?;
    if m.len() != got.length {
        return Err(format!(
            "is {} bytes where {} were written (cut short)",
            m.len(),
            got.length
        ));
    }
    let mut f = super::open_file(entry).map_err(|e| format!("cannot be opened ({e})"))?;
    let mut head = vec![0u8; 1 << 20];
    let n = f.read(&mut head).map_err(|e| e.to_string())?;
    match super::bounded::elf_extent(&head[..n]) {
        Some(end) if end <= m.len() => Ok(f),
        _ => Err("is not the whole ELF file its headers describe".into()),
    }
}

/// Temporary files of decompressions whose process is gone (killed before
/// its signal handler could run, SIGKILL) and that have not grown for ten
/// minutes (a writer in another PID namespace sharing the cache looks gone
/// too, but its file still grows): removed. Records whose entry is gone too.
fn remove_orphans(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(entry) = name.strip_suffix(ID_SUFFIX) {
            if !name.starts_with('.') && fs::symlink_metadata(dir.join(entry)).is_err() {
                let _ = fs::remove_file(e.path());
            }
            continue;
        }
        // .<key>.<pid>.<random>.tmp
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
fn touch(f: &File) {
    if let Ok(w) = File::options().write(true).open(format!(
        "/proc/self/fd/{}",
        std::os::unix::io::AsRawFd::as_raw_fd(f)
    )) {
        let _ = w.set_modified(SystemTime::now());
    }
}

/// Bytes a file holds on disk (holes are free).
fn allocated(m: &fs::Metadata) -> u64 {
    m.blocks() * 512
}

/// Removes the least recently used entries (and their records) until the
/// cache fits `budget`, never `keep`. Removing a file another process has
/// mapped is safe: the mapping keeps it until unmapped. Temporary files of
/// writers at work are not entries.
fn evict(dir: &Path, keep: &Path, budget: u64) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let (tmp, mut files): (Vec<_>, Vec<_>) = entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().ends_with(ID_SUFFIX))
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
            let mut id = path.into_os_string();
            id.push(ID_SUFFIX);
            let _ = fs::remove_file(id);
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
            fs::write(dir.join(format!("{name}{ID_SUFFIX}")), b"{}").unwrap();
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
        assert!(!paths[1].exists() && !dir.join("mid.id").exists());
        assert!(paths[2].exists() && dir.join("new.id").exists());
        assert!(dir.join(".x.tmp").exists());
        // No room at all: only the kept one stays.
        evict(&dir, &paths[0], 0);
        assert!(paths[0].exists() && !paths[2].exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_folder_of_another_user_or_a_link_is_refused_and_ours_made_private() {
        let base = std::env::temp_dir().join(format!("cgocore-private-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).unwrap();
        let ours = base.join("ours");
        fs::create_dir(&ours).unwrap();
        fs::set_permissions(&ours, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(private_dir(&ours).unwrap().is_none());
        assert_eq!(fs::metadata(&ours).unwrap().mode() & 0o777, 0o700);
        let link = base.join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        let err = private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        if euid() == 0 {
            let theirs = base.join("theirs");
            fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = private_dir(&theirs).unwrap_err().to_string();
            assert!(err.contains("belongs to user 65534"), "{err}");
        }
        let _ = fs::remove_dir_all(&base);
    }
}
