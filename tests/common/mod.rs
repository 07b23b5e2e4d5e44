//! Finding real cores (committed fixtures and generated ones) and Go's own dump
//! of each, which is the ground truth.
#![allow(dead_code)]
pub mod scenario;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize, Clone)]
pub struct TruthGoroutine {
    pub goid: u64,
    pub state: String,
    pub locked: bool,
    pub m: Option<i64>,
    pub m_known: bool,
    pub frames: Vec<TruthFrame>,
    /// Go printed only the first and last 50 frames.
    #[serde(default)]
    pub elided: bool,
}

#[derive(Debug, Deserialize, Clone)]
pub struct TruthFrame {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<i64>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Scenario {
    pub tid: u32,
    pub goid: u64,
}

#[derive(Debug, Deserialize, Clone)]
pub struct Truth {
    pub goroutines: Vec<TruthGoroutine>,
    pub scenarios: HashMap<String, Scenario>,
    pub go_version: String,
    pub variant: String,
    pub kind: String,
    pub main_goid: Option<u64>,
    /// Where the target's libraries are on this host (`--sysroot`): the
    /// guest's root for an aarch64 core made under qemu-user.
    #[serde(default)]
    pub sysroot: Option<String>,
    /// The queue program's record: each object's kind, address, holders
    /// and waiters (goroutine ids).
    #[serde(default)]
    pub objects: HashMap<String, TruthObject>,
    /// The M whose signal ended the process ("PC=0x... m=2" in Go's dump).
    #[serde(default)]
    pub crash_m: Option<i64>,
    /// The go-sqlite3 program's record: each waiting scenario and the
    /// scenario whose thread holds its database lock (`None`: no thread
    /// does; a transaction left open by a goroutine parked in Go).
    #[serde(default)]
    pub holders: HashMap<String, Option<String>>,
    /// The threads gdb saw created when it stopped the program at a clone.
    #[serde(default)]
    pub starting_tids: Vec<u32>,
}

#[derive(Debug, Deserialize, Clone)]
pub struct TruthObject {
    pub kind: String,
    pub addr: u64,
    pub holders: Vec<u64>,
    pub waiters: Vec<u64>,
}

impl Truth {
    /// Cores of another platform than this host's glibc x86_64 (arm64 under
    /// qemu-user, musl): their libc has no debug info here.
    pub fn foreign_platform(&self) -> bool {
        self.variant == "arm64" || self.is_musl()
    }

    /// Linked with musl (dynamic or static): the scenario leaves out what
    /// wedges glibc's own locks.
    pub fn is_musl(&self) -> bool {
        self.variant.starts_with("musl")
    }

    /// A static program: its C library is in the executable.
    pub fn is_static(&self) -> bool {
        self.variant == "musl-static" || self.variant == "musl-arm64"
    }
}

pub struct CoreCase {
    pub name: String,
    pub core: PathBuf,
    pub exe: PathBuf,
    pub truth: Truth,
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn load_truth(p: &Path) -> Truth {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Committed fixtures of the cgostuck scenario:
/// corefiles/fixtures/<name>/{core.zst, cgostuck.zst, truth.json}.
pub fn fixtures() -> Vec<CoreCase> {
    let mut v = all_fixtures();
    v.retain(|c| !c.truth.variant.starts_with("queue"));
    v
}

/// The committed core of the queue program (goroutines queued in Go behind
/// goroutines in C), for the runbooks and a test that needs no generated core.
pub fn queue_fixture() -> Option<CoreCase> {
    all_fixtures()
        .into_iter()
        .find(|c| c.truth.variant == "queue")
}

fn all_fixtures() -> Vec<CoreCase> {
    let dir = root().join("corefiles/fixtures");
    let mut out = vec![];
    for e in std::fs::read_dir(&dir).expect("corefiles/fixtures exists") {
        let d = e.unwrap().path();
        if !d.join("truth.json").exists() {
            continue;
        }
        out.push(CoreCase {
            name: d.file_name().unwrap().to_string_lossy().into(),
            core: d.join("core.zst"),
            exe: d.join("cgostuck.zst"),
            truth: load_truth(&d.join("truth.json")),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Generated cores of the cgostuck scenario: $CGOCORE_CORES (default
/// .cache/cores)/go<ver>/<variant>/<kind>/.
pub fn generated() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| {
        c.truth.variant != "cshared"
            && c.truth.variant != "busy"
            && !c.truth.variant.starts_with("exhaust")
            && !c.truth.variant.starts_with("gosyscall")
            && !c.truth.variant.starts_with("libs")
            && !c.truth.variant.starts_with("queue")
            && !c.truth.variant.starts_with("mattn")
            && !c.truth.foreign_platform()
    });
    v
}

/// The kernel core of the crash at Go's 10000-thread limit.
pub fn generated_exhaust() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant == "exhaust");
    v
}

/// The kernel core of the same program under `ulimit -u 300`: runtime/cgo's
/// pthread_create fails first.
pub fn generated_exhaust_nproc() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant == "exhaust-nproc");
    v
}

/// Kernel cores of the program stuck inside real third-party C libraries
/// (`libs`: Debian's shared libsqlite3; `libs-bundled`: SQLite's
/// amalgamation compiled in, with its DWARF).
pub fn generated_libs() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant.starts_with("libs"));
    v
}

/// Kernel cores of the program whose goroutines block in system calls made
/// from Go (no cgo call), built without cgo (`gosyscall`) and with it.
pub fn generated_gosyscall() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant.starts_with("gosyscall"));
    v
}

/// Cores of the queue program (goroutines queued in Go behind goroutines in
/// C), plain (kernel core and gcore) and stripped.
pub fn generated_queue() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant.starts_with("queue"));
    v
}

/// Cores of the database/sql program over github.com/mattn/go-sqlite3
/// (`mattn`: Debian's package over Debian's libsqlite3; `mattn-bundled`: the
/// amalgamation compiled in, with its DWARF), kernel cores and gcores; the
/// bundled build for arm64 (`mattn-arm64`, qemu-user) and static musl
/// (`mattn-musl`).
pub fn generated_mattn() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant.starts_with("mattn"));
    v
}

/// Generated cores of the scenario linked with musl: a dynamic (Alpine-style)
/// build's gcore, a static build's kernel core, and arm64 builds (static,
/// and dynamic with Debian's musl:arm64) under qemu-user, each in both forms.
pub fn generated_musl() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.is_musl());
    v
}

/// Generated cores of the scenario built for aarch64 and run under
/// qemu-user: as qemu wrote it (`qemu`) and in the kernel's form (`kernel`).
pub fn generated_arm64() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant == "arm64");
    v
}

/// Kernel cores of the busy program, caught at random moments.
pub fn generated_busy() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant == "busy");
    v
}

/// Generated cores of the c-shared scenario: a C program running a Go library.
pub fn generated_cshared() -> Vec<CoreCase> {
    let mut v = generated_all();
    v.retain(|c| c.truth.variant == "cshared");
    v
}

/// Every generated core but the captures of a thread being started.
fn generated_all() -> Vec<CoreCase> {
    let mut v = scan_generated();
    v.retain(|c| c.truth.kind != "starting");
    v
}

/// gdb's gcores taken the moment Go starts a thread (the clone has just
/// returned in the new thread; `truth.starting_tids` are the new threads
/// gdb announced): gosyscall builds (Go's own clone) and the go-sqlite3
/// program (pthread_create).
pub fn generated_starting() -> Vec<CoreCase> {
    let mut v = scan_generated();
    v.retain(|c| c.truth.kind == "starting");
    v
}

fn scan_generated() -> Vec<CoreCase> {
    let base = std::env::var_os("CGOCORE_CORES")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/cores"));
    let mut out = vec![];
    let Ok(versions) = std::fs::read_dir(&base) else {
        return out;
    };
    for v in versions.flatten() {
        let Ok(variants) = std::fs::read_dir(v.path()) else {
            continue;
        };
        for var in variants.flatten() {
            let Ok(kinds) = std::fs::read_dir(var.path()) else {
                continue;
            };
            for k in kinds.flatten() {
                let d = k.path();
                let core = if d.join("core").exists() {
                    d.join("core")
                } else {
                    d.join("core.zst")
                };
                let exe = var.path().join("cgostuck");
                if !d.join("truth.json").exists() || !core.exists() || !exe.exists() {
                    continue;
                }
                out.push(CoreCase {
                    name: format!(
                        "{}/{}/{}",
                        v.file_name().to_string_lossy(),
                        var.file_name().to_string_lossy(),
                        k.file_name().to_string_lossy()
                    ),
                    core,
                    exe,
                    truth: load_truth(&d.join("truth.json")),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The first committed fixture of a plain (not PIE, not stripped) build.
pub fn plain_fixture() -> CoreCase {
    fixtures()
        .into_iter()
        .find(|c| c.truth.variant == "plain")
        .unwrap()
}

/// Whether a command is installed (it runs with `--version`).
pub fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd)
        .arg("--version")
        .output()
        .is_ok()
}

pub fn require_generated() -> bool {
    std::env::var("CGOCORE_REQUIRE_GENERATED").is_ok_and(|v| v == "1")
}

pub fn analyze(case: &CoreCase) -> cgocore::Analysis {
    let opts = cgocore::OpenOptions {
        exe: Some(case.exe.clone()),
        sysroot: case.truth.sysroot.as_ref().map(PathBuf::from),
    };
    let p = cgocore::Process::from_core(&case.core, &opts)
        .unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
    cgocore::analyze(p, None).unwrap_or_else(|e| panic!("{}: {e:#}", case.name))
}

/// A scratch folder under cargo's per-target temp dir, removed when dropped
/// (also when the test panics). Cores are hundreds of MB: one leaked per run
/// fills a CI disk, so folders left by killed runs are removed on the next.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        Scratch::under(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
    }

    /// In /dev/shm when it has room: gdb 13's gcore writes PROT_NONE
    /// reservations as zeros (4 GB for the scenario), which on disk would be
    /// written in full only to be deleted.
    pub fn in_memory(name: &str) -> Scratch {
        let shm = Path::new("/dev/shm");
        if free_bytes(shm).is_some_and(|b| b > 8 << 30) {
            Scratch::under(shm, &format!("cgocore-{name}"))
        } else {
            Scratch::new(name)
        }
    }

    fn under(base: &Path, name: &str) -> Scratch {
        remove_stale(base, name);
        let d = base.join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct it is given; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0)
        .then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

/// `name-<pid>` folders whose process is gone.
fn remove_stale(base: &Path, name: &str) {
    if !cfg!(target_os = "linux") {
        return;
    }
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let prefix = format!("{name}-");
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(pid) = file
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// `data` written to `path` with zero pages left as holes, as a core is.
pub fn write_sparse(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    cgocore::testing::write_sparse(&mut &data[..], &mut f).unwrap();
}

/// The uncompressed file behind a (possibly zstd) core or binary: the
/// library's cached sparse copy, so a debugger reads it without another copy.
pub fn uncompressed(p: &Path) -> PathBuf {
    cgocore::testing::open_input(p).unwrap().real_path.clone()
}

/// Who wrote a core, from its first note: the kernel starts with the crashing
/// thread's NT_PRSTATUS, gdb's gcore with the process's NT_PRPSINFO.
pub fn core_writer(core: &Path) -> &'static str {
    use object::read::elf::{FileHeader, ProgramHeader};
    let mapped = cgocore::testing::open_input(core).unwrap();
    let data = &mapped.map[..];
    let hdr = object::elf::FileHeader64::<object::Endianness>::parse(data).unwrap();
    let endian = hdr.endian().unwrap();
    for ph in hdr.program_headers(endian, data).unwrap() {
        if let Ok(Some(mut notes)) = ph.notes(endian, data) {
            if let Ok(Some(note)) = notes.next() {
                return match note.n_type(endian) {
                    object::elf::NT_PRSTATUS => "kernel",
                    object::elf::NT_PRPSINFO => "gdb gcore",
                    _ => "unknown",
                };
            }
        }
    }
    "unknown"
}

/// `data` as the file `name` in `dir`, written sparse.
pub fn tmpfile(dir: &Scratch, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    write_sparse(&p, data);
    p
}

/// A (sparse) copy of a fixture core with 8-byte values patched at runtime
/// addresses.
pub fn patched_core(c: &CoreCase, dir: &Scratch, name: &str, patches: &[(u64, u64)]) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let mapped = cgocore::testing::open_input(&c.core).unwrap();
    let path = tmpfile(dir, name, &mapped.map[..]);
    let core = cgocore::testing::CoreFile::parse(mapped).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    for &(addr, val) in patches {
        let seg = core
            .segments
            .iter()
            .find(|s| s.vaddr <= addr && addr + 8 <= s.vaddr + s.filesz)
            .expect("address saved in core");
        f.write_all_at(&val.to_le_bytes(), seg.offset + addr - seg.vaddr)
            .unwrap();
    }
    path
}

/// Run `cmd` with its heap and private memory capped (RLIMIT_DATA; mapped
/// files do not count) and killed past `deadline`; its output and how long
/// it took. The killer stands down as soon as the child is done.
pub fn run_limited(
    cmd: &mut std::process::Command,
    data_limit: u64,
    deadline: std::time::Duration,
) -> (std::process::Output, std::time::Duration) {
    use std::os::unix::process::CommandExt;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: data_limit,
                rlim_max: data_limit,
            };
            libc::setrlimit(libc::RLIMIT_DATA, &lim);
            Ok(())
        });
    }
    let start = std::time::Instant::now();
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if rx.recv_timeout(deadline).is_err() {
            // SAFETY: kill(2) of the child started above, still running.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    let _ = tx.send(());
    (out, start.elapsed())
}

/// A FIFO at `p`.
pub fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        p.display()
    );
}

/// A small tmpfs mounted on a new folder `dir` (a full disk on demand),
/// unmounted when dropped, also when the test panics; `None` where this
/// host lets no tmpfs be mounted (not root, a container).
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    pub fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("cannot mount a tmpfs here: the full-disk case is skipped");
        }
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
