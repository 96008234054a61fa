//! The crate's top-level modules form layers, and every import points down: a module uses
//! only modules of lower layers (comments and doc links aside). So the import graph has no
//! circles. `cargo test --release --test layering -- --nocapture` prints the graph.
//!
//! The layers, lowest first: the vocabulary (`types`, `batch`, `constants`), the consensus
//! core, storage (`log`, `snapshot`), the codecs (`net`), the IO-free shard engine, what a
//! running node needs beyond it (`config`, `error`), the glommio runtime (`shard`), the
//! embedding facade (`api`), the client, the metrics endpoint, the key-value service, the
//! checkers, the simulator and the fuzzing entry points, process spawning (`procs`), the
//! harnesses that run clusters (`loadgen`, `chaos`), and the command line (`cli`), which
//! nothing imports.

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
    &["config", "error"],
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
