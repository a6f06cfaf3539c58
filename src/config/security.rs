//! `[security]`: settings that protect customers from each other. Only
//! `verify_number_ownership` lives here on this branch; the surface branch adds the rest.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawSecurity {
    /// Path C checks with the customer's integration that a Twilio/Telnyx number is in
    /// their own provider account. Only an operator that provisions numbers itself turns it off.
    pub verify_number_ownership: bool,
}

impl Default for RawSecurity {
    fn default() -> Self {
        RawSecurity {
            verify_number_ownership: true,
        }
    }
}

/// Validated `[security]`.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    pub verify_number_ownership: bool,
}

impl From<&RawSecurity> for SecuritySettings {
    fn from(raw: &RawSecurity) -> Self {
        SecuritySettings {
            verify_number_ownership: raw.verify_number_ownership,
        }
    }
}
