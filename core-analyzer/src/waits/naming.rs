//! Names for the heap objects goroutines wait on: `main.Store.mu` for a
//! `sync.Mutex` inside a `main.Store`. The candidate type is the receiver of
//! a method whose frame points to the object's start (`main.(*Store).Save`);
//! it is taken only when the binary's DWARF agrees: the struct fits the heap
//! object's size class, and its member at the value's offset has the value's
//! sync type. Otherwise the object stays unnamed (its address).
use super::Object;
use crate::elf::exe::Binary;
use crate::layout::dwarf::structs_from_dwarf;
use crate::report::Reference;
use std::collections::{BTreeMap, BTreeSet};

/// The sync type a waited-on value of `kind` has.
fn sync_type(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "mutex" => "sync.Mutex",
        "rwmutex" => "sync.RWMutex",
        "waitgroup" => "sync.WaitGroup",
        "cond" => "sync.Cond",
        _ => return None,
    })
}

/// `main.Store` for `main.(*Store).Save`; none for functions and generic
/// receivers.
fn receiver(function: &str) -> Option<String> {
    let (pkg, rest) = function.split_once(".(*")?;
    let (ty, _) = rest.split_once(").")?;
    (!ty.contains('[')).then(|| format!("{pkg}.{ty}"))
}

/// Names for unnamed heap objects, from the references goroutines' frames
/// hold to them (any goroutine's: a waiter's method names it as well).
pub fn name_objects<'r>(
    exe: &Binary,
    objects: &mut BTreeMap<u64, Object>,
    references: impl Iterator<Item = &'r Reference>,
) {
    let mut types: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for r in references {
        let unnamed = objects
            .get(&r.object)
            .is_some_and(|o| o.name.is_none() && o.pool.is_none() && sync_type(o.kind).is_some());
        if let (true, Some(t)) = (unnamed, receiver(&r.function)) {
            types.entry(r.object).or_default().insert(t);
        }
    }
    let wanted: BTreeSet<&String> = types.values().flatten().collect();
    if wanted.is_empty() {
        return;
    }
    const ALL: &[&str] = &["*"];
    let w: Vec<(&str, &[&str])> = wanted.iter().map(|n| (n.as_str(), ALL)).collect();
    let Ok(Some(structs)) = structs_from_dwarf(exe, &w, &|cu| cu == b"runtime") else {
        return;
    };
    for (addr, candidates) in types {
        let Some(o) = objects.get_mut(&addr) else {
            continue;
        };
        let (base, end) = o.bounds;
        let off = addr - base;
        let named = candidates.iter().find_map(|t| {
            let s = structs.get(t)?;
            // The struct fills the heap object up to its size class.
            let fits = s.size > 0 && s.size <= end - base && end - base < s.size.saturating_mul(2);
            let (member, _) = s.fields.iter().find(|(_, &o)| o == off)?;
            let same_type = s.types.get(member).map(String::as_str) == sync_type(o.kind);
            (fits && same_type).then(|| format!("{t}.{member}"))
        });
        if named.is_some() {
            o.name = named;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiver_of_a_method() {
        assert_eq!(
            receiver("main.(*Store).Save").as_deref(),
            Some("main.Store")
        );
        assert_eq!(
            receiver("example.com/shop/db.(*Pool).Exec.func1").as_deref(),
            Some("example.com/shop/db.Pool")
        );
        assert_eq!(receiver("main.handle"), None);
        assert_eq!(receiver("main.(*List[...]).Push"), None);
    }
}
