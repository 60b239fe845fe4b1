//! What runs on top of the testbed: a TCP delay proxy for benchmarks ([`delay_proxy`]) and
//! `sallyport-testbed demo` ([`demo`]). Nothing in the library imports these.

pub mod delay_proxy;
pub mod demo;
