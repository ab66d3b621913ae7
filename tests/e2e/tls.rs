//! TLS over real sockets: termination, ALPN, SNI, client certificates, reload, upstream TLS.

#[allow(unused_imports)]
use crate::harness::*;
