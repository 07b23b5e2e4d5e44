//! Stopping every thread of a process for as short a time as possible, and
//! letting it go on every path. `PTRACE_SEIZE` + `PTRACE_INTERRUPT` stop a
//! thread without a signal: a blocking call it was in (read, futex,
//! nanosleep, accept, poll) is restarted by the kernel when it goes on.
//!
//! Nothing here waits without a deadline: stops are polled (`WNOHANG`), so a
//! thread in uninterruptible sleep (NFS, FUSE, disk I/O, a parent waiting
//! for its `vfork` child) does not hold the others stopped: past the
//! deadline it is named and left out. A process that exits or is killed
//! during the stop is noticed (its threads' exits, `/proc`) and let go at
//! once. The tracer is a thread of its own (see `live::capture`), which ends
//! when the capture does: when a tracer thread exits the kernel detaches
//! whatever it still holds, a thread that never reached its stop and a
//! zombie left to reap included (ptrace(2); `exit_ptrace`). `release` lets
//! go on success, `Drop` on errors and panics; if cgocore itself dies the
//! kernel does the same.
use super::procfs;
use anyhow::{bail, Result};
use nix::errno::Errno;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Listing the tasks again this many times without the list settling means
/// threads are being created faster than they can be stopped.
const MAX_ROUNDS: usize = 64;

/// A thread that did not reach its stop before the deadline: what `/proc`
/// says it was doing.
#[derive(Debug, Clone)]
pub struct Unstopped {
    pub tid: u32,
    /// `/proc/…/stat`'s state, in words: `D (disk sleep)`.
    pub state: String,
    /// The kernel function it sleeps in (`/proc/…/wchan`), when shown.
    pub wchan: Option<String>,
}

/// Every thread of a process, stopped (but those in `unstopped`).
pub struct Stopped {
    pid: u32,
    /// Thread -> a signal it was about to take when it stopped (delivered
    /// again when it is let go).
    tasks: BTreeMap<u32, Option<Signal>>,
    /// Seized and interrupted, not yet seen in its stop.
    pending: BTreeSet<u32>,
    unstopped: Vec<Unstopped>,
    since: Instant,
    released: bool,
}

pub use crate::error::AttachError;

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
    /// A permission error, in the words that fit who is asking.
    pub fn permission_denied(pid: u32) -> AttachError {
        let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "absent".into());
        // SAFETY: geteuid has no failure mode.
        if unsafe { libc::geteuid() } != 0 {
            return AttachError::PermissionDenied { pid, scope };
        }
        let why = if scope == "3" {
            "/proc/sys/kernel/yama/ptrace_scope is 3 (no process may be traced until reboot)"
                .to_string()
        } else if !has_cap_sys_ptrace() {
            "this root lacks CAP_SYS_PTRACE (a container: add SYS_PTRACE to its capabilities)"
                .to_string()
        } else {
            format!("a security module (AppArmor, SELinux, seccomp) refused it; ptrace_scope is {scope}")
        };
        AttachError::NotPermitted { pid, why }
    }

    /// Why seizing `tid` was refused: another tracer, the process going
    /// away, or permission.
    fn seize_refused(pid: u32, tid: u32) -> AttachError {
        let me = std::process::id();
        if let Some(tracer) = procfs::task_tracer(pid, tid).filter(|&t| t != me) {
            let name = procfs::comm(tracer, tracer).unwrap_or_else(|| "?".into());
            return AttachError::ThreadTraced {
                pid,
                tid,
                tracer,
                name,
            };
        }
        if !procfs::alive(pid) || !procfs::thread_alive(pid, tid) {
            return AttachError::Exited(pid);
        }
        AttachError::permission_denied(pid)
    }
}

/// Whether this process has CAP_SYS_PTRACE in its effective set.
fn has_cap_sys_ptrace() -> bool {
    const CAP_SYS_PTRACE: u32 = 19;
    procfs::status_field(std::path::Path::new("/proc/self/status"), "CapEff")
        .and_then(|v| u64::from_str_radix(&v, 16).ok())
        .is_none_or(|caps| caps & (1 << CAP_SYS_PTRACE) != 0)
}

/// How one poll of a thread came out.
enum Poll {
    Waiting,
    Stopped(Option<Signal>),
    Gone,
}

fn poll(tid: u32) -> Result<Poll> {
    loop {
        return Ok(
            match waitpid(
                Pid::from_raw(tid as i32),
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            ) {
                Ok(WaitStatus::StillAlive) => Poll::Waiting,
                // PTRACE_INTERRUPT's stop, or any other ptrace event stop.
                Ok(WaitStatus::PtraceEvent(..)) | Ok(WaitStatus::PtraceSyscall(_)) => {
                    Poll::Stopped(None)
                }
                // A signal was on its way in: it stops here first, and is
                // delivered when the thread is let go.
                Ok(WaitStatus::Stopped(_, sig)) => Poll::Stopped(Some(sig)),
                Ok(WaitStatus::Exited(..)) | Ok(WaitStatus::Signaled(..)) | Err(Errno::ECHILD) => {
                    Poll::Gone
                }
                Ok(WaitStatus::Continued(_)) | Err(Errno::EINTR) => continue,
                Err(e) => bail!("waiting for thread {tid} to stop: {e}"),
            },
        );
    }
}

impl Stopped {
    /// Stop every thread of `pid`, threads created meanwhile too. A thread
    /// still not stopped `timeout` after the stop began is left out (see
    /// [`Stopped::unstopped`]); a process that exits meanwhile is an
    /// [`AttachError::Exited`].
    pub fn stop(pid: u32, timeout: Duration) -> Result<Stopped> {
        check_free(pid)?;
        let mut s = Stopped {
            pid,
            tasks: BTreeMap::new(),
            pending: BTreeSet::new(),
            unstopped: vec![],
            since: Instant::now(),
            released: false,
        };
        let deadline = s.since + timeout;
        for _ in 0..MAX_ROUNDS {
            let new: Vec<u32> = procfs::tasks(pid)
                .map_err(|_| AttachError::Exited(pid))?
                .into_iter()
                .filter(|t| !s.known(*t))
                .collect();
            if new.is_empty() {
                if s.tasks.is_empty() {
                    return Err(AttachError::Exited(pid).into());
                }
                return Ok(s);
            }
            for tid in new {
                match ptrace::seize(Pid::from_raw(tid as i32), ptrace::Options::empty()) {
                    Ok(()) => {}
                    // Exited since it was listed.
                    Err(Errno::ESRCH) => continue,
                    Err(Errno::EPERM) => return Err(AttachError::seize_refused(pid, tid).into()),
                    Err(e) => bail!("cannot attach to thread {tid} of process {pid}: {e}"),
                }
                s.pending.insert(tid);
                let _ = ptrace::interrupt(Pid::from_raw(tid as i32));
            }
            s.await_stops(deadline)?;
            if Instant::now() >= deadline {
                // No more rounds: every thread that could run is stopped.
                return Ok(s);
            }
        }
        bail!("process {pid} creates threads faster than they can be stopped; try again")
    }

    fn known(&self, tid: u32) -> bool {
        self.tasks.contains_key(&tid)
            || self.pending.contains(&tid)
            || self.unstopped.iter().any(|u| u.tid == tid)
    }

    /// Poll the pending threads until each is stopped or gone, or the
    /// deadline passes (those left are named in `unstopped`).
    fn await_stops(&mut self, deadline: Instant) -> Result<()> {
        let mut nap = Duration::from_micros(50);
        let mut gone = false;
        while !self.pending.is_empty() {
            let mut progress = false;
            for tid in self.pending.clone() {
                match poll(tid)? {
                    Poll::Waiting => continue,
                    Poll::Stopped(sig) => {
                        self.tasks.insert(tid, sig);
                    }
                    Poll::Gone => gone = true,
                }
                self.pending.remove(&tid);
                progress = true;
            }
            if gone && !procfs::alive(self.pid) {
                return Err(AttachError::Exited(self.pid).into());
            }
            if self.pending.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                for tid in std::mem::take(&mut self.pending) {
                    let (state, wchan) = procfs::thread_state(self.pid, tid);
                    self.unstopped.push(Unstopped { tid, state, wchan });
                }
                break;
            }
            if progress {
                nap = Duration::from_micros(50);
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// The stopped threads, in tid order.
    pub fn tids(&self) -> Vec<u32> {
        self.tasks.keys().copied().collect()
    }

    /// The threads that did not stop before the deadline.
    pub fn unstopped(&self) -> &[Unstopped] {
        &self.unstopped
    }

    /// How long the process has been stopped.
    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    /// `Exited` if the process went away while stopped (killed): what was
    /// read of it is not a state it was in.
    pub fn check_alive(&self) -> Result<(), AttachError> {
        if procfs::alive(self.pid) {
            Ok(())
        } else {
            Err(AttachError::Exited(self.pid))
        }
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
        // A late one may have reached its stop since: it can be let go now.
        let late: Vec<u32> = self.unstopped.iter().map(|u| u.tid).collect();
        for tid in late.into_iter().chain(std::mem::take(&mut self.pending)) {
            if let Ok(Poll::Stopped(sig)) = poll(tid) {
                self.tasks.insert(tid, sig);
            }
        }
        for (&tid, &sig) in &self.tasks {
            let _ = ptrace::detach(Pid::from_raw(tid as i32), sig);
        }
        // Threads that exited meanwhile (the process killed): reaped, so the
        // process's parent sees it end. Whatever is left the kernel detaches
        // when the tracer thread ends.
        if !procfs::alive(self.pid) {
            for &tid in self.tasks.keys() {
                let _ = poll(tid);
            }
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
