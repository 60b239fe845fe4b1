//! The one resolve step: what was typed ([`Cli`]), the config file, the environment and
//! the terminal, made into a [`Resolved`] command that holds the plain settings the
//! layers below own. Nothing after this step reads parsed args or the config file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::commands::doctor::DoctorRun;
use crate::commands::exec::ExecRun;
use crate::commands::forward::ForwardRun;
use crate::commands::login::{self, Login};
use crate::commands::ls::LsRun;
use crate::commands::proxy::{ProxyRun, PushKeyFor};
use crate::commands::scp::ScpRun;
use crate::commands::sftp::SftpRun;
use crate::commands::shell::ShellRun;
use crate::commands::ssh::SshRun;
use crate::commands::ssh_config::{BlockSettings, ConfigSshRun};
use crate::config_file::{self, ConfigFile};
use crate::error::{ExitCode, Failure};
use crate::session::forward::ForwardSpec;
use crate::target::TargetSettings;

use super::args::{
    Cli, Command, ConfigCommand, DoctorArgs, ExecArgs, ForwardArgs, GlobalArgs, LsArgs, ProxyArgs,
    ScpArgs, SftpArgs, ShellArgs, SshArgs, SshClientArgs, SshConfigArgs, TransferArgs,
};
use super::settings::{self, Inputs};

/// A command with everything it runs with.
pub enum Resolved {
    /// Generated from the clap definitions alone: no config file, no AWS.
    Completions(clap_complete::Shell),
    Man(PathBuf),
    Proxy(ProxyRun),
    Exec(ExecRun),
    Forward(ForwardRun),
    Shell(ShellRun),
    Ssh(SshRun),
    Scp(ScpRun),
    Sftp(SftpRun),
    Ls(LsRun),
    Doctor(DoctorRun),
    ConfigSsh(ConfigSshRun),
}

/// Resolves `cli` with the config file it names, the process environment and the
/// terminal.
pub fn resolve(cli: Cli) -> Result<Resolved, Failure> {
    let mut command = cli.command;
    match &mut command {
        // Generated from the clap definitions alone: no config file, no AWS.
        Command::Completions(args) => return Ok(Resolved::Completions(args.shell)),
        Command::Man { dir } => return Ok(Resolved::Man(std::mem::take(dir))),
        // What clap cannot check, checked before the config file is read, as clap's is.
        Command::Forward(args) => forward_words(args)?,
        _ => {}
    }
    let file = config_file::load(cli.global.config.as_deref()).map_err(settings::config_failure)?;
    let env = |k: &str| std::env::var(k).ok();
    let interactive = {
        use std::io::IsTerminal;
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    };
    let inputs = Inputs {
        global: &cli.global,
        file: &file,
        env: &env,
        interactive,
    };
    resolve_with(command, &inputs)
}

/// [`resolve`] with the inputs given (tests pass their own).
pub fn resolve_with(command: Command, inputs: &Inputs<'_>) -> Result<Resolved, Failure> {
    Ok(match command {
        Command::Completions(args) => Resolved::Completions(args.shell),
        Command::Man { dir } => Resolved::Man(dir),
        Command::Proxy(args) => Resolved::Proxy(proxy_run(inputs, args)?),
        Command::Exec(args) => Resolved::Exec(exec_run(inputs, args)?),
        Command::Forward(args) => Resolved::Forward(forward_run(inputs, args)?),
        Command::Shell(args) => Resolved::Shell(shell_run(inputs, args)?),
        Command::Ssh(args) => Resolved::Ssh(ssh_run(inputs, args)?),
        Command::Scp(args) => Resolved::Scp(scp_run(inputs, args)?),
        Command::Sftp(args) => Resolved::Sftp(sftp_run(inputs, args)?),
        Command::Ls(args) => Resolved::Ls(ls_run(inputs, args)?),
        Command::Doctor(args) => Resolved::Doctor(doctor_run(inputs, args)?),
        Command::Config(ConfigCommand::Ssh(args)) => {
            Resolved::ConfigSsh(config_ssh_run(inputs, args)?)
        }
    })
}

/// `proxy`: the target, and the key to push first when `--push-key --user` ask for it.
fn proxy_run(inputs: &Inputs<'_>, args: ProxyArgs) -> Result<ProxyRun, Failure> {
    Ok(ProxyRun {
        on: inputs.target(&args.target)?,
        port: args.port,
        push: match (args.push_key, args.user) {
            (true, Some(user)) => Some(PushKeyFor {
                user: checked_user(user)?,
                ephemeral: args.ephemeral,
                identity: args.identity,
            }),
            _ => None,
        },
        link: args.connection.link_options(),
    })
}

/// `exec`: the target, and the command line or document to run there.
fn exec_run(inputs: &Inputs<'_>, args: ExecArgs) -> Result<ExecRun, Failure> {
    Ok(ExecRun {
        on: inputs.target(args.target.as_deref().unwrap_or_default())?,
        command: crate::session::exec::command_line(&args.command),
        document: args.document,
        parameters: parameter_map(args.parameters),
        link: args.connection.link_options(),
    })
}

/// `forward`: the target (if the first word is not a SPEC) and what to forward.
fn forward_run(inputs: &Inputs<'_>, mut args: ForwardArgs) -> Result<ForwardRun, Failure> {
    forward_words(&mut args)?;
    Ok(ForwardRun {
        on: inputs.target(args.target.as_deref().unwrap_or_default())?,
        specs: args.specs,
        socks: args.socks,
        open: args.open,
        link: args.connection.link_options(),
    })
}

/// `shell`: the target, and the session document to start.
fn shell_run(inputs: &Inputs<'_>, args: ShellArgs) -> Result<ShellRun, Failure> {
    Ok(ShellRun {
        on: inputs.target(args.target.as_deref().unwrap_or_default())?,
        document: args.document,
        parameters: parameter_map(args.parameters),
        link: args.connection.link_options(),
    })
}

/// `ssh`: the login from `[user@]target`, and the remote command if any.
fn ssh_run(inputs: &Inputs<'_>, args: SshArgs) -> Result<SshRun, Failure> {
    let (user, target) = login::split_destination(args.destination.as_deref().unwrap_or_default());
    Ok(SshRun {
        login: login(inputs, user, target, &args.client, Carries::Terminal)?,
        command: (!args.command.is_empty()).then(|| args.command.join(" ")),
        stdin_null: args.stdin_null,
    })
}

/// `scp`: the login from the remote operand, and the copy plan.
fn scp_run(inputs: &Inputs<'_>, args: ScpArgs) -> Result<ScpRun, Failure> {
    let ops = crate::ssh::scp_args::parse_operands(&args.operands)
        .map_err(|e| Failure::new(ExitCode::Usage, e.to_string()))?;
    let (lanes, compression) = transfer(inputs.file, &args.transfer);
    let login = login(
        inputs,
        ops.user.as_deref(),
        &ops.target,
        &args.client,
        Carries::Copies { compression },
    )?;
    Ok(ScpRun {
        login,
        plan: ops.plan,
        recursive: args.recursive,
        preserve: args.preserve,
        quiet: args.quiet,
        verify: args.verify,
        lanes,
    })
}

/// `sftp`: the login from `[user@]target`, and the batch file if any.
fn sftp_run(inputs: &Inputs<'_>, args: SftpArgs) -> Result<SftpRun, Failure> {
    let (user, target) = login::split_destination(&args.destination);
    let (lanes, compression) = transfer(inputs.file, &args.transfer);
    Ok(SftpRun {
        login: login(
            inputs,
            user,
            target,
            &args.client,
            Carries::Copies { compression },
        )?,
        batch: args.batch,
        lanes,
    })
}

/// `ls`: the target forms to filter by, and the account (the first target's alias's).
fn ls_run(inputs: &Inputs<'_>, args: LsArgs) -> Result<LsRun, Failure> {
    Ok(LsRun {
        forms: (args.targets.iter())
            .map(|t| inputs.target(t).map(|s| s.target))
            .collect::<Result<Vec<_>, _>>()?,
        aws: inputs.account(args.targets.first().map(String::as_str)),
        json: args.json,
    })
}

/// `doctor`: the account, and the target if one was given (never with a picker).
fn doctor_run(inputs: &Inputs<'_>, args: DoctorArgs) -> Result<DoctorRun, Failure> {
    let target = (args.target.as_deref())
        .map(|t| inputs.target(t))
        .transpose()?
        .map(|t| TargetSettings {
            interactive: false,
            ..t
        });
    Ok(DoctorRun {
        aws: match &target {
            Some(t) => t.aws.clone(),
            None => inputs.account(None),
        },
        target,
        json: args.json,
    })
}

/// `config ssh`: the Host block, and whether to install it.
fn config_ssh_run(inputs: &Inputs<'_>, args: SshConfigArgs) -> Result<ConfigSshRun, Failure> {
    Ok(ConfigSshRun {
        block: host_block(
            inputs.global,
            inputs.file,
            args.push_key,
            args.ephemeral,
            args.multiplex,
        )?,
        install: args.install,
    })
}

/// `--parameter NAME=VALUE`s as StartSession takes them: repeats make a list.
fn parameter_map(pairs: Vec<(String, String)>) -> BTreeMap<String, Vec<String>> {
    let mut parameters = BTreeMap::<String, Vec<String>>::new();
    for (k, v) in pairs {
        parameters.entry(k).or_default().push(v);
    }
    parameters
}

/// `forward [TARGET] [SPEC]…`: clap puts the first word in TARGET; it is a SPEC when it
/// parses as one (no instance ID, `tag:` form or IP does; a name could, and the help says
/// how to name such a node), and then there is no target (the picker's). At least one
/// SPEC or `-D` is needed. Idempotent: [`resolve`] calls it before reading the config
/// file, so a bad command line is reported first, as clap's own errors are.
fn forward_words(args: &mut ForwardArgs) -> Result<(), Failure> {
    let mut not_a_spec = None;
    if let Some(word) = args.target.take() {
        match word.parse::<ForwardSpec>() {
            Ok(spec) => args.specs.insert(0, spec),
            Err(why) => {
                not_a_spec = Some(why);
                args.target = Some(word);
            }
        }
    }
    if let Some(addr) = args.socks {
        crate::session::forward::check_socks_bind(addr, args.allow_remote_socks)?;
    }
    if args.specs.is_empty() && args.socks.is_none() {
        let hint = match (&args.target, not_a_spec) {
            // `forward 8888:localhost`: a SPEC with a typo, more likely than a target.
            (Some(t), Some(why)) if t.contains(':') => format!(" ({t:?} is not one: {why})"),
            _ => String::new(),
        };
        return Err(Failure::new(
            ExitCode::Usage,
            format!(
                "nothing to forward{hint}: give a SPEC ([bind:]local:remote_port or [bind:]local:host:port) or -D [bind:]port"
            ),
        ));
    }
    Ok(())
}

/// `-j` (else the config file's `parallel`, else 4) and `-C` (or `compression = true`).
fn transfer(file: &ConfigFile, t: &TransferArgs) -> (usize, bool) {
    let lanes = t.parallel.map_or(
        file.parallel.unwrap_or(login::DEFAULT_PARALLEL),
        usize::from,
    );
    (lanes, t.compression || file.compression.unwrap_or(false))
}

/// An OS user as typed (`user@`, `-l`, `--user`, the config file), refused when it holds
/// shell syntax or control characters.
fn checked_user(user: String) -> Result<String, Failure> {
    crate::target::check_user(&user)?;
    Ok(user)
}

/// What a login's connections carry.
enum Carries {
    /// A shell or a command (`ssh`).
    Terminal,
    /// File copies (`scp`, `sftp`), with or without SSH compression.
    Copies { compression: bool },
}

/// Who logs in where, for `ssh`, `scp` and `sftp`: the user is `user@` > `-l` > the
/// config file's (alias > `[profiles.P]` > top level); none left: guessed later from the
/// platform.
fn login(
    inputs: &Inputs<'_>,
    dest_user: Option<&str>,
    raw_target: &str,
    args: &SshClientArgs,
    carries: Carries,
) -> Result<Login, Failure> {
    let (on, config_user) = inputs.target_and_user(raw_target)?;
    let user = (dest_user.map(str::to_owned))
        .or_else(|| args.user.clone())
        .or(config_user)
        .map(checked_user)
        .transpose()?;
    Ok(Login {
        on,
        user,
        port: args.ssh_port,
        known_hosts: args.known_hosts.clone(),
        strictness: args.strict_host_key_checking.into(),
        link: args.connection.link_options(),
        compression: matches!(carries, Carries::Copies { compression: true }),
        copies: matches!(carries, Carries::Copies { .. }),
    })
}

/// The `config ssh` block: flags typed now are kept in the ProxyCommand; environment
/// variables are not (ssh passes its own environment to the ProxyCommand anyway).
fn host_block(
    g: &GlobalArgs,
    file: &ConfigFile,
    push_key: bool,
    ephemeral: bool,
    multiplex: bool,
) -> Result<BlockSettings, Failure> {
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| {
            Failure::new(
                ExitCode::LocalIo,
                format!("cannot tell where this sallyport binary is ({e}); write the block by hand from contrib/ssh_config"),
            )
        })?;
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
    Ok(BlockSettings {
        exe,
        global_args,
        aliases: file.aliases.keys().cloned().collect(),
        push_key,
        ephemeral,
        control_dir: if multiplex {
            Some(control_dir()?)
        } else {
            None
        },
    })
}

/// Where `config ssh --multiplex` puts the control sockets: `~/.ssh/sallyport-mux`, or
/// `$XDG_RUNTIME_DIR/sallyport-mux` when the home's path is too long for a socket path.
fn control_dir() -> Result<PathBuf, Failure> {
    use crate::commands::ssh_config::control_dir_fits;
    let home = dirs::home_dir().map(|h| h.join(".ssh").join("sallyport-mux"));
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("sallyport-mux"));
    let tried: Vec<PathBuf> = home.into_iter().chain(runtime).collect();
    tried
        .iter()
        .find(|d| control_dir_fits(d))
        .cloned()
        .ok_or_else(|| {
            let names: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
            Failure::new(
                ExitCode::Usage,
                format!(
                    "no directory for ssh's control sockets has a path short enough for a unix \
                 socket (tried: {}); set XDG_RUNTIME_DIR to a short private directory",
                    if names.is_empty() {
                        "none".to_owned()
                    } else {
                        names.join(", ")
                    }
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Spec;
    use clap::Parser as _;

    fn file() -> ConfigFile {
        let text = r#"
            user = "top"
            parallel = 6
            [profiles.research]
            region = "us-east-2"
            user = "scientist"
            [alias]
            jupyter = "i-0123456789abcdef0"
            notebook = { tag = "Name=jupyter-alice", profile = "research" }
        "#;
        config_file::parse(text, std::path::Path::new("/c.toml")).unwrap()
    }

    /// Resolves `argv` (after `sallyport`) with `file()`, no environment, on a terminal.
    fn resolved(argv: &[&str]) -> Result<Resolved, Failure> {
        let cli =
            Cli::try_parse_from(std::iter::once("sallyport").chain(argv.iter().copied())).unwrap();
        let file = file();
        let inputs = Inputs {
            global: &cli.global,
            file: &file,
            env: &|_| None,
            interactive: true,
        };
        resolve_with(cli.command, &inputs)
    }

    #[test]
    fn logins_take_the_user_from_the_destination_then_the_flag_then_the_file() {
        let Ok(Resolved::Ssh(r)) = resolved(&["ssh", "ubuntu@jupyter", "-l", "x"]) else {
            panic!("not ssh");
        };
        assert_eq!(r.login.user.as_deref(), Some("ubuntu"));
        assert_eq!(r.login.on.target, Spec::Id("i-0123456789abcdef0".into()));
        assert_eq!(r.login.on.raw, "jupyter");
        assert!(r.login.on.interactive);
        let Ok(Resolved::Sftp(r)) = resolved(&["sftp", "notebook", "-l", "x"]) else {
            panic!("not sftp");
        };
        assert_eq!(r.login.user.as_deref(), Some("x"));
        assert_eq!(r.lanes, 6, "the config file's parallel");
        let Ok(Resolved::Scp(r)) = resolved(&["scp", "-j", "2", "a", "notebook:/tmp/"]) else {
            panic!("not scp");
        };
        assert_eq!(
            r.login.user.as_deref(),
            Some("scientist"),
            "[profiles.research]"
        );
        assert_eq!(r.lanes, 2);
        let Ok(Resolved::Ssh(r)) = resolved(&["ssh", "web-1"]) else {
            panic!("not ssh");
        };
        assert_eq!(r.login.user.as_deref(), Some("top"));
        let e = resolved(&["scp", "a", "b"]).err().expect("no remote side");
        assert_eq!(e.code, ExitCode::Usage);
    }

    #[test]
    fn account_commands_need_no_target() {
        let Ok(Resolved::Doctor(r)) = resolved(&["doctor"]) else {
            panic!("not doctor");
        };
        assert!(r.target.is_none());
        assert_eq!(r.aws.region, None);
        let Ok(Resolved::Doctor(r)) = resolved(&["doctor", "notebook"]) else {
            panic!("not doctor");
        };
        let t = r.target.expect("a target");
        assert!(!t.interactive, "doctor never shows a picker");
        assert_eq!(r.aws.profile.as_deref(), Some("research"));
        let e = resolved(&["doctor", "tag:"]).err().expect("a bad target");
        assert_eq!(e.code, ExitCode::Target);
        let Ok(Resolved::Ls(r)) = resolved(&["ls", "notebook", "web-*"]) else {
            panic!("not ls");
        };
        assert_eq!(
            r.aws.profile.as_deref(),
            Some("research"),
            "the first alias's"
        );
        assert_eq!(r.forms.len(), 2);
        let Ok(Resolved::Ls(r)) = resolved(&["ls", "web-*", "notebook"]) else {
            panic!("not ls");
        };
        assert_eq!(r.aws.profile, None);
    }

    #[test]
    fn forward_tells_a_first_spec_from_a_target_by_its_shape() {
        let forward = |argv: &[&str]| match resolved(argv) {
            Ok(Resolved::Forward(r)) => Ok(r),
            Ok(_) => panic!("not forward"),
            Err(e) => Err(e),
        };
        let r = forward(&["forward", "8888:localhost:8888", "9999"]).unwrap();
        assert_eq!(r.on.target, Spec::Pick, "no target: the picker's");
        let spec = |s: &str| s.parse::<ForwardSpec>().unwrap();
        assert_eq!(r.specs, [spec("8888:localhost:8888"), spec("9999")]);
        let r = forward(&["forward", "-D", "1080"]).unwrap();
        assert_eq!((r.on.target, r.specs.len()), (Spec::Pick, 0));
        assert!(r.socks.is_some());
        let r = forward(&["forward", "web-1", "8080"]).unwrap();
        assert_eq!(r.on.target, Spec::Name("web-1".into()));
        assert_eq!(r.specs, [spec("8080")]);
        for ip in ["10.0.0.1", "2001:db8::1", "[fd00::7]"] {
            let r = forward(&["forward", ip, "8080"]).unwrap();
            assert!(
                matches!(r.on.target, Spec::Ip(_)),
                "{ip}: {:?}",
                r.on.target
            );
        }
        let r = forward(&["forward", "tag:Team=a:b", "-D", "1080"]).unwrap();
        assert!(matches!(r.on.target, Spec::Tag { .. }));
        let r = forward(&["forward", "jupyter", "1:2"]).unwrap();
        assert_eq!(r.on.target, Spec::Id("i-0123456789abcdef0".into()));
        for nothing in [&["forward"][..], &["forward", "web-1"]] {
            let e = forward(nothing).err().expect("nothing to forward");
            assert_eq!(e.code, ExitCode::Usage);
            assert!(
                e.message.starts_with("nothing to forward: "),
                "{}",
                e.message
            );
        }
        let e = forward(&["forward", "8888:localhost"])
            .err()
            .expect("a typo");
        assert_eq!(e.code, ExitCode::Usage);
        assert!(
            e.message.contains("\"8888:localhost\" is not one: ")
                && e.message.contains("not a port number"),
            "{}",
            e.message
        );
    }
    #[test]
    fn socks_beyond_loopback_must_be_asked_for() {
        let forward = |argv: &[&str]| match resolved(argv) {
            Ok(Resolved::Forward(r)) => Ok(r),
            Ok(_) => panic!("not forward"),
            Err(e) => Err(e),
        };
        for lan in ["0.0.0.0:1080", "*:1080", "[::]:1080", "192.168.1.9:1080"] {
            let e = forward(&["forward", "web-1", "-D", lan]).err().expect(lan);
            assert_eq!(e.code, ExitCode::Usage, "{lan}");
            assert!(e.message.contains("--allow-remote-socks"), "{}", e.message);
            let r = forward(&["forward", "web-1", "-D", lan, "--allow-remote-socks"]).unwrap();
            assert!(r.socks.is_some_and(|a| !a.ip().is_loopback()));
        }
        assert!(forward(&["forward", "web-1", "-D", "127.0.0.1:1080"]).is_ok());
        // Port forwards beyond loopback stay allowed (with a warning when they listen).
        assert!(forward(&["forward", "web-1", "0.0.0.0:8080:80"]).is_ok());
    }
}
