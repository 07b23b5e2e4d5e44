//! `cgocore top`: the trend of a live process, one short stop per sample —
//! threads and Ms now and how fast they climb, when the runtime's thread
//! limit (`sched.maxmcount`, 10000 by default) is reached at that rate, the
//! threads in C grouped by what they wait for, goroutines by state and by
//! the sync value or channel they wait on in Go. Each
//! sample is a live capture without the goroutines' stacks (what the view
//! needs: threads, Ms, goroutine headers, the stacks of threads in C).
use crate::report::Report;
use serde::Serialize;
use std::collections::BTreeMap;

/// One sample, as `--json-lines` prints it (keys are a contract).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub time: f64,
    pub pid: Option<u32>,
    pub threads: usize,
    pub ms: usize,
    pub threads_in_c: usize,
    pub stopped_ms: f64,
    /// Threads in C by what they wait for, most first.
    pub groups: Vec<Group>,
    /// Goroutines by state (or wait reason).
    pub goroutines: BTreeMap<String, usize>,
    /// The objects most goroutines wait on in Go, most first.
    pub waiting_on: Vec<WaitedOn>,
    /// The goroutines blocked longest (Go's `g.waitsince`, set when a
    /// garbage collection sees a goroutine blocked), longest first; live
    /// only (a core has no clock to measure against).
    pub longest_waits: Vec<LongWait>,
    /// The runtime's thread limit (`sched.maxmcount`), when read.
    pub maxmcount: Option<i32>,
    /// OS threads gained per second since the previous sample.
    pub threads_per_second: Option<f64>,
    /// Seconds until `maxmcount` Ms at the Ms' rate, when they climb.
    pub limit_in_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Group {
    pub class: String,
    /// The C function the goroutines called (`C.name`), else `?`.
    pub function: String,
    pub library: Option<String>,
    pub count: usize,
    /// How the count moved since the previous sample.
    pub delta: i64,
}

/// Goroutines parked in Go on one object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct WaitedOn {
    /// As in `waits_on.kind`: "mutex", "chan", ...
    pub kind: String,
    /// Its name, else its address.
    pub object: String,
    pub count: usize,
}

/// A goroutine blocked for a while.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LongWait {
    pub goid: u64,
    /// Its state or wait reason, as in `goroutines`.
    pub state: String,
    /// Seconds since a garbage collection first saw it blocked: at least
    /// this long.
    pub seconds: f64,
}

/// Longest waits shown per sample.
const LONGEST_SHOWN: usize = 5;

/// The goroutines blocked longest at `now` (the runtime's clock).
fn longest_waits(r: &Report, now: Option<i64>) -> Vec<LongWait> {
    let Some(now) = now else {
        return vec![];
    };
    let mut v: Vec<LongWait> = r
        .goroutines
        .iter()
        .filter(|g| !g.system)
        .filter_map(|g| {
            let since = g.waitsince.filter(|&s| s > 0 && s <= now)?;
            Some(LongWait {
                goid: g.goid,
                state: g.state().to_string(),
                seconds: (now - since) as f64 / 1e9,
            })
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then(a.goid.cmp(&b.goid)));
    v.truncate(LONGEST_SHOWN);
    v
}

/// The runtime's clock now: Go's `nanotime` is CLOCK_MONOTONIC on Linux,
/// the same for every process of the host.
pub fn runtime_clock_now() -> Option<i64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) } == 0;
    ok.then(|| ts.tv_sec * 1_000_000_000 + ts.tv_nsec)
}

/// Objects shown per sample.
const WAITED_ON_SHOWN: usize = 8;

/// The objects most goroutines wait on.
fn waited_on(r: &Report) -> Vec<WaitedOn> {
    let mut by: BTreeMap<u64, WaitedOn> = BTreeMap::new();
    for w in r.goroutines.iter().filter_map(|g| g.waits_on.as_deref()) {
        by.entry(w.addr)
            .or_insert_with(|| WaitedOn {
                kind: w.kind.to_string(),
                object: w.object.clone().unwrap_or_else(|| format!("{:#x}", w.addr)),
                count: 0,
            })
            .count += 1;
    }
    let mut v: Vec<WaitedOn> = by.into_values().collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.object.cmp(&b.object)));
    v.truncate(WAITED_ON_SHOWN);
    v
}

impl Sample {
    /// The sample of `r`, taken at `time`, after `prev` (for the rates);
    /// `now`: the runtime's clock then (live), for the longest waits.
    pub fn of(r: &Report, time: f64, now: Option<i64>, prev: Option<&Sample>) -> Sample {
        let mut groups: BTreeMap<(String, String, Option<String>), usize> = BTreeMap::new();
        for (t, b) in r
            .threads
            .iter()
            .filter_map(|t| Some((t, t.blocked.as_ref()?)))
        {
            // Outside a cgo call (a thread C created, Go's own system
            // call): the thread's own entry names the group.
            let function = t
                .cgo_call
                .clone()
                .or_else(|| crate::report::frame::entry(&t.frames).map(String::from))
                .unwrap_or_else(|| "?".into());
            *groups
                .entry((b.class.clone(), function, b.library.clone()))
                .or_default() += 1;
        }
        let before = |g: &(String, String, Option<String>)| {
            prev.and_then(|p| {
                p.groups
                    .iter()
                    .find(|x| (&x.class, &x.function, &x.library) == (&g.0, &g.1, &g.2))
            })
            .map_or(0, |x| x.count as i64)
        };
        let mut groups: Vec<Group> = groups
            .into_iter()
            .map(|(k, count)| Group {
                delta: count as i64 - before(&k),
                class: k.0,
                function: k.1,
                library: k.2,
                count,
            })
            .collect();
        groups.sort_by(|a, b| b.count.cmp(&a.count).then(a.class.cmp(&b.class)));
        let mut goroutines = BTreeMap::new();
        for g in &r.goroutines {
            *goroutines.entry(g.state().to_string()).or_default() += 1;
        }
        let maxmcount = r.sched.as_ref().map(|s| s.maxmcount).filter(|&m| m > 0);
        let rate = |now: usize, then: usize, dt: f64| (now as f64 - then as f64) / dt;
        let (threads_per_second, limit_in_seconds) = match prev {
            Some(p) if time > p.time => {
                let dt = time - p.time;
                let ms_rate = rate(r.ms.len(), p.ms, dt);
                let left = maxmcount.map(|m| m as f64 - r.ms.len() as f64);
                (
                    Some(rate(r.threads.len(), p.threads, dt)),
                    left.filter(|_| ms_rate > 0.0)
                        .map(|l| (l / ms_rate).max(0.0)),
                )
            }
            _ => (None, None),
        };
        Sample {
            time,
            pid: r.pid,
            threads: r.threads.len(),
            ms: r.ms.len(),
            threads_in_c: r.counts.threads_in_cgo,
            stopped_ms: r.stopped_ms.unwrap_or(0.0),
            groups,
            goroutines,
            waiting_on: waited_on(r),
            longest_waits: longest_waits(r, now),
            maxmcount,
            threads_per_second,
            limit_in_seconds,
        }
    }

    /// The terminal view of one sample, its groups by count.
    pub fn render(&self) -> String {
        self.render_as(false, false)
    }

    /// The view with the groups by how they moved (`by_moved`), and a note
    /// when the sampling is paused.
    pub fn render_as(&self, by_moved: bool, paused: bool) -> String {
        self.render_fit(by_moved, paused, None)
    }

    /// The view in at most `rows` lines (a terminal's height): the groups
    /// give way, with a line saying how many are not shown.
    pub fn render_fit(&self, by_moved: bool, paused: bool, rows: Option<usize>) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let rate = self
            .threads_per_second
            .map(|r| format!(" ({r:+.1}/s)"))
            .unwrap_or_default();
        let limit = match (self.limit_in_seconds, self.maxmcount) {
            (Some(s), Some(m)) => format!(" · the {m}-thread limit in {s:.0} s at this rate"),
            (None, Some(m)) => format!(" · limit {m}"),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "cgocore top · process {} · {} threads{rate} · {} Ms{limit} · {} in C · stopped {:.1} ms",
            self.pid.map_or("?".into(), |p| p.to_string()),
            self.threads,
            self.ms,
            self.threads_in_c,
            self.stopped_ms
        );
        let _ = writeln!(
            o,
            "{}keys: q quit · p {} · s sort by {}",
            if paused { "PAUSED · " } else { "" },
            if paused { "resume" } else { "pause" },
            if by_moved { "count" } else { "movement" }
        );
        let _ = writeln!(o, "\n  COUNT  MOVED  CLASS          C CALL");
        let mut groups: Vec<&Group> = self.groups.iter().collect();
        if by_moved {
            groups.sort_by(|a, b| b.delta.cmp(&a.delta).then(b.count.cmp(&a.count)));
        }
        // Header (4 lines), states (2 + up to 10), waits (2 + theirs), a
        // "more" line and the cursor's.
        let states_shown = self.goroutines.len().min(10);
        let waits_shown = if self.waiting_on.is_empty() {
            0
        } else {
            2 + self.waiting_on.len()
        };
        let longest_shown = if self.longest_waits.is_empty() {
            0
        } else {
            2 + self.longest_waits.len()
        };
        let fixed = 4 + 2 + states_shown + waits_shown + longest_shown + 2;
        let room = rows.map_or(usize::MAX, |r| r.saturating_sub(fixed).max(1));
        let hidden = groups.len().saturating_sub(room);
        groups.truncate(room);
        for g in groups {
            let lib = g
                .library
                .as_deref()
                .map(|l| format!(" [{l}]"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  {:>5}  {:>+5}  {:<13}  {}{lib}",
                g.count,
                g.delta,
                crate::report::escape::escape_line(&g.class),
                crate::report::escape::escape_line(&g.function)
            );
        }
        if hidden > 0 {
            let _ = writeln!(o, "  … {hidden} more groups");
        }
        self.goroutine_sections(&mut o);
        o
    }

    /// Goroutines by state, what they wait on in Go, the longest waits.
    fn goroutine_sections(&self, o: &mut String) {
        use std::fmt::Write;
        let mut states: Vec<(&String, &usize)> = self.goroutines.iter().collect();
        states.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let _ = writeln!(o, "\n  goroutines by state:");
        for (s, n) in states.iter().take(10) {
            let _ = writeln!(o, "  {n:>7}  {}", crate::report::escape::escape_line(s));
        }
        if !self.waiting_on.is_empty() {
            let _ = writeln!(o, "\n  goroutines waiting in Go on:");
            for w in &self.waiting_on {
                let _ = writeln!(
                    o,
                    "  {:>7}  {} {}",
                    w.count,
                    w.kind,
                    crate::report::escape::escape_line(&w.object)
                );
            }
        }
        if !self.longest_waits.is_empty() {
            let _ = writeln!(
                o,
                "\n  blocked longest (since a garbage collection saw them):"
            );
            for w in &self.longest_waits {
                let _ = writeln!(
                    o,
                    "  {:>7}  goroutine {}  {}",
                    duration(w.seconds),
                    w.goid,
                    crate::report::escape::escape_line(&w.state)
                );
            }
        }
    }
}

/// `42s`, `3m12s`, `2h05m`.
fn duration(s: f64) -> String {
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::sample::{report, waiting};

    fn in_c(tid: u32, class: &str, call: &str) -> crate::report::ThreadInfo {
        let mut t = waiting(tid, class, 0, None);
        t.in_cgo = true;
        t.cgo_call = Some(call.into());
        t
    }

    #[test]
    fn groups_rates_and_the_limit() {
        let mut r1 = report(vec![in_c(1, "sleep", "C.s"), in_c(2, "read", "C.r")]);
        r1.counts.threads_in_cgo = 2;
        r1.ms = vec![crate::diagnose::findings::sample::m_info(1, 0, 0, None); 2];
        let s1 = Sample::of(&r1, 100.0, None, None);
        assert_eq!(s1.groups.len(), 2);
        assert_eq!((s1.threads_per_second, s1.limit_in_seconds), (None, None));
        let mut r2 = report(vec![
            in_c(1, "sleep", "C.s"),
            in_c(2, "read", "C.r"),
            in_c(3, "sleep", "C.s"),
            in_c(4, "sleep", "C.s"),
        ]);
        r2.ms = vec![crate::diagnose::findings::sample::m_info(1, 0, 0, None); 4];
        r2.sched = Some(crate::diagnose::findings::sample::sched(0));
        r2.sched.as_mut().unwrap().maxmcount = 10;
        let s2 = Sample::of(&r2, 102.0, None, Some(&s1));
        assert_eq!(
            (
                s2.groups[0].class.as_str(),
                s2.groups[0].count,
                s2.groups[0].delta
            ),
            ("sleep", 3, 2)
        );
        assert_eq!(s2.threads_per_second, Some(1.0));
        // 2 Ms in 2 s: the 6 left take 6 s.
        assert_eq!(s2.limit_in_seconds, Some(6.0));
        assert!(
            s2.render().contains("the 10-thread limit in 6 s"),
            "{}",
            s2.render()
        );
    }

    #[test]
    fn the_view_fits_its_terminal_with_what_goroutines_wait_on() {
        let threads: Vec<_> = (1..=40)
            .map(|i| in_c(i, "sleep", &format!("C.f{i}")))
            .collect();
        let mut r = report(threads);
        let mut g =
            crate::diagnose::findings::sample::goroutine(7, "waiting", Some("sync.Mutex.Lock"));
        g.waits_on = Some(Box::new(crate::report::WaitsOn {
            kind: "mutex".into(),
            addr: 0x10,
            object: Some("main.mu".into()),
            state: Default::default(),
            holders: Default::default(),
            evidence: Default::default(),
            channels: vec![],
        }));
        r.goroutines = vec![g.clone(), g];
        let s = Sample::of(&r, 1.0, None, None);
        assert_eq!(
            s.waiting_on,
            vec![WaitedOn {
                kind: "mutex".into(),
                object: "main.mu".into(),
                count: 2
            }]
        );
        let view = s.render_fit(false, false, Some(24));
        assert!(view.lines().count() < 24, "{view}");
        assert!(view.starts_with("cgocore top"), "{view}");
        assert!(
            view.contains("more groups") && view.contains("2  mutex main.mu"),
            "{view}"
        );
    }

    #[test]
    fn the_longest_waits_by_the_runtimes_clock() {
        use crate::diagnose::findings::sample::{goroutine, report};
        let mut r = report(vec![]);
        let g = |goid, since: Option<i64>, system| {
            let mut g = goroutine(goid, "waiting", Some("chan receive"));
            g.waitsince = since;
            g.system = system;
            g
        };
        r.goroutines = vec![
            g(1, Some(1_000_000_000), false),
            g(2, None, false),
            g(3, Some(9_000_000_000), false),
            g(4, Some(500_000_000), true),
            g(5, Some(99_000_000_000), false),
        ];
        let s = Sample::of(&r, 1.0, Some(10_000_000_000), None);
        let got: Vec<(u64, f64)> = s
            .longest_waits
            .iter()
            .map(|w| (w.goid, w.seconds))
            .collect();
        // None recorded, a runtime goroutine, a clock ahead of now: left out.
        assert_eq!(got, vec![(1, 9.0), (3, 1.0)]);
        assert_eq!(s.longest_waits[0].state, "chan receive");
        assert!(
            s.render().contains("      9s  goroutine 1  chan receive"),
            "{}",
            s.render()
        );
        assert!(
            Sample::of(&r, 1.0, None, None).longest_waits.is_empty(),
            "a core: no clock"
        );
        assert_eq!(
            (duration(192.0), duration(7500.0)),
            ("3m12s".into(), "2h05m".into())
        );
    }
}
