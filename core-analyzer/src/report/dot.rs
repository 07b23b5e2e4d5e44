//! The wait-for graph over threads, goroutines and C locks, as Graphviz DOT
//! (`cgocore analyze --dot`). Built from the report model alone.
use super::Report;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

/// A node of the wait-for graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    Thread(u32),
    Goroutine(u64),
    Lock(u64),
}

#[derive(Debug, Default, Clone)]
pub struct Graph {
    /// (from, to, label): `from` waits for `to`.
    pub edges: Vec<(Node, Node, String)>,
    pub lock_names: HashMap<u64, String>,
}

/// Threads wait for locks, locks are held by threads, goroutines in a cgo
/// call wait for their thread, and a parked thread for its locked goroutine.
pub fn graph(r: &Report) -> Graph {
    let mut g = Graph::default();
    for t in &r.threads {
        let Some(b) = &t.blocked else { continue };
        if let Some(lock) = b.lock {
            g.edges
                .push((Node::Thread(t.tid), Node::Lock(lock), b.class.clone()));
            g.lock_names.insert(lock, b.lock_name());
            if let Some(o) = b.owner_tid {
                g.edges
                    .push((Node::Lock(lock), Node::Thread(o), "held by".into()));
            }
        }
    }
    for t in &r.threads {
        if let (Some(g0), true) = (t.curg, t.in_cgo && t.blocked.is_some()) {
            g.edges
                .push((Node::Goroutine(g0), Node::Thread(t.tid), "in C on".into()));
        }
        if let (Some(lg), None) = (t.lockedg, t.curg) {
            g.edges
                .push((Node::Thread(t.tid), Node::Goroutine(lg), "locked to".into()));
        }
    }
    g
}

fn id(n: &Node) -> String {
    match n {
        Node::Thread(t) => format!("t{t}"),
        Node::Goroutine(g) => format!("g{g}"),
        Node::Lock(a) => format!("l{a:x}"),
    }
}

/// A name from the target inside a DOT string: quotes and backslashes
/// escaped, control characters shown (`\x1b`), never a line of its own.
fn quoted(s: &str) -> String {
    super::escape::escape_line(s)
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// The report's wait-for graph as DOT text.
pub fn to_dot(r: &Report) -> String {
    let g = graph(r);
    let mut o =
        String::from("digraph waitfor {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
    let nodes: BTreeSet<&Node> = g.edges.iter().flat_map(|(a, b, _)| [a, b]).collect();
    for n in nodes {
        let (label, shape) = match n {
            Node::Thread(t) => {
                let th = r.threads.iter().find(|x| x.tid == *t);
                let mut l = format!("thread {t}");
                if let Some(m) = th.and_then(|x| x.m) {
                    let _ = write!(l, "\\nM{m}");
                }
                if let Some(b) = th.and_then(|x| x.blocked.as_ref()) {
                    let _ = write!(l, "\\n{}", quoted(&b.class));
                }
                (l, "box")
            }
            Node::Goroutine(gid) => (format!("goroutine {gid}"), "ellipse"),
            Node::Lock(a) => (
                g.lock_names
                    .get(a)
                    .map(|n| quoted(n))
                    .unwrap_or_else(|| format!("{a:#x}")),
                "diamond",
            ),
        };
        let _ = writeln!(o, "  {} [label=\"{label}\", shape={shape}];", id(n));
    }
    for (a, b, label) in &g.edges {
        let _ = writeln!(o, "  {} -> {} [label=\"{}\"];", id(a), id(b), quoted(label));
    }
    o.push_str("}\n");
    o
}
