//! The command line: clap structs hold what was typed ([`args`]); [`settings`] resolves
//! them with the environment into what the commands run with.

pub mod args;
pub mod generate;
pub mod settings;
pub mod tools;
