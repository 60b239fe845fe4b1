//! Keeps the direction of the layers honest (docs/architecture.md, "Layers and data flow"):
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

// The repository explains itself (docs/architecture.md, "The repository explains itself"):
// what the code, tests, benchmarks, fuzz targets, README and manifests cite must be in the
// repository. The patterns are split so that neither this file nor the docs sweep matches
// them.

/// What must not be cited, and why; matched case-sensitively except where noted.
const OUTSIDE: [(&str, &str); 5] = [
    (concat!("../", "shared"), "a path outside the repository"),
    (concat!("/work/", "shared"), "a path outside the repository"),
    (concat!("PROTOCOL", ".md"), "cite docs/protocol.md instead"),
    (
        concat!("ARCHITECTURE", ".md"),
        "cite docs/architecture.md instead",
    ),
    (
        concat!("house", " rule"),
        "name the rule in docs/architecture.md instead",
    ),
];

/// Where the tree is checked, relative to the workspace root: directories (walked) and
/// single files. Captured frames are data, not prose.
const CHECKED_DIRS: [&str; 10] = [
    "src",
    "testbed/src",
    "testbed/tests",
    "tests",
    "benches",
    "fuzz/fuzz_targets",
    "contrib",
    ".ci",
    "interop",
    "docs",
];
const CHECKED_FILES: [&str; 5] = [
    "README.md",
    "Cargo.toml",
    "testbed/Cargo.toml",
    "testbed/instances.example.toml",
    "fuzz/Cargo.toml",
];
const SKIPPED_DIRS: [&str; 1] = ["tests/data"];

/// A number in our tracker: the word (either case, singular or plural), a space or a
/// hyphen, then digits. Upstream references keep their `#` (`aws/amazon-ssm-agent issue
/// #261`) and are sources, not trackers.
fn tracker_reference(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    let word = concat!("iss", "ue");
    lower.match_indices(word).any(|(at, _)| {
        let before = lower[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric()) {
            return false;
        }
        let rest = &lower[at + word.len()..];
        let rest = rest.strip_prefix('s').unwrap_or(rest);
        let rest = rest.strip_prefix([' ', '-']).unwrap_or("");
        rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

/// `rel:line: why` for every reference to something outside the repository in `text`.
fn outside_references(rel: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        for (pattern, why) in OUTSIDE {
            let hit = if pattern.starts_with("house") {
                line.to_ascii_lowercase().contains(pattern)
            } else {
                line.contains(pattern)
            };
            if hit {
                found.push(format!("{rel}:{}: {pattern}: {why}", n + 1));
            }
        }
        if tracker_reference(line) {
            found.push(format!(
                "{rel}:{}: a tracker number: describe the thing instead",
                n + 1
            ));
        }
    }
    found
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every text file under the checked directories (no `target/`), and the checked files.
fn checked_files(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            if SKIPPED_DIRS.contains(&rel.as_str()) || path.ends_with("target") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    for dir in CHECKED_DIRS {
        walk(root, &root.join(dir), &mut files);
    }
    files.extend(CHECKED_FILES.iter().map(|f| root.join(f)));
    files
}

/// `(file relative to the root, its text)` for every checked file that is text.
fn checked_texts(root: &Path) -> Vec<(String, String)> {
    let mut texts = Vec::new();
    for path in checked_files(root) {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Ok(text) = String::from_utf8(bytes) {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            texts.push((rel, text));
        }
    }
    texts
}

#[test]
fn nothing_cites_what_is_outside_the_repository() {
    let root = workspace_root();
    let texts = checked_texts(&root);
    assert!(texts.len() > 150, "only {} files found", texts.len());
    let all: Vec<String> = texts
        .iter()
        .flat_map(|(rel, text)| outside_references(rel, text))
        .collect();
    assert!(
        all.is_empty(),
        "these lines cite what a clone of the repository does not have; cite \
         docs/protocol.md §N or docs/architecture.md and the rule's name, or say what \
         the thing is:\n{}",
        all.join("\n")
    );
}

#[test]
fn the_outside_check_catches_each_kind_and_spares_our_own_docs() {
    let bad = [
        concat!("//! see ../", "shared/peers/README.md"),
        concat!("# default: /work/", "shared/peers/relay.py"),
        concat!("/// the agent acks it (PROTOCOL", ".md §6.2)."),
        concat!("//! Bounds (House", " rule 5):"),
        concat!("// (ARCHITECTURE", ".md, layering)"),
        concat!("# The node picker (iss", "ue 14): FuzzySelect"),
        concat!("//! Striped copies (Iss", "ues 13): several sessions"),
    ];
    for (n, line) in bad.iter().enumerate() {
        assert_eq!(
            outside_references("src/x.rs", line).len(),
            1,
            "sample {n} not caught: {line}"
        );
    }
    let good = "//! the agent acks it (docs/protocol.md §6.2).\n\
                //! Bounds (docs/architecture.md, \"Bounded by construction\"):\n\
                //! field reports (aws/amazon-ssm-agent issue #261; plugin #145)\n\
                //! a reissue 2; tissue 5; issues: none\n\
                let up = Path::new(\"../d\");\n";
    assert_eq!(outside_references("src/x.rs", good), Vec::<String>::new());
    assert_eq!(
        outside_references("benches/a.sh", &format!("ok\n{}\n", bad[5])),
        ["benches/a.sh:2: a tracker number: describe the thing instead"]
    );
}

/// Section numbers cited right after each `docs/protocol.md` in `text`: `§2.6`,
/// `§3.5, §3.8`, `§5.2/§5.4`, `§2.1, §4 and §7.4`, also across a line break in a comment.
fn cited_sections(text: &str) -> Vec<String> {
    const DOC: &str = "docs/protocol.md";
    let mut cited = Vec::new();
    for (at, _) in text.match_indices(DOC) {
        let mut rest = &text[at + DOC.len()..];
        loop {
            // Separators, including a line break and the next line's comment marker.
            rest = rest.trim_start_matches(|c: char| {
                c.is_whitespace() || matches!(c, ',' | '/' | '!' | '#' | '(')
            });
            if let Some(after_and) = rest.strip_prefix("and ") {
                rest = after_and;
                continue;
            }
            let Some(after) = rest.strip_prefix('§') else {
                break;
            };
            let end = after
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(after.len());
            let number = after[..end].trim_end_matches('.');
            if number.is_empty() {
                break;
            }
            cited.push(number.to_owned());
            rest = &after[end..];
        }
    }
    cited
}

/// Section numbers of the headings in docs/protocol.md (`## 6. …` -> `6`, `### 6.4 …`).
fn protocol_sections(doc: &str) -> Vec<String> {
    doc.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').split_whitespace().next())
        .map(|n| n.trim_end_matches('.').to_owned())
        .filter(|n| n.starts_with(|c: char| c.is_ascii_digit()))
        .collect()
}

#[test]
fn every_cited_protocol_section_is_a_heading() {
    let root = workspace_root();
    let doc = std::fs::read_to_string(root.join("docs/protocol.md")).unwrap();
    let sections = protocol_sections(&doc);
    let mut texts = checked_texts(&root);
    let arch = std::fs::read_to_string(root.join("docs/architecture.md")).unwrap();
    texts.push(("docs/architecture.md".to_owned(), arch));
    let mut cited = 0;
    let mut missing = Vec::new();
    for (rel, text) in &texts {
        for n in cited_sections(text) {
            cited += 1;
            if !sections.contains(&n) {
                missing.push(format!("{rel}: §{n}"));
            }
        }
    }
    assert!(
        cited > 90,
        "only {cited} citations of docs/protocol.md found"
    );
    assert!(
        missing.is_empty(),
        "docs/protocol.md has no heading for these cited sections:\n{}",
        missing.join("\n")
    );
}

#[test]
fn the_section_check_reads_citation_lists_and_headings() {
    // Split where a line would cite a section that does not exist: the tree check reads
    // this file too.
    let text = concat!(
        "//! (docs/protocol.md §2.1, §3.4, §4, §5.3 and §7.4 give them)\n",
        "/// (docs/protocol.md §3.5/§3.8/§6) and docs/protocol.md\n",
        "//! §13.6: a guess. See docs/protocol.md for more; §9 is not a citation.\n",
        "// docs/protocol.md §3-5 and docs/protocol",
        ".md §99.\n"
    );
    assert_eq!(
        cited_sections(text),
        [
            "2.1", "3.4", "4", "5.3", "7.4", "3.5", "3.8", "6", "13.6", "3", "99"
        ]
    );
    let doc = "# Title\n## 0. Sources\n### 2.6 Signed\n## 13. Open\n### 13.6 Limits\n";
    assert_eq!(protocol_sections(doc), ["0", "2.6", "13", "13.6"]);
}

/// Types whose `static` would be process-wide mutable state. Split so this file does not
/// match itself.
const SHARED_STATE: [&str; 9] = [
    concat!("Mut", "ex"),
    concat!("RwL", "ock"),
    concat!("Ato", "mic"),
    concat!("Once", "Lock"),
    concat!("Once", "Cell"),
    concat!("Lazy", "Lock"),
    concat!("Ref", "Cell"),
    concat!("Cell", "<"),
    concat!("thread", "_local!"),
];

/// `src/rel:line` for every `static` (or `thread_local!`) in `text` that holds mutable
/// state. What a command needs across layers is built by its entry point and passed down
/// (`aws::AwsConfig`, `aws::Ssm`), so two configurations in one process (tests, a library
/// user) never see each other's.
fn process_wide_state(rel: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let is_static = code.starts_with(concat!("static", " "))
            || code.starts_with(concat!("pub ", "static "))
            || code.starts_with(concat!("pub(crate) ", "static "))
            || code.starts_with(concat!("pub(super) ", "static "));
        let mutable = code.contains(concat!("static ", "mut "))
            || SHARED_STATE.iter().any(|t| code.contains(t));
        if (is_static && mutable) || code.starts_with(concat!("thread", "_local!")) {
            found.push(format!("src/{rel}:{}", n + 1));
        }
    }
    found
}

#[test]
fn no_process_wide_mutable_state_outside_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut found = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if rel.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        // Unit tests at the end of a file (`mod tests`) may keep what they like.
        let body = text.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(process_wide_state(&rel, body));
    }
    assert!(
        found.is_empty(),
        "process-wide mutable state (pass it down from the command instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_state_check_catches_a_static_holding_a_lock_and_spares_constants() {
    let bad = [
        concat!(
            "static CURRENT: Mut",
            "ex<Option<Network>> = Mut",
            "ex::new(None);"
        ),
        concat!(
            "pub(crate) static N: Ato",
            "micU64 = Ato",
            "micU64::new(0);"
        ),
        concat!("static ", "mut COUNT: u32 = 0;"),
        concat!(
            "pub static CACHE: Once",
            "Lock<String> = Once",
            "Lock::new();"
        ),
        concat!("thread", "_local! { static X: u8 = 0 }"),
    ];
    for line in bad {
        assert_eq!(process_wide_state("x.rs", line).len(), 1, "{line}");
    }
    let good = [
        "static NAMES: [&str; 2] = [\"a\", \"b\"];",
        "const LIMIT: usize = 4;",
        concat!("// static OLD: Mut", "ex<u8> was removed"),
        concat!("let m = std::sync::Mut", "ex::new(0);"),
    ];
    for line in good {
        assert!(process_wide_state("x.rs", line).is_empty(), "{line}");
    }
}

/// `src/rel:line` for every mention of the `ssh` module in a file under `session/`: the
/// embedded SSH client runs on top of session streams, so the session layer must not
/// reach up into it (what both need, like key material, lives below both: `keys.rs`).
fn session_reaches_ssh(rel: &str, text: &str) -> Vec<String> {
    if !rel.starts_with("session/") {
        return Vec::new();
    }
    let patterns = [concat!("crate::", "ssh"), concat!("sallyport::", "ssh")];
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if patterns.iter().any(|p| {
            line.match_indices(p).any(|(i, _)| {
                // `crate::ssh` itself, not `crate::ssh_config` and the like.
                !line[i + p.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            })
        }) {
            found.push(format!("src/{rel}:{}", n + 1));
        }
    }
    found
}

#[test]
fn the_session_layer_never_imports_the_ssh_client() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("session"), &mut files);
    assert!(
        files.len() > 5,
        "only {} files under src/session",
        files.len()
    );
    let mut found = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(&src)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        found.extend(session_reaches_ssh(
            &rel,
            &std::fs::read_to_string(path).unwrap(),
        ));
    }
    assert!(
        found.is_empty(),
        "session/ imports ssh/ (move what both need below both):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_session_check_catches_a_reach_up_and_spares_other_names() {
    let bad = concat!("        let key = crate::", "ssh::keys::ephemeral()?;");
    assert_eq!(session_reaches_ssh("session/proxy.rs", bad).len(), 1);
    let bad_use = concat!("use crate::", "ssh;");
    assert_eq!(
        session_reaches_ssh("session/forward/mod.rs", bad_use).len(),
        1
    );
    // Outside session/, and names that only start with `ssh`, are fine.
    assert!(session_reaches_ssh("commands/scp.rs", bad).is_empty());
    let other = concat!("use crate::", "ssh_config::Block;");
    assert!(session_reaches_ssh("session/proxy.rs", other).is_empty());
    assert!(session_reaches_ssh("session/proxy.rs", "use crate::keys;").is_empty());
}

mod exit_codes;
mod size;
