//! Wire enums and helpers shared by the request/response types.

use edge_providers::ProviderKind;
use edge_store::{AgentStatus, NumberSource, NumberStatus, Provider};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// Serde helper that tells an absent field (`None`) from an explicit `null` (`Some(None)`).
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Who carries the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    Local,
    Twilio,
    Telnyx,
}

/// Providers a customer can bring a number or credentials from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ByoProvider {
    Twilio,
    Telnyx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NumberSourceName {
    /// Bought through OneInbox; deleting it releases it at the provider.
    Purchased,
    /// Brought by the customer; deleting it only unregisters it.
    Byo,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NumberStatusName {
    Active,
    /// Being bought; not routed yet.
    Pending,
    /// The provider refused or failed after the client stopped waiting; see `failure_reason`.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatusName {
    Active,
    Disabled,
}

impl From<Provider> for ProviderName {
    fn from(p: Provider) -> Self {
        match p {
            Provider::Local => ProviderName::Local,
            Provider::Twilio => ProviderName::Twilio,
            Provider::Telnyx => ProviderName::Telnyx,
        }
    }
}

impl From<ProviderName> for ProviderKind {
    fn from(p: ProviderName) -> Self {
        match p {
            ProviderName::Local => ProviderKind::Local,
            ProviderName::Twilio => ProviderKind::Twilio,
            ProviderName::Telnyx => ProviderKind::Telnyx,
        }
    }
}

pub fn store_provider(k: ProviderKind) -> Provider {
    match k {
        ProviderKind::Local => Provider::Local,
        ProviderKind::Twilio => Provider::Twilio,
        ProviderKind::Telnyx => Provider::Telnyx,
    }
}

pub fn provider_kind(p: Provider) -> ProviderKind {
    match p {
        Provider::Local => ProviderKind::Local,
        Provider::Twilio => ProviderKind::Twilio,
        Provider::Telnyx => ProviderKind::Telnyx,
    }
}

impl From<ByoProvider> for Provider {
    fn from(p: ByoProvider) -> Self {
        match p {
            ByoProvider::Twilio => Provider::Twilio,
            ByoProvider::Telnyx => Provider::Telnyx,
        }
    }
}

impl From<NumberSource> for NumberSourceName {
    fn from(s: NumberSource) -> Self {
        match s {
            NumberSource::Purchased => NumberSourceName::Purchased,
            NumberSource::Byo => NumberSourceName::Byo,
        }
    }
}

impl From<NumberStatus> for NumberStatusName {
    fn from(s: NumberStatus) -> Self {
        match s {
            NumberStatus::Active => NumberStatusName::Active,
            NumberStatus::Pending => NumberStatusName::Pending,
            NumberStatus::Failed => NumberStatusName::Failed,
        }
    }
}

impl From<AgentStatus> for AgentStatusName {
    fn from(s: AgentStatus) -> Self {
        match s {
            AgentStatus::Active => AgentStatusName::Active,
            AgentStatus::Disabled => AgentStatusName::Disabled,
        }
    }
}

impl From<AgentStatusName> for AgentStatus {
    fn from(s: AgentStatusName) -> Self {
        match s {
            AgentStatusName::Active => AgentStatus::Active,
            AgentStatusName::Disabled => AgentStatus::Disabled,
        }
    }
}

/// Query string of list endpoints.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque `next_cursor` from the previous page.
    pub cursor: Option<String>,
}

impl ListParams {
    pub fn parse(&self) -> Result<(u32, Option<edge_store::Cursor>), crate::error::ApiError> {
        let limit = crate::validate::limit(self.limit.as_deref(), 20)?;
        let cursor = match self.cursor.as_deref() {
            None => None,
            Some(c) => Some(
                edge_store::Cursor::decode(c)
                    .ok_or_else(|| crate::error::ApiError::field("cursor", "not a cursor returned by this API"))?,
            ),
        };
        Ok((limit, cursor))
    }
}
