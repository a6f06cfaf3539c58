//! `[security]`: what customers' settings may point the edge at, and what a customer must prove.

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSecurity {
    /// Path C checks with the customer's integration that a Twilio/Telnyx number is in
    /// their own provider account. Only an operator that provisions numbers itself turns it off.
    pub verify_number_ownership: bool,
    pub internal_targets: Vec<Spanned<String>>,
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            verify_number_ownership: true,
            internal_targets: Vec::new(),
        }
    }
}

/// The validated `[security]` table.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// See [`RawSecurity::verify_number_ownership`].
    pub verify_number_ownership: bool,
    /// Internal ranges (loopback, private, link-local...) agents' `sip_uri`s and trunk addresses may
    /// still point at; everything else internal is refused when written and again when dialled.
    pub internal_targets: Vec<IpNet>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        SecuritySettings {
            verify_number_ownership: true,
            internal_targets: Vec::new(),
        }
    }
}
