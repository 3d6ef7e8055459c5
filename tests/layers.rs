//! The import graph between hsmux's top-level modules runs one way (docs/ARCHITECTURE.md):
//! a module may name only modules of a lower layer, nothing names `ffi`, and so there is
//! no cycle. This test reads `src/` as text (like `shared/tools/layers.py`: every
//! `crate::X` path outside comments and unit tests) and fails on the first arrow that runs
//! the wrong way, naming the file, so a new cycle cannot land unnoticed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may import only lower layers. Modules of
/// one layer are independent of each other.
const LAYERS: &[(&str, u32)] = &[
    ("config", 0),
    ("logging", 1),
    ("core", 2),
    ("backend", 3),
    ("metrics", 3),
    ("audit", 3),
    ("policy", 3),
    ("replica", 4),
    ("proxy", 4),
    ("setup", 5),
    ("fuzzing", 6),
    ("ffi", 7),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_dir() {
            // Unit-test folders (e.g. backend/soft/crypto/tests/) may reach anywhere.
            if p.file_name().is_some_and(|n| n != "tests") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs")
            && !p.to_string_lossy().ends_with("tests.rs")
        {
            out.push(p);
        }
    }
}

/// The text without `//` comments and without a trailing `#[cfg(test)] mod .. {` block.
fn code_of(text: &str) -> String {
    let mut code: String = text
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(i) = code.find("#[cfg(test)]") {
        let rest = code[i + "#[cfg(test)]".len()..].trim_start();
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        if rest.starts_with("mod ") && rest.split('\n').next().is_some_and(|l| l.contains('{')) {
            code.truncate(i);
        }
    }
    code
}

/// The top-level modules a source text names through `crate::X` or `crate::{X, ..}`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        if i > 0 {
            let before = code[..i].chars().next_back().unwrap_or(' ');
            if before.is_alphanumeric() || before == '_' || before == '$' {
                continue; // `$crate::` in a macro, or a longer identifier
            }
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[test]
fn imports_run_from_higher_layers_to_lower_ones_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong: Vec<String> = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        if matches!(first.as_ref(), "lib.rs" | "bin" | "main.rs") {
            continue; // the crate root and the CLI stand above every layer
        }
        let top = first.trim_end_matches(".rs").to_string();
        let Some(own) = layer(&top) else {
            wrong.push(format!(
                "{}: top-level module `{top}` has no layer in tests/layers.rs (and docs/ARCHITECTURE.md)",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(f).unwrap();
        for target in imports(&code_of(&text)) {
            if target == top || matches!(target.as_str(), "Error" | "Result") {
                continue; // the crate root's re-exports of core::error
            }
            graph.entry(top.clone()).or_default().insert(target.clone());
            match layer(&target) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{}: `{top}` (layer {own}) imports `{target}` (layer {l})",
                    rel.display()
                )),
                None => wrong.push(format!(
                    "{}: `{top}` imports `crate::{target}`, which has no layer",
                    rel.display()
                )),
            }
        }
    }
    let shown: Vec<String> = graph
        .iter()
        .map(|(m, t)| {
            format!(
                "{m} -> {}",
                t.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n  {}\ngraph:\n  {}",
        wrong.join("\n  "),
        shown.join("\n  ")
    );
    // The graph the test saw is not empty (a broken scan would pass everything).
    assert!(
        graph.get("ffi").is_some_and(|t| t.contains("core")),
        "{shown:?}"
    );
    assert!(
        graph.get("backend").is_some_and(|t| t.contains("core")),
        "{shown:?}"
    );
}

#[test]
fn the_scan_finds_paths_groups_and_skips_comments_and_unit_tests() {
    let code = code_of(
        "use crate::core::x; // crate::ffi in a comment\nuse crate::{config, metrics::M};\n\
         $crate::ffi::guard();\n#[cfg(test)]\nmod tests {\n use crate::setup;\n}\n",
    );
    let found: Vec<String> = imports(&code).into_iter().collect();
    assert_eq!(found, ["config", "core", "metrics"]);
}
