//! Shell completions and man pages, generated from the clap definitions in [`super::args`]
//! so they can never describe flags that do not exist. The man pages are committed under
//! `contrib/man/` and a test compares them with freshly generated ones; regenerate with
//! `cargo run -- man contrib/man`.

use std::path::Path;

use clap::CommandFactory;

use super::args::Cli;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "sallyport", out);
}

/// Every man page: `sallyport.1`, then one `sallyport-SUB.1` per visible subcommand (and
/// `sallyport-config-ssh.1` for nested ones), as (file name, roff text).
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>, std::io::Error> {
    fn walk(cmd: clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> Result<(), std::io::Error> {
        let man = clap_mangen::Man::new(cmd.clone());
        let mut text = Vec::new();
        man.render(&mut text)?;
        pages.push((man.get_filename(), text));
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), pages)?;
        }
        Ok(())
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Subcommands get display names such as `sallyport-ls`, hence their file names.
    cmd.build();
    let mut pages = Vec::new();
    walk(cmd, &mut pages)?;
    Ok(pages)
}

/// `sallyport man DIR`: writes [`man_pages`] into `dir` (created if needed), replacing any
/// `sallyport*.1` there that no longer has a page.
pub fn write_man_pages(dir: &Path) -> Result<usize, std::io::Error> {
    let pages = man_pages()?;
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("sallyport") && name.ends_with(".1") {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, text) in &pages {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(pages.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed pages are what the clap definitions generate today.
    #[test]
    fn committed_man_pages_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/man");
        let fix = "regenerate them with `cargo run -- man contrib/man` and commit the result";
        let pages = man_pages().unwrap();
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; {fix}", dir.display()))
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".1"))
            .collect();
        committed.sort();
        let mut generated: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
        generated.sort();
        assert_eq!(committed, generated, "man page files differ; {fix}");
        for (name, text) in &pages {
            let on_disk = std::fs::read(dir.join(name)).unwrap();
            assert!(on_disk == *text, "contrib/man/{name} is out of date; {fix}");
        }
        let main = String::from_utf8_lossy(&pages[0].1).into_owned();
        assert_eq!(pages[0].0, "sallyport.1");
        for sub in ["ls", "doctor", "config", "completions", "proxy", "scp"] {
            assert!(
                main.contains(&format!("sallyport\\-{sub}(1)")),
                "{sub}: {main}"
            );
        }
        assert!(
            !pages.iter().any(|(n, _)| n.contains("-man.")),
            "the man command is hidden"
        );
    }

    #[test]
    fn completions_generate_for_every_shell() {
        use clap::ValueEnum;
        for shell in clap_complete::Shell::value_variants() {
            let mut out = Vec::new();
            completions(*shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            // Every shell's script names the subcommands and a subcommand's own flag.
            for word in ["ls", "doctor", "forward", "--push-key", "--install"] {
                assert!(text.contains(word), "{shell}: no {word}");
            }
        }
    }
}
