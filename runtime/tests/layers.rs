//! Imports run one way. Each crate lists its top-level modules bottom to
//! top; a module may use only modules listed before it (or its own
//! submodules), and no two modules anywhere import each other, directly or
//! around a longer circle. A new import that breaks this fails here, naming
//! the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The runtime, bottom to top (see its lib.rs).
const RUNTIME: &[&str] = &[
    "util", "error", "config", "metrics", "input", "state", "batch", "plugin", "engine", "registry", "score", "fuzzing",
];

/// The `vigil` crate, bottom to top.
const VIGIL: &[&str] = &["plugins", "service", "cluster", "commands", "cli"];

/// Each source file's module path (`engine::store`) and the `crate::`
/// paths it names outside its tests.
fn modules(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel: PathBuf = p.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Tests may reach anywhere.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            let name = parts.join("::");
            let mut paths = crate_paths(code);
            // `super::x` names the parent's `x`; `child::x` in a module
            // that declares `mod child` names the child's.
            let parent = parts[..parts.len().saturating_sub(1)].join("::");
            for p in relative_paths(code, "super::") {
                paths.insert(if parent.is_empty() { p } else { format!("{parent}::{p}") });
            }
            for child in declared_children(code) {
                for p in relative_paths(code, &format!("{child}::")) {
                    let full = if name.is_empty() { format!("{child}::{p}") } else { format!("{name}::{child}::{p}") };
                    paths.insert(full);
                }
            }
            out.insert(name, paths);
        }
    }
    out
}

/// `crate::a::b::Item` and `use crate::a::{b, c}` -> module paths `a::b`,
/// `a::c` (whatever follows `crate::`, item names included; `owner` below
/// finds the module a path lands in).
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        let prefix = &rest[..end];
        if rest[end..].starts_with('{') {
            let group = &rest[end + 1..rest[end..].find('}').map_or(rest.len(), |j| end + j)];
            for item in group.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                paths.insert(format!("{prefix}{item}"));
            }
        } else {
            paths.insert(prefix.trim_end_matches(':').to_string());
        }
    }
    paths
}

/// What follows each `prefix` not preceded by a path character.
fn relative_paths(code: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices(prefix) {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &code[i + prefix.len()..];
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
        out.insert(rest[..end].trim_end_matches(':').to_string());
    }
    out
}

/// The `mod NAME;` declarations of a file.
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ").or_else(|| l.trim().strip_prefix("mod ")))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_string)
        .collect()
}

/// The longest known module that `path` starts with.
fn owner<'a>(path: &str, mods: &'a BTreeMap<String, BTreeSet<String>>) -> Option<&'a str> {
    let parts: Vec<&str> = path.split("::").collect();
    (1..=parts.len()).rev().map(|n| parts[..n].join("::")).find_map(|p| mods.get_key_value(&p).map(|(k, _)| k.as_str()))
}

/// Every violation: an import of a higher layer, or a circle.
fn violations(src: &Path, layers: &[&str]) -> Vec<String> {
    let mods = modules(src);
    let layer = |m: &str| layers.iter().position(|l| *l == m.split("::").next().unwrap());
    let mut bad = Vec::new();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (m, paths) in &mods {
        let Some(lm) = layer(m) else {
            bad.push(format!("module {m} is in no layer: add it to the list"));
            continue;
        };
        for p in paths {
            let Some(to) = owner(p, &mods) else { continue };
            if to == m {
                continue;
            }
            let lt = layer(to).unwrap_or(usize::MAX);
            if lt > lm {
                bad.push(format!("{m} imports crate::{p}: {to} is a higher layer"));
            }
            edges.entry(m.as_str()).or_default().insert(to);
        }
    }
    // Circles: a depth-first search for a back edge.
    fn visit<'a>(
        n: &'a str,
        edges: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        on: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        bad: &mut Vec<String>,
    ) {
        if done.contains(n) {
            return;
        }
        if let Some(i) = on.iter().position(|x| *x == n) {
            bad.push(format!("import circle: {} -> {n}", on[i..].join(" -> ")));
            return;
        }
        on.push(n);
        for next in edges.get(n).into_iter().flatten() {
            visit(next, edges, on, done, bad);
        }
        on.pop();
        done.insert(n);
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        visit(n, &edges, &mut Vec::new(), &mut done, &mut bad);
    }
    bad
}

fn check(crate_src: &str, layers: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(crate_src);
    let bad = violations(&src, layers);
    assert!(bad.is_empty(), "imports of {crate_src} do not run one way:\n{}", bad.join("\n"));
}

#[test]
fn runtime_imports_run_one_way() {
    check("src", RUNTIME);
}

#[test]
fn vigil_imports_run_one_way() {
    check("../host/src", VIGIL);
}

#[test]
fn the_check_sees_a_circle_and_an_upward_import() {
    let dir = tempfile::tempdir().unwrap();
    let write = |p: &str, s: &str| {
        let f = dir.path().join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, s).unwrap();
    };
    write("low.rs", "use crate::high::Thing;\n");
    write("high/mod.rs", "pub mod a;\npub mod b;\n");
    write("high/a.rs", "use crate::high::b::B;\n");
    write("high/b.rs", "use crate::high::a::A;\n#[cfg(test)]\nmod tests { use crate::low::x; }\n");
    let bad = violations(dir.path(), &["low", "high"]);
    assert!(bad.iter().any(|b| b.contains("low imports crate::high::Thing")), "{bad:?}");
    assert!(
        bad.iter().any(|b| b.contains("import circle") && b.contains("high::a") && b.contains("high::b")),
        "{bad:?}"
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
}
