//! `/v1/agents`: the AI voice agents numbers route to.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account, ApiJson};
use crate::validate::{self, MAX_MESSAGE_LEN, MAX_NAME_LEN};
use crate::wire::{double_option, non_null, AgentStatusName, ListParams, MediaEncryptionName};
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use edge_store::{AgentPatch, AgentRecord, AgentStatus, IdKind, NewAgent, Secret};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 10;
const MAX_CONCURRENT_CALLS_LIMIT: u32 = 10_000;

#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    /// `agt_…`
    pub id: String,
    pub name: String,
    /// Where calls for this agent are sent (`sip:` or `sips:` URI).
    pub sip_uri: String,
    pub max_concurrent_calls: u32,
    /// Default voicemail message; a number's `inbound_routing.voicemail_message` overrides it.
    pub voicemail_message: Option<String>,
    pub status: AgentStatusName,
    /// Digest username the agent authenticates its outbound INVITEs with.
    pub sip_username: Option<String>,
    /// Whether a SIP password is stored (it is never returned).
    pub sip_password_set: bool,
    /// SRTP on the agent's leg (`none`, `srtp`, `srtp_required`).
    pub media_encryption: MediaEncryptionName,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub data: Vec<Agent>,
    pub next_cursor: Option<String>,
    /// Whether another page follows (then pass `next_cursor` or the last id as `starting_after`).
    pub has_more: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(
        pattern = r"^[Ss][Ii][Pp][Ss]?:([A-Za-z0-9._~!*'()&=+$,%:-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(;[^\s?]*)?(\?\S*)?$",
        example = "sip:agent@10.0.0.5:5060"
    )]
    pub sip_uri: String,
    /// 1 to 10000, default 10.
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<u32>,
    #[schema(min_length = 1, max_length = 1000)]
    pub voicemail_message: Option<String>,
    /// Default `active`.
    pub status: Option<AgentStatusName>,
    /// For agent-originated calls (digest auth); unique across the edge. Requires `sip_password`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$", example = "sales-bot")]
    pub sip_username: Option<String>,
    /// Write-only; stored encrypted, never returned. Requires `sip_username`.
    #[schema(min_length = 8, max_length = 128, write_only)]
    pub sip_password: Option<String>,
    /// SRTP on the agent's leg; default `none`.
    pub media_encryption: Option<MediaEncryptionName>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgentRequest {
    /// Cannot be null (leave it out to keep the name).
    #[serde(default, deserialize_with = "non_null")]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(
        pattern = r"^[Ss][Ii][Pp][Ss]?:([A-Za-z0-9._~!*'()&=+$,%:-]+@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(;[^\s?]*)?(\?\S*)?$"
    )]
    pub sip_uri: Option<String>,
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    #[schema(minimum = 1, maximum = 10000)]
    pub max_concurrent_calls: Option<u32>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub voicemail_message: Option<Option<String>>,
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    pub status: Option<AgentStatusName>,
    /// `null` removes the credentials (password included).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub sip_username: Option<Option<String>>,
    /// Write-only; stored encrypted, never returned.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, min_length = 8, max_length = 128, write_only)]
    pub sip_password: Option<Option<String>>,
    /// Cannot be null.
    #[serde(default, deserialize_with = "non_null")]
    pub media_encryption: Option<MediaEncryptionName>,
}

impl From<AgentRecord> for Agent {
    fn from(a: AgentRecord) -> Self {
        Agent {
            id: a.id,
            name: a.name,
            sip_uri: a.sip_uri,
            max_concurrent_calls: a.max_concurrent_calls,
            voicemail_message: a.voicemail_message,
            status: a.status.into(),
            sip_password_set: a.sip_password.is_some(),
            sip_username: a.sip_username,
            media_encryption: a.media_encryption.into(),
            created_at: edge_store::time::rfc3339(a.created_at),
            updated_at: edge_store::time::rfc3339(a.updated_at),
        }
    }
}

fn max_calls(v: u32) -> ApiResult<u32> {
    if (1..=MAX_CONCURRENT_CALLS_LIMIT).contains(&v) {
        Ok(v)
    } else {
        Err(ApiError::field(
            "max_concurrent_calls",
            format!("must be 1 to {MAX_CONCURRENT_CALLS_LIMIT}"),
        ))
    }
}

#[utoipa::path(post, path = "/v1/agents", tag = "agents", operation_id = "create_agent",
    request_body = CreateAgentRequest,
    responses((status = 201, body = Agent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`sip_username` is taken"),
        (status = 413, body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<CreateAgentRequest>,
) -> ApiResult<(StatusCode, Json<Agent>)> {
    let new = NewAgent {
        name: validate::text("name", &req.name, MAX_NAME_LEN)?,
        sip_uri: validate::sip_uri_target("sip_uri", &req.sip_uri, &state.config.targets)?,
        max_concurrent_calls: max_calls(req.max_concurrent_calls.unwrap_or(DEFAULT_MAX_CONCURRENT_CALLS))?,
        voicemail_message: validate::opt_text("voicemail_message", req.voicemail_message.as_deref(), MAX_MESSAGE_LEN)?,
        status: req.status.map_or(AgentStatus::Active, Into::into),
        sip_username: req
            .sip_username
            .map(|u| validate::sip_username("sip_username", &u))
            .transpose()?,
        sip_password: req
            .sip_password
            .map(|p| validate::sip_password("sip_password", &p).map(Secret::new))
            .transpose()?,
        media_encryption: req.media_encryption.unwrap_or_default().into(),
    };
    let rec = state.store.create_agent(&account, new).await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

#[utoipa::path(get, path = "/v1/agents", tag = "agents", operation_id = "list_agents",
    params(ListParams),
    responses((status = 200, body = AgentList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<AgentList>> {
    let Query(q) = q.map_err(query_error)?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = q
        .parse()?
        .resolve(IdKind::Agent, |id| async move {
            Ok(store.get_agent(acct, &id).await?.map(|a| a.created_at))
        })
        .await?;
    let page = state.store.list_agents(&account, limit, cursor.as_ref()).await?;
    Ok(Json(AgentList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", operation_id = "get_agent",
    params(("id" = String, Path, description = "agt_…")),
    responses((status = 200, body = Agent),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    if !IdKind::Agent.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_agent(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rec.into()))
}

#[utoipa::path(patch, path = "/v1/agents/{id}", tag = "agents", operation_id = "update_agent",
    params(("id" = String, Path, description = "agt_…")),
    request_body = UpdateAgentRequest,
    responses((status = 200, body = Agent),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`sip_username` is taken"),
        (status = 413, body = ErrorBody)))]
pub async fn update(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateAgentRequest>,
) -> ApiResult<Json<Agent>> {
    if !IdKind::Agent.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let patch = AgentPatch {
        name: req.name.map(|n| validate::text("name", &n, MAX_NAME_LEN)).transpose()?,
        sip_uri: req
            .sip_uri
            .map(|s| validate::sip_uri_target("sip_uri", &s, &state.config.targets))
            .transpose()?,
        max_concurrent_calls: req.max_concurrent_calls.map(max_calls).transpose()?,
        voicemail_message: match req.voicemail_message {
            None => None,
            Some(None) => Some(None),
            Some(Some(m)) => Some(Some(validate::text("voicemail_message", &m, MAX_MESSAGE_LEN)?)),
        },
        status: req.status.map(Into::into),
        sip_username: req
            .sip_username
            .map(|u| u.map(|u| validate::sip_username("sip_username", &u)).transpose())
            .transpose()?,
        sip_password: req
            .sip_password
            .map(|p| {
                p.map(|p| validate::sip_password("sip_password", &p).map(Secret::new))
                    .transpose()
            })
            .transpose()?,
        media_encryption: req.media_encryption.map(Into::into),
    };
    let rec = state.store.update_agent(&account, &id, patch).await?;
    Ok(Json(rec.into()))
}

/// Delete an agent; 409 while any number uses it.
#[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", operation_id = "delete_agent",
    params(("id" = String, Path, description = "agt_…")),
    responses((status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !IdKind::Agent.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    state.store.delete_agent(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
