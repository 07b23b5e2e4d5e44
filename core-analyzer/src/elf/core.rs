//! ELF core files: `PT_LOAD` segments and the notes that describe threads
//! (`NT_PRSTATUS`), mapped files (`NT_FILE`), `NT_AUXV`, `NT_SIGINFO` and
//! `NT_PRPSINFO`. Works from program headers only (kernel cores have no sections).
use super::regs::{Arch, Registers};
use crate::input::Mapped;
use crate::memory::{CachedFile, Segment, SegmentSource};
use anyhow::{bail, Context, Result};
use object::elf;
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian as LE;
use std::sync::Arc;

pub const AT_PHDR: u64 = 3;
pub const AT_ENTRY: u64 = 9;
pub const AT_EXECFN: u64 = 31;
const NT_ARM_TLS: u32 = 0x401;
/// Offset of `pr_pid` and `pr_reg` in `struct elf_prstatus` (64-bit Linux).
const PRSTATUS_PID: usize = 32;
/// `pr_sighold`: the signals the thread blocks (the first 64).
const PRSTATUS_SIGHOLD: usize = 24;
const PRSTATUS_REG: usize = 112;
const SIGSTOP: i32 = 19;
/// `CoreFile::writer` values.
pub const KERNEL: &str = "kernel";
pub const GDB: &str = "gdb gcore";
pub const SNAPSHOT: &str = "cgocore snapshot";
/// The note `cgocore snapshot` opens its cores with (name, type): what the
/// live process told beyond its memory, as JSON (`SnapshotNote`).
pub const SNAPSHOT_NOTE: (&[u8], u32) = (b"CGOCORE", 1);

/// The kernel opens a core with the crashing thread's `NT_PRSTATUS`, gdb's
/// gcore with the process's `NT_PRPSINFO`, cgocore's snapshot with its own.
fn writer_of(name: &[u8], first_note: u32) -> Option<&'static str> {
    match (name, first_note) {
        (b"CORE", elf::NT_PRSTATUS) => Some(KERNEL),
        (b"CORE", elf::NT_PRPSINFO) => Some(GDB),
        (n, t) if (n, t) == SNAPSHOT_NOTE => Some(SNAPSHOT),
        _ => None,
    }
}

/// What a live capture knew that memory does not say.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SnapshotNote {
    /// How long the process was stopped.
    pub stopped_ms: f64,
    /// Each file descriptor: a path, a pipe, a socket with its addresses.
    pub fds: std::collections::BTreeMap<i32, String>,
    /// Each thread's name (`comm`).
    pub thread_names: std::collections::BTreeMap<u32, String>,
    /// Threads that did not stop in time: left out of the capture.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstopped: Vec<UnstoppedThread>,
}

/// A thread of a live process that did not stop within the stop timeout
/// (uninterruptible sleep: NFS, FUSE, disk I/O, a parent waiting for its
/// `vfork` child): its registers and stack were not read.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnstoppedThread {
    pub tid: u32,
    /// Its state as `/proc` gave it: `D (disk sleep)`.
    pub state: String,
    /// The kernel function it slept in (`/proc/…/wchan`), when shown.
    pub wchan: Option<String>,
    /// Its name (`comm`).
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CoreThread {
    pub tid: u32,
    /// Signal that stopped the thread (`pr_cursig`).
    pub signal: u16,
    /// Signals the thread blocked when dumped (`pr_sighold`).
    pub sighold: u64,
    pub regs: Registers,
}

#[derive(Debug, Clone)]
pub struct MappedFile {
    pub start: u64,
    pub end: u64,
    /// Offset in the file, in bytes.
    pub offset: u64,
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct SigInfo {
    pub signo: i32,
    pub errno: i32,
    pub code: i32,
}

pub struct CoreFile {
    pub file: Arc<Mapped>,
    pub arch: Arch,
    pub segments: Vec<Segment>,
    pub threads: Vec<CoreThread>,
    pub files: Vec<MappedFile>,
    pub auxv: Vec<(u64, u64)>,
    /// The signal that ended (or stopped) the process: the kernel's one
    /// `NT_SIGINFO`; in a gcore, the first thread's that is not gdb's SIGSTOP.
    pub siginfo: Option<SigInfo>,
    /// Who wrote the core (`"kernel"`, `"gdb gcore"`), from its first note.
    pub writer: Option<&'static str>,
    pub pid: Option<u32>,
    pub command: Option<String>,
    /// A cgocore snapshot's account of the live process.
    pub snapshot: Option<SnapshotNote>,
    pub warnings: Vec<String>,
    tids: std::collections::HashSet<u32>,
    repeated_threads: usize,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    b.get(off..off + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    b.get(off..off + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
}

/// Bytes of notes read between two releases of their mapping.
const RELEASE_EVERY: usize = 32 << 20;

impl CoreFile {
    pub fn parse(file: Arc<Mapped>) -> Result<CoreFile> {
        let data: &[u8] = &file.map;
        let name = file.path.display().to_string();
        if data.len() < 4 || &data[..4] != b"\x7fELF" {
            bail!("{name} is not an ELF file (expected a core file, optionally zstd-compressed)");
        }
        let hdr = elf::FileHeader64::<LE>::parse(data)
            .with_context(|| format!("{name}: bad ELF header"))?;
        let e = hdr.endian().context("unsupported ELF byte order")?;
        if hdr.e_type(e) != elf::ET_CORE {
            bail!("{name} is an ELF file but not a core (e_type {}); did you swap the core and --exe?", hdr.e_type(e));
        }
        let arch = match hdr.e_machine(e) {
            elf::EM_X86_64 => Arch::X86_64,
            elf::EM_AARCH64 => Arch::Aarch64,
            m => bail!("{name}: unsupported machine {m} (x86_64 and aarch64 are supported)"),
        };
        let phdrs = hdr
            .program_headers(e, data)
            .with_context(|| format!("{name}: program headers are truncated or corrupt"))?;
        // Memory is read through a cache (memory/file.rs), the mapping only
        // where the file cannot be opened again.
        let source: SegmentSource = match file.reopen().and_then(CachedFile::new) {
            Ok(cached) => Arc::new(cached),
            Err(_) => file.clone(),
        };
        let mut core = CoreFile {
            file: file.clone(),
            arch,
            segments: vec![],
            threads: vec![],
            files: vec![],
            auxv: vec![],
            siginfo: None,
            writer: None,
            pid: None,
            command: None,
            snapshot: None,
            warnings: vec![],
            tids: Default::default(),
            repeated_threads: 0,
        };
        let mut truncated = 0u64;
        let mut siginfos = vec![];
        for ph in phdrs {
            match ph.p_type(e) {
                elf::PT_LOAD => {
                    let (off, filesz) = (ph.p_offset(e), ph.p_filesz(e));
                    if off.saturating_add(filesz) > data.len() as u64 {
                        truncated += 1;
                    }
                    core.segments.push(Segment {
                        vaddr: ph.p_vaddr(e),
                        memsz: ph.p_memsz(e),
                        filesz,
                        offset: off,
                        source: source.clone(),
                        from_core: true,
                    });
                }
                elf::PT_NOTE => match ph.notes(e, data) {
                    Ok(Some(notes)) => core.read_notes(notes, e, &mut siginfos),
                    _ => core
                        .warnings
                        .push("a PT_NOTE segment is truncated or corrupt".into()),
                },
                _ => {}
            }
        }
        if truncated > 0 {
            core.warnings.push(format!(
                "core is truncated: {truncated} segment(s) extend past the end of the file ({} bytes); reads there fail",
                data.len()
            ));
        }
        if core.threads.is_empty() {
            bail!("{name}: no NT_PRSTATUS notes, so no threads (truncated or corrupt core?)");
        }
        if core.repeated_threads > 0 {
            core.warnings.push(format!(
                "{} thread status notes repeat a thread already seen (corrupt core); each thread is counted once",
                core.repeated_threads
            ));
        }
        core.siginfo = core.stop_signal(siginfos);
        Ok(core)
    }

    /// Every note of one `PT_NOTE` segment: who wrote the core (its first
    /// note), and what each says.
    fn read_notes(
        &mut self,
        mut notes: object::read::elf::NoteIterator<'_, elf::FileHeader64<LE>>,
        e: LE,
        siginfos: &mut Vec<SigInfo>,
    ) {
        let base = self.file.map.as_ptr() as usize;
        let mut read_to = None;
        loop {
            match notes.next() {
                Ok(Some(n)) => {
                    // What is read of the mapping is let go as the walk goes.
                    let at = (n.desc().as_ptr() as usize).saturating_sub(base);
                    let from = *read_to.get_or_insert(at);
                    if at.saturating_sub(from) >= RELEASE_EVERY {
                        self.file.release_range(from..at);
                        read_to = Some(at);
                    }
                    if self.writer.is_none() {
                        self.writer = writer_of(n.name(), n.n_type(e));
                    }
                    if let Some(s) = self.note(n.name(), n.n_type(e), n.desc()) {
                        siginfos.push(s);
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    self.warnings
                        .push("notes end early (truncated core?)".into());
                    break;
                }
            }
        }
    }

    /// Keeps what a note says; returns an `NT_SIGINFO`'s signal (the kernel
    /// writes one for the process, gdb one per thread).
    fn note(&mut self, name: &[u8], ty: u32, desc: &[u8]) -> Option<SigInfo> {
        match (name, ty) {
            (b"CORE", elf::NT_PRSTATUS) => self.prstatus(desc),
            (b"CORE", elf::NT_FILE) => self.nt_file(desc),
            (b"CORE", elf::NT_AUXV) => {
                self.auxv = desc
                    .chunks_exact(16)
                    .map(|c| (u64_at(c, 0).unwrap(), u64_at(c, 8).unwrap()))
                    .collect();
            }
            (b"CORE", elf::NT_SIGINFO) if desc.len() >= 12 => {
                return Some(SigInfo {
                    signo: u32_at(desc, 0).unwrap() as i32,
                    errno: u32_at(desc, 4).unwrap() as i32,
                    code: u32_at(desc, 8).unwrap() as i32,
                });
            }
            (b"CORE", elf::NT_PRPSINFO) => {
                self.pid = u32_at(desc, 24);
                if let Some(f) = desc.get(40..56) {
                    let end = f.iter().position(|&b| b == 0).unwrap_or(f.len());
                    self.command = Some(String::from_utf8_lossy(&f[..end]).into_owned());
                }
            }
            (n, t) if (n, t) == SNAPSHOT_NOTE => {
                self.snapshot = serde_json::from_slice(desc).ok();
            }
            (b"LINUX", NT_ARM_TLS) => {
                if let (Some(t), Some(v)) = (self.threads.last_mut(), u64_at(desc, 0)) {
                    t.regs.tls = Some(v);
                }
            }
            _ => {}
        }
        None
    }

    /// The kernel's one siginfo is the signal that killed the process. gdb
    /// writes each thread's: the one it attached with (SIGSTOP) says nothing
    /// of the process, a fault it stopped on (SIGSEGV) does.
    fn stop_signal(&self, siginfos: Vec<SigInfo>) -> Option<SigInfo> {
        match self.writer {
            Some(GDB) => siginfos
                .into_iter()
                .find(|s| s.signo != 0 && s.signo != SIGSTOP),
            _ => siginfos.into_iter().next(),
        }
    }

    fn prstatus(&mut self, desc: &[u8]) {
        let nregs = match self.arch {
            Arch::X86_64 => 27,
            Arch::Aarch64 => 34,
        };
        let (Some(tid), Some(regs)) = (
            u32_at(desc, PRSTATUS_PID),
            desc.get(PRSTATUS_REG..PRSTATUS_REG + nregs * 8),
        ) else {
            self.warnings
                .push("an NT_PRSTATUS note is too short; thread skipped".into());
            return;
        };
        let signal = desc
            .get(12..14)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .unwrap_or(0);
        let words = regs
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        // A thread has one status note; a repeat is corruption, and memory
        // must not follow what a crafted core repeats.
        if !self.tids.insert(tid) {
            self.repeated_threads += 1;
            return;
        }
        let sighold = desc
            .get(PRSTATUS_SIGHOLD..PRSTATUS_SIGHOLD + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .unwrap_or(0);
        self.threads.push(CoreThread {
            tid,
            signal,
            sighold,
            regs: Registers {
                arch: self.arch,
                words,
                tls: None,
            },
        });
    }

    fn nt_file(&mut self, desc: &[u8]) {
        let (Some(count), Some(page)) = (u64_at(desc, 0), u64_at(desc, 8)) else {
            return;
        };
        let count = count.min(desc.len() as u64 / 24) as usize;
        let names_at = 16 + count * 24;
        let mut names = desc.get(names_at..).unwrap_or(&[]).split(|&b| b == 0);
        for i in 0..count {
            let b = 16 + i * 24;
            let (Some(start), Some(end), Some(pgoff)) =
                (u64_at(desc, b), u64_at(desc, b + 8), u64_at(desc, b + 16))
            else {
                break;
            };
            let path = names
                .next()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            self.files.push(MappedFile {
                start,
                end,
                offset: pgoff.saturating_mul(page),
                path,
            });
        }
    }

    pub fn auxv_get(&self, key: u64) -> Option<u64> {
        self.auxv.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The file mapped at `addr`, per `NT_FILE`.
    pub fn file_at(&self, addr: u64) -> Option<&MappedFile> {
        self.files.iter().find(|f| f.start <= addr && addr < f.end)
    }
}
