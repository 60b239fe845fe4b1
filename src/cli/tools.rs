//! The CLI edge of the commands in [`crate::commands`]: what was typed plus the config
//! file, resolved into their plain settings; their outcome made into lines and exit codes.

use crate::commands::ssh_config::{self, BlockSettings};
use crate::config_file::ConfigFile;
use crate::error::{ExitCode, Failure};

use super::args::{GlobalArgs, LsArgs, SshConfigArgs};
use super::settings;

/// Resolves settings for a command about the whole account rather than one target:
/// flags, environment and config file as for a target, with an ID (never an alias) as
/// the stand-in target.
fn account_settings(
    g: &GlobalArgs,
    file: &ConfigFile,
    first_target: Option<&str>,
) -> Result<settings::TargetSettings, Failure> {
    let env = |k: &str| std::env::var(k).ok();
    settings::for_target(g, file, first_target.unwrap_or("i-00000000"), &env)
}

/// `sallyport ls [TARGET…] [--json]`.
pub async fn ls(g: &GlobalArgs, file: &ConfigFile, args: &LsArgs) -> Result<u8, Failure> {
    let env = |k: &str| std::env::var(k).ok();
    // An alias may bring its own profile and region: the first target's apply to all.
    let s = account_settings(g, file, args.targets.first().map(String::as_str))?;
    let forms = (args.targets.iter())
        .map(|t| settings::for_target(g, file, t, &env).map(|s| s.target))
        .collect::<Result<Vec<_>, _>>()?;
    let config = crate::aws::load(&s.aws)
        .await
        .map_err(|e| Failure::aws(e, "the managed nodes"))?;
    let listing = crate::commands::ls::list(&config, &forms)
        .await
        .map_err(|e| {
            let e = crate::aws::advise(e, s.aws.profile.as_deref());
            let e = match e.kind {
                crate::aws::AwsErrorKind::AccessDenied if e.hint.is_none() => e.with_hint(
                    "listing needs ssm:DescribeInstanceInformation (and tag:GetResources for Name tags)",
                ),
                _ => e,
            };
            Failure::aws(e, "the managed nodes")
        })?;
    match &listing.tags {
        crate::commands::ls::Tags::Denied => eprintln!(
            "sallyport: no permission to read Name tags (tag:GetResources); names shown only for on-premises nodes"
        ),
        crate::commands::ls::Tags::Failed(why) => {
            eprintln!("sallyport: Name tags unavailable: {why}")
        }
        crate::commands::ls::Tags::Read(_) => {}
    }
    if args.json {
        print!("{}", listing.json());
    } else {
        if listing.nodes.is_empty() {
            eprintln!("sallyport: no managed node matches");
        }
        print!("{}", listing.table(std::time::SystemTime::now()));
    }
    Ok(0)
}

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
