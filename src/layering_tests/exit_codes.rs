//! Only the error module and the CLI edge turn errors into exit codes: code below returns
//! its own error enums (grouped by whose fault a failure is) and decides by variant,
//! never by exit code. Non-test code outside `src/error/`, `src/main.rs` and `src/cli/`
//! that names an `ExitCode` variant or builds a `Failure` from a code fails the check.
//! Test code (`#[cfg(test)]` items and the module files declared under it) may inspect
//! codes. A file not converted yet would be listed below (none is); the list may only
//! shrink (the check fails on a line that names a file without violations, and on any
//! file not listed).

use std::collections::BTreeSet;

use super::size::{item_end, non_test_sources};

/// Files (path from the workspace root) that still build exit codes themselves. This
/// list may only shrink.
const NOT_YET_TYPED: &[&str] = &[];

/// What only the error module and the CLI edge may write. Split so this file does not
/// match itself.
const PATTERNS: [&str; 2] = [concat!("ExitCode", "::"), concat!("Failure", "::new")];

/// Whether `rel` (from the workspace root) may map errors to exit codes.
fn allowed(rel: &str) -> bool {
    rel.starts_with("src/error/")
        || rel == "src/error.rs"
        || rel == "src/main.rs"
        || rel.starts_with("src/cli/")
        || !rel.starts_with("src/")
}

/// `rel:line: pattern` for each pattern on a non-test line of `text`.
fn exit_code_uses(rel: &str, text: &str) -> Vec<String> {
    if allowed(rel) {
        return Vec::new();
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t == "#[cfg(test)]" {
            // Skip the attributes after it, then the item it guards.
            let mut j = i + 1;
            while j < lines.len() && lines[j].trim().starts_with("#[") {
                j += 1;
            }
            i = if j < lines.len() {
                item_end(&lines, j) + 1
            } else {
                j
            };
            continue;
        }
        if !t.starts_with("//") {
            for p in PATTERNS {
                if lines[i].contains(p) {
                    found.push(format!("{rel}:{}: {p}", i + 1));
                }
            }
        }
        i += 1;
    }
    found
}

/// Files with violations that are not listed, and listed files without violations.
fn against_list(found: &[String], listed: &[&str]) -> Vec<String> {
    let files: BTreeSet<&str> = found
        .iter()
        .map(|f| f.split(':').next().unwrap_or(f))
        .collect();
    let listed: BTreeSet<&str> = listed.iter().copied().collect();
    let mut problems: Vec<String> = found
        .iter()
        .filter(|f| !listed.contains(f.split(':').next().unwrap_or(f)))
        .map(|f| format!("builds an exit code below the CLI edge (return an error enum and map it in src/error/): {f}"))
        .collect();
    problems.extend(
        listed
            .difference(&files)
            .map(|f| format!("no longer builds exit codes: remove its line from the list: {f}")),
    );
    problems
}

#[test]
fn only_the_error_module_and_the_cli_edge_build_exit_codes() {
    let root = super::workspace_root();
    let sources = non_test_sources(&root);
    assert!(sources.len() > 100, "only {} source files", sources.len());
    let found: Vec<String> = sources
        .iter()
        .flat_map(|(rel, text)| exit_code_uses(rel, text))
        .collect();
    let problems = against_list(&found, NOT_YET_TYPED);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_exit_code_check_catches_a_code_below_the_edge_and_spares_the_edge_and_tests() {
    let bad = concat!(
        "fn f() -> Failure {\n    Failure::",
        "new(ExitCode::",
        "LocalIo, \"x\")\n}\n"
    );
    assert_eq!(exit_code_uses("src/ssh/remote.rs", bad).len(), 2);
    let decides = concat!("    Err(f) if f.code == ExitCode::", "Protocol => {}\n");
    assert_eq!(exit_code_uses("src/target.rs", decides).len(), 1);
    // The error module, main.rs and the CLI may; the testbed is not the client.
    for edge in [
        "src/error/mod.rs",
        "src/error/ssh.rs",
        "src/main.rs",
        "src/cli/resolve.rs",
        "testbed/src/lib.rs",
    ] {
        assert!(exit_code_uses(edge, bad).is_empty(), "{edge}");
    }
    // Test code may inspect codes; comments may name them.
    let in_tests = format!("#[cfg(test)]\nmod tests {{\n{bad}}}\n");
    assert!(exit_code_uses("src/ssh/remote.rs", &in_tests).is_empty());
    let test_fn = format!("#[cfg(test)]\n#[allow(dead_code)]\n{bad}");
    assert!(exit_code_uses("src/ssh/remote.rs", &test_fn).is_empty());
    let comment = concat!("/// exits with [`ExitCode::", "HostKey`]\nfn f() {}\n");
    assert!(exit_code_uses("src/ssh/remote.rs", comment).is_empty());
    // ... but code after a test item is checked again.
    let after = format!("{in_tests}{bad}");
    assert_eq!(exit_code_uses("src/ssh/remote.rs", &after).len(), 2);

    let found = exit_code_uses("src/ssh/remote.rs", bad);
    assert_eq!(against_list(&found, &[]).len(), 2);
    assert!(against_list(&found, &["src/ssh/remote.rs"]).is_empty());
    // A listed file with nothing left must leave the list.
    assert_eq!(
        against_list(&found, &["src/ssh/remote.rs", "src/keys.rs"]).len(),
        1
    );
}
