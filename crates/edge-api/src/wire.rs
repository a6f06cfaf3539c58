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

/// Serde helper for partial updates: an absent field is `None`, a value is `Some`, and an
/// explicit `null` is an error naming the field (instead of being read as "absent" and ignored).
pub fn non_null<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(v) => Ok(Some(v)),
        None => Err(serde::de::Error::custom(
            "cannot be null: leave the field out to keep its value",
        )),
    }
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

/// SRTP on the leg toward an agent or a trunk: `none` offers plain RTP (an `RTP/SAVP` offer from it is
/// still answered with SRTP), `srtp` offers `RTP/SAVP` with the edge's own keys (SDES), `srtp_required`
/// also refuses its plain SDP with 488.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum MediaEncryptionName {
    #[default]
    None,
    Srtp,
    SrtpRequired,
}

impl From<edge_store::MediaEncryption> for MediaEncryptionName {
    fn from(m: edge_store::MediaEncryption) -> Self {
        match m {
            edge_store::MediaEncryption::None => MediaEncryptionName::None,
            edge_store::MediaEncryption::Srtp => MediaEncryptionName::Srtp,
            edge_store::MediaEncryption::SrtpRequired => MediaEncryptionName::SrtpRequired,
        }
    }
}

impl From<MediaEncryptionName> for edge_store::MediaEncryption {
    fn from(m: MediaEncryptionName) -> Self {
        match m {
            MediaEncryptionName::None => edge_store::MediaEncryption::None,
            MediaEncryptionName::Srtp => edge_store::MediaEncryption::Srtp,
            MediaEncryptionName::SrtpRequired => edge_store::MediaEncryption::SrtpRequired,
        }
    }
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

/// Query string of list endpoints. Unknown parameters are a 400 naming them.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque `next_cursor` from the previous page (only values this API returned are valid).
    #[param(min_length = 1, max_length = 200, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Id of the last item of the previous page (of this list's kind: `agt_…`, `key_…`,
    /// `crd_…`); the page starts with the next older item.
    #[param(min_length = 5, max_length = 69, pattern = r"^[a-z]{2,4}_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

/// A parsed page request; `starting_after` still has to be turned into a cursor with
/// [`PageRequest::resolve`].
#[derive(Debug)]
pub struct PageRequest {
    pub limit: u32,
    cursor: Option<edge_store::Cursor>,
    starting_after: Option<String>,
}

impl ListParams {
    pub fn parse(&self) -> Result<PageRequest, crate::error::ApiError> {
        page_request(
            self.limit.as_deref(),
            self.cursor.as_deref(),
            self.starting_after.as_deref(),
        )
    }
}

/// Validates the paging parameters shared by every list.
pub fn page_request(
    limit: Option<&str>,
    cursor: Option<&str>,
    starting_after: Option<&str>,
) -> Result<PageRequest, crate::error::ApiError> {
    use crate::error::ApiError;
    let limit = crate::validate::limit(limit, 20)?;
    if cursor.is_some() && starting_after.is_some() {
        return Err(ApiError::field(
            "starting_after",
            "give either cursor or starting_after, not both",
        ));
    }
    let cursor = match cursor {
        None => None,
        Some(c) => Some(
            edge_store::Cursor::decode(c)
                .ok_or_else(|| ApiError::field("cursor", "not a cursor returned by this API"))?,
        ),
    };
    Ok(PageRequest {
        limit,
        cursor,
        starting_after: starting_after.map(str::to_owned),
    })
}

impl PageRequest {
    /// The keyset cursor: the given one, or the position of the `starting_after` item, whose
    /// `created_at` `lookup` finds in the account (`None`: no such item -> 400).
    pub async fn resolve<F, Fut>(
        self,
        kind: edge_store::IdKind,
        lookup: F,
    ) -> Result<(u32, Option<edge_store::Cursor>), crate::error::ApiError>
    where
        F: FnOnce(String) -> Fut,
        Fut: std::future::Future<Output = Result<Option<i64>, edge_store::StoreError>>,
    {
        use crate::error::ApiError;
        let Some(id) = self.starting_after else {
            return Ok((self.limit, self.cursor));
        };
        let missing = || ApiError::field("starting_after", "no such item in this account");
        if !kind.is_valid(&id) {
            return Err(missing());
        }
        let created_at = lookup(id.clone()).await?.ok_or_else(missing)?;
        Ok((self.limit, Some(edge_store::Cursor::after(created_at, &id))))
    }
}
