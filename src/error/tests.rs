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
