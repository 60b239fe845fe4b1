//! The command line: clap structs hold what was typed ([`args`]); [`resolve`] is the one
//! step that makes them, the config file and the environment ([`settings`]) into what the
//! commands run with: plain settings types owned by the layers below, which never see
//! parsed args or the config file.

pub mod args;
pub mod generate;
pub mod parse;
pub mod resolve;
pub mod settings;
