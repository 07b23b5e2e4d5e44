//! The shape of the library, kept by tests: the modules' import graph has
//! no cycle (data flows up once: every `crate::` path in the sources, tests
//! left out, is read, and a cycle is named), docs/architecture.md lists
//! every module, and no function is longer than a screen and a half.
#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    /// Top-level module of a source file (`runtime` for runtime/m.rs).
    fn module_of(root: &Path, file: &Path) -> String {
        let rel = file.strip_prefix(root).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    }

    /// The top-level modules a source names: `crate::x::…`, and each name
    /// of `use crate::{x, y::z}`.
    fn named(text: &str) -> BTreeSet<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut out = BTreeSet::new();
        let ident = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    out.insert(ident(part.trim()));
                }
            } else {
                out.insert(ident(rest));
            }
        }
        out
    }

    #[test]
    fn no_module_imports_one_that_imports_it() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        sources(&root, &mut files);
        let tops: BTreeSet<String> = files
            .iter()
            .map(|f| module_of(&root, f))
            .filter(|m| m != "lib" && m != "bin")
            .collect();
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let from = module_of(&root, f);
            if !tops.contains(&from) {
                continue;
            }
            let text = std::fs::read_to_string(f).unwrap();
            for to in named(&text) {
                if to != from && tops.contains(&to) {
                    graph.entry(from.clone()).or_default().insert(to);
                }
            }
        }
        // Depth-first search for a back edge.
        fn visit(
            m: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(i) = path.iter().position(|p| p == m) {
                let mut cycle = path[i..].to_vec();
                cycle.push(m.to_string());
                return Some(cycle);
            }
            if done.contains(m) {
                return None;
            }
            path.push(m.to_string());
            for next in g.get(m).into_iter().flatten() {
                if let Some(c) = visit(next, g, path, done) {
                    return Some(c);
                }
            }
            path.pop();
            done.insert(m.to_string());
            None
        }
        let mut done = BTreeSet::new();
        for m in &tops {
            if let Some(cycle) = visit(m, &graph, &mut vec![], &mut done) {
                panic!("import cycle: {}\n{graph:#?}", cycle.join(" -> "));
            }
        }
        // And the architecture document names every module.
        let doc = std::fs::read_to_string(root.join("../../docs/architecture.md")).unwrap();
        let missing: Vec<&String> = tops
            .iter()
            .filter(|m| !doc.contains(&format!("`{m}")) && !doc.contains(&format!("`{m}.rs`")))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/architecture.md: {missing:?}"
        );
    }

    /// Lines a library function may have.
    const MAX_FN_LINES: usize = 100;

    /// Functions of `text` (as rustfmt lays it out) longer than the limit:
    /// a `fn` line to the `}` at its indentation.
    fn long_functions(text: &str) -> Vec<(String, usize)> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let lines: Vec<&str> = code.lines().collect();
        let mut out = vec![];
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let item = [
                "pub(crate) ",
                "pub(super) ",
                "pub ",
                "const ",
                "unsafe ",
                "extern \"C\" ",
            ]
            .iter()
            .fold(t, |t, p| t.strip_prefix(p).unwrap_or(t));
            let Some(rest) = item.strip_prefix("fn ") else {
                continue;
            };
            let indent = &l[..l.len() - t.len()];
            let close = format!("{indent}}}");
            if let Some(n) = lines[i..].iter().position(|x| *x == close) {
                if n + 1 > MAX_FN_LINES {
                    let name: String = rest
                        .chars()
                        .take_while(|c| *c != '(' && *c != '<')
                        .collect();
                    out.push((name, n + 1));
                }
            }
        }
        out
    }

    #[test]
    fn no_function_is_longer_than_a_screen_and_a_half() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![];
        sources(&root, &mut files);
        let long: Vec<String> = files
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap();
                long_functions(&text)
                    .into_iter()
                    .map(|(n, len)| format!("{}: {n} ({len} lines)", f.display()))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(long.is_empty(), "over {MAX_FN_LINES} lines: {long:#?}");
        let body = "    x();\n".repeat(MAX_FN_LINES);
        let f = format!("pub fn big() {{\n{body}}}\n");
        assert_eq!(
            long_functions(&f),
            vec![("big".to_string(), MAX_FN_LINES + 2)]
        );
    }

    #[test]
    fn names_are_read_from_use_lines_and_paths() {
        let got = named("use crate::{elf::regs::Arch, memory};\nfn f() { crate::unwind::x(); }\n// crate::live\n#[cfg(test)]\nuse crate::report;");
        let want: BTreeSet<String> = ["elf", "memory", "unwind"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(got, want);
    }
}
