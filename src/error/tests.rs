//! Exit codes of the typed errors below the CLI edge: each must stay what the README's
//! table says.

use super::*;
use crate::aws::AwsError;
use crate::keys::KeyError;
use crate::proto::client::NotEstablished;
use crate::session::SessionError;
use crate::transport::LinkError;

#[test]
fn a_data_key_refused_by_aws_says_so_and_other_key_failures_blame_the_peer() {
    let denied = AwsError::new(AwsErrorKind::AccessDenied, "kms:GenerateDataKey denied");
    let f = Failure::from(DriveError::DataKey(DataKeyError::Aws(denied)));
    assert_eq!(f.code, ExitCode::AccessDenied);
    assert!(
        f.message.starts_with("kms:GenerateDataKey denied"),
        "{}",
        f.message
    );
    let f = Failure::from(DriveError::DataKey(DataKeyError::Timeout(
        std::time::Duration::from_secs(15),
    )));
    assert_eq!(f.code, ExitCode::Protocol);
    assert!(
        f.message.contains("requires KMS encryption"),
        "{}",
        f.message
    );
    let f = Failure::from(DriveError::Send(NotEstablished));
    assert_eq!(f.code, ExitCode::Internal);
    assert!(f.message.contains("not established"), "{}", f.message);
}

#[test]
fn session_errors_keep_their_exit_codes() {
    let cases = [
        (SessionError::Interrupted("SIGINT"), ExitCode::Interrupted),
        (SessionError::NoTunnelSigner, ExitCode::Credentials),
        (
            SessionError::NoExitStatus("D".into()),
            ExitCode::NoExitStatus,
        ),
        (
            SessionError::Ended("s-1: bye".into()),
            ExitCode::SessionEnded,
        ),
        (SessionError::BrokenPipe, ExitCode::LocalIo),
        (
            SessionError::RemoteSocks("0.0.0.0:1080".parse().unwrap()),
            ExitCode::Usage,
        ),
        (
            SessionError::Multiplexer {
                label: "l".into(),
                detail: "d".into(),
            },
            ExitCode::Protocol,
        ),
        (
            SessionError::Labelled {
                label: "i-0abc port 80".into(),
                source: Box::new(SessionError::drive(DriveError::Link(
                    LinkError::SessionGone { cause: "x".into() },
                ))),
            },
            ExitCode::SessionEnded,
        ),
        (
            SessionError::Aws {
                source: AwsError::new(AwsErrorKind::TargetNotConnected, "not connected"),
                target: "i-0abc".into(),
            },
            ExitCode::Target,
        ),
        (SessionError::from(KeyError::NoAgent), ExitCode::LocalIo),
    ];
    for (e, code) in cases {
        let ended = e.session_ended();
        let f = Failure::from(e);
        assert_eq!(f.code, code, "{}", f.message);
        assert_eq!(ended, code == ExitCode::SessionEnded, "{}", f.message);
        assert!(!f.message.contains('\n'), "{}", f.message);
    }
}

#[test]
fn a_labelled_failure_names_its_forward_first() {
    let f = Failure::from(SessionError::Labelled {
        label: "i-0abc port 80".into(),
        source: Box::new(SessionError::drive(DriveError::PortRefused)),
    });
    assert_eq!(f.code, ExitCode::PortRefused);
    assert!(f.message.starts_with("i-0abc port 80: "), "{}", f.message);
}

/// Every session failure whose exit code says the peer broke the protocol, and no other,
/// is one the SSH client treats as a broken link (and lets the data channel explain).
#[test]
fn broke_protocol_is_exactly_the_protocol_exit_code() {
    use crate::transport::{ConnectError, TunnelError};
    use std::time::Duration;
    let drive = |e: DriveError| SessionError::Drive {
        source: e,
        target: "i-0abc".into(),
        port: 22,
    };
    let cases = vec![
        SessionError::Connect(ConnectError::BadUrl("x".into())),
        SessionError::Connect(ConnectError::Insecure("ws://h".into())),
        SessionError::Connect(ConnectError::Refused { status: 403 }),
        SessionError::Connect(ConnectError::Timeout(Duration::from_secs(1))),
        SessionError::Connect(ConnectError::Credentials("none".into())),
        drive(DriveError::HandshakeTimeout(Duration::from_secs(30))),
        drive(DriveError::PortRefused),
        drive(DriveError::Send(NotEstablished)),
        drive(DriveError::Link(LinkError::PeerViolation {
            detail: "big".into(),
        })),
        drive(DriveError::Link(LinkError::SessionGone {
            cause: "x".into(),
        })),
        drive(DriveError::Link(LinkError::NotResumable {
            cause: "x".into(),
        })),
        drive(DriveError::DataKey(DataKeyError::Unsupported)),
        drive(DriveError::DataKey(DataKeyError::Timeout(
            Duration::from_secs(15),
        ))),
        drive(DriveError::DataKey(DataKeyError::Aws(AwsError::new(
            AwsErrorKind::AccessDenied,
            "denied",
        )))),
        drive(DriveError::Input(std::io::Error::other("x"))),
        SessionError::Tunnel {
            source: TunnelError::Text("x".into()),
            target: "i-0abc".into(),
            port: 22,
        },
        SessionError::Tunnel {
            source: TunnelError::Broken("x".into()),
            target: "i-0abc".into(),
            port: 22,
        },
        SessionError::Multiplexer {
            label: "l".into(),
            detail: "d".into(),
        },
        SessionError::Labelled {
            label: "l".into(),
            source: Box::new(SessionError::Multiplexer {
                label: "l".into(),
                detail: "d".into(),
            }),
        },
        SessionError::Ended("x".into()),
        SessionError::Interrupted("SIGTERM"),
        SessionError::Internal("x".into()),
        // The service or an endpoint refusing the target.
        SessionError::Aws {
            source: AwsError::new(AwsErrorKind::TargetNotConnected, "not connected"),
            target: "i-0abc".into(),
        },
        SessionError::Aws {
            source: AwsError::new(AwsErrorKind::InvalidTarget, "invalid"),
            target: "i-0abc".into(),
        },
        SessionError::Aws {
            source: AwsError::new(AwsErrorKind::Throttled, "slow down"),
            target: "i-0abc".into(),
        },
        SessionError::Tunnel {
            source: TunnelError::Refused {
                status: 404,
                endpoint: "eice-0abc".into(),
                advice: "",
            },
            target: "i-0abc".into(),
            port: 22,
        },
        SessionError::Labelled {
            label: "l".into(),
            source: Box::new(SessionError::Aws {
                source: AwsError::new(AwsErrorKind::TargetNotConnected, "not connected"),
                target: "i-0abc".into(),
            }),
        },
    ];
    let mut refusals = 0;
    for e in cases {
        let (broke, refused) = (e.broke_protocol(), e.target_refused());
        let f = Failure::from(e);
        assert_eq!(broke, f.code == ExitCode::Protocol, "{}", f.message);
        assert_eq!(refused, f.code == ExitCode::Target, "{}", f.message);
        refusals += usize::from(refused);
    }
    assert_eq!(refusals, 4);
}

#[test]
fn ssh_errors_keep_their_exit_codes_and_predicates() {
    use crate::ssh::SshError;
    let first = || Box::new(SshError::RemoteFile("/a: No such file".into()));
    let cases = [
        (SshError::Connection("lost".into()), ExitCode::Protocol),
        (SshError::HostKey("changed".into()), ExitCode::HostKey),
        (SshError::AuthRefused("no".into()), ExitCode::AuthRefused),
        (SshError::RemoteFile("x".into()), ExitCode::RemoteFile),
        (SshError::LocalIo("x".into()), ExitCode::LocalIo),
        (SshError::Usage("x".into()), ExitCode::Usage),
        (SshError::Internal("x".into()), ExitCode::Internal),
        (
            SshError::NotCopied {
                count: 2,
                first: first(),
            },
            ExitCode::RemoteFile,
        ),
        (
            SshError::Reported {
                last: "/b: gone".into(),
                first: Box::new(SshError::Connection("lost".into())),
            },
            ExitCode::Protocol,
        ),
        (
            SshError::InCommand {
                cmd: "get".into(),
                source: Box::new(SshError::HostKey("changed".into())),
            },
            ExitCode::HostKey,
        ),
        (
            SshError::from(SessionError::Multiplexer {
                label: "l".into(),
                detail: "d".into(),
            }),
            ExitCode::Protocol,
        ),
        (SshError::from(KeyError::NoHome), ExitCode::LocalIo),
    ];
    for (e, code) in cases {
        let (link, host_key) = (e.is_link_problem(), e.is_host_key());
        let refused = e.target_refused();
        let f = Failure::from(e);
        assert_eq!(f.code, code, "{}", f.message);
        assert_eq!(link, code == ExitCode::Protocol, "{}", f.message);
        assert_eq!(host_key, code == ExitCode::HostKey, "{}", f.message);
        assert_eq!(refused, code == ExitCode::Target, "{}", f.message);
    }
    let refused = SshError::from(SessionError::Aws {
        source: AwsError::new(AwsErrorKind::TargetNotConnected, "not connected"),
        target: "i-0abc".into(),
    });
    assert!(refused.target_refused());
    assert_eq!(Failure::from(refused).code, ExitCode::Target);
    let f = Failure::from(SshError::NotCopied {
        count: 1,
        first: first(),
    });
    assert_eq!(f.message, "1 file or directory could not be copied");
    let f = Failure::from(SshError::InCommand {
        cmd: "get".into(),
        source: first(),
    });
    assert_eq!(f.message, "get: /a: No such file");
}

#[test]
fn command_errors_and_doctor_findings_keep_their_exit_codes() {
    use crate::commands::CommandError;
    use crate::commands::doctor::Blame;
    let cases = [
        (CommandError::SessionManagerOnly("exec"), ExitCode::Usage),
        (CommandError::EmptyUser, ExitCode::Config),
        (
            CommandError::CopyInterrupted("SIGINT"),
            ExitCode::Interrupted,
        ),
        (
            CommandError::NotConnected("i-0abc".into()),
            ExitCode::Target,
        ),
        (CommandError::NoHome, ExitCode::LocalIo),
        (
            CommandError::WrongWay {
                node: "i-0abc".into(),
                why: "x".into(),
            },
            ExitCode::Internal,
        ),
    ];
    for (e, code) in cases {
        let f = Failure::from(e);
        assert_eq!(f.code, code, "{}", f.message);
    }
    assert_eq!(doctor_exit_status(Blame::Other), 9);
    assert_eq!(doctor_exit_status(Blame::Clock), 14);
    assert_eq!(doctor_exit_status(Blame::Target), 5);
}

#[test]
fn target_errors_keep_their_exit_codes_and_a_refusal_is_recognised() {
    use crate::target::TargetError;
    let cases = [
        (TargetError::Usage("u".into()), ExitCode::Usage),
        (TargetError::Target("t".into()), ExitCode::Target),
        (TargetError::Ambiguous("a".into()), ExitCode::Ambiguous),
        (TargetError::Interrupted("i".into()), ExitCode::Interrupted),
        (TargetError::LocalIo("l".into()), ExitCode::LocalIo),
        (TargetError::Internal("x".into()), ExitCode::Internal),
        (
            TargetError::aws(
                AwsError::new(AwsErrorKind::AccessDenied, "denied"),
                "i-0abc",
            ),
            ExitCode::AccessDenied,
        ),
    ];
    for (e, code) in cases {
        let refused = e.target_refused();
        let f = Failure::from(e);
        assert_eq!(f.code, code, "{}", f.message);
        assert_eq!(refused, code == ExitCode::Target, "{}", f.message);
    }
    let refused = TargetError::aws(
        AwsError::new(AwsErrorKind::TargetNotConnected, "not connected"),
        "i-0abc",
    );
    assert!(refused.target_refused());
    assert_eq!(Failure::from(refused).code, ExitCode::Target);
}

/// A command's error wraps what the layers below said, keeps its exit code, and knows a
/// refused target; Session Manager's failure with what EICE lacks keeps the former's code.
#[test]
fn command_errors_wrap_the_layers_below_and_know_a_refused_target() {
    use crate::commands::CommandError;
    use crate::ssh::SshError;
    use crate::target::TargetError;
    let not_connected = || SessionError::Aws {
        source: AwsError::new(AwsErrorKind::TargetNotConnected, "i-0abc is not connected."),
        target: "i-0abc".into(),
    };
    let cases = [
        (CommandError::from(not_connected()), ExitCode::Target),
        (
            CommandError::from(SshError::from(not_connected())),
            ExitCode::Target,
        ),
        (
            CommandError::from(TargetError::Target("t".into())),
            ExitCode::Target,
        ),
        (
            CommandError::NotConnected("i-0abc".into()),
            ExitCode::Target,
        ),
        (
            CommandError::from(SshError::HostKey("changed".into())),
            ExitCode::HostKey,
        ),
        (CommandError::from(KeyError::NoHome), ExitCode::LocalIo),
        (
            CommandError::Aws {
                source: AwsError::new(AwsErrorKind::AccessDenied, "denied"),
                what: "the managed nodes".into(),
            },
            ExitCode::AccessDenied,
        ),
        (CommandError::EmptyUser, ExitCode::Config),
    ];
    for (e, code) in cases {
        let refused = e.target_refused();
        let f = Failure::from(e);
        assert_eq!(f.code, code, "{}", f.message);
        assert_eq!(refused, code == ExitCode::Target, "{}", f.message);
    }
    let no_way = CommandError::NoWay {
        failed: Box::new(CommandError::from(TargetError::Target(
            "i-0abc is not connected.".into(),
        ))),
        missing: "no endpoint serves its VPC".into(),
    };
    assert!(no_way.target_refused());
    let f = Failure::from(no_way);
    assert_eq!(f.code, ExitCode::Target);
    assert_eq!(
        f.message,
        "i-0abc is not connected; and no endpoint serves its VPC"
    );
}
