//! `cgocore analyze --json` schema, version 1. Key names are a contract.
use serde::{Deserialize, Serialize};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub go_version: String,
    pub binary: String,
    pub core: Option<String>,
    pub pid: Option<u32>,
    /// Signal that killed the process (from `NT_SIGINFO`), e.g. 6 for SIGABRT;
    /// for a gcore, a signal a thread had stopped on other than gdb's SIGSTOP.
    pub signal: Option<i32>,
    /// `"kernel"` or `"gdb gcore"`, from the core's first note.
    pub core_writer: Option<String>,
    pub arch: String,
    pub gomaxprocs: Option<i32>,
    /// "symbols" (from `.symtab`) or "heuristics" (stripped binary).
    pub roots_from: String,
    /// "DWARF" or "table".
    pub layout_from: String,
    pub counts: Counts,
    /// Scheduler-wide numbers from `runtime.sched` (null when it cannot be found,
    /// e.g. in stripped binaries).
    pub sched: Option<Sched>,
    #[serde(serialize_with = "super::frame::frame_json::serialize_report")]
    pub threads: Vec<ThreadInfo>,
    pub ms: Vec<MInfo>,
    /// Every P (`runtime.allp`), by id.
    pub ps: Vec<PInfo>,
    #[serde(serialize_with = "super::frame::frame_json::serialize_report")]
    pub goroutines: Vec<GoroutineInfo>,
    /// Root causes, each once, most harm first: what to read first.
    #[serde(default)]
    pub incidents: Vec<Incident>,
    /// The evidence under them, most severe first.
    pub findings: Vec<Finding>,
    pub warnings: Vec<String>,
    /// True when some runtime data could not be read: the lists may be partial.
    pub incomplete: bool,
    /// A live capture (`analyze --pid`, `snapshot`): how long the process was
    /// stopped, in milliseconds. Absent for cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_ms: Option<f64>,
    /// A live capture: threads that did not stop within the stop timeout,
    /// left out of `threads` (their registers and stacks were not read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unstopped_threads: Vec<UnstoppedThread>,
}

pub use crate::elf::core::UnstoppedThread;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub threads: usize,
    pub ms: usize,
    pub goroutines: usize,
    pub threads_in_cgo: usize,
    pub foreign_threads: usize,
    pub extra_ms: usize,
    pub locked_goroutines: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThreadKind {
    /// A thread the Go runtime created (or m0).
    Go,
    /// A C-created thread that called into Go and holds an extra M.
    Extra,
    /// A thread Go does not know.
    Foreign,
}

impl ThreadKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ThreadKind::Go => "go",
            ThreadKind::Extra => "extra",
            ThreadKind::Foreign => "foreign",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ThreadInfo {
    pub tid: u32,
    pub kind: ThreadKind,
    /// M id, or null for a foreign thread.
    pub m: Option<i64>,
    /// The goroutine this thread runs or is in C for (`m.curg`).
    pub curg: Option<u64>,
    /// `m.lockedg`.
    pub lockedg: Option<u64>,
    /// The M is executing C for cgo (`m.incgo`).
    pub in_cgo: bool,
    /// Signal the thread was stopped with (kernel cores: the crash signal).
    pub signal: Option<u16>,
    /// A second (extra) M this thread borrowed to run Go's signal handler.
    pub signal_m: Option<i64>,
    pub pc: u64,
    pub sp: u64,
    /// Syscall number in flight (x86_64 `orig_rax`), if any.
    pub syscall: Option<u64>,
    /// The stitched stack, innermost first: signal handler frames (if any),
    /// C frames, and the Go frames of the goroutine it serves.
    #[serde(serialize_with = "super::frame::frame_json::serialize")]
    pub frames: Vec<super::frame::Frame>,
    /// Why the stack ends early, if it does.
    pub stack_truncated: Option<String>,
    /// The goroutine the stack continues into (`m.curg`, or the locked
    /// goroutine a parked thread waits for).
    pub stack_goroutine: Option<u64>,
    /// Set when Go's signal handler runs on top of the thread (kernel cores made
    /// with `GOTRACEBACK=crash`): `frames[frame..]` is what the thread was doing
    /// when the signal came.
    pub interrupted: Option<Interrupted>,
    /// Every signal frame on the stack, innermost first (C handlers too).
    pub signals: Vec<Interrupted>,
    /// The C function the goroutine called (`C.name` of `_Cfunc_name`).
    pub cgo_call: Option<String>,
    /// What the thread's C call waits for; `null` when the thread is not in C.
    pub blocked: Option<Blocked>,
    /// When the thread runs scheduler code on g0 for its goroutine (a locked
    /// goroutine parked, `systemstack`): index in `frames` where that
    /// goroutine's own stack begins.
    pub goroutine_frame: Option<usize>,
    /// The thread's name (`comm`), where a live capture read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ThreadInfo {
    /// Whether `function` is on the thread's stack.
    pub fn has_frame(&self, function: &str) -> bool {
        self.frames
            .iter()
            .any(|f| f.function.as_deref() == Some(function))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Interrupted {
    pub signal: i32,
    /// `SIGQUIT`, ...
    pub name: String,
    /// Index in `frames` of the first interrupted frame.
    pub frame: usize,
    /// `"go"` (Go's `runtime.sigtramp`) or `"c"` (a handler the program installed).
    pub handler: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MInfo {
    pub id: i64,
    pub tid: Option<u32>,
    /// Borrowed by `tid` only to run a signal handler (its goroutine is hidden).
    pub signal_borrowed: bool,
    pub procid: u64,
    pub locked_ext: u32,
    pub locked_int: u32,
    pub lockedg: Option<u64>,
    pub curg: Option<u64>,
    pub incgo: bool,
    pub ncgo: i32,
    pub ncgocall: u64,
    pub isextra: bool,
    pub is_extra_in_c: bool,
    /// `m.isExtraInSig` (Go 1.22+): borrowed only to run a signal handler.
    pub is_extra_in_sig: bool,
    pub spinning: bool,
    pub blocked: bool,
    /// Id of the P the M holds (`m.p`), if any.
    pub p: Option<i32>,
    /// Function the M was started with (`mstartfn`): sysmon, templateThread, ...
    pub start_fn: Option<String>,
    pub addr: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GoroutineInfo {
    pub goid: u64,
    /// Go's status word: "runnable", "running", "syscall", "waiting", ...
    pub status: String,
    /// Go's wait reason string, for waiting goroutines.
    pub wait_reason: Option<String>,
    /// Locked to its thread (`g.lockedm != 0`).
    pub locked: bool,
    /// M id of `g.m`.
    pub m: Option<i64>,
    /// M id of `g.lockedm`.
    pub lockedm: Option<i64>,
    /// The goroutine is in a cgo call (its M is in C on its behalf).
    pub in_cgo: bool,
    /// Runtime-internal goroutine (its function is in package runtime).
    pub system: bool,
    pub start_function: Option<String>,
    pub created_by: Option<String>,
    pub parent_goid: Option<u64>,
    pub addr: u64,
    /// The goroutine's frames, innermost first: its Go frames as Go's dump
    /// shows them, with the C frames of its cgo call (and of callbacks' C
    /// callers) where its thread's stack gives them (see docs/json-schema.md).
    #[serde(serialize_with = "super::frame::frame_json::serialize")]
    pub frames: Vec<super::frame::Frame>,
    /// Why the stack ends early, if it does.
    pub stack_truncated: Option<String>,
    /// The C function the goroutine is calling (`C.name` of `_Cfunc_name`).
    pub cgo_call: Option<String>,
    /// What a parked goroutine waits on in Go (a sync value, a channel), read
    /// from the runtime's own records of the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waits_on: Option<Box<WaitsOn>>,
    /// Objects some goroutine waits on that this goroutine's live frames
    /// point to (Go's stack maps): evidence for the holders, not output.
    #[serde(skip)]
    pub references: Vec<Reference>,
    /// `g.waitsince`: the runtime's clock (nanotime, CLOCK_MONOTONIC) when
    /// a garbage collection first saw it blocked (what Go's dump turns into
    /// "N minutes"); none until one has. `top` shows the longest waits.
    #[serde(skip)]
    pub waitsince: Option<i64>,
}

/// What a goroutine parked in Go waits on (see docs/json-schema.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WaitsOn {
    /// "mutex", "rwmutex", "waitgroup", "cond", "chan", "select" or "sema".
    pub kind: std::borrow::Cow<'static, str>,
    /// The sync value itself, or the channel (a select's first).
    pub addr: u64,
    /// Its name where the binary says (a package-level variable and offset).
    pub object: Option<String>,
    pub state: ObjectState,
    /// Who holds it (or would let the waiter go), strongest evidence first;
    /// one list shared by the object's waiters.
    pub holders: std::sync::Arc<[Holder]>,
    /// How the wait was read ("the goroutine's sudog names channel ...").
    pub evidence: std::borrow::Cow<'static, str>,
    /// Every channel of a select.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<u64>,
}

/// The state of a sync value or channel; only what its kind has is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObjectState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starving: Option<bool>,
    /// Goroutines the runtime counts as waiting (the mutex's waiter count,
    /// a WaitGroup's waiters, a Cond's tickets not yet notified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiters: Option<u64>,
    /// RWMutex: readers holding it, and whether a writer is pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readers: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_pending: Option<bool>,
    /// WaitGroup: its counter (Done calls still due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<i64>,
    /// Channel: buffered values, capacity, closed, goroutines queued to send
    /// and to receive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub senders: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<u64>,
    /// A `database/sql` pool: connections open (and being opened), the
    /// limit (`SetMaxOpenConns`), idle ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle: Option<u64>,
}

/// A goroutine that holds the object, and how that was found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub goid: u64,
    pub evidence: String,
    pub likely: bool,
}

/// A live pointer from a goroutine's frame into an object others wait on.
#[derive(Debug, Clone)]
pub struct Reference {
    /// The object's address (as in `WaitsOn::addr`).
    pub object: u64,
    /// The function whose frame holds the pointer.
    pub function: String,
    /// What the pointer points to when not the object itself ("one of its
    /// connections in use").
    pub via: Option<&'static str>,
    /// It points at the value itself (what an Unlock needs), not only into
    /// the object that contains it.
    pub exact: bool,
}

impl GoroutineInfo {
    /// State as Go's dump prints it: the wait reason for waiting goroutines.
    pub fn state(&self) -> &str {
        self.wait_reason.as_deref().unwrap_or(&self.status)
    }
}

/// What a thread in C waits for (see docs/json-schema.md for the classes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Blocked {
    /// `mutex`, `rwlock`, `condvar`, `semaphore`, `malloc-lock`, `env-lock`,
    /// `loader-lock`, `stdio-lock`, `read`, `write`, `accept`, `connect`,
    /// `recv`, `send`, `poll`, `dns`, `sleep`, `wait-child`, `file-lock`,
    /// `busy`, `unclassified`.
    pub class: String,
    /// The syscall in flight, if known (`futex`, `read`, ...).
    pub syscall: Option<String>,
    /// The syscall with its arguments decoded, and the C function it is in.
    pub detail: String,
    /// The thread holding the lock waited for, where the lock says.
    pub owner_tid: Option<u32>,
    /// A recognized library on the stack (`openssl`, `sqlite`, `libuv`, `cuda`, ...).
    pub library: Option<String>,
    pub explain: String,
    pub advice: String,
    /// Address of the lock (the futex word) waited for.
    pub lock: Option<u64>,
    /// Its symbol, when a module names it (`shared_mu`, `_dl_load_write_lock`),
    /// or what it is when it has no address (`SQLite database lock`).
    pub lock_symbol: Option<String>,
    /// The owner is the likely holder, not one the lock records (SQLite's
    /// database lock: the one other thread inside SQLite).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub owner_likely: bool,
}

impl Blocked {
    /// The lock waited for as reports name it: `mutex shared_mu`, or its
    /// address where no symbol names it.
    pub fn lock_name(&self) -> String {
        match (&self.lock_symbol, self.lock) {
            // A lock named by what it is, with no address (SQLite's database lock).
            (Some(sym), None) => sym.clone(),
            (Some(sym), Some(_)) => format!("{} {sym}", self.class),
            (None, l) => format!("{} {:#x}", self.class, l.unwrap_or(0)),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Finding {
    /// What the finding is about, as a kebab-case string in JSON
    /// (`deadlock`, `lock-held-while-blocked`, ...: see `FindingKind`).
    pub kind: FindingKind,
    pub severity: Severity,
    pub summary: String,
    /// `{tids, ms, goids}` the finding is about.
    pub evidence: serde_json::Value,
    pub advice: String,
}

/// One root cause: where to look, who is held up behind it, and the
/// findings that are its evidence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Incident {
    /// `deadlock`, `self-deadlock`, `lock-holder`, or the kind of the one
    /// finding it stands for (`locked-thread-blocked-in-c`, `thread-pileup`, ...).
    pub kind: String,
    pub severity: Severity,
    /// Where to look: the thread (its M and goroutine); null for a pile-up.
    pub root: Option<Subject>,
    /// A deadlock's cycle, or the longest wait chain ending at the root
    /// (farthest waiter first).
    pub chain: Vec<u32>,
    /// Threads held up behind the root, directly or through others, and
    /// their goroutines.
    pub victims: Victims,
    pub summary: String,
    pub advice: String,
    /// Indexes into `findings`: the evidence.
    pub findings: Vec<usize>,
    /// The root cause's shape with no ids, addresses or counts: the same
    /// hang gives the same string on every core, for grouping a fleet's.
    #[serde(default)]
    pub signature: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Subject {
    pub tid: Option<u32>,
    pub m: Option<i64>,
    pub goid: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Victims {
    pub tids: Vec<u32>,
    pub goids: Vec<u64>,
}

impl Finding {
    /// The threads the finding names (`evidence.tids`), subject first.
    pub fn tids(&self) -> Vec<u32> {
        self.evidence["tids"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| u32::try_from(v.as_u64()?).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PInfo {
    pub id: i32,
    /// `idle`, `running`, `syscall`, `gcstop`, `dead`.
    pub status: String,
    /// M id holding the P.
    pub m: Option<i64>,
    pub schedtick: u32,
    pub syscalltick: u32,
    /// Goroutines in its local run queue.
    pub runqsize: u32,
}

/// What a finding is about; serialized as the JSON `kind` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FindingKind {
    /// Threads wait for C locks held by each other, or one for itself.
    Deadlock,
    /// A thread holds a C lock that others wait for.
    LockHeldWhileBlocked,
    /// Threads wait, through more than one holder, on one thread.
    WaitChain,
    /// A goroutine locked to its thread (LockOSThread) is blocked in C.
    LockedThreadBlockedInC,
    /// The CUDA driver is called from a goroutine not locked to its thread.
    CudaUnlocked,
    /// A C signal handler runs code that is not async-signal-safe.
    SignalHandlerUnsafe,
    /// An M's LockOSThread is nested more than once.
    #[serde(rename = "nested-lockosthread")]
    NestedLockOsThread,
    /// A runtime-internal thread lock (lockedInt) held by a parked goroutine.
    InternalLockParked,
    /// Goroutines exited while locked to their threads.
    ExitedWhileLocked,
    /// Threads Go is creating, stuck before they run Go.
    ThreadsStarting,
    /// C-created threads Go does not know.
    ForeignThreads,
    /// C-created threads that called into Go and keep an extra M.
    ExtraMs,
    /// Many threads blocked in C for cgo calls.
    ThreadPileup,
    /// The runtime could not create a thread and ended the process.
    ThreadCreateFailed,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Deadlock => "deadlock",
            FindingKind::LockHeldWhileBlocked => "lock-held-while-blocked",
            FindingKind::WaitChain => "wait-chain",
            FindingKind::LockedThreadBlockedInC => "locked-thread-blocked-in-c",
            FindingKind::CudaUnlocked => "cuda-unlocked",
            FindingKind::SignalHandlerUnsafe => "signal-handler-unsafe",
            FindingKind::NestedLockOsThread => "nested-lockosthread",
            FindingKind::InternalLockParked => "internal-lock-parked",
            FindingKind::ExitedWhileLocked => "exited-while-locked",
            FindingKind::ThreadsStarting => "threads-starting",
            FindingKind::ForeignThreads => "foreign-threads",
            FindingKind::ExtraMs => "extra-ms",
            FindingKind::ThreadPileup => "thread-pileup",
            FindingKind::ThreadCreateFailed => "thread-create-failed",
        }
    }
}

impl std::fmt::Display for FindingKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for FindingKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for FindingKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl WaitsOn {
    /// "sync.Mutex main.configMu (locked, 20 waiters)".
    pub fn describe(&self) -> String {
        let w = self;
        let kind = match &*w.kind {
            _ if w.state.max_open.is_some() => "database/sql pool",
            "mutex" => "sync.Mutex",
            "rwmutex" => "sync.RWMutex",
            "waitgroup" => "sync.WaitGroup",
            "cond" => "sync.Cond",
            "chan" | "select" => "channel",
            _ => "semaphore",
        };
        let name = w.object.clone().unwrap_or_else(|| format!("{:#x}", w.addr));
        let s = &w.state;
        let mut st = vec![];
        if let Some(l) = s.locked {
            st.push(if l { "locked" } else { "unlocked" }.to_string());
        }
        if s.starving == Some(true) {
            st.push("starving".into());
        }
        if let Some(n) = s.readers.filter(|&n| n > 0) {
            st.push(format!("{n} readers"));
        }
        if s.writer_pending == Some(true) {
            st.push("a writer pending".into());
        }
        if let Some(c) = s.counter {
            st.push(format!("counter {c}"));
        }
        if let (Some(l), Some(c)) = (s.len, s.cap) {
            st.push(format!("{l}/{c} buffered"));
        }
        if s.closed == Some(true) {
            st.push("closed".into());
        }
        if let (Some(o), Some(m)) = (s.open, s.max_open) {
            st.push(format!("{o} open of {m}, {} idle", s.idle.unwrap_or(0)));
        }
        if let Some(n) = s.waiters.or(s.senders.zip(s.receivers).map(|(a, b)| a + b)) {
            st.push(format!("{n} waiter{}", if n == 1 { "" } else { "s" }));
        }
        format!("{kind} {name} ({})", st.join(", "))
    }

    /// Each waiter's holders, for the text report.
    pub fn holders_line(&self) -> String {
        let w = self;
        if w.holders.is_empty() {
            return "holder unknown".into();
        }
        let all: Vec<String> = w.holders.iter().take(4).map(Holder::text).collect();
        let more = w.holders.len().saturating_sub(4);
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("held by {}{more}", all.join(", "))
    }
}

impl Holder {
    /// "goroutine 19 (likely: further along in main.handle ...)".
    pub fn text(&self) -> String {
        let h = self;
        let likely = if h.likely { "likely: " } else { "" };
        format!("goroutine {} ({likely}{})", h.goid, h.evidence)
    }
}

/// What `runtime.sched` says (schedtrace's numbers).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sched {
    /// `mcount()`: Ms ever created minus Ms freed (schedtrace's `threads=`).
    pub mcount: i64,
    /// Ms whose thread exited (`sched.nmfreed`). Go ends a thread only when a
    /// goroutine exits while locked to it (LockOSThread without Unlock).
    pub nmfreed: i64,
    pub maxmcount: i32,
    /// Idle Ms (`nmidle`), and Ms parked because their locked goroutine is not runnable.
    pub idle_ms: i32,
    pub idle_locked_ms: i32,
    pub spinning_ms: i32,
    pub idle_ps: i32,
    /// System goroutines (plus unused extra-M goroutines).
    pub ngsys: i32,
    /// Global run queue length.
    pub runqueue: i32,
    /// Free extra Ms (`extraMLength`) and extra Ms borrowed by C threads (`extraMInUse`).
    pub extra_ms_free: Option<u32>,
    pub extra_ms_in_use: Option<u32>,
}
