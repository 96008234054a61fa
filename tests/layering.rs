//! The crate's top-level modules form layers, and every import points down: a module uses
//! only modules of lower layers (comments and doc links aside). So the import graph has no
//! circles. `cargo test --release --test layering -- --nocapture` prints the graph.
//!
//! The layers, lowest first: the vocabulary (`types`, `batch`, `constants`), the consensus
//! core, storage (`log`, `snapshot`), the codecs (`net`), the IO-free shard engine, what a
//! running node needs beyond it (`config`, then `error`, whose node errors carry configuration
//! errors), the glommio runtime (`shard`), the
//! embedding facade (`api`), the client, the metrics endpoint, the key-value service, the
//! checkers, the simulator and the fuzzing entry points, process spawning (`procs`), the
//! harnesses that run clusters (`loadgen`, `chaos`), and the command line (`cli`), which
//! nothing imports.
//!
//! Cargo features decide which modules are compiled (`src/lib.rs` gates them); a module of the
//! lean library (no features) never imports a feature-only module, and a module behind one
//! feature never imports one behind a feature it does not imply.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

const LAYERS: &[&[&str]] = &[
    &["types"],
    &["batch"],
    &["constants", "log_limit"],
    &["core"],
    &["log"],
    &["snapshot"],
    &["net"],
    &["tls"],
    &["engine"],
    &["config"],
    &["error"],
    &["shard"],
    &["api"],
    &["client"],
    &["metrics"],
    &["kv"],
    &["check"],
    &["sim", "fuzzing"],
    &["procs"],
    &["loadgen", "chaos"],
    &["cli"],
];

/// The features that gate modules, each implying the ones before it (`Cargo.toml`).
const FEATURES: &[&str] = &["metrics", "kv", "internals", "cli"];

/// Top-level module → the feature `src/lib.rs` compiles it under (`None`: always), read from
/// the `#[cfg(feature = "...")]` attributes above each `mod` declaration.
fn module_features() -> BTreeMap<String, Option<String>> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let text = fs::read_to_string(lib).expect("readable src/lib.rs");
    let mut features = BTreeMap::new();
    let mut gate = None;
    for line in text.lines().map(|line| code_of(line).trim()) {
        if let Some(rest) = line.strip_prefix("#[cfg(feature = \"") {
            gate = rest.strip_suffix("\")]").map(str::to_string);
        } else if let Some(name) = declared_module(line) {
            features.insert(name, gate.take());
        } else if !line.is_empty() && !line.starts_with("#[") {
            gate = None;
        }
    }
    features
}

/// The module a line of `src/lib.rs` declares: `pub mod x;`, `mod x;` or `internal_layer!(x);`.
fn declared_module(line: &str) -> Option<String> {
    let name = line
        .strip_prefix("internal_layer!(")
        .and_then(|rest| rest.strip_suffix(");"))
        .or_else(|| {
            let rest = line.strip_prefix("pub ").unwrap_or(line);
            let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
            rest.strip_prefix("mod ")?.strip_suffix(';')
        })?;
    name.chars()
        .all(|c| c.is_alphanumeric() || c == '_')
        .then(|| name.to_string())
}

/// 0 for the lean library, then the position of the feature in [`FEATURES`], plus one.
fn feature_rank(feature: &Option<String>) -> usize {
    match feature {
        None => 0,
        Some(name) => {
            1 + FEATURES
                .iter()
                .position(|known| known == name)
                .unwrap_or_else(|| panic!("feature {name} is not in FEATURES"))
        }
    }
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The line without its comment (a `//` outside a string literal).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    for (at, ch) in line.char_indices() {
        if ch == '"' {
            in_string = !in_string;
        } else if !in_string && line[at..].starts_with("//") {
            return &line[..at];
        }
    }
    line
}

/// The top-level modules `code` names through `crate::`, grouped imports included.
fn modules_named(code: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a::X, b::{Y, Z}}`: the first segment of each item at depth one.
            let mut depth = 1;
            let mut item_start = true;
            for (at, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => item_start = true,
                    c if item_start && depth == 1 && (c.is_alphanumeric() || c == '_') => {
                        item_start = false;
                        let name: String = group[at..]
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        named.insert(name);
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            named.insert(name);
        }
    }
    named
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Module → modules it imports → files that do.
fn import_graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative.components().next().expect("non-empty path");
        let module = first
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable source file");
        let code: String = text.lines().map(code_of).collect::<Vec<_>>().join("\n");
        for named in modules_named(&code) {
            if named != module && named != "self" {
                graph
                    .entry(module.clone())
                    .or_default()
                    .entry(named)
                    .or_default()
                    .insert(relative.display().to_string());
            }
        }
    }
    graph
}

#[test]
fn every_import_between_top_level_modules_points_down() {
    let graph = import_graph();
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        let Some(layer) = layer_of(module) else {
            upward.push(format!("{module} is in no layer: add it to LAYERS"));
            continue;
        };
        println!(
            "{module} -> {}",
            imports.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        for (imported, files) in imports {
            match layer_of(imported) {
                Some(below) if below < layer => {}
                _ => upward.push(format!("{module} imports {imported} in {files:?}")),
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that do not point down:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_module_imports_one_behind_a_feature_it_does_not_have() {
    let features = module_features();
    let graph = import_graph();
    let mut unguarded = Vec::new();
    for (module, imports) in &graph {
        let Some(own) = features.get(module) else {
            unguarded.push(format!("{module} is not declared in src/lib.rs"));
            continue;
        };
        println!("{module}: {}", own.as_deref().unwrap_or("lean"));
        for (imported, files) in imports {
            match features.get(imported) {
                Some(theirs) if feature_rank(theirs) <= feature_rank(own) => {}
                Some(theirs) => unguarded.push(format!(
                    "{module} ({}) imports {imported} ({}) in {files:?}",
                    own.as_deref().unwrap_or("lean"),
                    theirs.as_deref().unwrap_or("lean"),
                )),
                None => unguarded.push(format!("{imported} is not declared in src/lib.rs")),
            }
        }
    }
    assert!(
        unguarded.is_empty(),
        "imports a build without the feature cannot compile:\n{}",
        unguarded.join("\n")
    );
}

#[test]
fn lib_rs_gates_the_harnesses_and_keeps_the_engine_lean() {
    let features = module_features();
    let feature = |module: &str| features.get(module).cloned().flatten();
    for lean in [
        "types", "core", "log", "engine", "shard", "api", "client", "tls",
    ] {
        assert_eq!(feature(lean), None, "{lean}");
    }
    assert_eq!(feature("metrics").as_deref(), Some("metrics"));
    assert_eq!(feature("kv").as_deref(), Some("kv"));
    assert_eq!(feature("sim").as_deref(), Some("internals"));
    assert_eq!(feature("cli").as_deref(), Some("cli"));
}

#[test]
fn the_parser_sees_grouped_imports_and_skips_comments() {
    let code: String = [
        "use crate::{core::Raft, log::{LogStore, MemLog}};",
        "// use crate::cli::Cli;",
        "let x = \"// not a comment\"; use crate::net::Frame;",
    ]
    .iter()
    .map(|line| code_of(line))
    .collect::<Vec<_>>()
    .join("\n");
    let named: Vec<String> = modules_named(&code).into_iter().collect();
    assert_eq!(named, ["core", "log", "net"]);
}
