//! `/v1/integrations`: customer provider credentials (api_key is write-only).

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{query_error, Account, ApiJson};
use crate::validate::{self, MAX_METADATA_BYTES, MAX_NAME_LEN};
use crate::wire::{ByoProvider, ListParams, ProviderName};
use crate::ApiState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use edge_store::{IdKind, IntegrationRecord, NewIntegration, Secret};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Integration {
    /// `crd_…`
    pub id: String,
    pub provider: ProviderName,
    pub name: String,
    /// Free-form provider details (e.g. `account_sid`, `sip_trunk`).
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationList {
    pub data: Vec<Integration>,
    pub next_cursor: Option<String>,
    /// Whether another page follows.
    pub has_more: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegrationRequest {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    pub provider: ByoProvider,
    /// Provider auth token; write-only, stored encrypted, never returned.
    #[schema(min_length = 1, max_length = 512, write_only)]
    pub api_key: String,
    /// Free-form object, at most 8 KiB as JSON. `sip_trunk` (`host[:port]`, a leading `sip:`
    /// is stripped; `sips:` or `;transport=tls` for TLS) is where outbound calls from this provider's
    /// numbers are sent.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

impl From<IntegrationRecord> for Integration {
    fn from(r: IntegrationRecord) -> Self {
        Integration {
            id: r.id,
            provider: r.provider.into(),
            name: r.name,
            metadata: match r.metadata {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            created_at: edge_store::time::rfc3339(r.created_at),
            updated_at: edge_store::time::rfc3339(r.updated_at),
        }
    }
}

#[utoipa::path(post, path = "/v1/integrations", tag = "integrations", operation_id = "create_integration",
    request_body = CreateIntegrationRequest,
    responses((status = 201, body = Integration),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn create(
    State(state): State<ApiState>,
    Account(account): Account,
    ApiJson(req): ApiJson<CreateIntegrationRequest>,
) -> ApiResult<(StatusCode, Json<Integration>)> {
    let name = validate::text("name", &req.name, MAX_NAME_LEN)?;
    let api_key = validate::secret("api_key", &req.api_key)?;
    let mut metadata = req.metadata.unwrap_or_default();
    // The call engine dials this for outbound calls; keep only what it can use.
    if let Some(trunk) = metadata.get_mut("sip_trunk") {
        let addr = trunk
            .as_str()
            .ok_or_else(|| ApiError::field("metadata.sip_trunk", "must be a string host[:port]"))?;
        *trunk = Value::String(validate::trunk_target(
            "metadata.sip_trunk",
            addr,
            &state.config.targets,
        )?);
    }
    let metadata = Value::Object(metadata);
    if serde_json::to_vec(&metadata).map_or(true, |b| b.len() > MAX_METADATA_BYTES) {
        return Err(ApiError::field(
            "metadata",
            format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
        ));
    }
    let rec = state
        .store
        .create_integration(
            &account,
            NewIntegration {
                name,
                provider: req.provider.into(),
                api_key: Secret::new(api_key),
                metadata,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rec.into())))
}

#[utoipa::path(get, path = "/v1/integrations", tag = "integrations", operation_id = "list_integrations",
    params(ListParams),
    responses((status = 200, body = IntegrationList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<ApiState>,
    Account(account): Account,
    q: Result<Query<ListParams>, QueryRejection>,
) -> ApiResult<Json<IntegrationList>> {
    let Query(q) = q.map_err(query_error)?;
    let (store, acct) = (&state.store, account.as_str());
    let (limit, cursor) = q
        .parse()?
        .resolve(IdKind::Integration, |id| async move {
            Ok(store.get_integration(acct, &id).await?.map(|i| i.created_at))
        })
        .await?;
    let page = state.store.list_integrations(&account, limit, cursor.as_ref()).await?;
    Ok(Json(IntegrationList {
        data: page.items.into_iter().map(Into::into).collect(),
        has_more: page.next_cursor.is_some(),
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/integrations/{id}", tag = "integrations", operation_id = "get_integration",
    params(("id" = String, Path, description = "crd_…")),
    responses((status = 200, body = Integration),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<Json<Integration>> {
    if !IdKind::Integration.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    let rec = state
        .store
        .get_integration(&account, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(rec.into()))
}

#[utoipa::path(delete, path = "/v1/integrations/{id}", tag = "integrations", operation_id = "delete_integration",
    params(("id" = String, Path, description = "crd_…")),
    responses((status = 204, description = "deleted"),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(state): State<ApiState>,
    Account(account): Account,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !IdKind::Integration.is_valid(&id) {
        return Err(ApiError::not_found());
    }
    state.store.delete_integration(&account, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
