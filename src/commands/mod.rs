//! Commands that help people find and reach their nodes rather than carry a session:
//! `config ssh` ([`ssh_config`]). They take plain settings from `cli/` and never parse
//! arguments or read the config file themselves.

pub mod ssh_config;
