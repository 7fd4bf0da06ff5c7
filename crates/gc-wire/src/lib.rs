//! Wire formats spoken between the Globus Compute SDK, web service, endpoint and user endpoint.
#![forbid(unsafe_code)]

pub mod messagepack;
pub mod rest;
