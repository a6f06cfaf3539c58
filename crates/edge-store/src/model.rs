//! Stored records and the inputs that create or change them. All records are account-scoped.

use crate::secret::Secret;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// The stored and wire spelling.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Inverse of [`Self::as_str`].
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }
    };
}

str_enum!(
    /// Who carries a number: a provider OneInbox buys from, or the customer's own trunk.
    Provider { Local => "local", Twilio => "twilio", Telnyx => "telnyx" }
);
str_enum!(
    /// How the number came to the account: bought through us (released on delete) or brought.
    NumberSource { Purchased => "purchased", Byo => "byo" }
);
str_enum!(
    /// Lifecycle of a number; deleted numbers are removed, not kept as a status. Only `active`
    /// numbers are routed: `pending` is a purchase still running at the provider, `failed` one
    /// the provider refused after the client stopped waiting (kept so the client can see why).
    NumberStatus { Active => "active", Pending => "pending", Failed => "failed" }
);
str_enum!(
    /// A disabled agent stays referenced but the SIP side should not send it calls.
    AgentStatus { Active => "active", Disabled => "disabled" }
);
str_enum!(
    /// SRTP on a leg (issue 20): `none` offers plain RTP toward it, `srtp` offers RTP/SAVP with the edge's
    /// keys, `srtp_required` also refuses its plain SDP with 488. An RTP/SAVP offer from the leg is answered
    /// with SRTP whatever this says.
    MediaEncryption { None => "none", Srtp => "srtp", SrtpRequired => "srtp_required" }
);

// By hand: `str_enum!` derives for the enum and has no way to mark a variant `#[default]`.
#[allow(clippy::derivable_impls)]
impl Default for MediaEncryption {
    fn default() -> Self {
        MediaEncryption::None
    }
}

/// A stored `media_encryption` column: NULL (rows from before it) is `none`.
pub(crate) fn media_encryption_col(v: Option<String>) -> crate::error::Result<MediaEncryption> {
    match v {
        None => Ok(MediaEncryption::None),
        Some(s) => MediaEncryption::parse(&s)
            .ok_or_else(|| crate::error::StoreError::Corrupt(format!("bad media_encryption {s:?}"))),
    }
}

/// An AI voice agent reachable at a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub sip_uri: String,
    pub max_concurrent_calls: u32,
    pub voicemail_message: Option<String>,
    pub status: AgentStatus,
    /// Digest username the agent authenticates its own INVITEs with; unique across accounts.
    /// Set together with `sip_password` or not at all.
    pub sip_username: Option<String>,
    /// Decrypted (the SIP side verifies digests with it); redacted in `Debug`.
    pub sip_password: Option<Secret>,
    /// SRTP toward the agent's leg.
    pub media_encryption: MediaEncryption,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewAgent {
    pub name: String,
    pub sip_uri: String,
    pub max_concurrent_calls: u32,
    pub voicemail_message: Option<String>,
    pub status: AgentStatus,
    /// Both or neither (`InvalidField` naming the missing one otherwise).
    pub sip_username: Option<String>,
    pub sip_password: Option<Secret>,
    pub media_encryption: MediaEncryption,
}

/// Partial update: `None` = unchanged; `Some(None)` = cleared (nullable fields only).
#[derive(Debug, Clone, Default)]
pub struct AgentPatch {
    pub name: Option<String>,
    pub sip_uri: Option<String>,
    pub max_concurrent_calls: Option<u32>,
    pub voicemail_message: Option<Option<String>>,
    pub status: Option<AgentStatus>,
    /// `sip_username: Some(None)` also clears the password when the patch leaves it out; the
    /// result must still be both or neither.
    pub sip_username: Option<Option<String>>,
    pub sip_password: Option<Option<Secret>>,
    pub media_encryption: Option<MediaEncryption>,
}

/// Inbound routing as stored. `agent_id: None` means "the number's own agent_id".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboundRouting {
    pub agent_id: Option<String>,
    pub fallback_agent_id: Option<String>,
    pub voicemail_message: Option<String>,
    pub transfer: crate::TransferMode,
}

/// Partial update of [`InboundRouting`]; same `Option<Option<_>>` convention as [`AgentPatch`].
#[derive(Debug, Clone, Default)]
pub struct InboundRoutingPatch {
    pub agent_id: Option<Option<String>>,
    pub fallback_agent_id: Option<Option<String>>,
    pub voicemail_message: Option<Option<String>>,
    /// `Some(None)`: back to the default (`edge`).
    pub transfer: Option<Option<crate::TransferMode>>,
}

/// Outbound trunk settings as shown to API clients: the password is only reported as set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfigView {
    pub trunk_address: String,
    pub auth_username: Option<String>,
    pub auth_password_set: bool,
    /// Digits put before the dialled number (Telnyx IP connections' tech prefix).
    pub tech_prefix: Option<String>,
    /// The `X-Telnyx-Token` is only reported as set.
    pub ip_auth_token_set: bool,
    /// Send `P-Charge-Info` with the number (Telnyx IP connections).
    pub p_charge_info: bool,
    /// PEM client certificate shown to the trunk over TLS (public: returned as stored).
    pub tls_client_certificate: Option<String>,
    /// Its private key is only reported as set.
    pub tls_client_key_set: bool,
    /// SRTP toward the trunk's leg (issue 20).
    pub media_encryption: MediaEncryption,
}

#[derive(Debug, Clone, Default)]
pub struct NewProviderConfig {
    pub trunk_address: String,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub tech_prefix: Option<String>,
    pub ip_auth_token: Option<Secret>,
    pub p_charge_info: bool,
    /// PEM certificate and private key, both or neither (the API checks they match).
    pub tls_client_certificate: Option<String>,
    pub tls_client_key: Option<Secret>,
    pub media_encryption: MediaEncryption,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    pub id: String,
    pub account_id: String,
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub agent_id: String,
    pub status: NumberStatus,
    pub provider: Provider,
    pub source: NumberSource,
    /// The provider's handle for a purchased number (needed to release it).
    pub provider_ref: Option<String>,
    pub inbound_routing: Option<InboundRouting>,
    pub provider_config: Option<ProviderConfigView>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Why a `failed` purchase failed, in the provider's words.
    pub failure_reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewNumber {
    pub phone_number: String,
    pub friendly_name: Option<String>,
    pub agent_id: String,
    pub provider: Provider,
    pub source: NumberSource,
    pub provider_ref: Option<String>,
    pub inbound_routing: Option<InboundRouting>,
    pub provider_config: Option<NewProviderConfig>,
}

/// Partial update of a number. `inbound_routing: Some(None)` makes it outbound-only;
/// `Some(Some(patch))` merges `patch` into the current routing (creating it if absent).
#[derive(Debug, Clone, Default)]
pub struct NumberPatch {
    pub agent_id: Option<String>,
    pub friendly_name: Option<Option<String>>,
    pub inbound_routing: Option<Option<InboundRoutingPatch>>,
    /// Only for numbers that have a provider config (BYO); rotates trunk credentials.
    pub provider_config: Option<ProviderConfigPatch>,
}

/// Partial update of a BYO number's trunk settings (`Some(None)` clears a credential).
#[derive(Debug, Clone, Default)]
pub struct ProviderConfigPatch {
    pub trunk_address: Option<String>,
    pub auth_username: Option<Option<String>>,
    pub auth_password: Option<Option<Secret>>,
    pub tech_prefix: Option<Option<String>>,
    pub ip_auth_token: Option<Option<Secret>>,
    pub p_charge_info: Option<bool>,
    /// Certificate and key change together (`Some(None)` removes both).
    pub tls_client: Option<Option<(String, Secret)>>,
    pub media_encryption: Option<MediaEncryption>,
}

/// Stored provider credentials. The API key itself is sealed and never part of this record.
#[derive(Debug, Clone, PartialEq)]
pub struct IntegrationRecord {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub provider: Provider,
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub name: String,
    pub provider: Provider,
    pub api_key: Secret,
    pub metadata: serde_json::Value,
}

/// One page of a listing; `next_cursor` is opaque and `None` on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}
