//! Hostile and huge inputs, each crafted from a real fixture: every run
//! ends within seconds, in a clear message (exit 1) or a partial report
//! (exit 3), under a memory limit, and leaves nothing behind.
mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Heap and private memory a run may use (RLIMIT_DATA; the mmap'd core
/// does not count): past it, an allocation fails and the run aborts.
const DATA_LIMIT: u64 = 200 << 20;
const DEADLINE: Duration = Duration::from_secs(60);

/// `cgocore analyze ARGS`, with a data limit and a deadline (killed past it).
fn bounded(args: &[&dyn AsRef<std::ffi::OsStr>], cache: &Path) -> (Output, Duration) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgocore"));
    cmd.arg("analyze")
        .args(args.iter().map(|a| a.as_ref()))
        .env("CGOCORE_CACHE", cache);
    run_limited(&mut cmd, DATA_LIMIT, DEADLINE)
}

fn check(out: &Output, took: Duration, codes: &[i32], needle: &str, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(took < DEADLINE, "{what}: killed after {took:?}");
    assert!(
        out.status.code().is_some_and(|c| codes.contains(&c)),
        "{what}: exit {:?} (signal {:?}), stderr: {err}",
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status)
    );
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        err.contains(needle) || text.contains(needle),
        "{what}: {needle:?} not in stderr {err} nor in the report"
    );
}

/// A compressed `.debug_info` whose header claims 3 GB: left out with a
/// warning, memory stays small.
#[test]
fn a_section_claiming_gigabytes_is_left_out() {
    use object::{Object, ObjectSection};
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-chsize");
    let mut exe = cgocore::testing::open_input(&c.exe).unwrap().map.to_vec();
    let off = {
        let obj = object::File::parse(&exe[..]).unwrap();
        let s = obj.section_by_name(".debug_info").expect(".debug_info");
        let r = s.compressed_file_range().unwrap();
        assert_ne!(
            r.format,
            object::CompressionFormat::None,
            "compressed DWARF"
        );
        r.offset as usize - 24 // the Elf64_Chdr before the data
    };
    exe[off + 8..off + 16].copy_from_slice(&0xc000_0000u64.to_le_bytes());
    let exe = tmpfile(&tmp, "exe", &exe);
    let (out, took) = bounded(&[&c.core, &"--exe", &exe, &"--json"], &tmp.join("cache"));
    check(&out, took, &[3], "claims 3221225472 bytes", "ch_size");
}

/// FIFOs as the core, as --exe, and as a library the core names (under
/// --sysroot): refused or left out, never waited on.
#[test]
fn fifos_are_refused_not_waited_on() {
    use std::os::unix::fs::OpenOptionsExt;
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-fifo");
    let fifo = tmp.join("fifo");
    mkfifo(&fifo);
    let cache = tmp.join("cache");
    let (out, took) = bounded(&[&fifo], &cache);
    check(
        &out,
        took,
        &[1],
        "is a FIFO (named pipe), not a file",
        "core",
    );
    let (out, took) = bounded(&[&c.core, &"--exe", &fifo], &cache);
    check(
        &out,
        took,
        &[1],
        "is a FIFO (named pipe), not a file",
        "--exe",
    );
    // Every file the core names is a FIFO under this sysroot.
    let root = tmp.join("root");
    let core =
        cgocore::testing::CoreFile::parse(cgocore::testing::open_input(&c.core).unwrap()).unwrap();
    for f in core.files.iter().filter(|f| f.path.starts_with('/')) {
        let p = root.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: as above.
        unsafe { libc::mkfifo(cp.as_ptr(), 0o600) };
    }
    // A writer waiting on one of them is let in only if cgocore opens it:
    // it must not (an open alone can act: a device's, a FIFO's).
    let libc_fifo = core
        .files
        .iter()
        .find(|f| f.path.ends_with("/libc.so.6"))
        .map(|f| root.join(f.path.trim_start_matches('/')))
        .expect("libc in NT_FILE");
    let (tx, rx) = std::sync::mpsc::channel();
    let writer_path = libc_fifo.clone();
    std::thread::spawn(move || {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .open(&writer_path)
            .is_ok();
        let _ = tx.send(opened);
    });
    let (out, took) = bounded(&[&c.core, &"--exe", &c.exe, &"--sysroot", &root], &cache);
    check(&out, took, &[0, 3], "not readable", "NT_FILE libraries");
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "cgocore opened the FIFO {}",
        libc_fifo.display()
    );
    // Release the writer.
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&libc_fifo);
    let _ = rx.recv_timeout(Duration::from_secs(5));
    let (out, took) = bounded(&[&c.core, &"--sysroot", &root], &cache);
    check(&out, took, &[1], "FIFO", "the executable the core names");
}

/// A .zst that expands past what its ELF headers describe: stopped, its
/// temporary file removed, nothing cached.
#[test]
fn a_zstd_bomb_is_stopped_and_cleaned_up() {
    use std::io::Write;
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-bomb");
    let real = cgocore::testing::open_input(&c.core).unwrap();
    let bomb = tmp.join("bomb.zst");
    let mut enc =
        zstd::stream::write::Encoder::new(std::fs::File::create(&bomb).unwrap(), 1).unwrap();
    enc.write_all(&real.map[..]).unwrap();
    let junk = vec![0x55u8; 1 << 20];
    for _ in 0..512 {
        enc.write_all(&junk).unwrap(); // 512 MB past the end
    }
    enc.finish().unwrap();
    assert!(std::fs::metadata(&bomb).unwrap().len() < 8 << 20);
    let cache = tmp.join("cache");
    let (out, took) = bounded(&[&bomb, &"--exe", &c.exe], &cache);
    check(&out, took, &[1], "decompresses past the", "zstd bomb");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// A zstd stream of an ELF core header whose one segment claims `claimed`
/// bytes, followed by `mb` MB of one repeated byte.
fn junk_core_zst(tmp: &Scratch, name: &str, claimed: u64, mb: usize) -> std::path::PathBuf {
    use std::io::Write;
    let mut head = vec![0u8; 64 + 56];
    head[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    head[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    head[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    head[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    head[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    head[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    head[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    head[64 + 8..64 + 16].copy_from_slice(&4096u64.to_le_bytes());
    head[64 + 32..64 + 40].copy_from_slice(&claimed.to_le_bytes());
    let path = tmp.join(name);
    let mut enc =
        zstd::stream::write::Encoder::new(std::fs::File::create(&path).unwrap(), 1).unwrap();
    enc.write_all(&head).unwrap();
    let junk = vec![0x55u8; 1 << 20];
    for _ in 0..mb {
        enc.write_all(&junk).unwrap();
    }
    enc.finish().unwrap();
    path
}

/// Interrupted while decompressing, nothing is left behind.
#[test]
fn an_interrupted_decompression_leaves_nothing() {
    let tmp = Scratch::new("hostile-interrupt");
    // A valid ELF core header whose one segment spans 4 GB of non-zero bytes.
    let big = junk_core_zst(&tmp, "big.zst", 4 << 30, 4096);
    let cache = tmp.join("cache");
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let child = Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .args(["analyze", big.to_str().unwrap()])
            .env("CGOCORE_CACHE", &cache)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until its temporary file grows, then interrupt it.
        let tmp_files = || -> Vec<std::path::PathBuf> {
            std::fs::read_dir(&cache)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default()
        };
        let mut seen = false;
        for _ in 0..200 {
            if tmp_files()
                .iter()
                .any(|p| p.metadata().is_ok_and(|m| m.len() > 1 << 20))
            {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) of a child this test started.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        assert!(seen, "no temporary file appeared (exit {:?})", out.status);
        assert!(
            tmp_files().is_empty(),
            "signal {sig} left {:?}",
            tmp_files()
        );
    }
}

/// `runtime.allgs` listing one goroutine 4 million times: memory follows
/// the distinct goroutines, not the count; a partial report says why.
#[test]
fn one_goroutine_listed_four_million_times_stays_small() {
    use cgocore::testing::ReadExt;
    use std::os::unix::fs::FileExt;
    let c = plain_fixture();
    let bin = cgocore::testing::Binary::open(&c.exe).unwrap();
    let (allgs, _) = bin.symbol("runtime.allgs").unwrap();
    let p = cgocore::open_core(
        &c.core,
        &cgocore::OpenOptions {
            exe: Some(c.exe.clone()),
            sysroot: None,
        },
    )
    .unwrap();
    let g1 = p.mem.u64(p.mem.u64(allgs).unwrap()).unwrap();
    let core =
        cgocore::testing::CoreFile::parse(cgocore::testing::open_input(&c.core).unwrap()).unwrap();
    // A saved region of 32 MB (a heap arena) becomes the new array.
    let n: u64 = 4_000_000;
    let seg = core
        .segments
        .iter()
        .find(|s| s.filesz >= n * 8)
        .expect("a 32 MB saved segment");
    let tmp = Scratch::new("hostile-allgs");
    let patched = patched_core(
        &c,
        &tmp,
        "core",
        &[(allgs, seg.vaddr), (allgs + 8, n), (allgs + 16, n)],
    );
    let words: Vec<u8> = std::iter::repeat_n(g1.to_le_bytes(), n as usize)
        .flatten()
        .collect();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&patched)
        .unwrap()
        .write_all_at(&words, seg.offset)
        .unwrap();
    let (out, took) = bounded(&[&patched, &"--exe", &c.exe, &"--json"], &tmp.join("cache"));
    check(&out, took, &[3], "more than once", "4M repeated allgs");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["goroutines"].as_array().unwrap().len() <= 1,
        "{}",
        r["goroutines"]
    );
    assert!(
        out.stdout.len() < 4 << 20,
        "report of {} bytes",
        out.stdout.len()
    );
}

/// An `.eh_frame_hdr` whose search table points outside `.eh_frame` (found
/// by the fuzzer: the unwinder subtracted one from the other and wrapped):
/// left out with a warning, the report still made.
#[test]
fn a_corrupt_unwind_table_header_is_left_out() {
    use object::{Object, ObjectSection};
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-ehhdr");
    let mut exe = cgocore::testing::open_input(&c.exe).unwrap().map.to_vec();
    let off = {
        let obj = object::File::parse(&exe[..]).unwrap();
        let s = obj.section_by_name(".eh_frame_hdr").expect(".eh_frame_hdr");
        s.file_range().unwrap().0 as usize
    };
    // version, encodings, eh_frame_ptr, fde_count, then (initial loc, fde) pairs.
    exe[off + 16..off + 20].copy_from_slice(&(-0x40_0000i32).to_le_bytes()); // before .eh_frame
    let exe = tmpfile(&tmp, "exe", &exe);
    let (out, took) = bounded(&[&c.core, &"--exe", &exe, &"--json"], &tmp.join("cache"));
    check(
        &out,
        took,
        &[3],
        "eh_frame_hdr points outside .eh_frame",
        "eh_frame_hdr",
    );
}

/// The fixture core with every `NT_FILE` copy of `from` replaced by `to`
/// (the same length).
fn renamed_in_notes(c: &CoreCase, tmp: &Scratch, from: &[u8], to: &[u8]) -> std::path::PathBuf {
    use object::read::elf::{FileHeader, ProgramHeader};
    assert_eq!(from.len(), to.len());
    let mut core = cgocore::testing::open_input(&c.core).unwrap().map.to_vec();
    let (start, end) = {
        let hdr = object::elf::FileHeader64::<object::Endianness>::parse(&core[..]).unwrap();
        let e = hdr.endian().unwrap();
        let note = hdr
            .program_headers(e, &core[..])
            .unwrap()
            .iter()
            .find(|p| p.p_type(e) == object::elf::PT_NOTE)
            .unwrap();
        let off = note.p_offset(e) as usize;
        (off, off + note.p_filesz(e) as usize)
    };
    let mut n = 0;
    let mut at = start;
    while let Some(i) = core[at..end].windows(from.len()).position(|w| w == from) {
        core[at + i..at + i + to.len()].copy_from_slice(to);
        at += i + to.len();
        n += 1;
    }
    assert!(
        n > 0,
        "{:?} not in the notes",
        String::from_utf8_lossy(from)
    );
    tmpfile(tmp, "core", &core)
}

const LIBC: &[u8] = b"/usr/lib/x86_64-linux-gnu/libc.so.6";

/// A core whose file names hold terminal escapes and a newline: shown
/// escaped in the text (and as they are in JSON), never sent to the
/// terminal, never a line of their own.
#[test]
fn names_from_a_core_are_printed_escaped() {
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-escape");
    // Still a library's name (".so"), so the report names it.
    let mut evil = b"/usr/\x1b]0;pwned\x07\nFORGED\x1b[2J\r".to_vec();
    evil.resize(LIBC.len() - 5, b'x');
    evil.extend_from_slice(b".so.6");
    let core = renamed_in_notes(&c, &tmp, LIBC, &evil);
    let (out, took) = bounded(&[&core, &"--exe", &c.exe], &tmp.join("cache"));
    check(&out, took, &[0, 3], "not readable", "escaped text");
    for (what, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.iter().any(|&b| b == 0x1b || b == 0x07 || b == b'\r'),
            "{what} holds a control character"
        );
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.lines().any(|l| l.starts_with("FORGED")),
            "{what}: {text}"
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\\x1b]0;pwned\\x07\\nFORGED\\x1b[2J\\r"),
        "{text}"
    );
    let (out, _) = bounded(&[&core, &"--exe", &c.exe, &"--json"], &tmp.join("cache"));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["warnings"]
            .to_string()
            .contains("\\u001b]0;pwned\\u0007\\nFORGED"),
        "{}",
        r["warnings"]
    );
}

/// Nothing a core names leads out of `--sysroot`: not `..`, not an absolute
/// link inside it (resolved from the sysroot, not this host's root).
#[test]
fn names_stay_inside_the_sysroot() {
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-sysroot");
    let root = tmp.join("root");
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).unwrap();
    // An absolute link: from this host's root it is this host's libc.
    std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/libc.so.6", libdir.join("libc.so.6"))
        .unwrap();
    let host_libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
    assert!(host_libc.exists(), "this host's libc");
    let (out, took) = bounded(
        &[&c.core, &"--exe", &c.exe, &"--sysroot", &root, &"--json"],
        &tmp.join("cache"),
    );
    check(&out, took, &[3], "not readable", "absolute link");
    let warnings =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["warnings"].to_string();
    let inside = root.join("lib/x86_64-linux-gnu/libc.so.6");
    assert!(
        warnings.contains(&format!("library {} not readable", inside.display())),
        "{warnings}"
    );
    // `..` past the sysroot, where a libc is waiting.
    std::fs::remove_file(libdir.join("libc.so.6")).unwrap();
    let outside = tmp.join("lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(host_libc, outside.join("libc.so.6")).unwrap();
    let core = renamed_in_notes(&c, &tmp, LIBC, b"/..//lib/x86_64-linux-gnu/libc.so.6");
    let (out, took) = bounded(
        &[&core, &"--exe", &c.exe, &"--sysroot", &root, &"--json"],
        &tmp.join("cache"),
    );
    check(&out, took, &[3], "not readable", "..");
    let warnings =
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["warnings"].to_string();
    assert!(
        warnings.contains(&format!("library {} not readable", inside.display())),
        "{warnings}"
    );
}

/// `--pprof` and `--dot` write only regular files, whole: an input, a
/// device, a FIFO, a link are refused before anything is read; a full file
/// system is an error (no temporary file left, the old file as it was);
/// `--dot -` puts the graph alone on standard output with the report's exit
/// status.
#[test]
fn analyze_outputs_are_regular_files_written_whole() {
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-outputs");
    let cache = tmp.join("cache");
    let core_bytes = std::fs::read(&c.core).unwrap();
    let refused = |flag: &str, path: &dyn AsRef<std::ffi::OsStr>, needle: &str| {
        let (out, took) = bounded(&[&c.core, &"--exe", &c.exe, &flag, path], &cache);
        check(&out, took, &[1], needle, flag);
        assert!(took < Duration::from_secs(10), "{flag}: {took:?}");
    };
    refused("--pprof", &c.core, "is the input");
    refused("--dot", &c.exe, "is the input");
    assert_eq!(
        std::fs::read(&c.core).unwrap(),
        core_bytes,
        "the core as it was"
    );
    refused("--pprof", &"/dev/full", "character device");
    let fifo = tmp.join("fifo");
    mkfifo(&fifo);
    refused("--dot", &fifo, "FIFO");
    let victim = tmp.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    let link = tmp.join("link.pb.gz");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    refused("--pprof", &link, "symbolic link");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    // The graph alone on standard output.
    let (out, took) = bounded(&[&c.core, &"--exe", &c.exe, &"--dot", &"-"], &cache);
    check(&out, took, &[0, 3], "digraph waitfor", "--dot -");
    let (full, _) = bounded(&[&c.core, &"--exe", &c.exe], &cache);
    assert_eq!(
        out.status.code(),
        full.status.code(),
        "the report's exit status"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Threads:"));
    // A full file system.
    let small = tmp.join("small");
    let Some(_full) = Tmpfs::mount(&small, "8k") else {
        return;
    };
    let target = small.join("g.pb.gz");
    std::fs::write(&target, "old").unwrap();
    let (out, took) = bounded(&[&c.core, &"--exe", &c.exe, &"--pprof", &target], &cache);
    let left: Vec<_> = std::fs::read_dir(&small)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let old = std::fs::read_to_string(&target).unwrap_or_default();
    check(&out, took, &[1], "No space left on device", "full disk");
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("g.pb.gz")],
        "left behind"
    );
    assert_eq!(old, "old");
}

/// The decompression cache: with no HOME or XDG folder it names nothing
/// (an unnamed temporary file); a folder of another user is refused, a link
/// planted in it never followed; an entry without its record, with another
/// file's record, or cut short is rebuilt, saying so.
#[test]
fn the_cache_is_private_and_trusts_only_what_verifies() {
    use std::os::unix::fs::PermissionsExt;
    let c = plain_fixture();
    let want = c.truth.go_version.clone();
    let tmp = Scratch::new("hostile-cache");
    let run = |env: &[(&str, &std::path::Path)], clear: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgocore"));
        cmd.arg("analyze")
            .arg(&c.core)
            .arg("--exe")
            .arg(&c.exe)
            .arg("--json");
        if clear {
            cmd.env_clear().env("PATH", "/usr/bin:/bin");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        run_limited(&mut cmd, DATA_LIMIT, DEADLINE)
    };
    let go_version = |out: &Output| -> String {
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["go_version"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // No HOME, no XDG folders (a service manager, cron, env -i): nothing named.
    let tmpdir = tmp.join("tmpdir");
    std::fs::create_dir(&tmpdir).unwrap();
    let (out, took) = run(&[("TMPDIR", &tmpdir)], true);
    check(&out, took, &[0, 3], &want, "no cache folder");
    assert_eq!(
        std::fs::read_dir(&tmpdir).unwrap().count(),
        0,
        "nothing named in TMPDIR"
    );
    // A cache folder of another user, with a planted link: refused.
    if unsafe { libc::geteuid() } == 0 {
        let theirs = tmp.join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let victim = tmp.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let ours = tmp.join("ours");
        let (out, _) = run(&[("CGOCORE_CACHE", &ours)], false);
        check(&out, Duration::ZERO, &[0, 3], &want, "our cache");
        for e in std::fs::read_dir(&ours).unwrap().flatten() {
            std::os::unix::fs::symlink(&victim, theirs.join(e.file_name())).unwrap();
        }
        let (out, took) = run(&[("CGOCORE_CACHE", &theirs)], false);
        check(
            &out,
            took,
            &[1],
            "belongs to user 65534",
            "another user's folder",
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
    // Our own cache: an entry made, then tampered with in three ways.
    let cache = tmp.join("cache");
    let (out, _) = run(&[("CGOCORE_CACHE", &cache)], false);
    assert_eq!(go_version(&out), want);
    assert_eq!(
        std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777,
        0o700,
        "private"
    );
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let entry = files
        .iter()
        .find(|p| p.to_string_lossy().ends_with("-core"))
        .unwrap()
        .clone();
    let record = std::path::PathBuf::from(format!("{}.id", entry.display()));
    assert!(record.exists(), "{files:?}");
    let rerun = |needle: &str| {
        let (out, took) = run(&[("CGOCORE_CACHE", &cache)], false);
        check(&out, took, &[0, 3], needle, needle);
        assert_eq!(go_version(&out), want, "{needle}");
    };
    // Cut short (a full disk, a crash).
    let len = std::fs::metadata(&entry).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    rerun("were written (cut short); decompressing it again");
    // Another file's record.
    let other = fixtures()
        .into_iter()
        .find(|f| f.truth.go_version != want)
        .unwrap();
    let (_, _) = {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cgocore"));
        cmd.args(["analyze"])
            .arg(&other.core)
            .arg("--exe")
            .arg(&other.exe)
            .env("CGOCORE_CACHE", &cache);
        run_limited(&mut cmd, DATA_LIMIT, DEADLINE)
    };
    let other_record = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-core.id") && *p != record)
        .unwrap();
    std::fs::copy(&other_record, &record).unwrap();
    rerun("was made from another file; decompressing it again");
    // No record at all.
    std::fs::remove_file(&record).unwrap();
    rerun("has no record beside it; decompressing it again");
    // And verified, it is used as it is.
    let (out, _) = run(&[("CGOCORE_CACHE", &cache)], false);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("again"));
}

/// A .zst whose ELF header claims a terabyte, followed by a gigabyte of one
/// repeated byte (a 1 MB file): stopped by what it writes, at the ratio to
/// its compressed size, and nothing kept.
#[test]
fn a_stream_claiming_a_terabyte_is_bounded_by_what_it_writes() {
    let tmp = Scratch::new("hostile-terabyte");
    let big = junk_core_zst(&tmp, "tb.zst", 1 << 40, 1024);
    assert!(std::fs::metadata(&big).unwrap().len() < 1 << 20);
    let cache = tmp.join("cache");
    let (out, took) = bounded(&[&big], &cache);
    check(
        &out,
        took,
        &[1],
        "times its compressed size",
        "a terabyte claimed",
    );
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the cache: {left:?}");
}

/// `--rules` is bounded in size and in count.
#[test]
fn rules_files_are_bounded() {
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-rules");
    let rule = r#"{"class":"x","frames":[["never_*"]],"explain":"x","advice":"x"}"#;
    let many = format!(r#"{{"classes":[{}]}}"#, vec![rule; 3000].join(","));
    let many = tmpfile(&tmp, "many.json", many.as_bytes());
    let (out, took) = bounded(
        &[&c.core, &"--exe", &c.exe, &"--rules", &many],
        &tmp.join("cache"),
    );
    check(
        &out,
        took,
        &[1],
        "has 3000 rules; at most 2000",
        "3000 rules",
    );
    let mut huge = b"{\"classes\":[".to_vec();
    huge.resize(2 << 20, b' ');
    let huge = tmpfile(&tmp, "huge.json", &huge);
    let (out, took) = bounded(
        &[&c.core, &"--exe", &c.exe, &"--rules", &huge],
        &tmp.join("cache"),
    );
    check(
        &out,
        took,
        &[1],
        "the most a rules file may hold",
        "2 MB of rules",
    );
}
