//! sip-core
