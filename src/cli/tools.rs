//! The CLI edge of the commands in [`crate::commands`]: what was typed plus the config
//! file, resolved into their plain settings; their outcome made into lines and exit codes.

use crate::commands::ssh_config::{self, BlockSettings};
use crate::config_file::ConfigFile;
use crate::error::{ExitCode, Failure};

use super::args::{GlobalArgs, SshConfigArgs};

/// `sallyport config ssh [--push-key [--ephemeral]] [--install]`.
pub fn config_ssh(g: &GlobalArgs, file: &ConfigFile, args: &SshConfigArgs) -> Result<u8, Failure> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| {
            Failure::new(
                ExitCode::LocalIo,
                format!("cannot tell where this sallyport binary is ({e}); write the block by hand from contrib/ssh_config"),
            )
        })?;
    // Flags typed now are kept in the ProxyCommand; environment variables are not (ssh
    // passes its own environment to the ProxyCommand anyway).
    let mut global_args = Vec::new();
    if let Some(c) = &file.path.as_ref().filter(|_| g.config.is_some()) {
        let c = c.canonicalize().unwrap_or_else(|_| c.to_path_buf());
        global_args.extend(["--config".to_owned(), c.display().to_string()]);
    }
    for (flag, value) in [
        ("--profile", &g.profile),
        ("--region", &g.region),
        ("--endpoint-url", &g.endpoint_url),
    ] {
        if let Some(v) = value {
            global_args.extend([flag.to_owned(), v.clone()]);
        }
    }
    let block = ssh_config::host_block(&BlockSettings {
        exe,
        global_args,
        aliases: file.aliases.keys().cloned().collect(),
        push_key: args.push_key,
        ephemeral: args.ephemeral,
    });
    if !args.install {
        print!("{block}");
        return Ok(0);
    }
    let home = dirs::home_dir().ok_or_else(|| {
        Failure::new(
            ExitCode::LocalIo,
            "cannot find your home directory; set HOME",
        )
    })?;
    let done = ssh_config::install(&home, &block).map_err(|e| {
        Failure::new(
            ExitCode::LocalIo,
            format!("cannot install the ssh configuration: {e}"),
        )
    })?;
    let conf = done.conf.display();
    let config = done.config.display();
    match (done.conf_written, done.include_added, &done.backup) {
        (false, false, _) => eprintln!("sallyport: {conf} is up to date and {config} includes it"),
        (true, false, _) => eprintln!("sallyport: updated {conf}; {config} already includes it"),
        (_, true, Some(b)) => eprintln!(
            "sallyport: wrote {conf} and added `Include` at the top of {config} (the old one is kept as {})",
            b.display()
        ),
        (_, true, None) => eprintln!("sallyport: wrote {conf} and created {config} to include it"),
    }
    Ok(0)
}
