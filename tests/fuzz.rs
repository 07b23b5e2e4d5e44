//! Mutation fuzzing over real cores, on the stable toolchain: each run
//! stacks one to four mutations (ELF and program headers, notes, runtime
//! words the analysis follows, the binary's pclntab, build info, DWARF and
//! unwind tables, random flips) on a sparse copy of a fixture and runs the
//! CLI on it, bounded in memory and time, with a random mix of options
//! (`--json`, `--sched`, `--dot -`, `--goroutines all`, a `--rules` file),
//! and now and then the Python API; a snapshot cgocore wrote is one of the
//! cores, and one run in six reads a fixture's .zst through a mutated
//! decompression cache entry (its bytes, its record, its length). Every run
//! must end in a report (exit 0
//! or 3, valid JSON) or one clear error (1, 4, 5, 6): never a panic, a
//! signal, a hang or a blown memory limit.
//!
//! `cargo test --test fuzz` runs a short budget with a fixed seed;
//! scripts/test-all runs longer. A long run, with a fresh seed:
//!
//!     CGOCORE_FUZZ_SECONDS=3600 CGOCORE_FUZZ_SEED=$RANDOM cargo test --release --test fuzz -- --nocapture
//!
//! A failing input is kept under target/fuzz-failures/ with the command
//! that failed.
mod common;

use common::*;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const DATA_LIMIT: u64 = 1 << 30;
const DEADLINE: Duration = Duration::from_secs(30);
const EXTREMES: [u64; 8] = [
    0,
    1,
    u64::MAX,
    u64::MAX - 7,
    1 << 32,
    1 << 47,
    0x7fff_ffff_ffff,
    0xdead_beef_dead_beef,
];

/// One input: a writable sparse copy of a core and of its binary, with what
/// the mutators aim at.
struct Target {
    name: String,
    core: PathBuf,
    exe: PathBuf,
    /// (file offset, len) of the core's program headers and notes.
    core_meta: Vec<(u64, u64)>,
    /// File offsets of saved words the runtime roots point at.
    core_words: Vec<u64>,
    /// (file offset, len) of the binary's sections the analysis parses.
    exe_sections: Vec<(u64, u64)>,
}

impl Target {
    fn new(c: &CoreCase, dir: &Scratch, i: usize) -> Target {
        use object::{Object, ObjectSection};
        let core_map = cgocore::testing::open_input(&c.core).unwrap();
        let exe_map = cgocore::testing::open_input(&c.exe).unwrap();
        let core = tmpfile(dir, &format!("core{i}"), &core_map.map[..]);
        let exe = tmpfile(dir, &format!("exe{i}"), &exe_map.map[..]);
        let obj = object::File::parse(&exe_map.map[..]).unwrap();
        let exe_sections = [
            ".gopclntab",
            ".go.buildinfo",
            ".eh_frame",
            ".eh_frame_hdr",
            ".debug_info",
            ".debug_abbrev",
            ".note.go.buildid",
            ".dynsym",
            ".symtab",
        ]
        .iter()
        .filter_map(|n| obj.section_by_name(n)?.file_range())
        .collect();
        let parsed = cgocore::testing::CoreFile::parse(core_map.clone()).unwrap();
        let data = &core_map.map[..];
        let core_meta = core_meta(data);
        // Words the analysis follows first: the roots and what they point at.
        let bin = cgocore::testing::Binary::open(&c.exe).unwrap();
        let file_off = |addr: u64| {
            parsed
                .segments
                .iter()
                .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.filesz)
                .map(|s| s.offset + addr - s.vaddr)
        };
        let word = |addr: u64| {
            file_off(addr)
                .map(|o| u64::from_le_bytes(data[o as usize..o as usize + 8].try_into().unwrap()))
        };
        let mut core_words = vec![];
        for root in [
            "runtime.allm",
            "runtime.allgs",
            "runtime.allp",
            "runtime.sched",
            "runtime.m0",
            "runtime.g0",
        ] {
            let Some((a, _)) = bin.symbol(root) else {
                continue;
            };
            for k in 0..32 {
                core_words.extend(file_off(a + 8 * k));
            }
            if let Some(p) = word(a) {
                for k in 0..64 {
                    core_words.extend(file_off(p.wrapping_add(8 * k)));
                }
            }
        }
        Target {
            name: c.name.clone(),
            core,
            exe,
            core_meta,
            core_words,
            exe_sections,
        }
    }
}

/// (file offset, len) of a core's ELF header, program headers and notes.
fn core_meta(data: &[u8]) -> Vec<(u64, u64)> {
    let phoff = u64::from_le_bytes(data[0x20..0x28].try_into().unwrap());
    let phnum = u16::from_le_bytes(data[0x38..0x3a].try_into().unwrap()) as u64;
    let mut meta = vec![(0, 64), (phoff, phnum * 56)];
    for i in 0..phnum {
        let ph = (phoff + i * 56) as usize;
        if u32::from_le_bytes(data[ph..ph + 4].try_into().unwrap()) == 4 {
            let off = u64::from_le_bytes(data[ph + 8..ph + 16].try_into().unwrap());
            let size = u64::from_le_bytes(data[ph + 32..ph + 40].try_into().unwrap());
            meta.push((off, size));
        }
    }
    meta
}

/// Patches applied to a target, undone after its run.
struct Patch {
    file: PathBuf,
    off: u64,
    old: Vec<u8>,
}

fn patch(file: &Path, off: u64, new: &[u8]) -> Option<Patch> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .ok()?;
    let len = f.metadata().ok()?.len();
    if off.checked_add(new.len() as u64)? > len {
        return None;
    }
    let mut old = vec![0u8; new.len()];
    f.read_exact_at(&mut old, off).ok()?;
    f.write_all_at(new, off).ok()?;
    Some(Patch {
        file: file.to_path_buf(),
        off,
        old,
    })
}

/// Put the old bytes back (a cache entry cgocore has since rebuilt or
/// removed is left as it is).
fn undo(patches: Vec<Patch>) {
    for p in patches.into_iter().rev() {
        let Ok(f) = std::fs::OpenOptions::new().write(true).open(&p.file) else {
            continue;
        };
        if f.metadata()
            .is_ok_and(|m| m.len() >= p.off + p.old.len() as u64)
        {
            f.write_all_at(&p.old, p.off).unwrap();
        }
    }
}

/// A decompression cache holding one fixture's entry, which the fuzzer
/// mutates (its bytes, its record, its length) before cgocore reads it.
struct CacheTarget {
    zst: PathBuf,
    exe: PathBuf,
    dir: PathBuf,
    /// (file offset, len) of the entry's program headers and notes.
    meta: Vec<(u64, u64)>,
}

impl CacheTarget {
    fn files(&self) -> (PathBuf, PathBuf) {
        let entry = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().ends_with("-core"))
            .unwrap_or_else(|| self.dir.join("none"));
        let record = PathBuf::from(format!("{}.id", entry.display()));
        (entry, record)
    }

    fn mutate(&self, rng: &mut fastrand::Rng) -> (Vec<Patch>, Vec<String>) {
        let (entry, record) = self.files();
        let (mut patches, mut said) = (vec![], vec![]);
        for _ in 0..rng.usize(1..=3) {
            let (file, off, bytes, what): (&Path, u64, Vec<u8>, &str) = match rng.u8(0..5) {
                0 => {
                    let r = self.meta[rng.usize(..self.meta.len())];
                    let v = EXTREMES[rng.usize(..EXTREMES.len())];
                    (
                        &entry,
                        in_range(rng, r) & !7,
                        v.to_le_bytes().to_vec(),
                        "entry word",
                    )
                }
                1 => {
                    let len = std::fs::metadata(&record).map_or(1, |m| m.len());
                    (
                        &record,
                        rng.u64(..len.max(1)),
                        vec![rng.u8(..)],
                        "record byte",
                    )
                }
                2 => {
                    let len = std::fs::metadata(&entry).map_or(0, |m| m.len());
                    let to = rng.u64(..len.max(1));
                    if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&entry) {
                        let _ = f.set_len(to);
                        said.push(format!("entry cut to {to}"));
                    }
                    continue;
                }
                3 => {
                    let _ = std::fs::remove_file(&record);
                    said.push("record removed".into());
                    continue;
                }
                _ => {
                    let len = std::fs::metadata(&entry).map_or(8, |m| m.len());
                    (
                        &entry,
                        rng.u64(..len.saturating_sub(8)),
                        vec![rng.u8(..)],
                        "entry byte",
                    )
                }
            };
            if let Some(p) = patch(file, off, &bytes) {
                said.push(format!("{what} at {off:#x} = {bytes:02x?}"));
                patches.push(p);
            }
        }
        (patches, said)
    }
}

fn in_range(rng: &mut fastrand::Rng, (off, len): (u64, u64)) -> u64 {
    off + rng.u64(0..len.max(1))
}

/// One to four mutations.
fn mutate(rng: &mut fastrand::Rng, t: &Target) -> (Vec<Patch>, Vec<String>) {
    let mut patches = vec![];
    let mut said = vec![];
    for _ in 0..rng.usize(1..=4) {
        let (file, off, bytes, what): (&Path, u64, Vec<u8>, &str) = match rng.u8(0..6) {
            0 => {
                let r = t.core_meta[rng.usize(..t.core_meta.len())];
                let v = EXTREMES[rng.usize(..EXTREMES.len())];
                (
                    &t.core,
                    in_range(rng, r) & !7,
                    v.to_le_bytes().to_vec(),
                    "core header/note word",
                )
            }
            1 => {
                let r = t.core_meta[rng.usize(..t.core_meta.len())];
                (
                    &t.core,
                    in_range(rng, r),
                    vec![rng.u8(..)],
                    "core header/note byte",
                )
            }
            2 if !t.core_words.is_empty() => {
                let o = t.core_words[rng.usize(..t.core_words.len())];
                let v = if rng.bool() {
                    EXTREMES[rng.usize(..EXTREMES.len())]
                } else {
                    rng.u64(..)
                };
                (&t.core, o, v.to_le_bytes().to_vec(), "runtime word")
            }
            3 if !t.exe_sections.is_empty() => {
                let r = t.exe_sections[rng.usize(..t.exe_sections.len())];
                let n = rng.usize(1..=8);
                (
                    &t.exe,
                    in_range(rng, r),
                    (0..n).map(|_| rng.u8(..)).collect(),
                    "binary section bytes",
                )
            }
            4 if !t.exe_sections.is_empty() => {
                let r = t.exe_sections[rng.usize(..t.exe_sections.len())];
                let v = EXTREMES[rng.usize(..EXTREMES.len())];
                (
                    &t.exe,
                    in_range(rng, r) & !7,
                    v.to_le_bytes().to_vec(),
                    "binary section word",
                )
            }
            _ => {
                let len = std::fs::metadata(&t.core).unwrap().len();
                (
                    &t.core,
                    rng.u64(..len.saturating_sub(8)),
                    vec![rng.u8(..)],
                    "random core byte",
                )
            }
        };
        if let Some(p) = patch(file, off, &bytes) {
            said.push(format!("{what} at {off:#x} = {bytes:02x?}"));
            patches.push(p);
        }
    }
    (patches, said)
}

fn run(args: &[String], cache: &Path) -> (std::process::Output, Duration) {
    run_limited(
        Command::new(env!("CARGO_BIN_EXE_cgocore"))
            .args(args)
            .env("CGOCORE_CACHE", cache),
        DATA_LIMIT,
        DEADLINE,
    )
}

/// A snapshot cgocore wrote of the running scenario program (Go 1.27), as a
/// core to mutate.
fn snapshot_case(dir: &Scratch) -> Option<CoreCase> {
    let c = generated()
        .into_iter()
        .find(|c| c.name.starts_with("go1.27.3/plain/"))?;
    let s = common::scenario::Scenario::start(&c, "fuzz-snapshot");
    let path = dir.join("snapshot.core");
    let out = Command::new(env!("CARGO_BIN_EXE_cgocore"))
        .args(["snapshot", "--pid", &s.pid.to_string(), "-o"])
        .arg(&path)
        .env("CGOCORE_CACHE", dir.join("cache"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(CoreCase {
        name: format!("{} snapshot", c.name),
        core: path,
        ..c
    })
}

/// What is wrong with a run, if anything.
fn judge(out: &std::process::Output, took: Duration, json: bool) -> Option<String> {
    let err = String::from_utf8_lossy(&out.stderr);
    if took >= DEADLINE {
        return Some(format!("hung: killed after {took:?}"));
    }
    if err.contains("panicked") {
        return Some(format!("panic: {err}"));
    }
    match out.status.code() {
        Some(0) | Some(3) if json => serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .err()
            .map(|e| format!("bad JSON: {e}")),
        Some(0) | Some(3) | Some(4) | Some(5) | Some(6) => None,
        Some(1) if err.trim().lines().count() == 1 => None,
        Some(1) => Some(format!("an error of more than one line: {err}")),
        other => Some(format!(
            "exit {other:?}, signal {:?}: {err}",
            std::os::unix::process::ExitStatusExt::signal(&out.status)
        )),
    }
}

#[test]
fn mutated_cores_end_in_a_report_or_one_clear_error() {
    let seconds: u64 = std::env::var("CGOCORE_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("CGOCORE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = Scratch::new("fuzz");
    // The fixtures (kernel cores), and where generated: a gdb gcore, a core
    // of the busy program caught mid-run, an arm64 dynamic-musl core (C
    // frames unwound from prologues) and SQLite read through its DWARF.
    let mut inputs = fixtures();
    inputs.extend(
        generated()
            .into_iter()
            .find(|c| c.truth.kind == "gcore" && c.truth.variant == "plain"),
    );
    inputs.extend(
        generated_busy()
            .into_iter()
            .find(|c| c.truth.kind == "kernel"),
    );
    inputs.extend(
        generated_musl()
            .into_iter()
            .find(|c| c.truth.variant == "musl-arm64-dynamic" && c.truth.kind == "kernel"),
    );
    inputs.extend(
        generated_libs()
            .into_iter()
            .find(|c| c.truth.variant == "libs-bundled"),
    );
    // A snapshot cgocore wrote, and a decompression cache's entry.
    inputs.extend(snapshot_case(&dir));
    let fixture = plain_fixture();
    let cache_target = CacheTarget {
        zst: fixture.core.clone(),
        exe: fixture.exe.clone(),
        dir: dir.join("fuzz-cache"),
        // The entry is the decompressed core, byte for byte.
        meta: core_meta(&cgocore::testing::open_input(&fixture.core).unwrap().map[..]),
    };
    let targets: Vec<Target> = inputs
        .iter()
        .enumerate()
        .map(|(i, c)| Target::new(c, &dir, i))
        .collect();
    let rules = dir.join("rules.json");
    std::fs::write(
        &rules,
        r#"{"lock_classes": ["my-lock"], "classes": [{"class": "my-lock", "frames": [["*lll_lock_wait*"]], "explain": "x", "advice": "y"}]}"#,
    )
    .unwrap();
    let python = std::env::var_os("CGOCORE_PYTHONPATH").filter(|p| Path::new(p).is_dir());
    let failures = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../fuzz-failures");
    let start = Instant::now();
    let (mut runs, mut found) = (0usize, vec![]);
    let plain_cache = dir.join("cache");
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = &targets[rng.usize(..targets.len())];
        // One run in six reads the fixture's .zst through a mutated cache entry.
        let through_cache = runs % 6 == 5;
        let (patches, said, core, exe, cache) = if through_cache {
            if !cache_target.files().0.exists() {
                run(
                    &[
                        "analyze".into(),
                        cache_target.zst.display().to_string(),
                        "--exe".into(),
                        cache_target.exe.display().to_string(),
                    ],
                    &cache_target.dir,
                );
            }
            let (p, s) = cache_target.mutate(&mut rng);
            (
                p,
                s,
                &cache_target.zst,
                &cache_target.exe,
                &cache_target.dir,
            )
        } else {
            let (p, s) = mutate(&mut rng, t);
            (p, s, &t.core, &t.exe, &plain_cache)
        };
        let mut args: Vec<String> = vec!["analyze".into(), core.display().to_string()];
        args.extend(["--exe".into(), exe.display().to_string()]);
        let json = rng.bool();
        match rng.u8(0..5) {
            _ if json => args.push("--json".into()),
            0 => args.push("--sched".into()),
            1 => args.extend(["--dot".into(), "-".into()]),
            2 => args.extend(["--goroutines".into(), "all".into()]),
            3 => args.extend(["--rules".into(), rules.display().to_string()]),
            _ => args.push("--stacks".into()),
        }
        let (out, took) = run(&args, cache);
        let mut problem = judge(&out, took, json);
        // The Python API on the same input: errors are CgocoreErrors.
        if problem.is_none() && runs % 8 == 0 {
            if let Some(pp) = &python {
                let script = format!(
                    "import cgocore\ntry:\n    cgocore.analyze_core({:?}, exe={:?})\nexcept cgocore.CgocoreError:\n    pass\nprint('OK')\n",
                    core.display().to_string(),
                    exe.display().to_string()
                );
                let o = Command::new("python3")
                    .args(["-c", &script])
                    .env("PYTHONPATH", pp)
                    .output()
                    .unwrap();
                if !String::from_utf8_lossy(&o.stdout).contains("OK") {
                    problem = Some(format!("Python: {}", String::from_utf8_lossy(&o.stderr)));
                }
            }
        }
        if let Some(p) = problem {
            let keep = failures.join(format!("seed{seed}-run{runs}"));
            let _ = std::fs::create_dir_all(&keep);
            let _ = std::fs::copy(exe, keep.join("exe"));
            let kept = if through_cache {
                cache_target.files().0
            } else {
                t.core.clone()
            };
            let _ = std::process::Command::new("cp")
                .args([
                    "--sparse=always",
                    kept.to_str().unwrap(),
                    keep.join("core").to_str().unwrap(),
                ])
                .status();
            found.push(format!(
                "{} run {runs}: {p}\n  mutations: {}\n  kept in {}",
                if through_cache {
                    "the cache entry of the plain fixture"
                } else {
                    &t.name
                },
                said.join("; "),
                keep.display()
            ));
        }
        undo(patches);
        runs += 1;
    }
    eprintln!("fuzz: {runs} runs in {:?}, seed {seed}", start.elapsed());
    assert!(runs > 0);
    assert!(
        found.is_empty(),
        "{} of {runs} runs failed:\n{}",
        found.len(),
        found.join("\n")
    );
}
