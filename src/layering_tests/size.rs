//! No non-test function over 100 lines and no non-test file over 700 lines, in the client
//! (`src/`) and the testbed (`testbed/src/`). Test code is what `#[cfg(test)]` guards:
//! an inline module or item, or a module file declared under it. Today's offenders are
//! listed below; each list may only shrink: split the function or file, then remove its
//! line (the check fails on a line that no longer names an offender, and on any offender
//! not listed). Never add a line.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const MAX_FUNCTION_LINES: usize = 100;
const MAX_FILE_LINES: usize = 700;

/// Functions over the limit today, as `path: name` (path from the workspace root).
/// This list may only shrink.
const LONG_FUNCTIONS: &[&str] = &[];

/// Files over the limit today (path from the workspace root). This list may only shrink.
const LONG_FILES: &[&str] = &[];

/// Where the checked sources are, from the workspace root.
const ROOTS: [&str; 2] = ["src", "testbed/src"];

/// The item an outer line declares, if it is a function: its name.
fn fn_name(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
        "extern \"C\" ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let end = rest.find(['(', '<']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The line index that ends the item starting at `start` (rustfmt's layout: the first
/// later line at the item's indentation that closes it), or `start` for a one-line item
/// or a declaration without a body.
pub(super) fn item_end(lines: &[&str], start: usize) -> usize {
    let first = lines[start].trim_end();
    if first.ends_with(';') || first.ends_with('}') {
        return start;
    }
    let depth = indent(lines[start]);
    for (i, line) in lines.iter().enumerate().skip(start + 1) {
        let t = line.trim_end();
        if indent(line) == depth && t.trim_start().starts_with('}') {
            return i;
        }
        if indent(line) == depth && t.ends_with(';') && !t.trim_start().starts_with("//") {
            // A signature over several lines that ends without a body (a trait's).
            return i;
        }
    }
    lines.len() - 1
}

/// Functions longer than [`MAX_FUNCTION_LINES`] in one file's text, outside
/// `#[cfg(test)]` items, as `(name, lines)`.
fn long_functions(text: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut skip_next_item = false;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim();
        if t == "#[cfg(test)]" {
            skip_next_item = true;
            i += 1;
            continue;
        }
        if t.is_empty() || t.starts_with("#[") || t.starts_with("//") {
            i += 1;
            continue;
        }
        let end = item_end(&lines, i);
        if skip_next_item {
            skip_next_item = false;
            i = end + 1;
            continue;
        }
        if let Some(name) = fn_name(lines[i]) {
            let n = end - i + 1;
            if n > MAX_FUNCTION_LINES {
                found.push((name.to_owned(), n));
            }
            i = end + 1;
        } else {
            // Into impl blocks, modules and traits: their functions are items too.
            i += 1;
        }
    }
    found
}

/// Module files declared under `#[cfg(test)]` in `path`'s text (`mod x;`, with or
/// without `#[path = "…"]`).
fn test_module_files(path: &Path, text: &str) -> Vec<PathBuf> {
    let dir = path.parent().unwrap();
    let stem = path.file_stem().unwrap().to_string_lossy();
    let own_dir = if ["mod", "lib", "main"].contains(&stem.as_ref()) {
        dir.to_path_buf()
    } else {
        dir.join(stem.as_ref())
    };
    let mut out = Vec::new();
    let mut under_cfg_test = false;
    let mut path_attr: Option<String> = None;
    for line in text.lines() {
        let t = line.trim();
        if t == "#[cfg(test)]" {
            under_cfg_test = true;
            continue;
        }
        if let Some(p) = t.strip_prefix("#[path = \"") {
            path_attr = p.strip_suffix("\"]").map(str::to_owned);
            continue;
        }
        if t.starts_with("#[") {
            continue;
        }
        let decl = t.strip_prefix("pub ").unwrap_or(t);
        if under_cfg_test
            && let Some(name) = decl.strip_prefix("mod ").and_then(|m| m.strip_suffix(';'))
        {
            match &path_attr {
                Some(p) => out.push(dir.join(p)),
                None => {
                    out.push(own_dir.join(format!("{name}.rs")));
                    out.push(own_dir.join(name).join("mod.rs"));
                }
            }
        }
        under_cfg_test = false;
        path_attr = None;
    }
    out
}

fn rust_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files_under(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Every non-test source file under [`ROOTS`], as `(path from the root, text)`.
pub(super) fn non_test_sources(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for dir in ROOTS {
        rust_files_under(&root.join(dir), &mut files);
    }
    let texts: Vec<(PathBuf, String)> = files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, text)
        })
        .collect();
    let mut tests = BTreeSet::new();
    for (path, text) in &texts {
        tests.extend(test_module_files(path, text));
    }
    // A test module's own submodules are test code too.
    texts
        .into_iter()
        .filter(|(p, _)| {
            !tests
                .iter()
                .any(|t| p == t || p.starts_with(t.with_extension("")))
        })
        .map(|(p, text)| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, text)
        })
        .collect()
}

/// `(functions, files)` over the limits in `sources`, as the allowlists spell them.
fn offenders(sources: &[(String, String)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut functions = BTreeSet::new();
    let mut files = BTreeSet::new();
    for (rel, text) in sources {
        for (name, _) in long_functions(text) {
            functions.insert(format!("{rel}: {name}"));
        }
        if text.lines().count() > MAX_FILE_LINES {
            files.insert(rel.clone());
        }
    }
    (functions, files)
}

/// What is wrong with `found` against `allowed`: offenders not listed, and listed lines
/// that are no longer offenders.
fn against(kind: &str, found: &BTreeSet<String>, allowed: &[&str]) -> Vec<String> {
    let allowed: BTreeSet<String> = allowed.iter().map(|s| (*s).to_owned()).collect();
    let mut problems: Vec<String> = found
        .difference(&allowed)
        .map(|f| format!("{kind} too long (split it): {f}"))
        .collect();
    problems.extend(
        allowed
            .difference(found)
            .map(|f| format!("{kind} no longer too long: remove its allowlist line: {f}")),
    );
    problems
}

#[test]
fn no_function_over_100_lines_and_no_file_over_700_beyond_the_shrinking_allowlist() {
    let root = super::workspace_root();
    let sources = non_test_sources(&root);
    assert!(
        sources.len() > 100,
        "only {} source files found",
        sources.len()
    );
    let (functions, files) = offenders(&sources);
    let mut problems = against("function", &functions, LONG_FUNCTIONS);
    problems.extend(against("file", &files, LONG_FILES));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_size_check_catches_a_long_function_and_file_and_spares_tests() {
    let body = "        let x = 1;\n".repeat(MAX_FUNCTION_LINES);
    let long =
        format!("impl A {{\n    pub async fn big(\n        &self,\n    ) {{\n{body}    }}\n}}\n");
    assert_eq!(
        long_functions(&long),
        vec![("big".to_owned(), MAX_FUNCTION_LINES + 4)]
    );
    let short = format!(
        "fn small() {{\n{}}}\n",
        "    let x = 1;\n".repeat(MAX_FUNCTION_LINES - 2)
    );
    assert!(long_functions(&short).is_empty());
    let in_tests = format!("#[cfg(test)]\nmod tests {{\n    fn big() {{\n{body}    }}\n}}\n");
    let test_fn = format!("#[cfg(test)]\nfn big() {{\n{body}}}\n");
    assert!(long_functions(&test_fn).is_empty());
    assert!(long_functions(&in_tests).is_empty());
    let trait_decl = "trait T {\n    fn f(\n        &self,\n    );\n}\nfn one() {}\n";
    assert!(long_functions(trait_decl).is_empty());

    let sources = vec![
        ("src/a.rs".to_owned(), long.clone()),
        ("src/b.rs".to_owned(), "//\n".repeat(MAX_FILE_LINES + 1)),
        ("src/c.rs".to_owned(), "//\n".repeat(MAX_FILE_LINES)),
    ];
    let (functions, files) = offenders(&sources);
    assert_eq!(against("function", &functions, &[]).len(), 1);
    assert!(against("function", &functions, &["src/a.rs: big"]).is_empty());
    assert_eq!(
        against("file", &files, &[]),
        vec!["file too long (split it): src/b.rs"]
    );
    // A listed line that names no offender any more must go.
    assert_eq!(against("file", &files, &["src/b.rs", "src/c.rs"]).len(), 1);

    let dir = Path::new("/x/src/ssh");
    let decl = "#[cfg(test)]\n#[path = \"sftp_shell_tests.rs\"]\nmod tests;\nmod real;\n";
    assert_eq!(
        test_module_files(&dir.join("sftp_shell.rs"), decl),
        vec![dir.join("sftp_shell_tests.rs")]
    );
    let plain = "#[cfg(test)]\nmod fixture_tests;\n";
    assert_eq!(
        test_module_files(&dir.join("mod.rs"), plain),
        vec![
            dir.join("fixture_tests.rs"),
            dir.join("fixture_tests/mod.rs")
        ]
    );
}
