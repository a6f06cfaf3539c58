//! Data exchanged between the API and providers.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

/// Which provider a number comes from (serialized lowercase: `local`, `twilio`, `telnyx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    Local,
    Twilio,
    Telnyx,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Twilio => "twilio",
            Self::Telnyx => "telnyx",
        }
    }
}

impl std::fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A search for purchasable numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// ISO 3166 alpha-2, upper case (`US`).
    pub country: String,
    /// National area code / NDC (`415`); NANP rules apply for US and CA.
    pub area_code: Option<String>,
    /// Digits the number must contain.
    pub contains: Option<String>,
    /// 1..=[`crate::MAX_SEARCH_LIMIT`].
    pub limit: usize,
    /// E.164 numbers already owned: never offered again.
    #[serde(default)]
    pub exclude: HashSet<String>,
}

/// A number that can be purchased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AvailableNumber {
    /// E.164 (`+14155550100`).
    pub phone_number: String,
    /// Human formatting (`(415) 555-0100`).
    pub friendly_name: Option<String>,
    /// ISO 3166 alpha-2.
    pub country: String,
    /// State / province.
    pub region: Option<String>,
    /// City / rate center.
    pub locality: Option<String>,
    pub area_code: Option<String>,
    /// Lowercase capability names: `voice`, `sms`, `mms`, ...
    pub capabilities: Vec<String>,
    /// Monthly price as the provider states it (decimal string, provider's currency).
    pub monthly_cost: Option<String>,
}

/// A number bought from a provider; keep it to release the number later.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PurchasedNumber {
    /// E.164.
    pub phone_number: String,
    pub provider: ProviderKind,
    /// Provider handle: `local:+1...`, Twilio IncomingPhoneNumber SID (`PN...`), Telnyx
    /// number-order id.
    pub provider_ref: String,
}
