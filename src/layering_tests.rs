//! Keeps the direction of the layers honest (ARCHITECTURE.md, "Data flows one way"):
//! only `cli/`, `main.rs` and `config_file.rs` may know about parsed arguments, clap or
//! the config file; everything below takes the plain settings `cli::resolve` builds.

use std::path::{Path, PathBuf};

/// What only the CLI edge may mention. Split so this file does not match itself.
const FORBIDDEN: [&str; 5] = [
    concat!("crate::", "cli"),
    concat!("sallyport::", "cli"),
    concat!("clap", "::"),
    concat!("clap", "_complete"),
    concat!("Config", "File"),
];

/// Paths (relative to `src/`, with `/`) allowed to mention them.
fn exempt(rel: &str) -> bool {
    rel.starts_with("cli/") || rel == "main.rs" || rel == "config_file.rs"
}

/// `rel:line: pattern` for every forbidden mention in `text`.
fn violations(rel: &str, text: &str) -> Vec<String> {
    if exempt(rel) {
        return Vec::new();
    }
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for p in FORBIDDEN {
            if line.contains(p) {
                found.push(format!("src/{rel}:{}: {p}", n + 1));
            }
        }
    }
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_below_cli_reads_args_clap_or_the_config_file() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let checked = files
        .iter()
        .filter(|p| !p.starts_with(src.join("cli")))
        .count();
    assert!(
        checked > 40,
        "only {checked} files found under {}",
        src.display()
    );
    let mut all = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel == "layering_tests.rs" {
            continue; // its samples name the patterns on purpose
        }
        let text = std::fs::read_to_string(path).unwrap();
        all.extend(violations(&rel, &text));
    }
    assert!(
        all.is_empty(),
        "these layers below cli/ reach up to the command line; take a plain settings \
         type built by cli::resolve instead:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_check_catches_a_reach_up_and_spares_the_cli_edge() {
    let text =
        "use crate::target;\nuse crate::cli::args::GlobalArgs;\n#[derive(clap::ValueEnum)]\n";
    assert_eq!(
        violations("ssh/known_hosts.rs", text),
        [
            "src/ssh/known_hosts.rs:2: crate::cli",
            "src/ssh/known_hosts.rs:3: clap::"
        ]
    );
    assert_eq!(violations("target.rs", "fn f(_: &ConfigFile) {}").len(), 1);
    assert!(violations("cli/resolve.rs", text).is_empty());
    assert!(violations("main.rs", text).is_empty());
    assert!(violations("config_file.rs", "pub struct ConfigFile;").is_empty());
}
