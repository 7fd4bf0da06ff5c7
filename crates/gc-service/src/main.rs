//! `gc-service`: the self-hostable Globus Compute web service.
#![forbid(unsafe_code)]

fn main() {}
