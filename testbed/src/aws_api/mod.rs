//! The AWS HTTP APIs the testbed answers on `POST /`: SSM ([`api`], [`describe`],
//! [`documents`]), KMS ([`kms`]), EC2 Instance Connect ([`eic`]), STS ([`sts`]) and the
//! tagging API ([`tagging`]); the SigV4 checks ([`sigv4`], and of the data-channel upgrade
//! [`data_auth`]) and the account they all serve ([`account`]). Imports `world` and
//! `instance`.

pub mod account;
pub mod api;
pub mod data_auth;
pub mod describe;
pub mod documents;
pub mod eic;
pub mod kms;
pub mod sigv4;
pub mod sts;
pub mod tagging;
