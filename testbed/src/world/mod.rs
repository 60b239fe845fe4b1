//! What everything in the testbed shares and nothing owns: the configuration, the sessions,
//! the clock, the faults to inject, queue bounds, data counts and the KMS keys. Imports
//! nothing else of the testbed.

pub mod backlog;
pub mod clock;
pub mod config;
pub mod data_stats;
pub mod endpoints;
pub mod faults;
pub mod hostile_ssh;
pub mod http_date;
pub mod kms_keys;
pub mod link_shape;
pub mod state;
pub mod tunnel_stats;
