//! The command table: each command's names, the flag letters it takes and how many
//! operands, in one place; [`Shell::dispatch`] checks a line against its entry, then runs
//! the command's own step.

use russh_sftp::protocol::FileAttributes;
use tokio::io::AsyncWrite;

use crate::ssh::sftp_shell::{CmdResult, Flow, Shell, Word, fail, flags, in_cmd, operands, write};
use crate::ssh::transfer::{Problem, printable, sftp_problem};

/// What a command does; each has one arm in [`Shell::run_op`].
#[derive(Clone, Copy)]
enum Op {
    Quit,
    Help,
    Pwd,
    Lpwd,
    Cd,
    Lcd,
    Ls,
    Lls,
    Mkdir,
    Rmdir,
    Rm,
    Rename,
    Chmod,
    Get,
    Put,
}

/// One command's shape.
struct Command {
    names: &'static [&'static str],
    op: Op,
    /// Flag letters taken before the operands; `None`: a leading `-` is an operand.
    flags: Option<&'static str>,
    /// Fewest and most operands; `None`: operands are ignored, unchecked.
    operands: Option<(usize, usize)>,
}

const fn cmd(
    names: &'static [&'static str],
    op: Op,
    flags: Option<&'static str>,
    operands: Option<(usize, usize)>,
) -> Command {
    Command {
        names,
        op,
        flags,
        operands,
    }
}

/// Every command the shell knows, as OpenSSH's sftp spells them.
const COMMANDS: &[Command] = &[
    cmd(&["bye", "exit", "quit"], Op::Quit, None, None),
    cmd(&["help", "?"], Op::Help, None, None),
    cmd(&["pwd"], Op::Pwd, None, Some((0, 0))),
    cmd(&["lpwd"], Op::Lpwd, None, Some((0, 0))),
    cmd(&["cd"], Op::Cd, None, Some((0, 1))),
    cmd(&["lcd"], Op::Lcd, None, Some((0, 1))),
    cmd(&["ls", "dir"], Op::Ls, Some("la1"), Some((0, 1))),
    cmd(&["lls"], Op::Lls, Some("la1"), Some((0, 1))),
    cmd(&["mkdir"], Op::Mkdir, None, Some((1, 1))),
    cmd(&["rmdir"], Op::Rmdir, None, Some((1, 1))),
    cmd(&["rm"], Op::Rm, None, Some((1, 1))),
    cmd(&["rename"], Op::Rename, None, Some((2, 2))),
    cmd(&["chmod"], Op::Chmod, None, Some((2, 2))),
    cmd(&["get"], Op::Get, Some("prRP"), Some((1, 2))),
    cmd(&["put"], Op::Put, Some("prRP"), Some((1, 2))),
];

pub(super) const HELP: &str = "\
Available commands:
bye                                Quit sftp
cd [path]                          Change remote directory to 'path' (default: home)
chmod mode path                    Change permissions of file 'path' to 'mode'
exit                               Quit sftp
get [-pr] remote [local]           Download file
help                               Display this help text
lcd [path]                         Change local directory to 'path'
lls [-la] [path]                   Display local directory listing
lpwd                               Print local working directory
ls [-la] [path]                    Display remote directory listing
mkdir path                         Create remote directory
put [-pr] local [remote]           Upload file
pwd                                Display remote working directory
quit                               Quit sftp
rename oldpath newpath             Rename remote file
rm path                            Delete remote file
rmdir path                         Remove remote directory
?                                  Synonym for help
";

impl Shell<'_> {
    /// Runs one command line (already split into words, at least one).
    pub(super) async fn dispatch<W, E>(
        &mut self,
        args: &[Word],
        out: &mut W,
        err: &mut E,
    ) -> CmdResult
    where
        W: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let (name, rest) = (args[0].text.as_str(), &args[1..]);
        if name.starts_with('!') {
            return Err(fail("shell escapes (!) are not supported".to_owned()));
        }
        let Some(command) = COMMANDS.iter().find(|c| c.names.contains(&name)) else {
            return Err(fail(format!(
                "{}: invalid command (see help)",
                printable(name)
            )));
        };
        let (set, rest) = match command.flags {
            Some(allowed) => flags(name, rest, allowed)?,
            None => (String::new(), rest),
        };
        let ops = match command.operands {
            Some((min, max)) => operands(name, rest, min, max)?,
            None => rest,
        };
        let Some(text) = self.run_op(command.op, name, &set, ops, out, err).await? else {
            return Ok(Flow::Quit);
        };
        write(out, text.as_bytes()).await.map_err(Problem::Fatal)?;
        Ok(Flow::Continue)
    }

    /// One command's step, on checked flags and operands: `Ok(None)` quits, else what to
    /// print.
    async fn run_op<W, E>(
        &mut self,
        op: Op,
        cmd: &str,
        flags: &str,
        ops: &[Word],
        out: &mut W,
        err: &mut E,
    ) -> Result<Option<String>, Problem>
    where
        W: AsyncWrite + Unpin,
        E: AsyncWrite + Unpin,
    {
        let (long, all) = (flags.contains('l'), flags.contains('a'));
        let text = match op {
            Op::Quit => return Ok(None),
            Op::Help => HELP.to_owned(),
            Op::Pwd => format!("Remote working directory: {}\n", printable(&self.cwd)),
            Op::Lpwd => format!(
                "Local working directory: {}\n",
                printable(&self.lcwd.to_string_lossy())
            ),
            Op::Cd => self.cd(ops.first()).await.map(|()| String::new())?,
            Op::Lcd => self.lcd(ops.first()).map(|()| String::new())?,
            Op::Ls => self.ls(ops.first(), long, all).await?,
            Op::Lls => self.lls(ops.first(), long, all)?,
            Op::Mkdir | Op::Rmdir => self.make_or_remove_dir(op, cmd, &ops[0]).await?,
            Op::Rm => self.rm(cmd, &ops[0], out).await?,
            Op::Rename => self.rename(cmd, &ops[0], &ops[1]).await?,
            Op::Chmod => self.chmod(cmd, &ops[0], &ops[1], out).await?,
            Op::Get => self
                .get(ops, flags, out, err)
                .await
                .map(|()| String::new())?,
            Op::Put => self
                .put(ops, flags, out, err)
                .await
                .map(|()| String::new())?,
        };
        Ok(Some(text))
    }

    async fn make_or_remove_dir(&self, op: Op, cmd: &str, word: &Word) -> Result<String, Problem> {
        let path = self.remote(word).await?;
        let done = if matches!(op, Op::Mkdir) {
            self.sftp.create_dir(path.as_str()).await
        } else {
            self.sftp.remove_dir(path.as_str()).await
        };
        done.map_err(|e| in_cmd(cmd, sftp_problem(&path, &e)))?;
        Ok(String::new())
    }

    async fn rm<W>(&self, cmd: &str, word: &Word, out: &mut W) -> Result<String, Problem>
    where
        W: AsyncWrite + Unpin,
    {
        for path in self.remote_matches(word).await? {
            write(out, format!("Removing {}\n", printable(&path)).as_bytes())
                .await
                .map_err(Problem::Fatal)?;
            self.sftp
                .remove_file(path.as_str())
                .await
                .map_err(|e| in_cmd(cmd, sftp_problem(&path, &e)))?;
        }
        Ok(String::new())
    }

    async fn rename(&self, cmd: &str, from: &Word, to: &Word) -> Result<String, Problem> {
        let from = self.remote(from).await?;
        let to = self.remote(to).await?;
        self.sftp
            .rename(from.as_str(), to.as_str())
            .await
            .map_err(|e| in_cmd(cmd, sftp_problem(&from, &e)))?;
        Ok(String::new())
    }

    async fn chmod<W>(
        &self,
        cmd: &str,
        mode: &Word,
        word: &Word,
        out: &mut W,
    ) -> Result<String, Problem>
    where
        W: AsyncWrite + Unpin,
    {
        let mode = u32::from_str_radix(&mode.text, 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                fail(format!(
                    "chmod: {}: not an octal mode",
                    printable(&mode.text)
                ))
            })?;
        for path in self.remote_matches(word).await? {
            write(
                out,
                format!("Changing mode on {}\n", printable(&path)).as_bytes(),
            )
            .await
            .map_err(Problem::Fatal)?;
            let attrs = FileAttributes {
                permissions: Some(mode),
                ..FileAttributes::default()
            };
            self.sftp
                .set_metadata(path.as_str(), attrs)
                .await
                .map_err(|e| in_cmd(cmd, sftp_problem(&path, &e)))?;
        }
        Ok(String::new())
    }
}
