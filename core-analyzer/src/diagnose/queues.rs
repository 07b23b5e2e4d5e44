//! Goroutines queued in Go: who holds what they wait on, by evidence
//! (strongest first, never a guess stated as fact), and the incidents that
//! count them behind the goroutine at the end of the chain — usually one in
//! C. Works on the report model only: `waits_on` and the goroutines' live
//! references are read below.
use super::findings::describe::doing;
use crate::report::frame::Lang;
use crate::report::{
    GoroutineInfo, Holder, Incident, ObjectState, Reference, Report, Severity, Subject, ThreadInfo,
    Victims, WaitsOn,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Links followed from a waiter to the root of its chain.
const MAX_CHAIN: usize = 64;

/// Fill each waiter's `waits_on.holders`.
pub fn holders(r: &mut Report) {
    let ix = Index::new(r);
    let by_object: BTreeMap<u64, std::sync::Arc<[Holder]>> = ix
        .waiters
        .iter()
        .map(|(&addr, ws)| {
            let w = ws[0].waits_on.as_deref().expect("a waiter");
            (addr, holders_of(&ix, addr, w).into())
        })
        .collect();
    for g in r.goroutines.iter_mut() {
        if let Some(w) = g.waits_on.as_mut() {
            w.holders = by_object.get(&w.addr).cloned().unwrap_or_default();
        }
    }
}

/// The goroutines by what they wait on, by what they point to, and (built
/// when first needed) by the functions on their stacks: one pass each, so
/// 100k goroutines on many objects cost no product of the two.
struct Index<'r> {
    waiters: BTreeMap<u64, Vec<&'r GoroutineInfo>>,
    referencing: HashMap<u64, Vec<(&'r GoroutineInfo, &'r Reference)>>,
    all: &'r [GoroutineInfo],
    in_function: std::cell::OnceCell<HashMap<&'r str, Vec<(&'r GoroutineInfo, u32)>>>,
}

impl<'r> Index<'r> {
    fn new(r: &'r Report) -> Index<'r> {
        let mut waiters: BTreeMap<u64, Vec<&GoroutineInfo>> = BTreeMap::new();
        let mut referencing: HashMap<u64, Vec<(&GoroutineInfo, &Reference)>> = HashMap::new();
        for g in &r.goroutines {
            if let Some(w) = &g.waits_on {
                waiters.entry(w.addr).or_default().push(g);
            }
            for x in &g.references {
                referencing.entry(x.object).or_default().push((g, x));
            }
        }
        Index {
            waiters,
            referencing,
            all: &r.goroutines,
            in_function: Default::default(),
        }
    }

    /// Goroutines with `func` on their stack, at its outermost line there.
    fn in_function(&self, func: &str) -> &[(&'r GoroutineInfo, u32)] {
        let m = self.in_function.get_or_init(|| {
            let mut m: HashMap<&str, Vec<(&GoroutineInfo, u32)>> = HashMap::new();
            for g in self.all {
                let mut seen: Vec<&str> = vec![];
                for f in &g.frames {
                    if let (Some(n), Some(line)) = (f.function.as_deref(), f.line) {
                        if !seen.contains(&n) {
                            seen.push(n);
                            m.entry(n).or_default().push((g, line));
                        }
                    }
                }
            }
            m
        });
        m.get(func).map(Vec::as_slice).unwrap_or(&[])
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
fn holders_of(ix: &Index, addr: u64, w: &WaitsOn) -> Vec<Holder> {
    let referencing: Vec<&(&GoroutineInfo, &Reference)> = ix
        .referencing
        .get(&addr)
        .into_iter()
        .flatten()
        .filter(|(g, _)| !waits_for(g, addr))
        .collect();
    if !referencing.is_empty() {
        // Whoever will unlock a value needs a pointer to the value itself: a
        // pointer only into the object that contains it (a long-lived owner
        // of the struct) is not enough to state a holder as fact.
        let sure = held_by(&w.kind, &w.state) == Some(referencing.len())
            && referencing.iter().all(|(_, r)| r.exact);
        return referencing
            .into_iter()
            .map(|(g, f)| Holder {
                goid: g.goid,
                evidence: format!(
                    "a live pointer to {} in {}'s frame (Go's stack map)",
                    f.via.unwrap_or(if f.exact {
                        "it"
                    } else {
                        "the object that holds it"
                    }),
                    f.function
                ),
                likely: !sure,
            })
            .collect();
    }
    further_along(ix, addr)
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
fn further_along(ix: &Index, addr: u64) -> Vec<Holder> {
    let Some((func, line)) = ix
        .waiters
        .get(&addr)
        .and_then(|ws| ws.iter().find_map(|g| site(g)))
    else {
        return vec![];
    };
    ix.in_function(func)
        .iter()
        .filter(|(g, at)| *at > line && !waits_for(g, addr))
        .map(|(g, at)| Holder {
            goid: g.goid,
            evidence: format!(
                "further along in {func} (line {at}, past line {line} where the others wait)"
            ),
            likely: true,
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
    let threads = Threads::new(r);
    let mut groups: BTreeMap<Result<u64, u64>, Vec<u64>> = BTreeMap::new();
    for g in &r.goroutines {
        if let Some(w) = &g.waits_on {
            groups.entry(root_of(&by_goid, w)).or_default().push(g.goid);
        }
    }
    for (root, goids) in groups {
        let thread = root
            .ok()
            .and_then(|h| threads.of(by_goid.get(&h).copied()?));
        if let Some(&k) = thread.and_then(|t| of_thread.get(&t.tid)) {
            join_queue(&mut out[k], &by_goid, goids);
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

/// Goroutines queued in Go behind a thread another incident already holds
/// up: its victims, and its summary counts them and says what they wait on.
fn join_queue(inc: &mut Incident, by_goid: &HashMap<u64, &GoroutineInfo>, goids: Vec<u64>) {
    let before = super::incidents::harm(&inc.victims);
    // (a set: 100k goroutines may join one incident)
    let v = &mut inc.victims.goids;
    let mut have: HashSet<u64> = v.iter().copied().collect();
    let new: Vec<u64> = goids.into_iter().filter(|g| have.insert(*g)).collect();
    if new.is_empty() {
        return;
    }
    let on = by_goid
        .get(&new[0])
        .and_then(|g| g.waits_on.as_ref())
        .map(|w| w.describe());
    v.extend(&new);
    let after = super::incidents::harm(&inc.victims);
    inc.summary = inc.summary.replacen(&before, &after, 1);
    if let Some(on) = on {
        let n = new.len();
        inc.summary = format!(
            "{}; {n} goroutine{} queued in Go behind it on {on}",
            inc.summary,
            if n == 1 { "" } else { "s" }
        );
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
            let lock = matches!(&*w.kind, "mutex" | "rwmutex")
                && (s.locked == Some(true) || s.readers.is_some_and(|n| n > 0));
            lock || s.max_open.is_some()
        });
    in_c || held_lock
}

/// The thread a goroutine runs on (its M's current goroutine), else the
/// thread of its M parked for it (a locked goroutine waiting in Go).
struct Threads<'r> {
    by_curg: HashMap<u64, &'r ThreadInfo>,
    idle_by_m: HashMap<i64, &'r ThreadInfo>,
}

impl<'r> Threads<'r> {
    fn new(r: &'r Report) -> Threads<'r> {
        let mut t = Threads {
            by_curg: HashMap::new(),
            idle_by_m: HashMap::new(),
        };
        for th in &r.threads {
            match (th.curg, th.m) {
                (Some(g), _) => {
                    t.by_curg.entry(g).or_insert(th);
                }
                (None, Some(m)) => {
                    t.idle_by_m.entry(m).or_insert(th);
                }
                _ => {}
            }
        }
        t
    }

    fn of(&self, g: &GoroutineInfo) -> Option<&'r ThreadInfo> {
        self.by_curg
            .get(&g.goid)
            .or_else(|| self.idle_by_m.get(&g.m?))
            .copied()
    }
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
        .map(|w| w.holders_line())
        .unwrap_or_else(|| format!("held by goroutine {h}"));
    let where_ = match (thread, hg) {
        (Some(t), Some(g)) if g.in_cgo => format!("in C: {}", doing(t)),
        (_, Some(g)) => format!("{} in Go", g.state()),
        _ => "gone".into(),
    };
    let n = goids.len();
    let what = direct
        .map(|w| w.describe())
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
            w.map(|w| w.describe()).unwrap_or_else(|| format!("{addr:#x}")),
        ),
        advice: "Go records no owner for a mutex: look for a path that takes it and never lets go (an early return or a recovered panic that skips Unlock, a call that never returns)".into(),
        findings: vec![],
        signature: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::sample::goroutine;

    fn waiting(goid: u64, addr: u64, kind: &str, state: ObjectState) -> GoroutineInfo {
        let mut g = goroutine(goid, "waiting", Some("sync.Mutex.Lock"));
        g.waits_on = Some(Box::new(WaitsOn {
            kind: kind.to_string().into(),
            addr,
            object: None,
            state,
            holders: Default::default(),
            evidence: Default::default(),
            channels: vec![],
        }));
        g
    }

    fn pointing(goid: u64, object: u64) -> GoroutineInfo {
        let mut g = goroutine(goid, "syscall", None);
        g.in_cgo = true;
        g.references = vec![Reference {
            object,
            function: "main.(*Store).Save".into(),
            via: None,
            exact: true,
        }];
        g
    }

    fn locked() -> ObjectState {
        ObjectState {
            locked: Some(true),
            waiters: Some(2),
            ..Default::default()
        }
    }

    #[test]
    fn one_goroutine_pointing_to_a_locked_mutex_holds_it() {
        let mut r = crate::diagnose::findings::sample::report(vec![]);
        r.goroutines = vec![
            waiting(1, 0x100, "mutex", locked()),
            waiting(2, 0x100, "mutex", locked()),
            pointing(3, 0x100),
        ];
        holders(&mut r);
        let h = &r.goroutines[0].waits_on.as_ref().unwrap().holders;
        assert_eq!(h.len(), 1);
        assert_eq!((h[0].goid, h[0].likely), (3, false));
        let mut out = vec![];
        incidents(&r, &mut out, &HashMap::new());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].root.as_ref().and_then(|s| s.goid), Some(3));
        assert_eq!(out[0].victims.goids, vec![1, 2]);
    }

    #[test]
    fn two_pointing_to_a_mutex_are_only_likely() {
        let mut r = crate::diagnose::findings::sample::report(vec![]);
        r.goroutines = vec![
            waiting(1, 0x100, "mutex", locked()),
            pointing(3, 0x100),
            pointing(4, 0x100),
        ];
        holders(&mut r);
        let h = &r.goroutines[0].waits_on.as_ref().unwrap().holders;
        assert!(h.len() == 2 && h.iter().all(|h| h.likely), "{h:?}");
        // A channel's are likely even when one goroutine points to it.
        r.goroutines = vec![
            waiting(1, 0x200, "chan", ObjectState::default()),
            pointing(3, 0x200),
        ];
        holders(&mut r);
        assert!(r.goroutines[0].waits_on.as_ref().unwrap().holders[0].likely);
    }

    #[test]
    fn a_chain_ends_at_the_goroutine_in_c() {
        // 1 waits on channel 0x200, which 2 holds; 2 waits on mutex 0x100,
        // which 3 (in C) holds.
        let mut r = crate::diagnose::findings::sample::report(vec![]);
        let mut consumer = waiting(2, 0x100, "mutex", locked());
        consumer.references = vec![Reference {
            object: 0x200,
            function: "main.consume".into(),
            via: None,
            exact: true,
        }];
        r.goroutines = vec![
            waiting(1, 0x200, "chan", ObjectState::default()),
            consumer,
            pointing(3, 0x100),
        ];
        holders(&mut r);
        let mut out = vec![];
        incidents(&r, &mut out, &HashMap::new());
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].root.as_ref().and_then(|s| s.goid), Some(3));
        let mut v = out[0].victims.goids.clone();
        v.sort();
        assert_eq!(v, vec![1, 2]);
    }

    #[test]
    fn idle_receivers_with_no_holder_are_not_a_problem_but_a_held_lock_is() {
        let mut r = crate::diagnose::findings::sample::report(vec![]);
        r.goroutines = vec![
            waiting(1, 0x200, "chan", ObjectState::default()),
            waiting(2, 0x100, "mutex", locked()),
        ];
        holders(&mut r);
        let mut out = vec![];
        incidents(&r, &mut out, &HashMap::new());
        assert_eq!(out.len(), 1);
        assert!(
            out[0].root.is_none() && out[0].summary.contains("holder unknown"),
            "{}",
            out[0].summary
        );
    }
}
