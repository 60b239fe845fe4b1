//! The instance side: a throw-away OpenSSH server ([`sshd`]) and the EC2 Instance Connect
//! key store it reads pushed keys from ([`eic_keys`]). Imports only `world`.

pub mod eic_keys;
pub mod sshd;
