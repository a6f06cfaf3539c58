//! edge-providers
