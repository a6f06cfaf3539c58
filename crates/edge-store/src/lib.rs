//! edge-store
