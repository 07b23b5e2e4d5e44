//! Library errors: `Error` at the library's boundary (one variant per kind
//! a caller acts on), and `Fault` for memory reads, which names the address
//! so a report can say exactly which pointer led outside the core.

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Fault {
    #[error("address {addr:#x} ({len} bytes) is not in the core or any mapped file")]
    Unmapped { addr: u64, len: usize },
    #[error("address {addr:#x} ({len} bytes) was not saved in the core (the kernel or gcore left it out)")]
    NotSaved { addr: u64, len: usize },
    #[error("read of {len} bytes at {addr:#x} refused: larger than the {limit}-byte limit")]
    TooLarge { addr: u64, len: usize, limit: usize },
    #[error("debugger read at {addr:#x} ({len} bytes) failed: {msg}")]
    Target { addr: u64, len: usize, msg: String },
}

impl Fault {
    pub fn addr(&self) -> u64 {
        match self {
            Fault::Unmapped { addr, .. }
            | Fault::NotSaved { addr, .. }
            | Fault::TooLarge { addr, .. }
            | Fault::Target { addr, .. } => *addr,
        }
    }
}

/// What went wrong, for a user of the library: each kind a caller may act
/// on differently. The message says what to do next.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a core file cgocore can read (not ELF, not a core,
    /// corrupt, an unsupported machine).
    #[error("{0}")]
    NotACore(String),
    /// Neither the executable nor any library it mapped is a Go binary.
    #[error("{0}")]
    NotGo(String),
    /// The binary given (or found) is not the one the process ran.
    #[error("{} does not match {target}: {detail}", binary.display())]
    WrongBinary {
        binary: std::path::PathBuf,
        /// `the core core.123`, `process 42`.
        target: String,
        detail: String,
    },
    /// A Go release this cgocore has no knowledge of.
    #[error("{0}")]
    UnsupportedGoVersion(String),
    /// The runtime's data in the process cannot be made sense of.
    #[error("{0}")]
    CorruptRuntime(String),
    /// A file could not be opened or read.
    #[error("{what}")]
    Io {
        path: std::path::PathBuf,
        what: String,
    },
    /// A debugger or live target refused to read memory the analysis needs.
    #[error("{0}")]
    TargetMemory(String),
    /// A live process cannot be stopped: none with that pid, no permission,
    /// or another tracer holds it.
    #[error("{0}")]
    Attach(String),
    /// Anything else (a bad rules file, ...).
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The typed error behind an internal one: a typed error raised below
    /// passes through, a refused debugger read is `TargetMemory`, anything
    /// else becomes `fallback` with the whole message chain.
    pub(crate) fn from_internal(e: anyhow::Error, fallback: fn(String) -> Error) -> Error {
        if let Some(typed) = e.downcast_ref::<Error>() {
            return typed.clone();
        }
        let msg = format!("{e:#}");
        if matches!(e.downcast_ref::<Fault>(), Some(Fault::Target { .. })) {
            return Error::TargetMemory(msg);
        }
        if e.downcast_ref::<AttachError>().is_some() {
            return Error::Attach(msg);
        }
        fallback(msg)
    }

    /// A short stable name for the kind (`wrong-binary`, ...), for scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotACore(_) => "not-a-core",
            Error::NotGo(_) => "not-go",
            Error::WrongBinary { .. } => "wrong-binary",
            Error::UnsupportedGoVersion(_) => "unsupported-go-version",
            Error::CorruptRuntime(_) => "corrupt-runtime",
            Error::Io { .. } => "io",
            Error::TargetMemory(_) => "target-memory",
            Error::Attach(_) => "attach",
            Error::Other(_) => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn typed_errors_pass_through_context_and_faults_are_named() {
        let wrong = Error::NotGo("x is not a Go program".into());
        let e = anyhow::Error::new(wrong.clone()).context("while opening");
        assert_eq!(Error::from_internal(e, Error::Other), wrong);
        let fault: anyhow::Result<()> = Err(Fault::Target {
            addr: 0x10,
            len: 8,
            msg: "refused".into(),
        })
        .context("reading runtime.allm");
        let e = Error::from_internal(fault.unwrap_err(), Error::CorruptRuntime);
        assert_eq!(e.kind(), "target-memory");
        assert!(e.to_string().starts_with("reading runtime.allm: "), "{e}");
        let e = Error::from_internal(anyhow::anyhow!("bad"), Error::CorruptRuntime);
        assert_eq!(e, Error::CorruptRuntime("bad".into()));
    }
}

/// Why a process cannot be stopped, in words that say what happened and
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no process {0}")]
    NoSuchProcess(u32),
    #[error(
        "process {0} exited during the capture (nothing was kept; it was let go to be reaped)"
    )]
    Exited(u32),
    #[error("process {pid} is already traced by process {tracer} ({name}); detach it first (a debugger or strace holds it)")]
    AlreadyTraced { pid: u32, tracer: u32, name: String },
    #[error("thread {tid} of process {pid} is already traced by process {tracer} ({name}); detach it first (a debugger or strace holds it)")]
    ThreadTraced {
        pid: u32,
        tid: u32,
        tracer: u32,
        name: String,
    },
    #[error("permission denied attaching to process {pid}: ptrace needs the process's user (with /proc/sys/kernel/yama/ptrace_scope at most 1, now {scope}) or CAP_SYS_PTRACE (run as root, or add SYS_PTRACE to the container)")]
    PermissionDenied { pid: u32, scope: String },
    #[error("ptrace of process {pid} is not permitted, although cgocore runs as root: {why}")]
    NotPermitted { pid: u32, why: String },
    #[error("{0}")]
    Timeout(String),
}
