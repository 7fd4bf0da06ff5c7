//! JSON bodies of the REST routes used by the SDK (PROTOCOL-SDK §3) and by the endpoint
//! (PROTOCOL-ENDPOINT §2.4–§2.5).
