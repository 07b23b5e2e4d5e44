//! Stopping every thread of a process for as short a time as possible, and
//! letting it go on every path: `release` on success, `Drop` on errors and
//! panics; if cgocore itself dies (Ctrl-C, SIGTERM, SIGKILL) the kernel
//! detaches and restarts every tracee (ptrace(2): a tracer's exit detaches
//! its tracees). `PTRACE_SEIZE` + `PTRACE_INTERRUPT` stop a thread without a
//! signal: a blocking call it was in (read, futex, nanosleep, accept, poll)
//! is restarted by the kernel when it goes on.
use super::procfs;
use anyhow::{bail, Result};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Listing the tasks again this many times without the list settling means
/// threads are being created faster than they can be stopped.
const MAX_ROUNDS: usize = 64;

/// Every thread of a process, stopped.
pub struct Stopped {
    pid: u32,
    /// Thread -> a signal it was about to take when it stopped (delivered
    /// again when it is let go).
    tasks: BTreeMap<u32, Option<Signal>>,
    since: Instant,
    released: bool,
}

/// Why a process cannot be stopped, in words that say what to do.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("no process {0}")]
    NoSuchProcess(u32),
    #[error("process {pid} is already traced by process {tracer} ({name}); detach it first (a debugger or strace holds it)")]
    AlreadyTraced { pid: u32, tracer: u32, name: String },
    #[error("permission denied attaching to process {pid}: ptrace needs the process's user (with /proc/sys/kernel/yama/ptrace_scope at most 1, now {scope}) or CAP_SYS_PTRACE (run as root, or add SYS_PTRACE to the container)")]
    PermissionDenied { pid: u32, scope: String },
}

/// The process exists and no other tracer holds it.
pub fn check_free(pid: u32) -> Result<(), AttachError> {
    if !procfs::dir(pid).exists() {
        return Err(AttachError::NoSuchProcess(pid));
    }
    if let Some(tracer) = procfs::tracer(pid) {
        let name = procfs::comm(tracer, tracer).unwrap_or_else(|| "?".into());
        return Err(AttachError::AlreadyTraced { pid, tracer, name });
    }
    Ok(())
}

impl AttachError {
    pub fn permission_denied(pid: u32) -> AttachError {
        let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "absent".into());
        AttachError::PermissionDenied { pid, scope }
    }
}

impl Stopped {
    /// Stop every thread of `pid`, threads created meanwhile too.
    pub fn stop(pid: u32) -> Result<Stopped> {
        check_free(pid)?;
        let mut s = Stopped {
            pid,
            tasks: BTreeMap::new(),
            since: Instant::now(),
            released: false,
        };
        for _ in 0..MAX_ROUNDS {
            let new: Vec<u32> = procfs::tasks(pid)?
                .into_iter()
                .filter(|t| !s.tasks.contains_key(t))
                .collect();
            if new.is_empty() {
                if s.tasks.is_empty() {
                    return Err(AttachError::NoSuchProcess(pid).into());
                }
                return Ok(s);
            }
            let mut seized = vec![];
            for tid in new {
                match ptrace::seize(Pid::from_raw(tid as i32), ptrace::Options::empty()) {
                    Ok(()) => {}
                    // Exited since it was listed.
                    Err(Errno::ESRCH) => continue,
                    Err(Errno::EPERM) => return Err(AttachError::permission_denied(pid).into()),
                    Err(e) => bail!("cannot attach to thread {tid} of process {pid}: {e}"),
                }
                s.tasks.insert(tid, None);
                if ptrace::interrupt(Pid::from_raw(tid as i32)).is_ok() {
                    seized.push(tid);
                }
            }
            for tid in seized {
                s.wait_stop(tid)?;
            }
        }
        bail!("process {pid} creates threads faster than they can be stopped; try again")
    }

    /// Wait until `tid` is in a ptrace stop (or gone).
    fn wait_stop(&mut self, tid: u32) -> Result<()> {
        loop {
            match waitpid(Pid::from_raw(tid as i32), Some(WaitPidFlag::__WALL)) {
                // PTRACE_INTERRUPT's stop, or any other ptrace event stop.
                Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::PtraceSyscall(_)) => return Ok(()),
                // A signal was on its way in: it stops here first, and is
                // delivered when the thread is let go.
                Ok(WaitStatus::Stopped(_, sig)) => {
                    self.tasks.insert(tid, Some(sig));
                    return Ok(());
                }
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                    self.tasks.remove(&tid);
                    return Ok(());
                }
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => bail!("waiting for thread {tid} to stop: {e}"),
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The stopped threads, in tid order.
    pub fn tids(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }

    /// How long the process has been stopped.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    /// Let every thread go (a pending signal is delivered); returns how long
    /// the process was stopped.
    pub fn release(mut self) -> Duration {
        self.let_go();
        self.since.elapsed()
    }

    fn let_go(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        for (&tid, &sig) in &self.tasks {
            let _ = ptrace::detach(Pid::from_raw(tid as i32), sig);
        }
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        self.let_go();
    }
}

/// The kernel's register set `nt` of a stopped thread (`PTRACE_GETREGSET`):
/// `NT_PRSTATUS` is the core's `pr_reg`, word for word.
pub fn regset(tid: u32, nt: u32, words: usize) -> Result<Vec<u64>> {
    let mut buf = vec![0u64; words];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: words * 8,
    };
    // SAFETY: the kernel writes at most iov_len bytes into buf, which lives
    // across the call, and updates iov_len to what it wrote.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid as libc::pid_t,
            nt as usize as *mut libc::c_void,
            &mut iov as *mut libc::iovec as *mut libc::c_void,
        )
    };
    if r < 0 {
        bail!(
            "cannot read the registers of thread {tid}: {}",
            std::io::Error::last_os_error()
        );
    }
    buf.truncate(iov.iov_len / 8);
    Ok(buf)
}
