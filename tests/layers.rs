//! The crate's layers, written down once, and a check that no module uses
//! one above its own (src/lib.rs: data flows one way), nor one source
//! another's code. It reads `src/`: every `crate::` and `super::` path in
//! code that is not under `#[cfg(test)]` is a use, including each path of a
//! nested use group.

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
    ("pools::status_json", 1),
    ("pools::status_client", 1),
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
    ("sources", 6),
    ("one_shot", 6),
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

/// Source text with comments and string and char literals blanked to
/// spaces (newlines kept), byte for byte, so that offsets in it are offsets
/// in the original and braces in a string or a comment are not counted.
fn mask(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            let end = text[i..].find('\n').map_or(b.len(), |n| i + n);
            blank(&mut out, i, end);
            i = end;
        } else if b[i..].starts_with(b"/*") {
            // Block comments nest.
            let (mut depth, mut j) = (0usize, i);
            while j < b.len() {
                if b[j..].starts_with(b"/*") {
                    depth += 1;
                    j += 2;
                } else if b[j..].starts_with(b"*/") {
                    depth -= 1;
                    j += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    j += 1;
                }
            }
            blank(&mut out, i, j);
            i = j;
        } else if b[i] == b'r'
            && (i == 0 || !ident(b[i - 1]) || (b[i - 1] == b'b' && (i < 2 || !ident(b[i - 2]))))
            && b[i + 1..].iter().take_while(|&&c| c == b'#').count() + i + 1 < b.len()
            && b[i + 1 + b[i + 1..].iter().take_while(|&&c| c == b'#').count()] == b'"'
        {
            // Raw string: r"..", r#".."#, br#".."#.
            let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
            let open = i + 1 + hashes + 1;
            let close = format!("\"{}", "#".repeat(hashes));
            let end = text[open..]
                .find(&close)
                .map_or(b.len(), |n| open + n + close.len());
            blank(&mut out, open, end - close.len().min(end - open));
            i = end;
        } else if b[i] == b'"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            blank(&mut out, i + 1, j.min(b.len()));
            i = j + 1;
        } else if b[i] == b'\'' {
            // A char literal ('x', '\n', '\u{..}', 'é') or a lifetime or
            // label ('a, 'static), which is left as it is.
            let end = if b.get(i + 1) == Some(&b'\\') {
                text[i + 2..].find('\'').map(|n| i + 2 + n)
            } else {
                let ch = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                (b.get(i + 1 + ch) == Some(&b'\'')).then_some(i + 1 + ch)
            };
            match end {
                Some(end) => {
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8: only whole literals become spaces")
}

/// Source text without its test code: every item under `#[cfg(test)]`
/// (a `mod tests { .. }`, a test-only `fn` in an `impl`, a `use`) is cut
/// out, wherever it sits, by matching its braces in the masked text.
fn non_test(text: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let code = mask(text);
    let mut out = String::new();
    let (mut kept_from, mut search) = (0, 0);
    while let Some(n) = code[search..].find(ATTR) {
        let at = search + n;
        let end = item_end(&code, at + ATTR.len());
        out.push_str(&text[kept_from..at]);
        kept_from = end;
        search = end;
    }
    out.push_str(&text[kept_from..]);
    out
}

/// Where the item that starts at `from` (after an attribute) ends in the
/// masked `code`: past its body's closing brace, or past its `;` for an
/// item without a body (`mod tests;`, `use ..;`, `const ..;`).
fn item_end(code: &str, from: usize) -> usize {
    let b = code.as_bytes();
    let mut i = from;
    // More attributes on the same item.
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if !b[i..].starts_with(b"#[") {
            break;
        }
        let mut depth = 0;
        while i < b.len() {
            match b[i] {
                b'[' => depth += 1,
                b']' => {
                    depth -= 1;
                    if depth == 0 {
                        i += 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
    }
    // `use`, `const`, `static`, `let` and `type` end at their `;`, even
    // when a brace group sits inside (`use a::{b, c};`).
    let head: Vec<&str> = code[i..].split_whitespace().take(2).collect();
    let to_semicolon = head
        .iter()
        .find(|w| !w.starts_with("pub"))
        .is_some_and(|w| matches!(*w, "use" | "const" | "static" | "let" | "type"));
    let mut depth = 0i32;
    while i < b.len() {
        match b[i] {
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' => depth -= 1,
            b'}' => {
                depth -= 1;
                if depth == 0 && !to_semicolon {
                    return i + 1;
                }
            }
            b';' if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    b.len()
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
            // Part of a longer identifier, e.g. `foo_crate::`.
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
            let mut paths = Vec::new();
            use_tree(rest, base, &mut paths);
            out.extend(paths.into_iter().filter(|p| !p.is_empty()));
        }
    }
    out
}

/// One use tree (the path text after `crate::`), with `prefix` already
/// resolved: pushes the module paths it names to `out` and returns how many
/// bytes it took. Groups nest: `{a::{X, b::Y}, c}` names `a`, `a::b` and
/// `c`. A path stops at an item (Uppercase), a function call, a macro or
/// `*`; a function is in its parent module, which is what layering needs.
fn use_tree(s: &str, mut segs: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let ws = |s: &str| s.len() - s.trim_start().len();
    let mut i = ws(s);
    if s[i..].starts_with('{') {
        i += 1;
        loop {
            i += ws(&s[i..]);
            if i >= s.len() {
                return i;
            }
            if s[i..].starts_with('}') {
                return i + 1;
            }
            i += use_tree(&s[i..], segs.clone(), out);
            // Past `as name` and anything else up to this entry's end.
            let mut depth = 0;
            while i < s.len() {
                match s.as_bytes()[i] {
                    b'{' => depth += 1,
                    b'}' if depth == 0 => break,
                    b'}' => depth -= 1,
                    b',' if depth == 0 => {
                        i += 1;
                        break;
                    }
                    _ => {}
                }
                i += 1;
            }
        }
    }
    loop {
        let rest = &s[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let seg = &rest[..end];
        if seg.is_empty() || seg == "self" || !is_module_name(seg) {
            out.push(segs);
            return i + end;
        }
        let after = &rest[end..];
        match after.strip_prefix("::") {
            Some(a) if a.starts_with('{') => {
                segs.push(seg.to_string());
                return i + end + 2 + use_tree(a, segs, out);
            }
            Some(_) => {
                segs.push(seg.to_string());
                i += end + 2;
            }
            // The last segment: a module (`use crate::state;`) or a
            // function or macro (`crate::state::lock(..)`).
            None => {
                if !after.starts_with('(') && !after.starts_with('!') {
                    segs.push(seg.to_string());
                }
                out.push(segs);
                return i + end;
            }
        }
    }
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

/// Every module under `src`, with what its non-test code uses.
fn modules(src: &Path) -> Vec<Module> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                // A test-only module directory (follow/tests/), declared as
                // `#[cfg(test)] mod tests;` in the module beside it.
                let test_only = p.file_name().is_some_and(|n| n == "tests")
                    && std::fs::read_to_string(dir.join("mod.rs"))
                        .is_ok_and(|m| m.contains("#[cfg(test)]\nmod tests;"));
                if !test_only {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(src).unwrap();
            if rel == Path::new("lib.rs") || rel == Path::new("main.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            let path = module_of(rel);
            let code = non_test(&text);
            // A cut that ran past its item's end would leave braces open.
            let depth = mask(&code).bytes().fold(0i64, |d, c| match c {
                b'{' => d + 1,
                b'}' => d - 1,
                _ => d,
            });
            assert_eq!(
                depth,
                0,
                "{}: unbalanced braces after cutting test code",
                rel.display()
            );
            let uses = uses(&code, &path);
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

/// The sources: the top-level modules of layer 3. Each reads its own part
/// of the world; one that needs another's code means that code is in the
/// wrong place (a shared parser belongs in a layer-1 module of its own,
/// like `gunicorn` or `upstream_failure`; shared state in `state`).
fn sources() -> Vec<&'static str> {
    LAYERS
        .iter()
        .filter(|(p, l)| *l == 3 && !p.contains("::"))
        .map(|(p, _)| *p)
        .collect()
}

/// Uses from one source's folder into another's that are allowed, each
/// with its reason. Empty: no source uses another today.
const CROSS_SOURCE_ALLOWED: &[(&str, &str, &str)] = &[
    // (module, the module it uses, why)
    (
        "pools::status_json",
        "nginx::access",
        "Puma's last_checkin is an ISO 8601 time, as nginx's $time_iso8601: one parser of both",
    ),
];

/// Everything wrong with the modules under `src`: a use of a layer above
/// the user's own, a use of a module no layer places, and a use from one
/// source into another that `CROSS_SOURCE_ALLOWED` does not list.
fn check(src: &Path) -> Vec<String> {
    let sources = sources();
    let mut bad = Vec::new();
    for m in modules(src) {
        let Some(own) = layer(&m.path) else {
            bad.push(format!("{}: no layer for {:?} in LAYERS", m.file, m.path));
            continue;
        };
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
            let (from, to) = (m.path[0].as_str(), u[0].as_str());
            let allowed = CROSS_SOURCE_ALLOWED
                .iter()
                .any(|(a, b, _)| *a == m.path.join("::") && *b == u.join("::"));
            if from != to && sources.contains(&from) && sources.contains(&to) && !allowed {
                bad.push(format!(
                    "{} (source {from}) uses crate::{}, from another source",
                    m.file,
                    u.join("::")
                ));
            }
        }
    }
    bad
}

fn src_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_uses_a_layer_above_its_own_or_another_source() {
    let bad = check(&src_dir());
    assert!(bad.is_empty(), "layering violations:\n{}", bad.join("\n"));
}

#[test]
fn no_circle_among_top_level_modules() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in modules(&src_dir()) {
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
    let text = "use crate::state::{PoolIndex, Published};\nuse super::{listen, proc::ProcId};\nuse super::super::cli;\nlet x = crate::metrics::family(1);\n$crate::metrics::Kind\nfoo_crate::x\nuse crate::{follow::{self, Follower as F}, rules::Judge, kernel::{kmsg::{Record}, oom}};";
    let got = uses(text, &m("pools::observe"));
    let want: BTreeSet<Vec<String>> = [
        m("state"),
        m("pools::listen"),
        m("pools::proc"),
        m("cli"),
        m("metrics"),
        m("follow"),
        m("rules"),
        m("kernel::kmsg"),
        m("kernel::oom"),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    assert_eq!(layer(&m("kernel::kmsg_reader")), Some(3));
    assert_eq!(layer(&m("kernel::kmsg")), Some(1));
    assert_eq!(layer(&m("nowhere")), None);
}

/// Test code is cut item by item, wherever it sits; braces in strings,
/// chars and comments do not end an item early.
#[test]
fn the_checker_cuts_test_items_only() {
    let text = r##"use crate::state;
#[cfg(test)]
mod tests;
impl A {
    #[cfg(test)]
    #[allow(dead_code)]
    fn only_in_tests() { let s = "}"; let c = '}'; /* } */ crate::cli::x(); }
    fn kept(&self) -> &'static str { crate::follow::f(); r#"}"# }
}
#[cfg(test)]
use crate::{server::X, web};
pub fn after() { crate::metrics::family(1); }
#[cfg(test)]
mod more { fn t() { crate::server::y(); } }
"##;
    let cut = non_test(text);
    let m = |s: &str| s.split("::").map(String::from).collect::<Vec<_>>();
    let got = uses(&cut, &m("pools"));
    let want: BTreeSet<Vec<String>> = [m("state"), m("follow"), m("metrics")]
        .into_iter()
        .collect();
    assert_eq!(got, want, "{cut}");
}

/// A temporary copy of src/ with `plant` appended to the file `file`.
fn planted(file: &str, plant: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                copy(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&src_dir(), dir.path());
    let target = dir.path().join(file);
    let mut text = std::fs::read_to_string(&target).unwrap();
    text.push_str(plant);
    std::fs::write(&target, text).unwrap();
    dir
}

/// The check fails on what it should: a planted use of an edge in the
/// follower's non-test code (below its `#[cfg(test)] mod tests;` and its
/// test-only methods, which once hid the rest of the file), written as a
/// nested use group, and a use of one source from another.
#[test]
fn the_check_fails_on_planted_imports() {
    let clean = planted("follow/mod.rs", "");
    assert_eq!(check(clean.path()), Vec::<String>::new());

    let up = planted(
        "follow/mod.rs",
        "\nuse crate::{config::Server, server::{self, Router}};\n",
    );
    let bad = check(up.path());
    assert_eq!(
        bad,
        ["follow/mod.rs (layer 1) uses crate::server (layer 6)"],
        "{bad:#?}"
    );

    let across = planted(
        "nginx/mod.rs",
        "\nfn planted() { crate::pools::observe::step(); }\n",
    );
    let bad = check(across.path());
    assert_eq!(
        bad,
        ["nginx/mod.rs (source nginx) uses crate::pools::observe, from another source"],
        "{bad:#?}"
    );
}
