//! The AWS HTTP APIs the testbed answers on `POST /`: SSM ([`ssm`], [`describe`],
//! [`documents`]), KMS ([`kms`]), EC2 Instance Connect ([`eic`]), EC2 ([`ec2`],
//! [`ec2_xml`]), STS ([`sts`]) and the tagging API ([`tagging`]); the JSON 1.1 wire they
//! share ([`json11`]); the SigV4 checks ([`sigv4`], presigned URLs [`presign`], and of the
//! data-channel upgrade [`data_auth`]) and the account they all serve ([`account`]).
//! Imports `world` and `instance`.

pub mod account;
pub mod data_auth;
pub mod describe;
pub mod documents;
pub mod ec2;
pub mod ec2_xml;
pub mod eic;
pub mod form;
pub mod json11;
pub mod kms;
pub mod presign;
pub mod sigv4;
pub mod ssm;
pub mod sts;
pub mod tagging;
