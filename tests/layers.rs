//! The crate's layers, written down once, and a check that no module uses
//! one above its own (STYLE.md: data flows one way). It reads `src/`: every
//! `crate::` and `super::` path outside `#[cfg(test)]` code is a use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path prefix -> layer. The longest matching prefix decides; every
/// top-level module must be listed.
const LAYERS: &[(&str, u8)] = &[
    // 1. Parsers and readers: pure functions over text and bytes, the file
    //    follower, and the vocabularies they produce.
    ("config", 1),
    ("follow", 1),
    ("netlink", 1),
    ("gunicorn", 1),
    ("upstream_failure", 1),
    ("pools::proc", 1),
    ("pools::discover", 1),
    ("pools::listen", 1),
    ("pools::slots", 1),
    ("kernel::kmsg", 1),
    ("kernel::oom", 1),
    ("kernel::counter_files", 1),
    ("nginx::access", 1),
    ("nginx::error_log", 1),
    ("nginx::log_counters", 1),
    // 2. State: the timeline, published values, source health.
    ("state", 2),
    // 3. Sources: read one part of the world, publish it.
    ("pools", 3),
    ("kernel", 3),
    ("nginx", 3),
    ("app_log", 3),
    // 4. Rules: pure tables over the timeline, and the judge that runs them.
    ("rules", 4),
    // 5. Outputs: metric encoding and the snapshot.
    ("metrics", 5),
    ("snapshot", 5),
    ("diagnose", 5),
    ("status", 5),
    // 6. Edges: HTTP and the command line.
    ("server", 6),
    ("web", 6),
    ("cli", 6),
];

fn layer(module: &[String]) -> Option<u8> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            let p: Vec<&str> = prefix.split("::").collect();
            p.len() <= module.len() && p.iter().zip(module).all(|(a, b)| a == b)
        })
        .max_by_key(|(prefix, _)| prefix.split("::").count())
        .map(|(_, l)| *l)
}

/// `src/kernel/kmsg.rs` -> [kernel, kmsg]; `src/pools/mod.rs` -> [pools].
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// Source text without its test code: everything from a top-level
/// `#[cfg(test)]` on.
fn non_test(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Module paths a file refers to, resolved against `module`, the file's
/// own module path (`super` of both `a/b.rs` and `a/b/mod.rs` is `a`).
fn uses(text: &str, module: &[String]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(i) = text[from..].find(root) {
            let at = from + i;
            from = at + root.len();
            // Part of a longer identifier, e.g. `$crate::`.
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            // `$crate::` in a macro; the second `super::` of `super::super::`.
            if at > 0 && matches!(bytes[at - 1], b'$' | b':') {
                continue;
            }
            let mut base: Vec<String> = if root == "crate::" {
                Vec::new()
            } else {
                module[..module.len().saturating_sub(1)].to_vec()
            };
            let mut rest = &text[from..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for path in expand(rest) {
                let mut full = base.clone();
                full.extend(path);
                if !full.is_empty() {
                    out.insert(full);
                }
            }
        }
    }
    out
}

/// Leading module segments of the path text after `crate::`: lowercase
/// identifiers, up to an item (Uppercase), a function call or a brace
/// group, which is expanded one level.
fn expand(rest: &str) -> Vec<Vec<String>> {
    let mut segs = Vec::new();
    let mut s = rest;
    loop {
        if let Some(group) = s.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let inner = &group[..end];
            let mut out = Vec::new();
            for entry in inner.split(',') {
                let entry = entry.trim();
                let mut sub: Vec<String> = segs.clone();
                for seg in entry.split("::") {
                    let seg = seg.trim();
                    if seg == "self" || seg.is_empty() {
                        break;
                    }
                    if !is_module_name(seg) {
                        break;
                    }
                    sub.push(seg.to_string());
                }
                out.push(sub);
            }
            return out;
        }
        let end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        let seg = &s[..end];
        if seg.is_empty() || !is_module_name(seg) {
            break;
        }
        let after = &s[end..];
        match after.strip_prefix("::") {
            Some(a) => {
                segs.push(seg.to_string());
                s = a;
            }
            // The last segment: a module (`use crate::state;`) or a
            // function/macro (`crate::state::lock(...)`); a module is what
            // matters for layering, and a function is in its parent.
            None => {
                if !after.starts_with('(') && !after.starts_with('!') {
                    segs.push(seg.to_string());
                }
                break;
            }
        }
    }
    vec![segs]
}

fn is_module_name(seg: &str) -> bool {
    seg.chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
}

struct Module {
    path: Vec<String>,
    file: String,
    uses: BTreeSet<Vec<String>>,
}

fn modules() -> Vec<Module> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                // Test-only directories (follow/tests/).
                if p.file_name().is_some_and(|n| n != "tests") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(&src).unwrap();
            if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let path = module_of(rel);
            let uses = uses(non_test(&text), &path);
            out.push(Module {
                path,
                file: rel.display().to_string(),
                uses,
            });
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    out
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let mut bad = Vec::new();
    for m in modules() {
        let own = layer(&m.path)
            .unwrap_or_else(|| panic!("{}: no layer for {:?} in LAYERS", m.file, m.path));
        for u in &m.uses {
            let Some(l) = layer(u) else {
                bad.push(format!(
                    "{}: uses crate::{} which has no layer",
                    m.file,
                    u.join("::")
                ));
                continue;
            };
            if l > own {
                bad.push(format!(
                    "{} (layer {own}) uses crate::{} (layer {l})",
                    m.file,
                    u.join("::")
                ));
            }
        }
    }
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn no_circle_among_top_level_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in modules() {
        let top = m.path[0].clone();
        let e = graph.entry(top.clone()).or_default();
        for u in &m.uses {
            if u[0] != top {
                e.insert(u[0].clone());
            }
        }
    }
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in graph.keys() {
        if let Some(c) = visit(n, &graph, &mut Vec::new(), &mut done) {
            panic!("top-level modules form a circle: {}", c.join(" -> "));
        }
    }
}

#[test]
fn every_top_level_module_has_a_layer() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    let mods: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    assert!(mods.len() >= 10, "{mods:?}");
    for m in mods {
        assert!(
            LAYERS.iter().any(|(p, _)| *p == m),
            "src/lib.rs declares `{m}`, which tests/layers.rs's LAYERS does not place"
        );
    }
}

/// The checker itself, on text where the answer is known.
#[test]
fn the_checker_sees_uses_and_resolves_super() {
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let text = "use crate::state::{PoolIndex, Published};\nuse super::{listen, proc::ProcId};\nuse super::super::cli;\nlet x = crate::metrics::family(1);\n$crate::metrics::Kind\nfoo_crate::x";
    let got = uses(text, &m("pools::observe"));
    let want: BTreeSet<Vec<String>> = [
        m("state"),
        m("pools::listen"),
        m("pools::proc"),
        m("cli"),
        m("metrics"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    assert_eq!(layer(&m("kernel::kmsg_reader")), Some(3));
    assert_eq!(layer(&m("kernel::kmsg")), Some(1));
    assert_eq!(layer(&m("nowhere")), None);
}
