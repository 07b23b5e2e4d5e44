//! `.go.buildinfo`: the Go version and module info every Go binary carries.
use crate::memory::{Memory, ReadExt};
use crate::varint::uvarint;

pub const MAGIC: &[u8; 14] = b"\xff Go buildinf:";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildInfo {
    pub go_version: String,
    pub modinfo: String,
}

impl BuildInfo {
    /// `path` of the main package, from the module info.
    pub fn main_path(&self) -> Option<&str> {
        self.modinfo.lines().find_map(|l| l.strip_prefix("path\t"))
    }
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.modinfo
            .lines()
            .filter_map(|l| l.strip_prefix("build\t"))
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    }
}

/// Parse a buildinfo blob (inline-string format, Go 1.18+). With the old pointer
/// format the strings are read through `mem`.
pub fn parse(blob: &[u8], mem: Option<&dyn Memory>) -> Option<BuildInfo> {
    if blob.len() < 32 || &blob[..14] != MAGIC {
        return None;
    }
    let flags = blob[15];
    if flags & 2 == 0 {
        let mem = mem?;
        let v = u64::from_le_bytes(blob[16..24].try_into().ok()?);
        let m = u64::from_le_bytes(blob[24..32].try_into().ok()?);
        return Some(BuildInfo {
            go_version: mem.go_string(v, 256).ok()?,
            modinfo: mem.go_string(m, 1 << 20).ok()?,
        });
    }
    let mut rest = &blob[32..];
    let mut next = || -> Option<String> {
        let (n, k) = uvarint(rest)?;
        let s = rest.get(k..k + n as usize)?;
        rest = &rest[k + n as usize..];
        Some(String::from_utf8_lossy(s).into_owned())
    };
    let go_version = next()?;
    let mut modinfo = next().unwrap_or_default();
    let b = modinfo.as_bytes();
    if b.len() >= 33 && b[b.len() - 17] == b'\n' {
        modinfo = String::from_utf8_lossy(&b[16..b.len() - 16]).into_owned();
    }
    Some(BuildInfo {
        go_version,
        modinfo,
    })
}

/// Go version "go1.27.3" -> (1, 27).
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let s = v.strip_prefix("go")?;
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_format() {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(2);
        b.resize(32, 0);
        b.push(8);
        b.extend_from_slice(b"go1.27.3");
        b.push(9);
        b.extend_from_slice(b"path\tmain");
        let bi = parse(&b, None).unwrap();
        assert_eq!(bi.go_version, "go1.27.3");
        assert_eq!(bi.main_path(), Some("main"));
        assert_eq!(major_minor("go1.27.3"), Some((1, 27)));
        assert_eq!(major_minor("go1.21rc2"), Some((1, 21)));
    }

    #[test]
    fn garbage_is_none() {
        assert!(parse(b"\xff Go buildinf:", None).is_none());
        assert!(parse(&[0u8; 64], None).is_none());
    }
}
