//! edge-api
