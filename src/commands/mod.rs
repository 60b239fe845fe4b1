//! Commands that help people find and reach their nodes rather than carry a session:
//! `ls` ([`ls`]), `config ssh` ([`ssh_config`]). They take plain settings from `cli/` and never parse
//! arguments or read the config file themselves.

pub mod doctor;
pub mod ls;
pub mod ssh_config;
