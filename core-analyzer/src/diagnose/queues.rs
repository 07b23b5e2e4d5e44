//! Goroutines queued in Go: who holds what they wait on, by evidence
//! (strongest first, never a guess stated as fact), and the incidents that
//! count them behind the goroutine at the end of the chain — usually one in
//! C. Works on the report model only: `waits_on` and the goroutines' live
//! references are read below.
use super::findings::describe::doing;
use crate::report::{
    GoroutineInfo, Holder, Incident, ObjectState, Reference, Report, Severity, Subject, ThreadInfo,
    Victims, WaitsOn,
};
use crate::unwind::Lang;
use std::collections::{BTreeMap, HashMap};

/// Links followed from a waiter to the root of its chain.
const MAX_CHAIN: usize = 64;

/// Fill each waiter's `waits_on.holders`.
pub fn holders(r: &mut Report) {
    let mut by_object: BTreeMap<u64, Vec<Holder>> = BTreeMap::new();
    let objects: BTreeMap<u64, &WaitsOn> = r
        .goroutines
        .iter()
        .filter_map(|g| g.waits_on.as_ref())
        .map(|w| (w.addr, w))
        .collect();
    for (&addr, w) in &objects {
        by_object.insert(addr, holders_of(r, addr, w));
    }
    for g in r.goroutines.iter_mut() {
        if let Some(w) = g.waits_on.as_mut() {
            w.holders = by_object.get(&w.addr).cloned().unwrap_or_default();
        }
    }
}

fn waits_for(g: &GoroutineInfo, addr: u64) -> bool {
    g.waits_on
        .as_ref()
        .is_some_and(|w| w.addr == addr || w.channels.contains(&addr))
}

/// Holders of one object: goroutines whose live frames point into it (Go's
/// stack maps), else goroutines further along the function the waiters
/// wait in; none when neither says.
fn holders_of(r: &Report, addr: u64, w: &WaitsOn) -> Vec<Holder> {
    let referencing: Vec<(&GoroutineInfo, &Reference)> = r
        .goroutines
        .iter()
        .filter(|g| !waits_for(g, addr))
        .filter_map(|g| Some((g, g.references.iter().find(|x| x.object == addr)?)))
        .collect();
    if !referencing.is_empty() {
        let sure = held_by(&w.kind, &w.state) == Some(referencing.len());
        return referencing
            .into_iter()
            .map(|(g, f)| Holder {
                goid: g.goid,
                evidence: format!(
                    "a live pointer to {} in {}'s frame (Go's stack map)",
                    f.via.unwrap_or("it"),
                    f.function
                ),
                likely: !sure,
            })
            .collect();
    }
    further_along(r, addr)
}

/// How many goroutines the state says hold the object, where only holders
/// can point to it: a locked mutex one, an RWMutex its readers or its
/// writer, a database/sql pool its connections in use. Channels,
/// WaitGroups and Conds are referenced by others too.
fn held_by(kind: &str, s: &ObjectState) -> Option<usize> {
    if let (Some(open), Some(_)) = (s.open, s.max_open) {
        return Some(open.saturating_sub(s.idle.unwrap_or(0)) as usize);
    }
    match kind {
        "mutex" => (s.locked == Some(true)).then_some(1),
        "rwmutex" if s.locked == Some(true) => Some(1),
        "rwmutex" => s.readers.filter(|&n| n > 0).map(|n| n as usize),
        _ => None,
    }
}

/// Where a waiter waits in its own code: the innermost frame outside the
/// runtime and the sync packages.
fn site(g: &GoroutineInfo) -> Option<(&str, u32)> {
    g.frames
        .iter()
        .filter(|f| f.lang == Lang::Go)
        .find_map(|f| {
            let n = f.function.as_deref()?;
            let plumbing = n.starts_with("runtime.")
                || n.starts_with("sync.")
                || n.starts_with("internal/")
                || n.starts_with("sync/");
            (!plumbing).then_some((n, f.line?))
        })
}

/// Goroutines in the waiters' function past the line where they wait (the
/// one before them took the lock or the slot and went on): likely holders.
fn further_along(r: &Report, addr: u64) -> Vec<Holder> {
    let Some((func, line)) = r
        .goroutines
        .iter()
        .filter(|g| waits_for(g, addr))
        .find_map(site)
    else {
        return vec![];
    };
    r.goroutines
        .iter()
        .filter(|g| !waits_for(g, addr))
        .filter_map(|g| {
            let at = g
                .frames
                .iter()
                .find(|f| f.function.as_deref() == Some(func))?
                .line?;
            (at > line).then(|| Holder {
                goid: g.goid,
                evidence: format!(
                    "further along in {func} (line {at}, past line {line} where the others wait)"
                ),
                likely: true,
            })
        })
        .collect()
}

/// Where a waiter's chain ends: the first holder not itself waiting in Go
/// (`Ok(goid)`), or the object whose holder is unknown (`Err(addr)`).
fn root_of(by_goid: &HashMap<u64, &GoroutineInfo>, w: &WaitsOn) -> Result<u64, u64> {
    let mut cur = w;
    for _ in 0..MAX_CHAIN {
        let Some(h) = cur.holders.first() else {
            return Err(cur.addr);
        };
        match by_goid.get(&h.goid).and_then(|g| g.waits_on.as_ref()) {
            Some(next) if next.addr != cur.addr => cur = next,
            Some(_) => return Err(cur.addr),
            None => return Ok(h.goid),
        }
    }
    Err(cur.addr)
}

/// One incident per chain root: the goroutine at its end (added to the
/// incident that already has its thread, if one does) or, with no holder
/// known, the object.
pub fn incidents(r: &Report, out: &mut Vec<Incident>, of_thread: &HashMap<u32, usize>) {
    let by_goid: HashMap<u64, &GoroutineInfo> = r.goroutines.iter().map(|g| (g.goid, g)).collect();
    let mut groups: BTreeMap<Result<u64, u64>, Vec<u64>> = BTreeMap::new();
    for g in &r.goroutines {
        if let Some(w) = &g.waits_on {
            groups.entry(root_of(&by_goid, w)).or_default().push(g.goid);
        }
    }
    for (root, goids) in groups {
        let thread = root
            .ok()
            .and_then(|h| thread_of(r, by_goid.get(&h).copied()?));
        if let Some(&k) = thread.and_then(|t| of_thread.get(&t.tid)) {
            let v = &mut out[k].victims.goids;
            for g in goids {
                if !v.contains(&g) {
                    v.push(g);
                }
            }
            continue;
        }
        if !harmful(&by_goid, root, &goids) {
            continue;
        }
        out.push(match root {
            Ok(h) => held(&by_goid, h, thread, goids),
            Err(addr) => unheld(r, &by_goid, addr, goids),
        });
    }
}

/// A queue is a problem when it ends in C, or when a lock is held over it:
/// goroutines idle on a channel, a Cond or a WaitGroup with no holder in C
/// are how programs wait for work, not a hang.
fn harmful(by_goid: &HashMap<u64, &GoroutineInfo>, root: Result<u64, u64>, goids: &[u64]) -> bool {
    let in_c = root
        .ok()
        .and_then(|h| by_goid.get(&h))
        .is_some_and(|g| g.in_cgo || g.status == "syscall");
    let held_lock = goids
        .iter()
        .filter_map(|g| by_goid.get(g)?.waits_on.as_ref())
        .any(|w| {
            let s = &w.state;
            let lock = matches!(w.kind.as_str(), "mutex" | "rwmutex")
                && (s.locked == Some(true) || s.readers.is_some_and(|n| n > 0));
            lock || s.max_open.is_some()
        });
    in_c || held_lock
}

fn thread_of<'r>(r: &'r Report, g: &GoroutineInfo) -> Option<&'r ThreadInfo> {
    r.threads
        .iter()
        .find(|t| t.curg == Some(g.goid) || (g.m.is_some() && t.m == g.m && t.curg.is_none()))
}

/// The incident of a chain that ends at goroutine `h`.
fn held(
    by_goid: &HashMap<u64, &GoroutineInfo>,
    h: u64,
    thread: Option<&ThreadInfo>,
    goids: Vec<u64>,
) -> Incident {
    let hg = by_goid.get(&h).copied();
    // The object `h` holds directly, as one of its waiters sees it.
    let direct = goids
        .iter()
        .filter_map(|g| by_goid.get(g)?.waits_on.as_ref())
        .find(|w| w.holders.iter().any(|x| x.goid == h));
    let held_by = direct
        .map(WaitsOn::holders_line)
        .unwrap_or_else(|| format!("held by goroutine {h}"));
    let where_ = match (thread, hg) {
        (Some(t), Some(g)) if g.in_cgo => format!("in C: {}", doing(t)),
        (_, Some(g)) => format!("{} in Go", g.state()),
        _ => "gone".into(),
    };
    let n = goids.len();
    let what = direct
        .map(WaitsOn::describe)
        .unwrap_or_else(|| "an object".into());
    let through = if goids.iter().any(|g| {
        by_goid
            .get(g)
            .and_then(|x| x.waits_on.as_ref())
            .is_some_and(|w| !w.holders.iter().any(|x| x.goid == h))
    }) {
        ", directly or through goroutines that wait on it"
    } else {
        ""
    };
    let (s, verb) = if n == 1 { ("", "waits") } else { ("s", "wait") };
    Incident {
        kind: "goroutine-queue".into(),
        severity: if hg.is_some_and(|g| g.in_cgo) {
            Severity::Critical
        } else {
            Severity::Warning
        },
        root: Some(Subject {
            tid: thread.map(|t| t.tid),
            m: hg.and_then(|g| g.m),
            goid: Some(h),
        }),
        chain: vec![],
        victims: Victims {
            tids: vec![],
            goids,
        },
        summary: format!(
            "{n} goroutine{s} {verb} for {what}{through}, {held_by}; goroutine {h} is {where_}"
        ),
        advice: "the goroutines queue in Go behind one that does not let go: its stack says why. Do not hold a Go lock (or a pool slot) across a cgo call that can block; bound the C call (a timeout, a cancel) or release before calling".into(),
        findings: vec![],
        signature: String::new(),
    }
}

/// The incident of an object whose holder no evidence names.
fn unheld(
    r: &Report,
    by_goid: &HashMap<u64, &GoroutineInfo>,
    addr: u64,
    goids: Vec<u64>,
) -> Incident {
    let w = goids
        .iter()
        .filter_map(|g| by_goid.get(g)?.waits_on.as_ref())
        .find(|w| w.addr == addr);
    let in_c: Vec<String> = r
        .goroutines
        .iter()
        .filter(|g| g.in_cgo)
        .take(6)
        .map(|g| g.goid.to_string())
        .collect();
    let context = if in_c.is_empty() {
        "no goroutine is in C".to_string()
    } else {
        format!("goroutines in C now: {}", in_c.join(", "))
    };
    let n = goids.len();
    let (s, verb) = if n == 1 { ("", "waits") } else { ("s", "wait") };
    Incident {
        kind: "goroutine-queue".into(),
        severity: Severity::Warning,
        root: None,
        chain: vec![],
        victims: Victims {
            tids: vec![],
            goids,
        },
        summary: format!(
            "{n} goroutine{s} {verb} for {}; holder unknown (no live frame points to it, and no goroutine is further along where they wait); {context}",
            w.map(WaitsOn::describe).unwrap_or_else(|| format!("{addr:#x}")),
        ),
        advice: "Go records no owner for a mutex: look for a path that takes it and never lets go (an early return or a recovered panic that skips Unlock, a call that never returns)".into(),
        findings: vec![],
        signature: String::new(),
    }
}
