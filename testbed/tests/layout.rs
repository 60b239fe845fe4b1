//! Keeps the testbed's layout honest: imports between its folders run one way (see the
//! `# Layout` section of `testbed/src/lib.rs`). Reads every source file under
//! `testbed/src` and fails, naming file, line and path, when a `crate::` path leaves what
//! the file's folder may use, when a file sits outside the known folders, or when a path
//! escapes its folder in a way the check cannot follow (`crate::{…}`, `super::super`).

use std::path::{Path, PathBuf};

/// What a file in each folder may name after `crate::` (a folder, or `folder::module`).
/// The file's own folder is always allowed.
fn allowed(folder: &str, file: &str) -> &'static [&'static str] {
    match (folder, file) {
        // The MGS frames are what the agent may use of `mgs`: they must not reach back.
        ("mgs", "frames.rs") => &["world"],
        ("world", _) => &[],
        ("instance", _) => &["world"],
        ("aws_api", _) => &["world", "instance"],
        ("agent", _) => &["world", "mgs::frames"],
        ("mgs", _) => &["world", "agent"],
        ("eice", _) => &["world", "aws_api"],
        // server.rs, its test files, tls.rs: everything but what runs on top of them.
        ("", _) => &[
            "world", "instance", "aws_api", "agent", "mgs", "eice", "server", "tls",
        ],
        _ => &[],
    }
}

const FOLDERS: &[&str] = &[
    "world", "instance", "aws_api", "agent", "mgs", "eice", "tools",
];
/// Top-level files; `lib.rs` and `main.rs` may import anything and are not checked.
const TOP: &[&str] = &[
    "lib.rs",
    "main.rs",
    "server.rs",
    "server_tests.rs",
    "server_eic_tests.rs",
    "serve_args.rs",
    "tls.rs",
];

/// Every way `text` (the file `file` in `folder`; "" for the top level) breaks the rules.
fn violations(folder: &str, file: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    if folder == "tools" || (folder.is_empty() && (file == "lib.rs" || file == "main.rs")) {
        return out;
    }
    let may = allowed(folder, file);
    for (n, line) in text.lines().enumerate() {
        let code = line.trim_start();
        // Doc and plain comments may name any module: they make no dependency.
        if code.starts_with("//") {
            continue;
        }
        if code.contains("super::super") {
            out.push(format!(
                "{file}:{}: `super::super` leaves the folder",
                n + 1
            ));
        }
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            if rest.starts_with('{') {
                out.push(format!(
                    "{file}:{}: `crate::{{…}}`: name each path in full",
                    n + 1
                ));
                continue;
            }
            let segs: Vec<&str> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .collect();
            let first = segs[0];
            let two = segs.get(1).map(|s| format!("{first}::{s}"));
            let ok = first == folder
                || may.contains(&first)
                || two.as_deref().is_some_and(|t| may.contains(&t));
            if !ok {
                let place = if folder.is_empty() {
                    "the top level"
                } else {
                    folder
                };
                out.push(format!(
                    "{file}:{}: {place} may not import `crate::{}` (allowed: {may:?})",
                    n + 1,
                    segs.join("::")
                ));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn imports_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(
        files.len() > 30,
        "found only {} files in {src:?}",
        files.len()
    );
    let mut bad = Vec::new();
    for path in &files {
        let rel = path.strip_prefix(&src).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let (folder, file) = match parts.as_slice() {
            [file] if TOP.contains(file) => ("", *file),
            [folder, file] if FOLDERS.contains(folder) => (*folder, *file),
            _ => {
                bad.push(format!(
                    "{}: not in a known folder ({FOLDERS:?}) nor a known top-level file \
                     ({TOP:?}); put it in the folder of its concern, or add it here",
                    rel.display()
                ));
                continue;
            }
        };
        let text = std::fs::read_to_string(path).unwrap();
        for v in violations(folder, file, &text) {
            bad.push(format!("{folder}/{v}"));
        }
    }
    assert!(bad.is_empty(), "testbed layout broken:\n{}", bad.join("\n"));
}

/// The check itself catches what it should, so a passing `imports_run_one_way` means
/// something.
#[test]
fn the_check_catches_bad_imports() {
    let bad = |folder, file, text| !violations(folder, file, text).is_empty();
    assert!(bad(
        "world",
        "config.rs",
        "use crate::agent::AgentSettings;"
    ));
    assert!(bad(
        "agent",
        "kms.rs",
        "crate::mgs::relay::channel_closed_frame(id, why)"
    ));
    assert!(bad("agent", "port.rs", "use crate::server::AppState;"));
    assert!(bad("agent", "port.rs", "use crate::tools::demo;"));
    assert!(bad("aws_api", "api.rs", "use crate::server::AppState;"));
    assert!(bad(
        "aws_api",
        "kms.rs",
        "use crate::agent::kms::Challenge;"
    ));
    assert!(bad("instance", "sshd.rs", "use crate::aws_api::eic;"));
    assert!(bad(
        "mgs",
        "frames.rs",
        "use crate::agent::payloads::PayloadType;"
    ));
    assert!(bad(
        "mgs",
        "relay.rs",
        "use crate::aws_api::account::Account;"
    ));
    assert!(bad("", "server.rs", "use crate::tools::delay_proxy;"));
    assert!(bad("world", "state.rs", "use crate::{config, agent};"));
    assert!(bad("agent", "shell.rs", "use super::super::server;"));

    let good = |folder, file, text| violations(folder, file, text).is_empty();
    assert!(good(
        "agent",
        "kms.rs",
        "crate::mgs::frames::channel_closed_frame(id, why)"
    ));
    assert!(good(
        "agent",
        "port.rs",
        "use crate::world::state::SessionRecord;"
    ));
    assert!(good(
        "mgs",
        "relay.rs",
        "use crate::agent::link::{self, InboxSender};"
    ));
    assert!(good(
        "aws_api",
        "eic.rs",
        "use crate::instance::eic_keys::KeyStore;"
    ));
    assert!(good(
        "world",
        "faults.rs",
        "//! see [`crate::agent::AgentSettings`]"
    ));
    assert!(good("tools", "demo.rs", "use crate::server::Testbed;"));
    assert!(good("", "server.rs", "use crate::mgs::relay::Hub;"));
}
