//! Classification rules as data: the embedded `rules.json`, plus a user file
//! (`--rules FILE`, same shape) tried first.
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
    pub frames: Vec<Vec<String>>,
    /// The syscall in flight must be one of these (when given).
    #[serde(default)]
    pub syscalls: Vec<String>,
    /// `Some(false)`: the thread must not be in a syscall.
    pub in_syscall: Option<bool>,
    pub explain: String,
    pub advice: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LibraryRule {
    pub library: String,
    /// Only for threads of this class (when given).
    pub class: Option<String>,
    #[serde(default)]
    pub frames: Vec<String>,
    #[serde(default)]
    pub modules: Vec<String>,
    pub explain: String,
    pub advice: String,
}

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

    /// The built-in rules with `user` rules (a JSON file) in front.
    pub fn with_user_file(path: &Path) -> Result<Rules> {
        let text = crate::input::open_file(path)
            .and_then(|mut f| {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut f, &mut s)?;
                Ok(s)
            })
            .with_context(|| format!("cannot read rules file {}", path.display()))?;
        let user: Rules = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a rules file (see core-analyzer/src/classify/rules.json for the shape)",
                path.display()
            )
        })?;
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
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pat: &str, s: &str) -> bool {
    let parts: Vec<&str> = pat.split('*').collect();
    if parts.len() == 1 {
        return pat == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || s.len() < first.len() + last.len() || !s.ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
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
            .all(|group| s.frames.iter().any(|f| group.iter().any(|p| glob(p, f))))
    }
}

impl ClassRule {
    /// Code inside the lock's domain (the rule's first frame group: `malloc`,
    /// `setenv`, ...) is on `frames`, so it may hold the lock.
    pub fn holds_in(&self, frames: &[String]) -> bool {
        self.frames
            .first()
            .is_some_and(|group| frames.iter().any(|f| group.iter().any(|p| glob(p, f))))
    }
}

impl LibraryRule {
    pub fn matches(&self, s: &Subject, class: &str) -> bool {
        if self.class.as_deref().is_some_and(|c| c != class) {
            return false;
        }
        let by_frame = s
            .frames
            .iter()
            .any(|f| self.frames.iter().any(|p| glob(p, f)));
        let by_module = s
            .modules
            .iter()
            .any(|m| self.modules.iter().any(|p| glob(p, m)));
        by_frame || by_module
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

    #[test]
    fn globs_and_names() {
        assert!(glob("res_*", "res_context_send"));
        assert!(glob("*lock*", "pthread_mutex_lock"));
        assert!(glob("lll_lock_wait*", "lll_lock_wait"));
        assert!(!glob("lll_lock_wait", "lll_lock_wait_private"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
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
        let s = Subject {
            frames: &frames,
            modules: &modules,
            syscall,
            in_syscall: syscall.is_some(),
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
            &[],
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
