//! EC2 Instance Connect (docs/protocol.md §10.1): `SendSSHPublicKey` makes the instance accept
//! a public key for one OS user for 60 seconds.

use std::time::Duration;

use aws_config::SdkConfig;

use super::{AwsError, AwsErrorKind, advise, retry_throttled};

/// How long a pushed key is accepted (the service's fixed validity).
pub const KEY_VALIDITY: Duration = Duration::from_secs(60);

/// How long to keep retrying a throttled push.
const THROTTLE_BUDGET: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct InstanceConnect {
    client: aws_sdk_ec2instanceconnect::Client,
}

impl InstanceConnect {
    pub fn new(config: &SdkConfig) -> InstanceConnect {
        InstanceConnect {
            client: aws_sdk_ec2instanceconnect::Client::new(config),
        }
    }

    /// Pushes `public_key` (one OpenSSH line, `ssh-ed25519 AAAA…` or `ssh-rsa AAAA…`) for
    /// `os_user` on `instance_id`. `profile` only improves the advice on credential errors.
    pub async fn send_ssh_public_key(
        &self,
        instance_id: &str,
        os_user: &str,
        public_key: &str,
        profile: Option<&str>,
    ) -> Result<(), AwsError> {
        if !instance_id.starts_with("i-") {
            return Err(AwsError::new(
                AwsErrorKind::InvalidTarget,
                format!("{instance_id} is not an EC2 instance, so EC2 Instance Connect cannot push a key to it"),
            )
            .with_hint(
                "Instance Connect works only for EC2 instances (i-…); for other managed nodes install \
                 your public key on the node and use `sallyport proxy` without --push-key",
            ));
        }
        let out = retry_throttled(THROTTLE_BUDGET, || async {
            self.client
                .send_ssh_public_key()
                .instance_id(instance_id)
                .instance_os_user(os_user)
                .ssh_public_key(public_key)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("SendSSHPublicKey", e))
        })
        .await
        .map_err(|e| explain(e, instance_id, os_user, profile))?;
        if !out.success {
            return Err(AwsError::new(
                AwsErrorKind::Service,
                format!("SendSSHPublicKey for {os_user}@{instance_id} returned Success=false"),
            ));
        }
        tracing::debug!(
            instance_id,
            os_user,
            request_id = out.request_id.as_deref().unwrap_or(""),
            "Instance Connect key pushed"
        );
        Ok(())
    }
}

/// What to do about each of Instance Connect's errors.
fn explain(e: AwsError, instance_id: &str, os_user: &str, profile: Option<&str>) -> AwsError {
    let code = e.code.clone().unwrap_or_default();
    let e = match code.as_str() {
        // The service's name for "denied", whatever the reason.
        "AuthException" => AwsError {
            kind: AwsErrorKind::AccessDenied,
            ..e
        },
        "EC2InstanceNotFoundException" => AwsError {
            kind: AwsErrorKind::InvalidTarget,
            ..e
        },
        _ => e,
    };
    let hint = match (e.kind, code.as_str()) {
        (_, _) if e.hint.is_some() => None,
        (AwsErrorKind::AccessDenied, _)
            if super::retry::missing_permission(&e.message).is_none() =>
        {
            Some(format!(
                "your IAM identity needs ec2-instance-connect:SendSSHPublicKey on {instance_id} \
                 (condition key ec2:osuser = {os_user}); ask your AWS administrator to allow it, \
                 or use a --profile that has it"
            ))
        }
        (_, "EC2InstanceNotFoundException") => Some(format!(
            "EC2 does not know {instance_id} in this account and region: check the ID, \
             --profile and --region"
        )),
        (_, "EC2InstanceStateInvalidException" | "EC2InstanceUnavailableException") => {
            Some(format!(
                "{instance_id} must be running for Instance Connect to push a key: start it, or \
                 wait until it is running"
            ))
        }
        (_, "InvalidArgsException") => Some(
            "Instance Connect accepts RSA and Ed25519 public keys in OpenSSH format (not \
             security-key types such as sk-ssh-ed25519); pass another key with -i"
                .to_owned(),
        ),
        (_, "ValidationException") => Some(format!(
            "check the OS user name {os_user:?}: 1-32 characters, letters, digits, _ . @ - \
             (and a final $)"
        )),
        _ => None,
    };
    let e = match hint {
        Some(h) => e.with_hint(h),
        None => e,
    };
    advise(e, profile)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, message: &str) -> AwsError {
        let mut e = AwsError::new(AwsErrorKind::Service, message);
        e.code = Some(code.into());
        e
    }

    #[test]
    fn each_error_gets_advice() {
        let e = explain(
            err(
                "AuthException",
                "SendSSHPublicKey failed: AuthException: denied",
            ),
            "i-0abc",
            "ec2-user",
            None,
        );
        assert_eq!(e.kind, AwsErrorKind::AccessDenied);
        assert!(
            e.hint
                .unwrap()
                .contains("ec2-instance-connect:SendSSHPublicKey on i-0abc")
        );
        let e = explain(
            err("EC2InstanceNotFoundException", "not found"),
            "i-0abc",
            "u",
            None,
        );
        assert_eq!(e.kind, AwsErrorKind::InvalidTarget);
        assert!(e.hint.unwrap().contains("EC2 does not know i-0abc"));
        let e = explain(err("InvalidArgsException", "bad key"), "i-0abc", "u", None);
        assert!(e.hint.unwrap().contains("RSA and Ed25519"));
        let e = explain(
            err("EC2InstanceStateInvalidException", "stopped"),
            "i-0abc",
            "u",
            None,
        );
        assert!(e.hint.unwrap().contains("must be running"));
    }

    #[tokio::test]
    async fn managed_nodes_are_refused_before_any_call() {
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let eic = InstanceConnect::new(&config);
        let e = eic
            .send_ssh_public_key("mi-0123456789abcdef0", "u", "ssh-ed25519 AAAA", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind, AwsErrorKind::InvalidTarget);
        assert!(e.message.contains("not an EC2 instance"), "{}", e.message);
    }
}
