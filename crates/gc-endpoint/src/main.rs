//! `globus-compute-endpoint`: the endpoint command line.
#![forbid(unsafe_code)]

fn main() {}
