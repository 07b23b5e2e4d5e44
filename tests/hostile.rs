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
    let mut exe = cgocore::input::open(&c.exe).unwrap().map.to_vec();
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
    let c = plain_fixture();
    let tmp = Scratch::new("hostile-fifo");
    let fifo = tmp.join("fifo");
    let cpath = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
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
    let core = cgocore::elf::core::CoreFile::parse(cgocore::input::open(&c.core).unwrap()).unwrap();
    for f in core.files.iter().filter(|f| f.path.starts_with('/')) {
        let p = root.join(f.path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let cp = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: as above.
        unsafe { libc::mkfifo(cp.as_ptr(), 0o600) };
    }
    let (out, took) = bounded(&[&c.core, &"--exe", &c.exe, &"--sysroot", &root], &cache);
    check(&out, took, &[0, 3], "not readable", "NT_FILE libraries");
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
    let real = cgocore::input::open(&c.core).unwrap();
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

/// Interrupted while decompressing, nothing is left behind.
#[test]
fn an_interrupted_decompression_leaves_nothing() {
    use std::io::Write;
    let tmp = Scratch::new("hostile-interrupt");
    // A valid ELF core header whose one segment spans 4 GB of non-zero bytes.
    let mut head = vec![0u8; 64 + 56];
    head[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    head[16..18].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
    head[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86_64
    head[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    head[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    head[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
    head[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    head[64 + 8..64 + 16].copy_from_slice(&4096u64.to_le_bytes());
    head[64 + 32..64 + 40].copy_from_slice(&(4u64 << 30).to_le_bytes());
    let big = tmp.join("big.zst");
    let mut enc =
        zstd::stream::write::Encoder::new(std::fs::File::create(&big).unwrap(), 1).unwrap();
    enc.write_all(&head).unwrap();
    let junk = vec![0x55u8; 1 << 20];
    for _ in 0..4096 {
        enc.write_all(&junk).unwrap();
    }
    enc.finish().unwrap();
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
    use cgocore::memory::ReadExt;
    use std::os::unix::fs::FileExt;
    let c = plain_fixture();
    let bin = cgocore::elf::exe::Binary::open(&c.exe).unwrap();
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
    let core = cgocore::elf::core::CoreFile::parse(cgocore::input::open(&c.core).unwrap()).unwrap();
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
    let mut exe = cgocore::input::open(&c.exe).unwrap().map.to_vec();
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
