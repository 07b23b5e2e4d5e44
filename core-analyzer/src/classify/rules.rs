//! Classification rules as data: the embedded `rules.json`, plus a user file
//! (`--rules FILE`, same shape) tried first.
use crate::report::ThreadInfo;
use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::Path;

const BUILTIN: &str = include_str!("rules.json");

#[derive(Debug, Clone, Deserialize)]
pub struct ClassRule {
    /// Why the rule is there (ignored).
    #[serde(default)]
    pub comment: Option<String>,
    pub class: String,
    /// Every group must be matched by some frame.
    #[serde(default)]
    pub frames: Vec<Vec<Glob>>,
    /// The syscall in flight must be one of these (when given).
    #[serde(default)]
    pub syscalls: Vec<String>,
    /// `Some(false)`: the thread must not be in a syscall.
    pub in_syscall: Option<bool>,
    pub explain: String,
    pub advice: String,
}

/// A library named from evidence: the module a frame lies in (its file
/// name), or, where it is linked into another module (SQLite compiled into
/// a Go binary), a frame named like it in a module that defines the
/// library's own symbols. A rule with neither `modules` nor `defines` (a
/// user's) matches frame names alone.
#[derive(Debug, Clone, Deserialize)]
pub struct LibraryRule {
    pub library: String,
    /// Only for threads of this class (when given).
    pub class: Option<String>,
    /// Function names (globs) of the library.
    #[serde(default)]
    pub frames: Vec<Glob>,
    /// File names (globs) of the library.
    #[serde(default)]
    pub modules: Vec<Glob>,
    /// Symbols only the library defines: a module defining one has it linked in.
    #[serde(default)]
    pub defines: Vec<String>,
    /// The blocked call itself (the first frame past the C library's own)
    /// must be the library's code, not code it calls back (SQLite's busy
    /// handler sleeps; an application SQL function that sleeps is not it).
    #[serde(default)]
    pub called_from_library: bool,
    /// The thread waits for a lock another thread inside the same library
    /// holds, which the library does not record where cgocore can read it:
    /// such threads are named as its likely holders. The call then gets this
    /// class, and the lock this name.
    #[serde(default)]
    pub waits_as: Option<WaitsAs>,
    /// (exported function glob, the operation it means), innermost first wins:
    /// `SSL_do_handshake` is a handshake.
    #[serde(default)]
    pub operations: Vec<(Glob, String)>,
    pub explain: String,
    pub advice: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WaitsAs {
    pub class: String,
    pub lock: String,
    /// Frames (globs) of code that holds the lock (SQLite committing): the
    /// threads inside the library with one on their stack are the likely
    /// holders, before the others.
    #[serde(default)]
    pub held_in: Vec<Glob>,
    /// What such a thread is doing, for the explanation ("a write in progress").
    #[serde(default)]
    pub held_doing: Option<String>,
}

/// Bounds on a user's `--rules` file (the built-in one is 20 KB and under 50 rules).
pub const MAX_USER_BYTES: u64 = 1 << 20;
pub const MAX_USER_RULES: usize = 2_000;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Rules {
    /// Classes whose futex word is a lock with a readable owner.
    #[serde(default)]
    pub lock_classes: Vec<String>,
    #[serde(default)]
    pub classes: Vec<ClassRule>,
    #[serde(default)]
    pub libraries: Vec<LibraryRule>,
}

impl Rules {
    /// Whether a thread of `class` waiting on a futex waits for a lock.
    pub fn is_lock(&self, class: &str) -> bool {
        self.lock_classes.iter().any(|c| c == class)
    }

    pub fn builtin() -> Rules {
        serde_json::from_str(BUILTIN).expect("embedded rules.json is valid")
    }

    /// The built-in rules with `user` rules (a JSON file) in front. A rules
    /// file is a few kilobytes: one over `MAX_USER_BYTES` or with more than
    /// `MAX_USER_RULES` rules is refused (every thread is matched against
    /// each rule).
    pub fn with_user_file(path: &Path) -> Result<Rules> {
        let text = crate::input::open_file(path)
            .and_then(|f| {
                let mut s = String::new();
                std::io::Read::read_to_string(
                    &mut std::io::Read::take(f, MAX_USER_BYTES + 1),
                    &mut s,
                )?;
                if s.len() as u64 > MAX_USER_BYTES {
                    anyhow::bail!(
                        "larger than {} bytes, the most a rules file may hold",
                        MAX_USER_BYTES
                    );
                }
                Ok(s)
            })
            .with_context(|| format!("cannot read rules file {}", path.display()))?;
        let user: Rules = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a rules file (see core-analyzer/src/classify/rules.json for the shape)",
                path.display()
            )
        })?;
        let n = user.classes.len() + user.libraries.len() + user.lock_classes.len();
        if n > MAX_USER_RULES {
            anyhow::bail!(
                "{} has {n} rules; at most {MAX_USER_RULES} are taken (each thread is matched against every one)",
                path.display()
            );
        }
        let mut r = user;
        let b = Rules::builtin();
        r.lock_classes.extend(b.lock_classes);
        r.classes.extend(b.classes);
        r.libraries.extend(b.libraries);
        Ok(r)
    }
}

/// What a rule is matched against.
pub struct Subject<'a> {
    /// Normalized function names of the blocked C call, innermost first.
    pub frames: &'a [String],
    pub modules: &'a [String],
    pub syscall: Option<&'a str>,
    pub in_syscall: bool,
    /// Every frame of the call, innermost first: its normalized name where
    /// known (not approximated), and the file name of its module.
    pub call: &'a [CallFrame<'a>],
    /// Whether the module (by file name) defines the symbol.
    pub defines: &'a dyn Fn(&str, &str) -> bool,
}

#[derive(Debug, Clone, Copy)]
pub struct CallFrame<'a> {
    pub name: Option<&'a str>,
    pub module: Option<&'a str>,
}

/// The C library's own frames at the top of a blocked call: its module
/// (glibc, musl, or a dynamic linker), or, in a static binary, its wait
/// functions by name, with musl's cancellation-point syscall path under
/// them (`sccp` is `__syscall_cp_c`'s static alias in pthread_cancel.c).
fn in_c_library(f: &CallFrame) -> bool {
    const WAITS: &[&str] = &[
        "sleep",
        "usleep",
        "nanosleep",
        "clock_nanosleep",
        "pause",
        "poll",
        "ppoll",
        "sccp",
        "__syscall_cp",
        "__syscall_cp_c",
        "__syscall_cp_asm",
        "__timedwait",
        "__timedwait_cp",
    ];
    f.module
        .is_some_and(|m| crate::process::resolve::is_c_library(m) || m.starts_with("ld-"))
        || f.name.is_some_and(|n| WAITS.contains(&n))
}

/// A rule's name pattern: `*` matches any run of characters, everything
/// else literally. Split at its stars once, when the rules are read: it is
/// matched against every frame of every thread for every rule (10,000
/// threads: splitting it per match was a tenth of the analysis).
#[derive(Debug, Clone)]
pub struct Glob {
    pat: String,
    /// The byte offsets of its first and last `*`; `None`: no star.
    stars: Option<(usize, usize)>,
}

impl Glob {
    pub fn new(pat: &str) -> Glob {
        let stars = pat.find('*').zip(pat.rfind('*'));
        Glob {
            pat: pat.to_string(),
            stars,
        }
    }

    /// No allocation, no search for the pattern's own stars.
    pub fn matches(&self, s: &str) -> bool {
        let Some((a, b)) = self.stars else {
            return self.pat == s;
        };
        let (first, last) = (&self.pat[..a], &self.pat[b + 1..]);
        if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
            return false;
        }
        let mut rest = &s[first.len()..s.len() - last.len()];
        for mid in self.pat[a..b].split('*').filter(|m| !m.is_empty()) {
            match rest.find(mid) {
                Some(i) => rest = &rest[i + mid.len()..],
                None => return false,
            }
        }
        true
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Glob, D::Error> {
        String::deserialize(d).map(|p| Glob::new(&p))
    }
}

impl ClassRule {
    pub fn matches(&self, s: &Subject) -> bool {
        if let Some(want) = self.in_syscall {
            if want != s.in_syscall {
                return false;
            }
        }
        if !self.syscalls.is_empty()
            && !s
                .syscall
                .is_some_and(|n| self.syscalls.iter().any(|x| x == n))
        {
            return false;
        }
        self.frames
            .iter()
            .all(|group| s.frames.iter().any(|f| group.iter().any(|p| p.matches(f))))
    }
}

impl ClassRule {
    /// Code inside the lock's domain (the rule's first frame group: `malloc`,
    /// `setenv`, ...) is on `frames`, so it may hold the lock.
    pub fn holds_in(&self, frames: &[String]) -> bool {
        self.frames
            .first()
            .is_some_and(|group| frames.iter().any(|f| group.iter().any(|p| p.matches(f))))
    }
}

impl LibraryRule {
    pub fn matches(&self, s: &Subject, class: &str) -> bool {
        if self.class.as_deref().is_some_and(|c| c != class) {
            return false;
        }
        if self.modules.is_empty() && self.defines.is_empty() {
            return s
                .frames
                .iter()
                .any(|f| self.frames.iter().any(|p| p.matches(f)));
        }
        if self.called_from_library {
            return s
                .call
                .iter()
                .find(|f| !in_c_library(f))
                .is_some_and(|f| self.belongs(s, f));
        }
        s.call.iter().any(|f| self.belongs(s, f))
    }

    /// The frame is the library's code (see [`LibraryRule::is_code`]).
    pub fn belongs(&self, s: &Subject, f: &CallFrame) -> bool {
        f.module.is_some_and(|m| self.is_code(m, f.name, s.defines))
    }

    /// Code in `module` named `name` is the library's: in its file, or named
    /// like it in a module that has it linked in (`defines`).
    fn is_code(
        &self,
        module: &str,
        name: Option<&str>,
        defines: &dyn Fn(&str, &str) -> bool,
    ) -> bool {
        self.modules.iter().any(|p| p.matches(module))
            || name.is_some_and(|n| self.frames.iter().any(|p| p.matches(n)))
                && self.defines.iter().any(|d| defines(module, d))
    }

    /// A thread whose blocked call waits for the lock this library keeps
    /// (`waits_as`).
    pub fn is_waiter(&self, t: &ThreadInfo) -> bool {
        let waits = self.waits_as.as_ref().map(|w| w.class.as_str());
        t.blocked.as_ref().is_some_and(|b| {
            b.library.as_deref() == Some(&self.library) && Some(b.class.as_str()) == waits
        })
    }

    /// A thread inside the library: its blocked call is the library's, or
    /// one of its frames (anywhere on the stack: below a Go callback too) is
    /// the library's code ([`LibraryRule::is_code`]).
    pub fn has_thread(&self, t: &ThreadInfo, defines: &dyn Fn(&str, &str) -> bool) -> bool {
        t.blocked
            .as_ref()
            .is_some_and(|b| b.library.as_deref() == Some(&self.library))
            || t.frames.iter().any(|f| {
                f.module
                    .as_deref()
                    .is_some_and(|m| self.is_code(m, f.known_function(), defines))
            })
    }

    /// The operation the call is in, from the library's exported frames.
    pub fn operation(&self, s: &Subject) -> Option<&str> {
        s.call.iter().find_map(|f| {
            let n = f.name?;
            self.operations
                .iter()
                .find(|(p, _)| p.matches(n))
                .map(|(_, op)| op.as_str())
        })
    }
}

/// A C function name as rules see it: glibc's internal aliases
/// (`__GI___pthread_mutex_lock`, `__libc_read`, `___pthread_cond_wait`) reduced
/// to the public name.
pub fn normalize(name: &str) -> String {
    normalized(name).to_string()
}

/// `normalize`, borrowed: for comparisons on every frame.
pub fn normalized(name: &str) -> &str {
    let mut s = name.trim_start_matches('_');
    for prefix in ["GI_", "libc_", "GI_", "new_"] {
        if let Some(rest) = s.strip_prefix(prefix) {
            s = rest.trim_start_matches('_');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(pat: &str, s: &str) -> bool {
        Glob::new(pat).matches(s)
    }

    #[test]
    fn globs_and_names() {
        assert!(glob("res_*", "res_context_send"));
        assert!(glob("*lock*", "pthread_mutex_lock"));
        assert!(glob("lll_lock_wait*", "lll_lock_wait"));
        assert!(!glob("lll_lock_wait", "lll_lock_wait_private"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(glob("a**b", "ab") && glob("*", "") && glob("a*", "a") && !glob("ab*ba", "aba"));
        assert!(glob("*x*y*", "..x..y") && !glob("*x*y*", "..y..x"));
        assert_eq!(normalize("__GI___lll_lock_wait"), "lll_lock_wait");
        assert_eq!(normalize("__libc_read"), "read");
        assert_eq!(normalize("___pthread_cond_wait"), "pthread_cond_wait");
        assert_eq!(normalize("__GI__IO_fwrite"), "IO_fwrite");
        assert_eq!(normalize("sqlite3_step"), "sqlite3_step");
    }

    #[test]
    fn builtin_rules_parse() {
        let r = Rules::builtin();
        assert!(r.classes.iter().any(|c| c.class == "mutex"));
        assert!(r.libraries.iter().any(|l| l.library == "cuda"));
    }
}

/// Rules on synthetic stacks, for the classes no scenario can reach
/// deterministically (an arena or environment lock held inside glibc, CUDA).
#[cfg(test)]
mod synthetic {
    use super::*;

    fn classify(
        frames: &[&str],
        modules: &[&str],
        syscall: Option<&str>,
    ) -> (String, Option<String>) {
        let r = Rules::builtin();
        let frames: Vec<String> = frames.iter().map(|f| normalize(f)).collect();
        let modules: Vec<String> = modules.iter().map(|m| m.to_string()).collect();
        // Every frame in the first module given (libc's wait functions
        // known by name).
        let call: Vec<CallFrame> = frames
            .iter()
            .map(|n| CallFrame {
                name: Some(n.as_str()),
                module: modules.first().map(String::as_str),
            })
            .collect();
        let s = Subject {
            frames: &frames,
            modules: &modules,
            syscall,
            in_syscall: syscall.is_some(),
            call: &call,
            defines: &|_, _| false,
        };
        let class = r
            .classes
            .iter()
            .find(|c| c.matches(&s))
            .map_or("unclassified".to_string(), |c| c.class.clone());
        let lib = r
            .libraries
            .iter()
            .find(|l| l.matches(&s, &class))
            .map(|l| format!("{}: {}", l.library, l.explain));
        (class, lib)
    }

    #[test]
    fn locks_inside_the_c_library() {
        let futex = Some("futex");
        assert_eq!(
            classify(
                &[
                    "__GI___lll_lock_wait_private",
                    "_int_malloc",
                    "__GI___libc_malloc"
                ],
                &["libc.so.6"],
                futex
            )
            .0,
            "malloc-lock"
        );
        assert_eq!(
            classify(
                &["__lll_lock_wait_private", "__add_to_environ", "setenv"],
                &["libc.so.6"],
                futex
            )
            .0,
            "env-lock"
        );
        // fork() locking every arena for the child.
        let fork = classify(
            &[
                "__GI___lll_lock_wait_private",
                "__malloc_fork_lock_parent",
                "__libc_fork",
            ],
            &["libc.so.6"],
            futex,
        );
        assert_eq!(fork.0, "malloc-lock");
        // An allocation inside stdio waits for the arena, not the FILE.
        assert_eq!(
            classify(
                &[
                    "__lll_lock_wait_private",
                    "_int_malloc",
                    "malloc",
                    "_IO_file_doallocate",
                    "fputs"
                ],
                &[],
                futex
            )
            .0,
            "malloc-lock"
        );
        // musl names.
        assert_eq!(
            classify(
                &["__wait", "__lock", "setenv"],
                &["libc.musl-x86_64.so.1"],
                futex
            )
            .0,
            "env-lock"
        );
        assert_eq!(
            classify(
                &[
                    "__timedwait_cp",
                    "__pthread_cond_timedwait",
                    "pthread_cond_wait"
                ],
                &[],
                futex
            )
            .0,
            "condvar"
        );
    }

    /// A library is named from evidence (its module, or its names in a
    /// module that defines its symbols), never from a name prefix of
    /// application code; SQLite's busy handler only when SQLite's own code
    /// sleeps.
    #[test]
    fn libraries_from_evidence() {
        let r = Rules::builtin();
        let lib = |call: &[(&str, &str)], class: &str, defines: &dyn Fn(&str, &str) -> bool| {
            let names: Vec<String> = call.iter().map(|(n, _)| normalize(n)).collect();
            let frames: Vec<CallFrame> = call
                .iter()
                .zip(&names)
                .map(|((_, m), n)| CallFrame {
                    name: Some(n.as_str()),
                    module: Some(m),
                })
                .collect();
            let s = Subject {
                frames: &names,
                modules: &[],
                syscall: None,
                in_syscall: true,
                call: &frames,
                defines,
            };
            r.libraries
                .iter()
                .find(|l| l.matches(&s, class))
                .map(|l| (l.library.clone(), l.waits_as.is_some()))
        };
        let none = |_: &str, _: &str| false;
        // An application thread named like OpenSSL, in no OpenSSL code.
        let app = [
            ("__futex_abstimed_wait_common", "libc.so.6"),
            ("___pthread_cond_wait", "libc.so.6"),
            ("tls_server_main", "server"),
        ];
        assert_eq!(lib(&app, "condvar", &none), None);
        // OpenSSL's frames in libssl, or its names in a binary that links it in.
        let dynamic = [
            ("__libc_read", "libc.so.6"),
            ("BIO_read", "libcrypto.so.3"),
            ("SSL_connect", "libssl.so.3"),
        ];
        assert_eq!(
            lib(&dynamic, "read", &none),
            Some(("openssl".into(), false))
        );
        let linked = [
            ("__libc_read", "libc.so.6"),
            ("ssl3_read_bytes", "server"),
            ("SSL_read", "server"),
        ];
        assert_eq!(
            lib(&linked, "read", &none),
            None,
            "names alone, no OpenSSL symbols defined"
        );
        let defines_ssl = |m: &str, s: &str| m == "server" && s == "SSL_CTX_new";
        assert_eq!(
            lib(&linked, "read", &defines_ssl),
            Some(("openssl".into(), false))
        );
        // SQLite's busy handler: SQLite's own code sleeps...
        let busy = [
            ("__GI___clock_nanosleep", "libc.so.6"),
            ("usleep", "libc.so.6"),
            ("sqlite3_step+0x1a4", "libsqlite3.so.0"),
        ];
        assert_eq!(lib(&busy, "sleep", &none), Some(("sqlite".into(), true)));
        // ...an application SQL function that sleeps, inside sqlite3_step, is not it.
        let app_fn = [
            ("__GI___clock_nanosleep", "libc.so.6"),
            ("usleep", "libc.so.6"),
            ("slow_value", "server"),
            ("sqlite3_step", "libsqlite3.so.0"),
        ];
        assert_eq!(lib(&app_fn, "sleep", &none), Some(("sqlite".into(), false)));
    }

    #[test]
    fn libraries() {
        let (class, lib) = classify(
            &["ioctl", "cuCtxSynchronize"],
            &["libcuda.so.1"],
            Some("ioctl"),
        );
        assert_eq!(class, "unclassified");
        assert!(lib.unwrap().starts_with("cuda:"));
        let (class, lib) = classify(
            &[
                "__GI___clock_nanosleep",
                "__GI___nanosleep",
                "usleep",
                "unixSleep",
                "sqliteDefaultBusyCallback",
                "sqlite3_step",
            ],
            &["libsqlite3.so.0"],
            Some("clock_nanosleep"),
        );
        assert_eq!(class, "sleep");
        assert!(lib.unwrap().starts_with("sqlite: SQLite's busy handler"));
        let (class, lib) = classify(
            &["epoll_wait", "uv__io_poll", "uv_run"],
            &["libuv.so.1"],
            Some("epoll_wait"),
        );
        assert_eq!(
            (class.as_str(), lib.unwrap().starts_with("libuv")),
            ("poll", true)
        );
        let (class, lib) = classify(
            &[
                "__libc_read",
                "sock_read",
                "BIO_read",
                "ssl3_read_bytes",
                "SSL_read",
            ],
            &["libssl.so.3"],
            Some("read"),
        );
        assert_eq!(
            (class.as_str(), lib.unwrap().starts_with("openssl")),
            ("read", true)
        );
        // A thread in C user code, not in a syscall.
        assert_eq!(
            classify(&["crunch_numbers"], &[], None),
            ("busy".to_string(), None)
        );
    }
}
