//! What `/proc/PID` says of a live process: its tasks, mappings, auxiliary
//! vector, tracer, thread names, and what its file descriptors are.
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone)]
pub struct Map {
    pub start: u64,
    pub end: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
    pub offset: u64,
    /// The file, `[stack]`, `[heap]`, ... or empty.
    pub path: String,
}

pub fn dir(pid: u32) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}"))
}

pub fn tasks(pid: u32) -> Result<Vec<u32>> {
    let mut out: Vec<u32> = std::fs::read_dir(dir(pid).join("task"))
        .with_context(|| format!("cannot list the threads of process {pid}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

pub fn maps(pid: u32) -> Result<Vec<Map>> {
    let text = std::fs::read_to_string(dir(pid).join("maps"))
        .with_context(|| format!("cannot read /proc/{pid}/maps"))?;
    Ok(text.lines().filter_map(parse_map).collect())
}

fn parse_map(line: &str) -> Option<Map> {
    let mut f = line.splitn(6, char::is_whitespace);
    let (range, perms, offset) = (f.next()?, f.next()?, f.next()?);
    let (_dev, _inode) = (f.next()?, f.next()?);
    let path = f.next().unwrap_or("").trim_start();
    let (s, e) = range.split_once('-')?;
    let p = perms.as_bytes();
    Some(Map {
        start: u64::from_str_radix(s, 16).ok()?,
        end: u64::from_str_radix(e, 16).ok()?,
        readable: p.first() == Some(&b'r'),
        writable: p.get(1) == Some(&b'w'),
        executable: p.get(2) == Some(&b'x'),
        offset: u64::from_str_radix(offset, 16).ok()?,
        // A file deleted since it was mapped keeps its name with a suffix.
        path: path.strip_suffix(" (deleted)").unwrap_or(path).to_string(),
    })
}

/// `(key, value)` pairs of `/proc/PID/auxv` (native word size: 64-bit).
pub fn auxv(pid: u32) -> Vec<(u64, u64)> {
    let raw = std::fs::read(dir(pid).join("auxv")).unwrap_or_default();
    raw.chunks_exact(16)
        .map(|c| {
            let w = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().unwrap_or([0; 8]));
            (w(0), w(8))
        })
        .take_while(|&(k, _)| k != 0)
        .collect()
}

/// A field of `/proc/PID/status` or `/proc/PID/task/TID/status`.
pub fn status_field(status: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(status).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The process tracing `pid`, if any (a debugger, strace).
pub fn tracer(pid: u32) -> Option<u32> {
    task_tracer(pid, pid)
}

/// The process a thread belongs to (`TracerPid` names a thread, the
/// tracer's, not its process).
pub fn process_of(tid: u32) -> u32 {
    status_field(&dir(tid).join("status"), "Tgid")
        .and_then(|v| v.parse().ok())
        .unwrap_or(tid)
}

/// The process tracing thread `tid` of `pid`, if any.
pub fn task_tracer(pid: u32, tid: u32) -> Option<u32> {
    status_field(&dir(pid).join(format!("task/{tid}/status")), "TracerPid")?
        .parse()
        .ok()
        .filter(|&t| t != 0)
        .map(process_of)
}

/// The state letter of `/proc/PID[/task/TID]/stat` (after the name, which
/// may hold spaces and parentheses).
fn state_letter(stat: &Path) -> Option<char> {
    let text = std::fs::read_to_string(stat).ok()?;
    text.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The process exists and is not a zombie (exited, not yet reaped).
pub fn alive(pid: u32) -> bool {
    state_letter(&dir(pid).join("stat")).is_some_and(|c| !matches!(c, 'Z' | 'X' | 'x'))
}

/// The thread exists and has not exited.
pub fn thread_alive(pid: u32, tid: u32) -> bool {
    state_letter(&dir(pid).join(format!("task/{tid}/stat")))
        .is_some_and(|c| !matches!(c, 'Z' | 'X' | 'x'))
}

/// What a thread is doing, as `/proc` says: its state in words (`D (disk
/// sleep)`) and the kernel function it sleeps in (`wchan`, when the kernel
/// shows it).
pub fn thread_state(pid: u32, tid: u32) -> (String, Option<String>) {
    let task = dir(pid).join(format!("task/{tid}"));
    let state = status_field(&task.join("status"), "State").unwrap_or_else(|| "gone".into());
    let wchan = std::fs::read_to_string(task.join("wchan"))
        .ok()
        .map(|w| w.trim().to_string())
        .filter(|w| !w.is_empty() && w != "0");
    (state, wchan)
}

/// The name of a thread (`comm`).
pub fn comm(pid: u32, tid: u32) -> Option<String> {
    let p = dir(pid).join(format!("task/{tid}/comm"));
    Some(std::fs::read_to_string(p).ok()?.trim_end().to_string())
}

/// The signals a thread blocks (`SigBlk`), as the kernel's `pr_sighold`.
pub fn sigblk(pid: u32, tid: u32) -> u64 {
    status_field(&dir(pid).join(format!("task/{tid}/status")), "SigBlk")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .unwrap_or(0)
}

/// The executable the process runs, as it named it.
pub fn exe(pid: u32) -> Result<PathBuf> {
    std::fs::read_link(dir(pid).join("exe")).with_context(|| format!("cannot read /proc/{pid}/exe"))
}

/// Where this host finds the process's files: its root when it lives in
/// another mount namespace (a container), else nothing to prefix.
pub fn root(pid: u32) -> Option<PathBuf> {
    let ns = |p: &Path| std::fs::read_link(p.join("ns/mnt")).ok();
    let (mine, theirs) = (ns(Path::new("/proc/self")), ns(&dir(pid)));
    (theirs.is_some() && mine != theirs).then(|| dir(pid).join("root"))
}

/// What each file descriptor is: a path, a pipe (and where its other end is
/// in the process), or a socket with its addresses (`TCP 127.0.0.1:5432 →
/// 127.0.0.1:43210`) from `/proc/PID/net/*`.
pub fn fds(pid: u32) -> BTreeMap<i32, String> {
    let raw = raw_fds(pid);
    // Every fd of each pipe, once: a process with thousands of fds is one pass.
    let mut ends: HashMap<&str, Vec<i32>> = HashMap::new();
    for (fd, what) in raw.iter().filter(|(_, w)| w.starts_with("pipe:")) {
        ends.entry(what.as_str()).or_default().push(*fd);
    }
    let mut out = raw.clone();
    for (fd, what) in out.iter_mut() {
        let Some(all) = ends.get(raw[fd].as_str()) else {
            continue;
        };
        let others: Vec<String> = all
            .iter()
            .filter(|o| *o != fd)
            .map(|o| match write_mode(pid, *o) {
                Some(true) => format!("fd {o} (write end)"),
                Some(false) => format!("fd {o} (read end)"),
                None => format!("fd {o}"),
            })
            .collect();
        if !others.is_empty() {
            what.push_str(&format!(", other end here: {}", others.join(", ")));
        }
    }
    out
}

/// Whether `fd` is open for writing (`/proc/PID/fdinfo`'s octal flags).
fn write_mode(pid: u32, fd: i32) -> Option<bool> {
    let flags = status_field(&dir(pid).join(format!("fdinfo/{fd}")), "flags")?;
    let f = u32::from_str_radix(&flags, 8).ok()?;
    Some(f & 3 != 0)
}

fn raw_fds(pid: u32) -> BTreeMap<i32, String> {
    let sockets = sockets(pid);
    let Ok(dir) = std::fs::read_dir(dir(pid).join("fd")) else {
        return BTreeMap::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd: i32 = e.file_name().to_str()?.parse().ok()?;
        let target = std::fs::read_link(e.path()).ok()?;
        let t = target.to_string_lossy();
        let what = match t
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(|s| s.parse::<u64>().ok())
        {
            Some(inode) => sockets
                .get(&inode)
                .cloned()
                .unwrap_or_else(|| format!("socket {inode}")),
            None => t.into_owned(),
        };
        Some((fd, what))
    })
    .collect()
}

/// Socket inode -> description, from the process's network namespace.
fn sockets(pid: u32) -> HashMap<u64, String> {
    let mut out = HashMap::new();
    for (file, proto) in [
        ("tcp", "TCP"),
        ("tcp6", "TCP"),
        ("udp", "UDP"),
        ("udp6", "UDP"),
    ] {
        let Ok(text) = std::fs::read_to_string(dir(pid).join("net").join(file)) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (f.get(1), f.get(2), f.get(3), f.get(9))
            else {
                continue;
            };
            let Ok(inode) = inode.parse::<u64>() else {
                continue;
            };
            let (l, r) = (inet(local), inet(remote));
            // TCP_LISTEN is 0A.
            let desc = if proto == "TCP" && *state == "0A" {
                format!("{proto} listening on {l}")
            } else {
                format!("{proto} {l} → {r}")
            };
            out.insert(inode, desc);
        }
    }
    if let Ok(text) = std::fs::read_to_string(dir(pid).join("net/unix")) {
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let Some(Ok(inode)) = f.get(6).map(|s| s.parse::<u64>()) {
                let path = f.get(7).map(|p| format!(" {p}")).unwrap_or_default();
                out.insert(inode, format!("unix socket{path}"));
            }
        }
    }
    out
}

/// `0100007F:1538` (little-endian hex, as the kernel prints it) -> `127.0.0.1:5432`.
fn inet(s: &str) -> String {
    let Some((addr, port)) = s.split_once(':') else {
        return s.to_string();
    };
    let port = u16::from_str_radix(port, 16).unwrap_or(0);
    let bytes: Vec<u8> = (0..addr.len() / 2)
        .filter_map(|i| u8::from_str_radix(addr.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    match bytes.len() {
        4 => format!("{}.{}.{}.{}:{port}", bytes[3], bytes[2], bytes[1], bytes[0]),
        16 => {
            // Four little-endian 32-bit words.
            let mut b = [0u8; 16];
            for (w, chunk) in bytes.chunks_exact(4).enumerate() {
                for (i, v) in chunk.iter().rev().enumerate() {
                    b[4 * w + i] = *v;
                }
            }
            format!("[{}]:{port}", std::net::Ipv6Addr::from(b))
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_parse() {
        let m = parse_map("7f84a9400000-7f84a9428000 r--p 00000000 fe:01 1835363                    /usr/lib/x86_64-linux-gnu/libc.so.6").unwrap();
        assert_eq!(
            (m.start, m.end, m.offset),
            (0x7f84a9400000, 0x7f84a9428000, 0)
        );
        assert!(m.readable && !m.writable && !m.executable);
        assert_eq!(m.path, "/usr/lib/x86_64-linux-gnu/libc.so.6");
        let m = parse_map(
            "7ffd1c8e6000-7ffd1c907000 rw-p 00000000 00:00 0                          [stack]",
        )
        .unwrap();
        assert_eq!(m.path, "[stack]");
        let m = parse_map("c000000000-c004000000 rw-p 00000000 00:00 0 ").unwrap();
        assert_eq!(m.path, "");
        let m = parse_map("400000-401000 r-xp 00001000 fe:01 12 /tmp/a b (deleted)").unwrap();
        assert_eq!((m.path.as_str(), m.offset), ("/tmp/a b", 0x1000));
    }

    #[test]
    fn addresses_decode_as_the_kernel_prints_them() {
        assert_eq!(inet("0100007F:1538"), "127.0.0.1:5432");
        assert_eq!(inet("00000000000000000000000001000000:0050"), "[::1]:80");
    }

    #[test]
    fn this_process_reads_back() {
        let me = std::process::id();
        assert!(tasks(me).unwrap().contains(&me));
        assert!(maps(me).unwrap().iter().any(|m| m.executable));
        assert!(auxv(me).iter().any(|&(k, _)| k == 9), "AT_ENTRY");
        assert_eq!(exe(me).unwrap(), std::env::current_exe().unwrap());
        assert!(root(me).is_none());
        assert!(alive(me) && thread_alive(me, me));
        let (state, _) = thread_state(me, me);
        assert!(state.starts_with(['R', 'S']), "{state}");
        assert_eq!(thread_state(me, 999_999_999).0, "gone");
        assert!(!alive(999_999_999));
    }
}
