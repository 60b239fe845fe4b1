//! End-to-end tests: real OpenSSH `ssh`, `scp` and `sftp` through `sallyport proxy`,
//! against the testbed (in process) and a throw-away sshd on 127.0.0.1 per test.
//! They need root and openssh-server/openssh-client (`.ci/run` installs them).

mod congestion;
mod control_plane;
mod eice;
mod engine;
mod exec_documents;
mod fidelity;
mod forward;
mod harness;
mod hostile;
mod http_proxy;
mod hygiene;
mod instance_connect;
mod instance_connect_pty;
mod kms;
mod ls_doctor;
mod multiplex;
mod parallel;
mod private_network;
mod proxy;
mod resilience;
mod rotation;
mod shell;
mod signing;
mod startup;
mod stopped_setup;
mod tls;
mod transfer_safety;
mod trust;
