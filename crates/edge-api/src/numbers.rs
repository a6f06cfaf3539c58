//! `/v1/phone-numbers`: search, purchase (paths A and B), bring-your-own (path C), and
//! get/list/update/delete.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account, ApiJson};
use crate::inflight::Reservation;
use crate::validate::{self, MAX_MESSAGE_LEN, MAX_NAME_LEN};
use crate::wire::{
    double_option, non_null, page_request, provider_kind, store_provider, ByoProvider, NumberSourceName,
    NumberStatusName, ProviderName,
};
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use edge_providers::{AvailableNumber, NumberProvider, PurchasedNumber, SearchQuery};
use edge_store::{
    IdKind, InboundRouting, InboundRoutingPatch, NewNumber, NewProviderConfig, NumberFilter, NumberPatch, NumberRecord,
    NumberSource, NumberStatus, ProviderConfigPatch, Secret, TransferMode,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

/// How many candidates path B asks the provider for per round.
const AUTO_ASSIGN_CANDIDATES: usize = 10;
/// Searches path B makes (each excluding the numbers already tried) before giving up.
const AUTO_ASSIGN_ROUNDS: usize = 3;
/// Country path B buys in when the request names none ("just pass your agent ID").
const DEFAULT_COUNTRY: &str = "US";

// ---------- wire types ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumber {
    /// `phn_…`
    pub id: String,
    /// E.164.
    pub phone_number: String,
    pub friendly_name: Option<String>,
    /// Primary agent (outbound calls; inbound too unless `inbound_routing.agent_id` is set).
    pub agent_id: String,
    pub status: NumberStatusName,
    pub provider: ProviderName,
    pub source: NumberSourceName,
    /// `null`: outbound-only, inbound calls are not routed.
    pub inbound_routing: Option<InboundRoutingOut>,
    /// BYO trunk settings; the password is never returned.
    pub provider_config: Option<ProviderConfigOut>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Set-up checks, in the answer to a Twilio/Telnyx registration only
    /// (same as `GET /v1/phone-numbers/{id}/checks`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<crate::checks::Check>>,
    /// Why a purchase ended `failed` (the provider's refusal); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboundRoutingOut {
    /// Agent for inbound calls; `null` means the number's `agent_id`.
    pub agent_id: Option<String>,
    pub fallback: Option<FallbackOut>,
    /// Overrides the agent's default voicemail message.
    pub voicemail_message: Option<String>,
    /// Who carries out an agent's transfer to a telephone number.
    pub transfer: TransferModeName,
}

/// Who carries out an agent's blind transfer to a telephone number: `edge` (default) dials it through
/// the number's trunk and bridges the caller; `carrier` passes the REFER on to the carrier (Twilio and
/// Telnyx accept it when enabled on the trunk), and the call leaves the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TransferModeName {
    Edge,
    Carrier,
}

impl From<TransferMode> for TransferModeName {
    fn from(m: TransferMode) -> Self {
        match m {
            TransferMode::Edge => TransferModeName::Edge,
            TransferMode::Carrier => TransferModeName::Carrier,
        }
    }
}

impl From<TransferModeName> for TransferMode {
    fn from(m: TransferModeName) -> Self {
        match m {
            TransferModeName::Edge => TransferMode::Edge,
            TransferModeName::Carrier => TransferMode::Carrier,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FallbackOut {
    pub agent_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderConfigOut {
    pub trunk_address: String,
    pub auth_username: Option<String>,
    pub auth_password_set: bool,
    /// Telnyx IP connection: digits put before the dialled number.
    pub tech_prefix: Option<String>,
    /// Telnyx IP connection: whether an `X-Telnyx-Token` is stored (the token is never returned).
    pub ip_auth_token_set: bool,
    /// Telnyx IP connection: whether INVITEs carry `P-Charge-Info` with the number.
    pub p_charge_info: bool,
    /// PEM client certificate (and chain) shown to the trunk over TLS; `null` when none.
    pub tls_client_certificate: Option<String>,
    /// Whether its private key is stored (the key is never returned).
    pub tls_client_key_set: bool,
    /// SRTP on the trunk's leg (`none`, `srtp`, `srtp_required`).
    pub media_encryption: crate::wire::MediaEncryptionName,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberList {
    pub data: Vec<PhoneNumber>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

/// Query string of `GET /v1/phone-numbers`. Unknown parameters are a 400 naming them.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct NumberListParams {
    /// Only numbers whose primary agent is this one (`agt_…`).
    #[param(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: Option<String>,
    /// Only numbers from this provider.
    #[param(value_type = Option<ProviderName>)]
    pub provider: Option<String>,
    /// Only numbers in this status.
    #[param(value_type = Option<NumberStatusName>)]
    pub status: Option<String>,
    /// Only this E.164 number (encode `+` as `%2B`).
    #[param(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub phone_number: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque `next_cursor` from the previous page (only values this API returned are valid).
    #[param(min_length = 1, max_length = 200, pattern = r"^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
    /// Id of the last number of the previous page (`phn_…`).
    #[param(pattern = r"^phn_[A-Za-z0-9]{1,64}$")]
    pub starting_after: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRoutingIn {
    /// Agent for inbound calls; omitted means the number's `agent_id`.
    #[schema(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: Option<String>,
    pub fallback: Option<FallbackIn>,
    #[schema(min_length = 1, max_length = 1000)]
    pub voicemail_message: Option<String>,
    /// Default `edge`.
    pub transfer: Option<TransferModeName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackIn {
    #[schema(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: String,
}

/// Partial inbound routing: absent fields unchanged, `null` clears.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InboundRoutingPatchIn {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<FallbackIn>)]
    pub fallback: Option<Option<FallbackIn>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub voicemail_message: Option<Option<String>>,
    /// `null`: back to the default, `edge`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<TransferModeName>)]
    pub transfer: Option<Option<TransferModeName>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    /// Path A: the number to buy (from search). Omit for path B (auto-assign).
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub phone_number: Option<String>,
    /// Path B: ISO 3166 alpha-2 (required when `phone_number` is omitted).
    #[schema(pattern = r"^[A-Za-z]{2}$", example = "US")]
    pub country: Option<String>,
    /// Path B: preferred area code.
    #[schema(pattern = r"^[0-9]{1,5}$", example = "415")]
    pub area_code: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub friendly_name: Option<String>,
    #[schema(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: String,
    /// Omit for an outbound-only number.
    pub inbound_routing: Option<InboundRoutingIn>,
    /// Provider to buy from; defaults to the server's default provider.
    pub provider: Option<ProviderName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigIn {
    /// Termination host, `host[:port]`; a leading `sip:` is stripped. `sips:host[:port]` or
    /// `host[:port];transport=tls` reach the trunk over TLS (`;transport=tcp` over TCP); kept as written.
    #[schema(
        pattern = r"^\s*([Ss][Ii][Pp][Ss]?:)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(:[0-9]{1,5})?(;[Tt][Rr][Aa][Nn][Ss][Pp][Oo][Rr][Tt]=([Uu][Dd][Pp]|[Tt][Cc][Pp]|[Tt][Ll][Ss]))*\s*$",
        example = "yourtrunk.pstn.twilio.com"
    )]
    pub trunk_address: String,
    /// Digest username (Twilio credential list, Telnyx credential connection). On a Telnyx trunk it is
    /// also sent as `X-Telnyx-Username`.
    pub auth_username: Option<String>,
    /// Write-only; stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 512, write_only)]
    pub auth_password: Option<String>,
    /// Telnyx IP connection with tech-prefix authentication: the digits Telnyx assigned (4 today), put
    /// before the dialled number without its `+` (`1234` + `+18005678912` -> `123418005678912`).
    #[schema(pattern = r"^[0-9]{1,16}$", example = "1234")]
    pub tech_prefix: Option<String>,
    /// Telnyx IP connection with token authentication: sent as `X-Telnyx-Token` on every INVITE.
    /// 12 to 48 letters, digits and hyphens. Write-only; stored encrypted, never returned.
    #[schema(pattern = r"^[A-Za-z0-9-]{12,48}$", write_only)]
    pub ip_auth_token: Option<String>,
    /// Telnyx IP connection with P-Charge-Info authentication: INVITEs carry
    /// `P-Charge-Info: <sip:+E164@trunk host>` with this number (default `false`).
    pub p_charge_info: Option<bool>,
    /// Mutual TLS: PEM client certificate (then any intermediates) shown to the trunk when it is reached
    /// over TLS (`sips:`, `;transport=tls`). With `tls_client_key`; must be valid now.
    #[schema(max_length = 32768, pattern = "-----BEGIN CERTIFICATE-----")]
    pub tls_client_certificate: Option<String>,
    /// The certificate's PEM private key. Write-only; stored encrypted, never returned.
    #[schema(max_length = 32768, pattern = "-----BEGIN ([A-Z]+ )?PRIVATE KEY-----", write_only)]
    pub tls_client_key: Option<String>,
    /// SRTP on the trunk's leg: `srtp` offers `RTP/SAVP` with the edge's keys, `srtp_required` also refuses a
    /// plain answer; default `none`.
    pub media_encryption: Option<crate::wire::MediaEncryptionName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterNumberRequest {
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub phone_number: String,
    #[schema(min_length = 1, max_length = 200)]
    pub friendly_name: Option<String>,
    pub provider: ByoProvider,
    #[schema(pattern = r"^agt_[A-Za-z0-9]{1,64}$")]
    pub agent_id: String,
    pub provider_config: ProviderConfigIn,
    pub inbound_routing: Option<InboundRoutingIn>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateNumberRequest {
    /// New primary agent (cannot be null).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub friendly_name: Option<Option<String>>,
    /// `null` makes the number outbound-only; an object merges into the current routing.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<InboundRoutingPatchIn>)]
    pub inbound_routing: Option<Option<InboundRoutingPatchIn>>,
    /// BYO numbers only: rotate trunk address or credentials. Cannot be null (a BYO number
    /// needs its trunk; delete the number instead).
    #[serde(default, deserialize_with = "non_null")]
    pub provider_config: Option<ProviderConfigPatchIn>,
}

/// Partial trunk settings: absent fields unchanged, `null` clears a credential.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfigPatchIn {
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(
        pattern = r"^\s*([Ss][Ii][Pp][Ss]?:)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)(:[0-9]{1,5})?(;[Tt][Rr][Aa][Nn][Ss][Pp][Oo][Rr][Tt]=([Uu][Dd][Pp]|[Tt][Cc][Pp]|[Tt][Ll][Ss]))*\s*$"
    )]
    pub trunk_address: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 200)]
    pub auth_username: Option<Option<String>>,
    /// Write-only; stored encrypted, never returned.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 1, max_length = 512, write_only)]
    pub auth_password: Option<Option<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = r"^[0-9]{1,16}$")]
    pub tech_prefix: Option<Option<String>>,
    /// Write-only; `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9-]{12,48}$", write_only)]
    pub ip_auth_token: Option<Option<String>>,
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    pub p_charge_info: Option<bool>,
    /// Replaced together with `tls_client_key`; `null` (both) removes the client certificate.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 32768, pattern = "-----BEGIN CERTIFICATE-----")]
    pub tls_client_certificate: Option<Option<String>>,
    /// Write-only; replaced or removed together with `tls_client_certificate`.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(
        value_type = Option<String>,
        max_length = 32768,
        pattern = "-----BEGIN ([A-Z]+ )?PRIVATE KEY-----",
        write_only
    )]
    pub tls_client_key: Option<Option<String>>,
    /// SRTP on the trunk's leg. Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    pub media_encryption: Option<crate::wire::MediaEncryptionName>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// ISO 3166 alpha-2, e.g. `US` (required).
    #[param(required = true, pattern = r"^[A-Za-z]{2}$", example = "US")]
    pub country: Option<String>,
    /// e.g. `415`.
    #[param(pattern = r"^[0-9]{1,5}$", example = "415")]
    pub area_code: Option<String>,
    /// Digits the number must contain.
    #[param(pattern = r"^[0-9]{1,15}$")]
    pub contains: Option<String>,
    /// 1 to 100 (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Provider to search; defaults to the server's default provider.
    #[param(value_type = Option<ProviderName>)]
    pub provider: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailableNumberOut {
    #[schema(pattern = r"^\+[1-9][0-9]{7,14}$", example = "+14155551234")]
    pub phone_number: String,
    #[schema(min_length = 1, max_length = 200)]
    pub friendly_name: Option<String>,
    pub country: String,
    pub region: Option<String>,
    pub locality: Option<String>,
    pub area_code: Option<String>,
    pub capabilities: Vec<String>,
    pub monthly_cost: Option<String>,
    pub provider: ProviderName,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponse {
    pub data: Vec<AvailableNumberOut>,
}

// ---------- conversions ----------

impl From<NumberRecord> for PhoneNumber {
    fn from(r: NumberRecord) -> Self {
        PhoneNumber {
            id: r.id,
            phone_number: r.phone_number,
            friendly_name: r.friendly_name,
            agent_id: r.agent_id,
            status: r.status.into(),
            provider: r.provider.into(),
            source: r.source.into(),
            inbound_routing: r.inbound_routing.map(|ib| InboundRoutingOut {
                agent_id: ib.agent_id,
                fallback: ib.fallback_agent_id.map(|agent_id| FallbackOut { agent_id }),
                voicemail_message: ib.voicemail_message,
                transfer: ib.transfer.into(),
            }),
            provider_config: r.provider_config.map(|p| ProviderConfigOut {
                trunk_address: p.trunk_address,
                auth_username: p.auth_username,
                auth_password_set: p.auth_password_set,
                tech_prefix: p.tech_prefix,
                ip_auth_token_set: p.ip_auth_token_set,
                p_charge_info: p.p_charge_info,
                tls_client_certificate: p.tls_client_certificate,
                tls_client_key_set: p.tls_client_key_set,
                media_encryption: p.media_encryption.into(),
            }),
            created_at: edge_store::time::rfc3339(r.created_at),
            updated_at: edge_store::time::rfc3339(r.updated_at),
            checks: None,
            failure_reason: r.failure_reason,
        }
    }
}

fn inbound_routing(r: Option<InboundRoutingIn>) -> ApiResult<Option<InboundRouting>> {
    let Some(r) = r else { return Ok(None) };
    Ok(Some(InboundRouting {
        agent_id: r
            .agent_id
            .map(|a| validate::agent_id("inbound_routing.agent_id", &a))
            .transpose()?,
        fallback_agent_id: r
            .fallback
            .map(|f| validate::agent_id("inbound_routing.fallback.agent_id", &f.agent_id))
            .transpose()?,
        voicemail_message: validate::opt_text(
            "inbound_routing.voicemail_message",
            r.voicemail_message.as_deref(),
            MAX_MESSAGE_LEN,
        )?,
        transfer: r.transfer.map(Into::into).unwrap_or_default(),
    }))
}

/// Fails before any provider call when a referenced agent is not in the account, so we
/// never buy a number we then cannot store.
async fn check_agents(state: &ApiState, account: &str, agent_id: &str, ib: Option<&InboundRouting>) -> ApiResult<()> {
    let mut refs = vec![("agent_id", agent_id)];
    if let Some(r) = ib {
        if let Some(a) = &r.agent_id {
            refs.push(("inbound_routing.agent_id", a));
        }
        if let Some(a) = &r.fallback_agent_id {
            refs.push(("inbound_routing.fallback.agent_id", a));
        }
    }
    for (field, id) in refs {
        if state.store.get_agent(account, id).await?.is_none() {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_reference",
                message: format!("no agent {id:?} in this account"),
                field: Some(field.to_owned()),
            });
        }
    }
    Ok(())
}

fn pick_provider(state: &ApiState, requested: Option<ProviderName>) -> ApiResult<Arc<dyn NumberProvider>> {
    match requested {
        None => Ok(state.providers.default_provider()),
        Some(p) => state
            .providers
            .get(p.into())
            .ok_or_else(|| ApiError::field("provider", "this provider is not configured on the server")),
    }
}

// ---------- handlers ----------

/// Search purchasable numbers (numbers already registered by anyone are excluded).
#[utoipa::path(get, path = "/v1/phone-numbers/search", tag = "phone-numbers", operation_id = "search_phone_numbers",
    params(SearchParams),
    responses(
        (status = 200, body = SearchResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 502, body = ErrorBody)))]
pub async fn search(
    State(state): State<ApiState>,
    _account: Account,
    q: Result<Query<SearchParams>, QueryRejection>,
) -> ApiResult<Json<SearchResponse>> {
    let Query(q) = q.map_err(query_error)?;
    let country = validate::country(
        "country",
        q.country
            .as_deref()
            .ok_or_else(|| ApiError::field("country", "required"))?,
    )?;
    let area_code = q
        .area_code
        .as_deref()
        .map(|a| validate::area_code("area_code", &country, a))
        .transpose()?;
    let contains = match q.contains.as_deref() {
        None => None,
        Some(c) if !c.is_empty() && c.len() <= 15 && c.bytes().all(|b| b.is_ascii_digit()) => Some(c.to_owned()),
        Some(_) => return Err(ApiError::field("contains", "must be 1 to 15 digits")),
    };
    let limit = validate::limit(q.limit.as_deref(), 10)?;
    let requested = match q.provider.as_deref() {
        None => None,
        Some(p) => Some(
            serde_json::from_value::<ProviderName>(serde_json::Value::String(p.to_owned()))
                .map_err(|_| ApiError::field("provider", "must be local, twilio or telnyx"))?,
        ),
    };
    let provider = pick_provider(&state, requested)?;
    let query = SearchQuery {
        country,
        area_code,
        contains,
        limit: limit as usize,
        exclude: state.index.owned_numbers(),
    };
    let found = provider.search(&query).await?;
    let kind = store_provider(provider.kind()).into();
    let data = found
        .into_iter()
        .filter(|n| !query.exclude.contains(&n.phone_number))
        .take(limit as usize)
        .map(|n: AvailableNumber| AvailableNumberOut {
            phone_number: n.phone_number,
            friendly_name: n.friendly_name,
            country: n.country,
            region: n.region,
            locality: n.locality,
            area_code: n.area_code,
            capabilities: n.capabilities,
            monthly_cost: n.monthly_cost,
            provider: kind,
        })
        .collect();
    Ok(Json(SearchResponse { data }))
}

/// Buy a number and wire it to an agent: a specific `phone_number` (path A) or, without it,
/// the first available one for `country`/`area_code` (path B).
#[utoipa::path(post, path = "/v1/phone-numbers/purchase", tag = "phone-numbers", operation_id = "purchase_phone_number",
    request_body = PurchaseRequest,
    responses(
        (status = 201, body = PhoneNumber),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn purchase(
    State(state): State<ApiState>,
    Account(account): Account,
    idempotent: Option<axum::Extension<crate::idempotency::Active>>,
    ApiJson(req): ApiJson<PurchaseRequest>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match purchase_inner(state, account, idempotent.map(|e| e.0), req).await {
        Ok(Ok(rec)) => (StatusCode::CREATED, Json(PhoneNumber::from(rec))).into_response(),
        Ok(Err(pending_id)) => crate::error::purchase_in_progress(PURCHASE_IN_PROGRESS, pending_id),
        Err(e) => e.into_response(),
    }
}

/// What a 503 `purchase_in_progress` tells the client.
pub(crate) const PURCHASE_IN_PROGRESS: &str =
    "the provider is slow; the purchase continues. Its number is listed with status \"pending\" (error.phone_number_id) \
     until it turns \"active\" or \"failed\"; poll GET /v1/phone-numbers/{id}, or retry with the same Idempotency-Key \
     to get its result. Do not buy again without checking";

/// How far a purchase running in its own task has got, shared with whoever answers the client.
#[derive(Debug, Default)]
pub(crate) struct PurchaseProgress {
    /// The `pending` row of the number being bought, once stored.
    pub(crate) pending_id: Option<String>,
    /// Nobody will see the purchase's answer: a failure is kept as a `failed` row (else the
    /// pending row is removed and the error answered).
    pub(crate) client_gone: bool,
    /// The purchase failed and its pending row is gone: the answer is the task's result.
    settled: bool,
}

pub(crate) type ProgressSlot = Arc<tokio::sync::Mutex<PurchaseProgress>>;

/// `Ok(Ok(number))` bought; `Ok(Err(pending_id))` still running after the client's wait.
async fn purchase_inner(
    state: ApiState,
    account: String,
    idempotent: Option<crate::idempotency::Active>,
    req: PurchaseRequest,
) -> ApiResult<Result<NumberRecord, Option<String>>> {
    let agent_id = validate::agent_id("agent_id", &req.agent_id)?;
    let friendly_name = validate::opt_text("friendly_name", req.friendly_name.as_deref(), MAX_NAME_LEN)?;
    let ib = inbound_routing(req.inbound_routing)?;
    let provider = pick_provider(&state, req.provider)?;
    let explicit = req
        .phone_number
        .as_deref()
        .map(|p| validate::e164("phone_number", p))
        .transpose()?;
    let target = match explicit {
        Some(number) => Target::Number(number),
        None => {
            let country = validate::country("country", req.country.as_deref().unwrap_or(DEFAULT_COUNTRY))?;
            let area_code = req
                .area_code
                .as_deref()
                .map(|a| validate::area_code("area_code", &country, a))
                .transpose()?;
            Target::Auto(SearchQuery {
                country,
                area_code,
                contains: None,
                limit: AUTO_ASSIGN_CANDIDATES,
                exclude: state.index.owned_numbers(),
            })
        }
    };
    check_agents(&state, &account, &agent_id, ib.as_ref()).await?;
    if let Some(max) = state.config.max_purchased_numbers {
        if state.store.count_purchased_numbers(&account).await? >= u64::from(max) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "purchase_limit_reached",
                format!("this account already holds {max} purchased numbers, its limit; delete one or ask for a higher limit"),
            ));
        }
    }

    // Buy-then-register runs in its own task: if the client disconnects or the request times
    // out mid-way, it still finishes (or releases the number) instead of leaking a purchase.
    let order = Order {
        account,
        friendly_name,
        agent_id,
        inbound_routing: ib,
    };
    // Answer before the request time-out would, saying the purchase goes on, rather than a bare 503.
    // Under an Idempotency-Key that layer answers in time and records the real outcome here; its
    // 503 may already have been the client's answer, so a failure is kept as a `failed` row.
    let (wait, progress) = match idempotent {
        Some(active) => {
            active.progress.lock().await.client_gone = true;
            (std::time::Duration::from_secs(24 * 60 * 60), active.progress)
        }
        None => (state.config.answer_within(), ProgressSlot::default()),
    };
    let mut task = tokio::spawn(buy_and_register(state, provider, target, order, Arc::clone(&progress)));
    let joined = match tokio::time::timeout(wait, &mut task).await {
        Ok(joined) => joined,
        Err(_) => {
            let mut p = progress.lock().await;
            if !p.settled {
                p.client_gone = true;
                return Ok(Err(p.pending_id.clone()));
            }
            drop(p);
            // Failed just now and answered nobody yet: give the client that answer.
            task.await
        }
    };
    let rec = joined.map_err(|e| {
        tracing::error!(error = %e, "purchase task failed");
        ApiError::internal()
    })??;
    Ok(Ok(rec))
}

/// Everything a purchase stores besides the number itself.
#[derive(Clone)]
struct Order {
    account: String,
    friendly_name: Option<String>,
    agent_id: String,
    inbound_routing: Option<InboundRouting>,
}

impl Order {
    fn new_number(&self, phone_number: &str, provider: edge_providers::ProviderKind) -> NewNumber {
        NewNumber {
            phone_number: phone_number.to_owned(),
            friendly_name: self.friendly_name.clone(),
            agent_id: self.agent_id.clone(),
            provider: store_provider(provider),
            source: NumberSource::Purchased,
            provider_ref: None,
            inbound_routing: self.inbound_routing.clone(),
            provider_config: None,
        }
    }
}

/// Stores `number` as `pending` for this order and notes its id where the client's answer can find it.
async fn store_pending(
    state: &ApiState,
    provider: &dyn NumberProvider,
    order: &Order,
    progress: &ProgressSlot,
    number: &str,
) -> ApiResult<String> {
    let rec = state
        .store
        .create_pending_number(&order.account, order.new_number(number, provider.kind()))
        .await?;
    progress.lock().await.pending_id = Some(rec.id.clone());
    Ok(rec.id)
}

/// A purchase failed: its pending row becomes `failed` if nobody will see this error, else goes.
async fn settle_failure(state: &ApiState, account: &str, progress: &ProgressSlot, err: &ApiError) {
    let mut p = progress.lock().await;
    let Some(id) = p.pending_id.take() else {
        p.settled = true;
        return;
    };
    let stored = if p.client_gone {
        state.store.fail_number(account, &id, &err.message).await
    } else {
        p.settled = true;
        state.store.delete_number(account, &id).await.map(|_| ())
    };
    match stored {
        Ok(()) | Err(edge_store::StoreError::NotFound) => {}
        Err(e) => tracing::error!(number_id = %id, error = %e, "could not record the failed purchase"),
    }
}

async fn buy_and_register(
    state: ApiState,
    provider: Arc<dyn NumberProvider>,
    target: Target,
    order: Order,
    progress: ProgressSlot,
) -> ApiResult<NumberRecord> {
    let bought = match target {
        Target::Number(number) => buy_one(&state, provider.as_ref(), &order, &progress, number).await,
        Target::Auto(q) => auto_assign(&state, provider.as_ref(), &order, &progress, &q).await,
    };
    let (purchased, id, _reservation) = match bought {
        Ok(b) => b,
        Err(e) => {
            settle_failure(&state, &order.account, &progress, &e).await;
            return Err(e);
        }
    };
    match state
        .store
        .activate_number(&order.account, &id, &purchased.provider_ref)
        .await
    {
        Ok(rec) => Ok(rec),
        Err(e) => {
            // Deleted while pending, or the database failed: do not keep paying for it.
            if let Err(re) = provider.release(&purchased).await {
                tracing::error!(number = %purchased.phone_number, error = %re,
                    "release after failed registration also failed");
            }
            let e = ApiError::from(e);
            settle_failure(&state, &order.account, &progress, &e).await;
            Err(e)
        }
    }
}

/// Path A: reserve, store as pending, buy.
async fn buy_one(
    state: &ApiState,
    provider: &dyn NumberProvider,
    order: &Order,
    progress: &ProgressSlot,
    number: String,
) -> ApiResult<(PurchasedNumber, String, Reservation)> {
    let reservation = state.purchases.reserve(&number).ok_or_else(|| ApiError {
        status: StatusCode::CONFLICT,
        code: "conflict",
        message: "a purchase of this number is already in progress; it is listed in GET /v1/phone-numbers \
                  with status \"pending\""
            .into(),
        field: Some("phone_number".into()),
    })?;
    let id = store_pending(state, provider, order, progress, &number).await?;
    let purchased = provider.purchase(&number).await?;
    Ok((purchased, id, reservation))
}

/// What a purchase request asks for: one number (path A) or any match (path B).
enum Target {
    Number(String),
    Auto(SearchQuery),
}

async fn auto_assign(
    state: &ApiState,
    provider: &dyn NumberProvider,
    order: &Order,
    progress: &ProgressSlot,
    q: &SearchQuery,
) -> ApiResult<(PurchasedNumber, String, Reservation)> {
    let mut q = q.clone();
    for _ in 0..AUTO_ASSIGN_ROUNDS {
        let candidates = provider.search(&q).await?;
        if candidates.is_empty() {
            break;
        }
        for c in candidates.iter().take(AUTO_ASSIGN_CANDIDATES) {
            // Whatever happens to this one, the next round searches past it.
            if !q.exclude.insert(c.phone_number.clone()) {
                continue;
            }
            // Another request is buying it: take the next one rather than fail.
            let Some(reservation) = state.purchases.reserve(&c.phone_number) else {
                continue;
            };
            if state.store.phone_number_taken(&c.phone_number).await? {
                continue;
            }
            let id = match store_pending(state, provider, order, progress, &c.phone_number).await {
                Ok(id) => id,
                // Registered by someone since the check above: next one.
                Err(e) if e.status == StatusCode::CONFLICT => continue,
                Err(e) => return Err(e),
            };
            match provider.purchase(&c.phone_number).await {
                Ok(p) => return Ok((p, id, reservation)),
                // Sold to someone else since the search: forget it, try the next candidate.
                Err(edge_providers::ProviderError::NotAvailable(_)) => {
                    progress.lock().await.pending_id = None;
                    state.store.delete_number(&order.account, &id).await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(ApiError {
        status: StatusCode::CONFLICT,
        code: "no_numbers_available",
        message: "no available number matches this country/area code".into(),
        field: Some(if q.area_code.is_some() { "area_code" } else { "country" }.into()),
    })
}

/// Register a number you already own at Twilio or Telnyx (path C).
#[utoipa::path(post, path = "/v1/phone-numbers", tag = "phone-numbers", operation_id = "register_phone_number",
    request_body = RegisterNumberRequest,
    responses(
        (status = 201, body = PhoneNumber),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 502, body = ErrorBody)))]
pub async fn register(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<RegisterNumberRequest>,
) -> ApiResult<(StatusCode, Json<PhoneNumber>)> {
    let phone_number = validate::e164("phone_number", &req.phone_number)?;
    let agent_id = validate::agent_id("agent_id", &req.agent_id)?;
    let friendly_name = validate::opt_text("friendly_name", req.friendly_name.as_deref(), MAX_NAME_LEN)?;
    let pc = req.provider_config;
    let trunk_address = validate::trunk_target(
        "provider_config.trunk_address",
        &pc.trunk_address,
        &state.config.targets,
    )?;
    let auth_username = validate::opt_text(
        "provider_config.auth_username",
        pc.auth_username.as_deref(),
        MAX_NAME_LEN,
    )?;
    let auth_password = pc
        .auth_password
        .as_deref()
        .map(|p| validate::secret("provider_config.auth_password", p))
        .transpose()?;
    if auth_password.is_some() && auth_username.is_none() {
        return Err(ApiError::field(
            "provider_config.auth_username",
            "required when auth_password is set",
        ));
    }
    let tech_prefix = pc
        .tech_prefix
        .as_deref()
        .map(|t| validate::tech_prefix("provider_config.tech_prefix", t))
        .transpose()?;
    let ip_auth_token = pc
        .ip_auth_token
        .as_deref()
        .map(|t| validate::ip_auth_token("provider_config.ip_auth_token", t))
        .transpose()?;
    let tls_client = crate::client_cert::pair(pc.tls_client_certificate.as_deref(), pc.tls_client_key.as_deref())?
        .map(|(c, k)| crate::client_cert::check(c, k, edge_store::time::now_millis()))
        .transpose()?;
    let ib = inbound_routing(req.inbound_routing)?;
    let provider: edge_store::Provider = req.provider.into();
    // Whoever registers a number receives its calls: prove it is in the caller's own
    // provider account first (before any "already registered" answer, which would leak).
    let owner = if state.config.verify_number_ownership {
        Some(crate::checks::find_owner(&state, &account, provider, &phone_number).await?)
    } else {
        None
    };
    let new = NewNumber {
        phone_number,
        friendly_name,
        agent_id,
        provider,
        source: NumberSource::Byo,
        provider_ref: None,
        inbound_routing: ib,
        provider_config: Some(NewProviderConfig {
            trunk_address,
            auth_username,
            auth_password: auth_password.map(Secret::new),
            tech_prefix,
            ip_auth_token: ip_auth_token.map(Secret::new),
            p_charge_info: pc.p_charge_info.unwrap_or(false),
            tls_client_certificate: tls_client.as_ref().map(|(c, _)| c.clone()),
            tls_client_key: tls_client.map(|(_, k)| Secret::new(k)),
            media_encryption: pc.media_encryption.unwrap_or_default().into(),
        }),
    };
    let rec = state.store.create_number(&account, new).await?;
    let checks = match &owner {
        Some(o) => Some(crate::checks::run(&state, o, &rec).await),
        None => None,
    };
    let mut out: PhoneNumber = rec.into();
    out.checks = checks;
    Ok((StatusCode::CREATED, Json(out)))
}

/// List the account's numbers, newest first.
#[utoipa::path(get, path = "/v1/phone-numbers", tag = "phone-numbers", operation_id = "list_phone_numbers",
    params(NumberListParams),
    responses((status = 200, body = PhoneNumberList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<NumberListParams>, QueryRejection>,
) -> ApiResult<Json<PhoneNumberList>> {
    let Query(q) = q.map_err(query_error)?;
    let agent_id = q
        .agent_id
        .as_deref()
        .map(|a| validate::agent_id("agent_id", a))
        .transpose()?;
    let provider = q
        .provider
        .as_deref()
        .map(|p| {
            serde_json::from_value::<ProviderName>(serde_json::Value::String(p.to_owned()))
                .map(|p| store_provider(p.into()))
                .map_err(|_| ApiError::field("provider", "must be local, twilio or telnyx"))
        })
        .transpose()?;
    let status = q
        .status
        .as_deref()
        .map(|s| match s {
            "active" => Ok(edge_store::NumberStatus::Active),
            _ => Err(ApiError::field("status", "must be active")),
        })
        .transpose()?;
    // An unencoded `+` arrives as a space; take it back rather than fail confusingly.
    let phone_number = q
        .phone_number
        .as_deref()
        .map(|v| match v.strip_prefix(' ') {
            Some(rest) => validate::e164("phone_number", &format!("+{rest}")),
            None => validate::e164("phone_number", v),
        })
        .transpose()?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = page_request(q.limit.as_deref(), q.cursor.as_deref(), q.starting_after.as_deref())?
        .resolve(IdKind::PhoneNumber, |id| async move {
            Ok(store.get_number(acct, &id).await?.map(|n| n.created_at))
        })
        .await?;
    let filter = NumberFilter {
        agent_id,
        provider,
        status,
        phone_number,
    };
    let page = state
        .store
        .list_numbers(&account, filter, limit, cursor.as_ref())
        .await?;
    Ok(Json(PhoneNumberList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", operation_id = "get_phone_number",
    params(("id" = String, Path, description = "phn_…")),
    responses((status = 200, body = PhoneNumber),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<PhoneNumber>> {
    if !IdKind::PhoneNumber.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_number(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rec.into()))
}

/// Partial update; takes effect for the very next inbound call.
#[utoipa::path(patch, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", operation_id = "update_phone_number",
    params(("id" = String, Path, description = "phn_…")),
    request_body = UpdateNumberRequest,
    responses((status = 200, body = PhoneNumber),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateNumberRequest>,
) -> ApiResult<Json<PhoneNumber>> {
    if !IdKind::PhoneNumber.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let agent_id = match req.agent_id {
        None => None,
        Some(None) => return Err(ApiError::field("agent_id", "cannot be null")),
        Some(Some(a)) => Some(validate::agent_id("agent_id", &a)?),
    };
    let friendly_name = match req.friendly_name {
        None => None,
        Some(None) => Some(None),
        Some(Some(f)) => Some(Some(validate::text("friendly_name", &f, MAX_NAME_LEN)?)),
    };
    let inbound_routing = match req.inbound_routing {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => Some(Some(InboundRoutingPatch {
            agent_id: match p.agent_id {
                None => None,
                Some(None) => Some(None),
                Some(Some(a)) => Some(Some(validate::agent_id("inbound_routing.agent_id", &a)?)),
            },
            fallback_agent_id: match p.fallback {
                None => None,
                Some(None) => Some(None),
                Some(Some(f)) => Some(Some(validate::agent_id(
                    "inbound_routing.fallback.agent_id",
                    &f.agent_id,
                )?)),
            },
            voicemail_message: match p.voicemail_message {
                None => None,
                Some(None) => Some(None),
                Some(Some(m)) => Some(Some(validate::text(
                    "inbound_routing.voicemail_message",
                    &m,
                    MAX_MESSAGE_LEN,
                )?)),
            },
            transfer: p.transfer.map(|t| t.map(Into::into)),
        })),
    };
    let provider_config = req
        .provider_config
        .map(|p| -> ApiResult<ProviderConfigPatch> {
            Ok(ProviderConfigPatch {
                trunk_address: p
                    .trunk_address
                    .map(|t| validate::trunk_target("provider_config.trunk_address", &t, &state.config.targets))
                    .transpose()?,
                auth_username: p
                    .auth_username
                    .map(|u| {
                        u.map(|u| validate::text("provider_config.auth_username", &u, MAX_NAME_LEN))
                            .transpose()
                    })
                    .transpose()?,
                auth_password: p
                    .auth_password
                    .map(|pw| {
                        pw.map(|pw| validate::secret("provider_config.auth_password", &pw).map(Secret::new))
                            .transpose()
                    })
                    .transpose()?,
                tech_prefix: p
                    .tech_prefix
                    .map(|t| {
                        t.map(|t| validate::tech_prefix("provider_config.tech_prefix", &t))
                            .transpose()
                    })
                    .transpose()?,
                ip_auth_token: p
                    .ip_auth_token
                    .map(|t| {
                        t.map(|t| validate::ip_auth_token("provider_config.ip_auth_token", &t).map(Secret::new))
                            .transpose()
                    })
                    .transpose()?,
                p_charge_info: p.p_charge_info,
                tls_client: crate::client_cert::pair(p.tls_client_certificate, p.tls_client_key)?
                    .map(|pair| match pair {
                        (Some(c), Some(k)) => crate::client_cert::check(&c, &k, edge_store::time::now_millis())
                            .map(|(c, k)| Some((c, Secret::new(k)))),
                        (None, None) => Ok(None),
                        (Some(_), None) => Err(ApiError::field(
                            crate::client_cert::KEY_FIELD,
                            "null only together with tls_client_certificate",
                        )),
                        (None, Some(_)) => Err(ApiError::field(
                            crate::client_cert::CERT_FIELD,
                            "null only together with tls_client_key",
                        )),
                    })
                    .transpose()?,
                media_encryption: p.media_encryption.map(Into::into),
            })
        })
        .transpose()?;
    let patch = NumberPatch {
        agent_id,
        friendly_name,
        inbound_routing,
        provider_config,
    };
    let rec = state.store.update_number(&account, &id, patch).await?;
    Ok(Json(rec.into()))
}

/// Remove a number. Purchased numbers are released at their provider first (if that fails,
/// nothing changes); BYO numbers are only unregistered.
#[utoipa::path(delete, path = "/v1/phone-numbers/{id}", tag = "phone-numbers", operation_id = "delete_phone_number",
    params(("id" = String, Path, description = "phn_…")),
    responses((status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !IdKind::PhoneNumber.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_number(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let provider = match rec.source {
        // Nothing is held at the provider yet (pending: the purchase task releases what it
        // bought once it finds the row gone) or any more (failed).
        _ if rec.status != NumberStatus::Active => None,
        NumberSource::Byo => None,
        NumberSource::Purchased => {
            let kind = provider_kind(rec.provider);
            Some(state.providers.get(kind).ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "provider_not_configured",
                    format!("provider {kind} is not configured; cannot release the number"),
                )
            })?)
        }
    };
    // Release-then-unregister in its own task so a dropped request cannot stop in between.
    let task = tokio::spawn(async move {
        if let Some(provider) = provider {
            let purchased = PurchasedNumber {
                phone_number: rec.phone_number.clone(),
                provider: provider.kind(),
                provider_ref: rec.provider_ref.clone().unwrap_or_default(),
            };
            provider.release(&purchased).await.map_err(|e| {
                tracing::warn!(number = %purchased.phone_number, error = %e, "release failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "release_failed",
                    format!(
                        "the provider did not release the number, so it is still yours and still billed; \
                         retry DELETE later ({})",
                        ApiError::from(e).message
                    ),
                )
            })?;
        }
        state.store.delete_number(&account, &id).await?;
        Ok::<_, ApiError>(())
    });
    task.await.map_err(|e| {
        tracing::error!(error = %e, "delete task failed");
        ApiError::internal()
    })??;
    Ok(StatusCode::NO_CONTENT)
}
