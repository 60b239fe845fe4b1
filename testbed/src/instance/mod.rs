//! The instance side: a throw-away OpenSSH server ([`sshd`]), the EC2 Instance Connect
//! key store it reads pushed keys from ([`eic_keys`]), and a lying SSH/SFTP server
//! ([`hostile`]). Imports only `world`.

pub mod eic_keys;
pub mod hostile;
pub mod sshd;
