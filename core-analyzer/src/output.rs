//! Files cgocore writes (`snapshot -o`, `--pprof`, `--dot`): only a regular
//! file (or `-`, standard output), never through a planted link, never over
//! one of the inputs. Each is written whole into a new temporary file beside
//! the target (an unpredictable name, created exclusively: a link planted
//! there is never followed), synced, then renamed over the target; on any
//! failure, an interruption included, the temporary file is removed and the
//! target is left as it was.
use anyhow::{bail, Context, Result};
use std::fs::{self, Permissions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    /// `-` is standard output.
    pub fn parse(path: &Path) -> Target {
        if path.as_os_str() == "-" {
            Target::Stdout
        } else {
            Target::File(path.to_path_buf())
        }
    }
}

/// What a path is, in words, when it is not something cgocore writes over.
fn not_writable_kind(m: &fs::Metadata) -> Option<&'static str> {
    let t = m.file_type();
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link (cgocore does not write through links: name the file itself)")
    } else if t.is_dir() {
        Some("a folder")
    } else if t.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Refuse, before anything is read, an output cgocore must not write: one
/// that exists and is not a regular file, one whose folder does not exist,
/// and one that is one of `inputs` (the same file, by device and inode).
pub fn check(path: &Path, inputs: &[&Path]) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) => {
            if let Some(kind) = not_writable_kind(&m) {
                bail!(
                    "{} is {kind}; cgocore writes only regular files (or - for standard output)",
                    path.display()
                );
            }
            for input in inputs {
                let Ok(i) = fs::metadata(input) else {
                    continue;
                };
                if (i.dev(), i.ino()) == (m.dev(), m.ino()) {
                    bail!(
                        "{} is the input {}: refusing to write over it (name another file)",
                        path.display(),
                        input.display()
                    );
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = folder(path);
            match fs::metadata(&dir) {
                Ok(d) if d.is_dir() => Ok(()),
                Ok(_) => bail!(
                    "cannot write {}: {} is not a folder",
                    path.display(),
                    dir.display()
                ),
                Err(e) => bail!(
                    "cannot write {}: folder {}: {e}",
                    path.display(),
                    dir.display()
                ),
            }
        }
        Err(e) => bail!("cannot write {}: {e}", path.display()),
    }
}

fn folder(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Write `path` whole with `fill` (mode `mode`, less the umask's bits for new
/// files), or leave it as it was: returns the bytes written. A write, sync,
/// close or rename error is an error.
pub fn write_file(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut dyn Write) -> Result<()>,
) -> Result<u64> {
    check(path, &[])?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".cgocore-tmp")
        .permissions(Permissions::from_mode(mode))
        .tempfile_in(folder(path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    // Removed by the handler if the run is interrupted before the rename.
    let guard = crate::input::TmpGuard::new(tmp.path());
    let result = (|| -> Result<u64> {
        let mut w = BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()?;
        Ok(tmp.as_file().metadata()?.len())
    })();
    let written = result.with_context(|| format!("cannot write {}", path.display()))?;
    // The target may have been swapped for a link or a device meanwhile.
    check(path, &[])?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    drop(guard);
    Ok(written)
}

/// Write to `target` with `fill`: a file as [`write_file`] does (mode 0644
/// less the umask), or standard output.
pub fn write(target: &Target, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<u64> {
    match target {
        Target::File(p) => write_file(p, 0o644, fill),
        Target::Stdout => {
            let mut w = BufWriter::new(std::io::stdout().lock());
            fill(&mut w)?;
            w.flush()?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("cgocore-output-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".cgocore-tmp"))
            .collect()
    }

    #[test]
    fn a_file_is_replaced_whole_or_not_at_all() {
        let d = scratch("whole");
        let p = d.join("out.txt");
        fs::write(&p, "old").unwrap();
        assert_eq!(
            write_file(&p, 0o600, |w| Ok(w.write_all(b"new")?)).unwrap(),
            3
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let err = write_file(&p, 0o600, |w| {
            w.write_all(b"half")?;
            bail!("the producer failed")
        })
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("the producer failed"),
            "{err:#}"
        );
        assert_eq!(fs::read_to_string(&p).unwrap(), "new", "left as it was");
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn links_folders_fifos_and_inputs_are_refused() {
        let d = scratch("refuse");
        let victim = d.join("victim");
        fs::write(&victim, "keep").unwrap();
        let link = d.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let fifo = d.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (p, needle) in [
            (&link, "symbolic link"),
            (&d, "a folder"),
            (&fifo, "FIFO"),
            (&d.join("no/such/dir/x"), "folder"),
        ] {
            let err = write_file(p, 0o644, |w| Ok(w.write_all(b"x")?)).unwrap_err();
            assert!(format!("{err:#}").contains(needle), "{p:?}: {err:#}");
        }
        let err = check(&victim, &[&link]).unwrap_err();
        assert!(err.to_string().contains("is the input"), "{err}");
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(leftovers(&d).is_empty());
        let _ = fs::remove_dir_all(&d);
    }
}
