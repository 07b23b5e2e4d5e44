//! Debug info by build id from debuginfod servers, as Debian, Ubuntu,
//! Fedora and Arch users get it: through elfutils' own client library,
//! `libdebuginfod.so.1`, loaded at run time (gdb links it, so where gdb is,
//! it is; where it is not, nothing is fetched and nothing fails). Its cache
//! is gdb's (`$DEBUGINFOD_CACHE_PATH`, else `$XDG_CACHE_HOME/debuginfod_client`),
//! it honours `DEBUGINFOD_URLS` (unset or empty: no network at all) and its
//! own `DEBUGINFOD_TIMEOUT`. cgocore adds a deadline for all fetches of a run
//! (`CGOCORE_DEBUGINFOD_SECONDS`, default 30), a size bound (2 GiB) — both
//! through the client's progress callback, which cancels — and `--offline`.
use std::ffi::{c_char, c_int, c_long, c_void, CStr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The largest debug file fetched.
const MAX_BYTES: c_long = 2 << 30;
const DEFAULT_SECONDS: u64 = 30;

static OFFLINE: AtomicBool = AtomicBool::new(false);
/// When this run's fetches must be done by (ms since `EPOCH`), 0: not set.
static DEADLINE_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// What could not be fetched, for the report's warnings.
static MISSED: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// This run's answers, by build id: asked once each.
static ANSWERS: Mutex<Vec<(Vec<u8>, Option<PathBuf>)>> = Mutex::new(Vec::new());
/// Live captures holding a process stopped: nothing is fetched then, only
/// what was fetched before (they warm the modules' symbols first).
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// While a process is stopped: no fetching (see `HELD`).
pub struct HoldOff(());

impl HoldOff {
    pub fn new() -> HoldOff {
        HELD.fetch_add(1, Ordering::SeqCst);
        HoldOff(())
    }
}

impl Default for HoldOff {
    fn default() -> Self {
        HoldOff::new()
    }
}

impl Drop for HoldOff {
    fn drop(&mut self) {
        HELD.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Forbid the network (`--offline`).
pub fn set_offline(offline: bool) {
    OFFLINE.store(offline, Ordering::Relaxed);
}

/// Whether fetching is on: `DEBUGINFOD_URLS` names a server, not offline.
pub fn enabled() -> bool {
    !OFFLINE.load(Ordering::Relaxed)
        && std::env::var_os("DEBUGINFOD_URLS")
            .is_some_and(|u| !u.to_string_lossy().trim().is_empty())
}

/// What could not be fetched so far (taken: each is said once).
pub fn take_missed() -> Vec<String> {
    std::mem::take(&mut *MISSED.lock().unwrap_or_else(|e| e.into_inner()))
}

type Begin = unsafe extern "C" fn() -> *mut c_void;
type Find = unsafe extern "C" fn(*mut c_void, *const u8, c_int, *mut *mut c_char) -> c_int;
type ProgressFn = extern "C" fn(*mut c_void, c_long, c_long) -> c_int;
type SetProgress = unsafe extern "C" fn(*mut c_void, Option<ProgressFn>);
type End = unsafe extern "C" fn(*mut c_void);

struct Client {
    begin: Begin,
    find: Find,
    set_progress: SetProgress,
    end: End,
}

/// elfutils' client, if this host has it.
fn client() -> Option<&'static Client> {
    static LIB: OnceLock<Option<Client>> = OnceLock::new();
    LIB.get_or_init(|| {
        // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are
        // elfutils' documented API (debuginfod_find_debuginfo(3)), whose
        // signatures the types above follow; the library stays loaded.
        unsafe {
            let h = libc::dlopen(
                c"libdebuginfod.so.1".as_ptr(),
                libc::RTLD_NOW | libc::RTLD_LOCAL,
            );
            if h.is_null() {
                return None;
            }
            let sym = |n: &CStr| {
                let p = libc::dlsym(h, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            Some(Client {
                begin: std::mem::transmute::<*mut c_void, Begin>(sym(c"debuginfod_begin")?),
                find: std::mem::transmute::<*mut c_void, Find>(sym(c"debuginfod_find_debuginfo")?),
                set_progress: std::mem::transmute::<*mut c_void, SetProgress>(sym(
                    c"debuginfod_set_progressfn",
                )?),
                end: std::mem::transmute::<*mut c_void, End>(sym(c"debuginfod_end")?),
            })
        }
    })
    .as_ref()
}

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Cancels a transfer past the run's deadline or the size bound.
extern "C" fn progress(_c: *mut c_void, done: c_long, total: c_long) -> c_int {
    let late = now_ms() > DEADLINE_MS.load(Ordering::Relaxed);
    c_int::from(late || done > MAX_BYTES || total > MAX_BYTES)
}

/// The debug file of the build `build_id` (of `what`, for messages),
/// fetched into the shared cache; `None` when fetching is off or it could
/// not be had (said in `take_missed`).
pub fn fetch_debuginfo(build_id: &[u8], what: &str) -> Option<PathBuf> {
    if !enabled() || build_id.is_empty() {
        return None;
    }
    let answers = || ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = answers().iter().find(|(id, _)| id == build_id) {
        return p.clone();
    }
    if HELD.load(Ordering::SeqCst) > 0 {
        return None;
    }
    let got = fetch(build_id, what);
    answers().push((build_id.to_vec(), got.clone()));
    got
}

fn fetch(build_id: &[u8], what: &str) -> Option<PathBuf> {
    let hex: String = build_id.iter().map(|b| format!("{b:02x}")).collect();
    let missed = |why: String| {
        MISSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!(
                "debug info for {what} (build id {hex}) not fetched from debuginfod: {why}"
            ));
        None
    };
    let Some(c) = client() else {
        return missed("libdebuginfod.so.1 (elfutils) is not installed".into());
    };
    if DEADLINE_MS.load(Ordering::Relaxed) == 0 {
        let secs = std::env::var("CGOCORE_DEBUGINFOD_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SECONDS);
        let _ = DEADLINE_MS.compare_exchange(
            0,
            now_ms() + Duration::from_secs(secs).as_millis() as u64,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    if now_ms() > DEADLINE_MS.load(Ordering::Relaxed) {
        return missed("the time for fetching ran out (CGOCORE_DEBUGINFOD_SECONDS)".into());
    }
    let _phase = crate::progress::Phase::new(
        &format!("fetching debug info for {what} (debuginfod)"),
        None,
    );
    let mut path: *mut c_char = std::ptr::null_mut();
    // SAFETY: the client is begun and ended here, used by this thread only;
    // the build id is `build_id.len()` raw bytes; on success the library
    // returns an open fd and a malloc'd path, both released below.
    let fd = unsafe {
        let h = (c.begin)();
        if h.is_null() {
            return missed("the client could not start".into());
        }
        (c.set_progress)(h, Some(progress));
        let fd = (c.find)(h, build_id.as_ptr(), build_id.len() as c_int, &mut path);
        (c.end)(h);
        fd
    };
    if fd < 0 {
        let why = match -fd {
            libc::ENOENT => "no server has it".to_string(),
            libc::ECANCELED | libc::EINTR => {
                "cancelled (over 2 GiB, or the time for fetching ran out: CGOCORE_DEBUGINFOD_SECONDS)"
                    .to_string()
            }
            e => std::io::Error::from_raw_os_error(e).to_string(),
        };
        return missed(why);
    }
    // SAFETY: fd is ours to close; path is the library's malloc'd string.
    unsafe {
        libc::close(fd);
        let p = (!path.is_null())
            .then(|| PathBuf::from(CStr::from_ptr(path).to_string_lossy().into_owned()));
        libc::free(path.cast());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_without_a_server_or_offline() {
        // This test's process has no DEBUGINFOD_URLS set by the suite.
        if std::env::var_os("DEBUGINFOD_URLS").is_none() {
            assert!(!enabled());
            assert_eq!(fetch_debuginfo(&[1, 2, 3], "x"), None);
            assert!(take_missed().is_empty(), "nothing tried, nothing missed");
        }
        set_offline(true);
        assert!(!enabled());
        set_offline(false);
    }
}
