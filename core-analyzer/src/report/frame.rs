//! A stack frame as the report gives it (the unwinder makes them), and how
//! a report writes millions of them.
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Go,
    C,
}

/// Names are shared (`Arc<str>`): 100k goroutines parked at the same few
/// places repeat the same names millions of times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub pc: u64,
    pub function: Option<Arc<str>>,
    pub file: Option<Arc<str>>,
    pub line: Option<u32>,
    pub module: Option<Arc<str>>,
    pub lang: Lang,
    /// An inlined call: no machine frame of its own.
    pub inlined: bool,
}

/// Where the C libraries start a thread or the process: a stack's outermost
/// function (glibc's CFI also ends the stack there; musl's `start`,
/// `start_c11` and `__clone` have no unwind information to say so;
/// `libc_start_main_stage2` starts musl's main thread).
pub const STACK_BASES: &[&str] = &[
    "start_thread",
    "clone3",
    "__clone",
    "clone",
    "start",
    "start_c11",
    "__libc_start_main",
    "libc_start_main_stage2",
    "_start",
];

/// Thread-creation code of the C libraries and of Go: what runs in a new
/// thread before its own function (glibc's clone3 and start_thread, musl's
/// __clone and start, Go's own clone).
pub const THREAD_START: &[&str] = &[
    "clone",
    "clone3",
    "__clone",
    "__clone3",
    "__clone_internal",
    "start_thread",
    "rseq_register_current_thread",
    "start",
    "start_c11",
    "runtime.clone",
];

/// The base Go gives every goroutine's stack.
const GOROUTINE_BASE: &str = "runtime.goexit";

/// glibc's caller of `main`, between the process's start and the program.
const CALLS_MAIN: &str = "__libc_start_call_main";

/// The first function of a thread's own code, from the base of its stack:
/// what a C library's thread runs (`pthread_create`'s start routine), a
/// goroutine's function, `main`. Only for a stack unwound to where its
/// thread began (else its outermost frame is where the unwinding stopped):
/// a known base, or a name approximated from a neighbouring symbol (a libc
/// without its symbols: `memset+0x113`, taken on trust). Above the base,
/// thread-start code is passed over, and so are more approximated names of
/// the base's module; an unnamed frame, or an approximated one elsewhere
/// (the program stripped), ends the search with no name.
pub fn entry(frames: &[Frame]) -> Option<&str> {
    let approximated = |f: &Frame| f.function.is_some() && f.known_function().is_none();
    let mut outward = frames.iter().rev();
    let base = outward.next()?;
    match base.known_function() {
        Some(n) if STACK_BASES.contains(&n) || n == GOROUTINE_BASE => {}
        None if approximated(base) => {}
        _ => return None,
    }
    for f in outward {
        match f.known_function() {
            Some(n) if STACK_BASES.contains(&n) || THREAD_START.contains(&n) || n == CALLS_MAIN => {
            }
            Some(n) => return Some(n),
            None if approximated(f) && f.module == base.module => {}
            None => return None,
        }
    }
    None
}

/// A frame's identity for caches of its rendering: its pc, line and flags,
/// and the addresses of its shared (`Arc`) names, so no string is hashed.
/// Valid while the frames live (one report's rendering).
pub type FrameKey = (u64, usize, usize, usize, Option<u32>, bool, Lang);

impl Frame {
    /// The function's name when it is known, not approximated from a
    /// neighbouring symbol (`name+0x1c0`): what rules may match.
    pub fn known_function(&self) -> Option<&str> {
        self.function.as_deref().filter(|n| !n.contains('+'))
    }

    pub fn key(&self) -> FrameKey {
        let ptr = |s: &Option<Arc<str>>| s.as_ref().map_or(0, |a| a.as_ptr() as usize);
        (
            self.pc,
            ptr(&self.function),
            ptr(&self.file),
            ptr(&self.module),
            self.line,
            self.inlined,
            self.lang,
        )
    }
}

/// Serializing frames: a report of 100k goroutines holds millions of frames
/// but few distinct ones (goroutines park at the same places, sharing their
/// names), and escaping the same strings again was a fifth of `--json`. Each
/// distinct frame is written once per report and reused; the cache is keyed
/// by the shared name pointers, so it lives only while one report is written.
pub mod frame_json {
    use super::Frame;
    use rustc_hash::FxHashMap as HashMap;
    use serde::ser::{Error, SerializeSeq};
    use serde::{Serialize, Serializer};
    use serde_json::value::RawValue;
    use std::cell::RefCell;

    type Key = super::FrameKey;

    thread_local! {
        static CACHE: RefCell<Option<HashMap<Key, Box<RawValue>>>> = const { RefCell::new(None) };
    }

    /// Run `f` with the frame cache on (one report's serialization).
    pub fn with_cache<R>(f: impl FnOnce() -> R) -> R {
        let outer = CACHE.with(|c| c.borrow().is_some());
        if !outer {
            CACHE.with(|c| *c.borrow_mut() = Some(HashMap::default()));
        }
        let r = f();
        if !outer {
            CACHE.with(|c| *c.borrow_mut() = None);
        }
        r
    }

    /// `serialize_with` for `Vec<Frame>`.
    pub fn serialize<S: Serializer>(frames: &[Frame], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(frames.len()))?;
        for f in frames {
            let key: Key = f.key();
            let cached = CACHE.with(|c| {
                let mut c = c.borrow_mut();
                let map = c.as_mut()?;
                if let Some(v) = map.get(&key) {
                    return Some(Ok(v.clone()));
                }
                match serde_json::to_string(f).map(RawValue::from_string) {
                    Ok(Ok(raw)) => {
                        map.insert(key, raw.clone());
                        Some(Ok(raw))
                    }
                    Ok(Err(e)) | Err(e) => Some(Err(e)),
                }
            });
            match cached {
                Some(Ok(raw)) => seq.serialize_element(&raw)?,
                Some(Err(e)) => return Err(S::Error::custom(e)),
                None => seq.serialize_element(f)?,
            }
        }
        seq.end()
    }

    /// A report's frames, written through the cache.
    pub fn serialize_report<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        with_cache(|| v.serialize(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(names: &[&str]) -> Vec<Frame> {
        names
            .iter()
            .map(|n| Frame {
                pc: 0,
                function: Some(Arc::from(*n)),
                file: None,
                line: None,
                module: None,
                lang: Lang::C,
                inlined: false,
            })
            .collect()
    }

    /// A thread's entry: its own first function, above the C library's or
    /// Go's thread start and process start; approximate names skipped.
    #[test]
    fn a_threads_entry_is_its_own_first_function() {
        let c = named(&[
            "__GI___nanosleep",
            "usleep",
            "arena_candidate_main",
            "start_thread",
            "clone3",
        ]);
        assert_eq!(entry(&c), Some("arena_candidate_main"));
        let musl = named(&["nanosleep", "worker", "libc.so+0x7f0", "start", "__clone"]);
        assert_eq!(entry(&musl), Some("worker"));
        // arm64 glibc without its symbols: start_thread and clone are
        // names approximated from their neighbours.
        let bare = named(&[
            "clock_nanosleep",
            "foreign_main",
            "pthread_condattr_setpshared+0x4d7",
            "clone+0x5b",
        ]);
        assert_eq!(entry(&bare), Some("foreign_main"));
        let go = named(&["syscall.read", "main.serve", "runtime.goexit"]);
        assert_eq!(entry(&go), Some("main.serve"));
        let main = named(&[
            "sleep",
            "main",
            "__libc_start_call_main",
            "__libc_start_main",
            "_start",
        ]);
        assert_eq!(entry(&main), Some("main"));
        // Stacks that end where the unwinding stopped, not at a base.
        let stopped = named(&["poll", "runtime.asmcgocall"]);
        assert_eq!(entry(&stopped), None);
        let musl_bare = named(&["tcsetwinsize+0x277", "pthread_mutex_timedlock"]);
        assert_eq!(entry(&musl_bare), None);
        let mut unnamed = named(&["nanosleep", "worker", "x", "start_thread", "clone3"]);
        unnamed[2].function = None;
        assert_eq!(entry(&unnamed), None);
        // musl's start code without symbols, in libc's module: passed over.
        let mut alpine = named(&[
            "nanosleep",
            "foreign_main",
            "pthread_exit+0x2bd",
            "memset+0x113",
        ]);
        for f in &mut alpine[2..] {
            f.module = Some(Arc::from("libc.so"));
        }
        assert_eq!(entry(&alpine), Some("foreign_main"));
        // A stripped program's start routine: no name, not libc's callee.
        let mut stripped = named(&["usleep", "goPing+0x8e9", "start_thread", "clone3"]);
        stripped[1].module = Some(Arc::from("cgostuck"));
        for f in &mut stripped[2..] {
            f.module = Some(Arc::from("libc.so.6"));
        }
        assert_eq!(entry(&stripped), None);
        assert_eq!(entry(&named(&["start_thread", "clone3"])), None);
        assert_eq!(entry(&[]), None);
    }

    /// Frames written through the cache read back exactly as plain serde writes them.
    #[test]
    fn cached_frame_json_is_plain_json() {
        let name: Arc<str> = Arc::from("runtime.gopark \"q\"");
        let file: Arc<str> = Arc::from("runtime/proc.go");
        let f = |pc, line, inlined| Frame {
            pc,
            function: Some(name.clone()),
            file: Some(file.clone()),
            line: Some(line),
            module: None,
            lang: Lang::Go,
            inlined,
        };
        let frames = vec![
            f(1, 474, false),
            f(1, 474, false),
            f(2, 475, true),
            f(1, 474, false),
        ];
        #[derive(Serialize)]
        struct Wrapped<'a>(#[serde(serialize_with = "frame_json::serialize")] &'a Vec<Frame>);
        let cached = frame_json::with_cache(|| serde_json::to_value(Wrapped(&frames)).unwrap());
        let plain = serde_json::to_value(&frames).unwrap();
        assert_eq!(cached, plain);
        assert_eq!(serde_json::to_value(Wrapped(&frames)).unwrap(), plain);
    }
}
