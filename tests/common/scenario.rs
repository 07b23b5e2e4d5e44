//! The scenario program running (the live tests and the runbooks' live
//! commands): started from a generated build, until it prints READY, with
//! its own record of which thread and goroutine run each scenario.
use super::{CoreCase, Scratch};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The scenario program, running until READY, killed when dropped.
pub struct Scenario {
    pub child: Child,
    pub pid: u32,
    /// name -> (tid, goid) as the program recorded them.
    pub record: BTreeMap<String, (u32, u64)>,
    /// Everything it printed up to READY.
    pub lines: Vec<String>,
    /// Go's dump goes here (stderr).
    pub stderr: PathBuf,
    _dir: Scratch,
}

impl Scenario {
    /// `tag`: the test's own name for its scratch folder (tests run at once).
    pub fn start(case: &CoreCase, tag: &str) -> Scenario {
        Scenario::start_with(case, tag, &[], &[])
    }

    /// With `args` in place of the usual ones (when given) and `env` added.
    pub fn start_with(case: &CoreCase, tag: &str, args: &[&str], env: &[(&str, &str)]) -> Scenario {
        let dir = Scratch::new(&format!("live-{tag}-{}", case.name.replace('/', "-")));
        let stderr = dir.join("stderr.txt");
        let base = case.exe.parent().unwrap();
        // The CUDA stand-in serves glibc builds (musl runs leave it out, as
        // the generator does: a static program cannot load it).
        let cuda = base.join("libcuda.so.1");
        let args: Vec<String> = if !args.is_empty() {
            args.iter().map(|s| s.to_string()).collect()
        } else if case.truth.variant == "cshared" {
            vec![]
        } else {
            ["-parked", "40", "-cblocked", "0"]
                .iter()
                .map(|s| s.to_string())
                .chain(
                    (cuda.exists() && !case.truth.is_musl())
                        .then(|| ["-cuda".to_string(), cuda.display().to_string()])
                        .into_iter()
                        .flatten(),
                )
                .collect()
        };
        let mut cmd = Command::new(&case.exe);
        cmd.args(&args)
            .current_dir(&dir.0)
            .env_clear()
            .envs([
                ("PATH", "/usr/bin:/bin"),
                ("LANG", "C"),
                ("GOTRACEBACK", "crash"),
                ("GOMAXPROCS", "2"),
            ])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap());
        // SAFETY: setrlimit is async-signal-safe; no core when it ends.
        unsafe {
            cmd.pre_exec(|| {
                let zero = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                libc::setrlimit(libc::RLIMIT_CORE, &zero);
                Ok(())
            });
        }
        // A binary just copied (a test's own) can be "busy" for a moment: a
        // thread of this test process forking at the same time holds the
        // copy's write descriptor until that child execs.
        let mut tries = 0;
        let mut child = loop {
            match cmd.spawn() {
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other.unwrap(),
            }
        };
        let pid = child.id();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut record = BTreeMap::new();
        let mut lines = vec![];
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|_| {
                    let err = std::fs::read_to_string(&stderr).unwrap_or_default();
                    let tail = &err[err.len().saturating_sub(2000)..];
                    panic!("{}: no READY; its stderr ends:\n{tail}", case.name)
                });
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&"SCENARIO") && f.len() >= 4 {
                let num = |s: &str| s.split('=').nth(1).and_then(|v| v.parse::<u64>().ok());
                if let (Some(tid), Some(goid)) = (num(f[2]), num(f[3])) {
                    record.insert(f[1].to_string(), (tid as u32, goid));
                }
            }
            let ready = line.starts_with("READY");
            lines.push(line);
            if ready {
                break;
            }
        }
        // The thread that wrote READY settles in its last wait.
        std::thread::sleep(Duration::from_millis(300));
        Scenario {
            child,
            pid,
            record,
            lines,
            stderr,
            _dir: dir,
        }
    }

    /// Go's own dump (SIGQUIT with GOTRACEBACK=crash), then the process ends
    /// (killed if it has not after a minute: Go's crash path can hang under
    /// dynamic musl once the dump is printed).
    pub fn dump(mut self) -> String {
        let _ = nix_kill(self.pid, libc::SIGQUIT);
        for _ in 0..600 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nix_kill(pid: u32, sig: i32) -> i32 {
    // SAFETY: kill(2) on a pid this test started.
    unsafe { libc::kill(pid as i32, sig) }
}
